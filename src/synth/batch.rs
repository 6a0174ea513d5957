//! The interface of a renderer that renders many stations' blocks in one go: what the GPU engine
//! thread drives. [`GpuRenderer`](super::gpu::GpuRenderer) is the real one; tests put stand-ins
//! behind it that block or lose their device, to show that a GPU fault costs no audio.

use std::sync::Arc;
use std::time::Duration;

use super::gpu::{AdapterSummary, GpuError};
use super::voice::VoiceTable;

/// Builds a replacement for a lost renderer (again after a failed attempt). It runs on a thread
/// of its own: opening a device and compiling shaders takes long enough to empty the rings.
pub type Rebuild = Arc<dyn Fn() -> Result<Box<dyn BatchRenderer>, GpuError> + Send + Sync>;

/// A renderer of many voice tables per call.
pub trait BatchRenderer: Send {
    /// Renders every table into its output slice (interleaved stereo, `frames * 2` samples
    /// each), giving up once `deadline` has passed since the call began.
    ///
    /// # Errors
    /// [`GpuError`]: the outputs are then unspecified and the caller renders them otherwise.
    fn render(
        &mut self,
        tables: &[&VoiceTable],
        outs: &mut [&mut [f32]],
        deadline: Duration,
    ) -> Result<(), GpuError>;

    /// Whether the device is gone for good (every render fails until a replacement is built).
    fn is_lost(&self) -> bool;

    fn adapter(&self) -> &AdapterSummary;

    /// Device memory this renderer holds, in bytes.
    fn allocated_bytes(&self) -> u64;

    /// How to build a renderer like this one on a new device.
    fn rebuilder(&self) -> Rebuild;
}
