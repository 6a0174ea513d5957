//! Synthesis: the composer ([`score`], segment by segment along the [`timeline`] of live changes)
//! decides what sounds; a renderer turns it into samples.
//!
//! [`Synth`] ties one station's timeline to a renderer and is what the synthesis thread, the offline
//! `render` command and the benches all call, so they produce the same samples by construction.

pub mod batch;
pub mod cpu;
pub mod gpu;
pub mod hash;
pub mod params;
pub mod score;
pub mod timeline;
pub mod voice;

pub use cpu::{CpuRenderer, RenderError, CHANNELS};
pub use params::{MusicParams, ParamChange, Preset};
pub use score::Score;
pub use timeline::{ControlEntry, PlaceError, ScheduleFull, Timeline};
pub use voice::{Voice, VoiceKind, VoiceTable};

/// Which renderer to use (`--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// The best available: the GPU when one can be used, else the CPU reference renderer.
    #[default]
    Auto,
    /// The wgpu compute renderer; an error when it cannot be used.
    Gpu,
    /// The CPU reference renderer.
    Cpu,
}

/// The renderer a station actually uses, after resolving `--backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    Gpu,
}

impl Backend {
    /// Label value for metrics and status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
        }
    }
}

/// The requested backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("--backend gpu: {0}. Install a Vulkan driver (a GPU's, or Mesa's lavapipe: apt-get install mesa-vulkan-drivers) or use --backend cpu")]
    GpuUnavailable(gpu::GpuError),
}

/// The resolved backend, with the GPU device when it is the GPU.
pub struct SelectedBackend {
    pub backend: Backend,
    pub gpu: Option<gpu::GpuContext>,
    /// Why `auto` did not pick the GPU, for the start-up log.
    pub gpu_skipped: Option<gpu::GpuError>,
}

/// Resolves `--backend`: `auto` takes a hardware GPU when one exists (a software Vulkan driver is
/// slower than the CPU renderer) and the CPU otherwise; `gpu` insists on any Vulkan adapter,
/// software included; `cpu` is the reference renderer.
///
/// # Errors
/// [`BackendError::GpuUnavailable`] when `gpu` is requested and no adapter can be opened.
pub fn select_backend(choice: BackendChoice) -> Result<SelectedBackend, BackendError> {
    let cpu = |skipped| SelectedBackend {
        backend: Backend::Cpu,
        gpu: None,
        gpu_skipped: skipped,
    };
    let gpu = |context| SelectedBackend {
        backend: Backend::Gpu,
        gpu: Some(context),
        gpu_skipped: None,
    };
    match choice {
        BackendChoice::Cpu => Ok(cpu(None)),
        BackendChoice::Auto if !hardware_gpu_present() => Ok(cpu(Some(gpu::GpuError::NoAdapter(
            "no GPU device node (/dev/dri/renderD*, /dev/nvidia*)".into(),
        )))),
        BackendChoice::Auto => match gpu::GpuContext::acquire(gpu::AdapterPolicy::HardwareOnly) {
            Ok(context) => Ok(gpu(context)),
            Err(e) => Ok(cpu(Some(e))),
        },
        BackendChoice::Gpu => gpu::GpuContext::acquire(gpu::AdapterPolicy::Any)
            .map(gpu)
            .map_err(BackendError::GpuUnavailable),
    }
}

/// Whether the machine shows a hardware GPU to user space. `auto` asks before it loads Vulkan at
/// all: without one, only a software driver could answer (which `auto` refuses anyway), and
/// loading the drivers costs memory and can print driver noise (e.g. `XDG_RUNTIME_DIR is invalid
/// or not set`) to a user who never asked for the GPU. Off Linux the probe always runs.
fn hardware_gpu_present() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let has_entry = |dir: &str, prefix: &str| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
        })
    };
    has_entry("/dev/dri", "renderD") || has_entry("/dev", "nvidia")
}

/// One station's synthesis: timeline, voice table and renderer, all allocated up front.
#[derive(Debug)]
pub struct Synth {
    timeline: Timeline,
    table: VoiceTable,
    renderer: CpuRenderer,
    max_frames: usize,
}

impl Synth {
    /// A synthesiser for a timeline (or a single score) that renders blocks of up to
    /// `max_frames` frames.
    pub fn new(timeline: impl Into<Timeline>, max_frames: usize) -> Self {
        Self {
            timeline: timeline.into(),
            table: VoiceTable::new(),
            renderer: CpuRenderer::new(max_frames),
            max_frames,
        }
    }

    /// Rebuilds the voice table and renderer after a render panicked part-way, keeping the
    /// timeline (seed and control log), so the music goes on exactly where it would have been.
    /// Allocates: it runs on the fault path only, once per crash.
    pub fn recover(&mut self) {
        self.table = VoiceTable::new();
        self.renderer = CpuRenderer::new(self.max_frames);
    }

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// Schedules a parameter change at the first bar line at or after `not_before`; see
    /// [`Timeline::schedule`]. Does not allocate.
    ///
    /// # Errors
    /// [`ScheduleFull`] when too many changes are still in flight.
    pub fn schedule(
        &mut self,
        params: MusicParams,
        not_before: u64,
    ) -> Result<ControlEntry, ScheduleFull> {
        self.timeline.schedule(params, not_before)
    }

    /// Puts a change at its planned position; see [`Timeline::place`]. Does not allocate.
    ///
    /// # Errors
    /// [`PlaceError`] when it is too late or no segment is free.
    pub fn place(&mut self, entry: ControlEntry, not_before: u64) -> Result<(), PlaceError> {
        self.timeline.place(entry, not_before)
    }

    /// Renders the block starting at stream frame `position` into `out` (interleaved stereo;
    /// its length sets the block size). Does not allocate.
    ///
    /// # Errors
    /// [`RenderError`] when `out` is longer than the renderer was built for or not whole frames.
    ///
    /// # Examples
    /// ```
    /// use auralis::synth::{Score, Synth};
    ///
    /// // Any block can be rendered on its own: the music is a function of seed and position.
    /// let mut synth = Synth::new(Score::new(7, 48_000), 4800);
    /// let mut block = vec![0.0f32; 4800 * 2];
    /// synth.render(48_000 * 3600, &mut block)?;
    /// assert!(block.iter().all(|s| s.abs() <= 1.0));
    ///
    /// let mut again = vec![0.0f32; 4800 * 2];
    /// Synth::new(Score::new(7, 48_000), 4800).render(48_000 * 3600, &mut again)?;
    /// assert_eq!(block, again);
    /// # Ok::<(), auralis::synth::RenderError>(())
    /// ```
    pub fn render(&mut self, position: u64, out: &mut [f32]) -> Result<(), RenderError> {
        self.compose(position, (out.len() / CHANNELS) as u32);
        self.render_composed(out)
    }

    /// Composes the block at `position` into the synth's voice table (for a GPU batch) without
    /// rendering it. Does not allocate.
    pub fn compose(&mut self, position: u64, frames: u32) {
        self.timeline.compose(position, frames, &mut self.table);
    }

    /// The voice table of the last composed block.
    pub fn table(&self) -> &VoiceTable {
        &self.table
    }

    /// Renders the last composed block on the CPU (the GPU path's fallback). Does not allocate.
    ///
    /// # Errors
    /// As [`render`](Self::render).
    pub fn render_composed(&mut self, out: &mut [f32]) -> Result<(), RenderError> {
        self.renderer.render(&self.table, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(seed: u64, position: u64, frames: usize) -> Vec<f32> {
        let mut synth = Synth::new(Score::new(seed, 48_000), frames);
        let mut out = vec![0.0; frames * CHANNELS];
        synth.render(position, &mut out).unwrap();
        out
    }

    #[test]
    fn a_chunk_renders_the_same_without_its_predecessors() {
        let mut synth = Synth::new(Score::new(9, 48_000), 4800);
        let mut out = vec![0.0; 9600];
        for block in 0..20 {
            synth.render(block * 4800, &mut out).unwrap();
        }
        assert_eq!(out, render(9, 19 * 4800, 4800));
    }

    #[test]
    fn no_clicks_at_block_boundaries() {
        // Render 60 s in 100 ms blocks and compare the jump across each boundary with the
        // largest jump inside the blocks: a boundary must never be the odd one out.
        let mut synth = Synth::new(Score::new(5, 48_000), 4800);
        let mut out = vec![0.0; 9600];
        let mut prev = [0.0f32; 2];
        let (mut max_inside, mut max_boundary) = (0.0f32, 0.0f32);
        for block in 0..600u64 {
            synth.render(block * 4800, &mut out).unwrap();
            for ch in 0..2 {
                if block > 0 {
                    max_boundary = max_boundary.max((out[ch] - prev[ch]).abs());
                }
                for k in 1..4800 {
                    max_inside = max_inside.max((out[2 * k + ch] - out[2 * (k - 1) + ch]).abs());
                }
                prev[ch] = out[9600 - 2 + ch];
            }
        }
        assert!(max_inside > 0.0);
        assert!(
            max_boundary <= max_inside,
            "boundary jump {max_boundary} > in-block jump {max_inside}"
        );
    }

    #[test]
    fn sounds_like_music_not_silence_or_noise() {
        // Ten seconds: within the s16 range, a sensible level, and both channels busy.
        let out = render(11, 0, 480_000);
        let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        let rms = (out.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / out.len() as f64).sqrt();
        let dbfs = 20.0 * rms.log10();
        assert!(peak <= 1.0, "peak {peak}");
        assert!((-26.0..=-10.0).contains(&dbfs), "level {dbfs:.1} dBFS");
        let left: f64 = out.iter().step_by(2).map(|s| s.abs() as f64).sum();
        let right: f64 = out.iter().skip(1).step_by(2).map(|s| s.abs() as f64).sum();
        assert!(left > 0.0 && right > 0.0 && (left / right - 1.0).abs() < 0.5);
    }

    #[test]
    fn clean_ten_hours_in() {
        // The f32-time trap: a block ten hours in must be as smooth as one at the start.
        let max_step = |out: &[f32]| {
            out.chunks_exact(2)
                .zip(out.chunks_exact(2).skip(1))
                .map(|(a, b)| (a[0] - b[0]).abs().max((a[1] - b[1]).abs()))
                .fold(0.0f32, f32::max)
        };
        let early = render(3, 48_000 * 20, 48_000);
        let late = render(3, 48_000 * 36_000 + 48_000 * 20, 48_000);
        assert!(max_step(&late) < 2.0 * max_step(&early) + 0.01);
    }

    #[test]
    fn cpu_is_always_the_cpu() {
        let selected = select_backend(BackendChoice::Cpu).unwrap();
        assert_eq!(selected.backend, Backend::Cpu);
        assert!(selected.gpu.is_none());
    }
}
