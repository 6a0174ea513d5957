//! After a restart with the control log intact, the chunks just before this process's first one
//! are rendered again (the stream is a pure function of seed, control log and position), so a
//! listener of the previous process can resume across the restart without a gap.
//!
//! Runs once per start on a blocking thread, never on the synthesis thread, and never because a
//! client asked: resumes are served from what it leaves in the hub's retained window.

use std::time::Instant;

use crate::clock::unix_nanos;
use crate::codec::{Codec, CodecError, CodecSettings, PcmFormat, StationEncoders};
use crate::mount::{MountPages, MountStream};
use crate::stream::hub::Frame;
use crate::stream::protocol::{frame_with_payload, CodecFrames, FrameHeader};
use crate::synth::timeline::LogError;
use crate::synth::{ControlEntry, Synth, Timeline, CHANNELS};
use crate::telemetry::metrics::StationMetrics;

/// Chunks rendered and encoded before the window and thrown away, so a stateful encoder (Opus)
/// enters the window warm instead of with a fresh encoder's first-frame artefacts.
pub const WARM_UP_CHUNKS: u64 = 2;

/// What to render again.
#[derive(Clone, Debug)]
pub struct Backfill {
    pub seed: u64,
    /// The replayed history (from the start of the log).
    pub history: Vec<ControlEntry>,
    pub format: PcmFormat,
    pub codecs: CodecSettings,
    /// Header fields shared by every chunk of the station.
    pub template: FrameHeader,
    /// First position to render (on the chunk grid) and the first one this process streams live.
    pub from: u64,
    pub until: u64,
}

/// The chunks could not be rendered again.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    History(#[from] LogError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Renders and encodes every chunk of `from .. until`, oldest first, as the pacer would have
/// released them (flags clear; the time fields say when they were rendered again). Each chunk's
/// render and encode time goes to `auralis_resume_render_seconds`. `mount` numbers the chunks'
/// HTTP mount pages.
///
/// # Errors
/// [`BackfillError`] when the history is not a timeline or an encoder cannot start.
pub fn render(
    plan: &Backfill,
    metrics: &StationMetrics,
    mount: &MountStream,
) -> Result<Vec<Frame>, BackfillError> {
    let chunk = u64::from(plan.format.frames_per_chunk);
    let timeline = Timeline::from_log(plan.seed, plan.format.sample_rate, &plan.history)?;
    let mut synth = Synth::new(timeline, chunk as usize);
    let mut encoders = StationEncoders::new(&plan.codecs, plan.format)?;
    let mut samples = vec![0.0f32; chunk as usize * CHANNELS];
    let mut scratch = Vec::new();
    let mut frames = Vec::with_capacity(((plan.until - plan.from) / chunk.max(1)) as usize);
    let warm_from = plan.from.saturating_sub(WARM_UP_CHUNKS * chunk);
    let mut position = warm_from;
    while position < plan.until {
        let started = Instant::now();
        // The buffer is exactly one chunk, so rendering cannot fail.
        let _ = synth.render(position, &mut samples);
        let now = unix_nanos();
        let header = FrameHeader {
            flags: 0,
            sequence: position / chunk,
            position,
            rendered_unix_ns: now,
            sent_unix_ns: now,
            ..plan.template
        };
        let mut encoded = CodecFrames::default();
        encoders.encode(
            &samples,
            position,
            &mut scratch,
            |codec: Codec, payload, _| {
                if let Ok(payload) = payload {
                    encoded.set(codec, frame_with_payload(&header, codec, payload));
                }
            },
        );
        if position >= plan.from {
            metrics
                .resume_render
                .record(started.elapsed().as_secs_f64());
            frames.push(Frame {
                sequence: header.sequence,
                position,
                flags: 0,
                mounts: MountPages::build(mount, header.sequence, position, &encoded),
                frames: encoded,
                popped_at: tokio::time::Instant::now(),
            });
        }
        position += chunk;
    }
    Ok(frames)
}
