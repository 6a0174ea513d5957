//! Offline rendering: the same samples `serve` streams, written to a WAV file.
//!
//! Blocks are rendered on the stream's chunk grid with the same [`Synth`] call and the same `f32`
//! to s16 conversion as the pacer, so the file is bit-identical to the streamed audio at the same
//! positions, including every live change when rendered from the station's control log.

use std::path::Path;

use crate::stream::protocol::f32_to_s16;
use crate::synth::{ControlEntry, Synth, Timeline, CHANNELS};

/// Offline render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderFileError {
    #[error("cannot write {path}: {source}")]
    Wav { path: String, source: hound::Error },
    #[error("nothing to render: --seconds must be positive and finite")]
    Empty,
    #[error("--start must be a non-negative number of seconds")]
    BadStart,
}

/// What to render.
#[derive(Clone, Debug)]
pub struct RenderRequest {
    /// The station's music: seed, parameters and any control log.
    pub timeline: Timeline,
    pub chunk_frames: usize,
    /// First stream frame to render.
    pub start_frame: u64,
    /// Frames to render.
    pub frames: u64,
}

impl RenderRequest {
    /// A request in seconds of stream time (stream position 0 is the Unix epoch).
    ///
    /// # Errors
    /// [`RenderFileError`] for a negative start or an empty duration.
    pub fn from_seconds(
        timeline: Timeline,
        chunk_frames: usize,
        start_seconds: f64,
        seconds: f64,
    ) -> Result<Self, RenderFileError> {
        if !(start_seconds.is_finite() && start_seconds >= 0.0) {
            return Err(RenderFileError::BadStart);
        }
        let sample_rate = timeline.sample_rate();
        let frames = (seconds * sample_rate as f64).round();
        if !(frames.is_finite() && frames >= 1.0) {
            return Err(RenderFileError::Empty);
        }
        Ok(Self {
            timeline,
            chunk_frames,
            start_frame: (start_seconds * sample_rate as f64).round() as u64,
            frames: frames as u64,
        })
    }
}

/// Reads a control log: either the body of `GET /api/stations/{name}/control` (whose seed wins)
/// or a bare JSON array of entries (used with `default_seed`). Returns the seed and the entries.
///
/// # Errors
/// The JSON error when the text is neither.
pub fn parse_control_log(
    text: &str,
    default_seed: u64,
) -> Result<(u64, Vec<ControlEntry>), serde_json::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum LogFile {
        Snapshot { seed: u64, log: Vec<ControlEntry> },
        Entries(Vec<ControlEntry>),
    }
    Ok(match serde_json::from_str(text)? {
        LogFile::Snapshot { seed, log } => (seed, log),
        LogFile::Entries(log) => (default_seed, log),
    })
}

/// Renders the request as interleaved s16 samples, calling `sink` once per chunk-grid block
/// (trimmed to the requested range).
pub fn render_pcm(request: &RenderRequest, mut sink: impl FnMut(&[i16])) {
    let chunk = request.chunk_frames as u64;
    let mut synth = Synth::new(request.timeline.clone(), request.chunk_frames);
    let mut samples = vec![0.0f32; request.chunk_frames * CHANNELS];
    let mut pcm = vec![0i16; request.chunk_frames * CHANNELS];
    let end = request.start_frame + request.frames;
    let mut block = request.start_frame - request.start_frame % chunk;
    while block < end {
        // Sizes match by construction, so rendering cannot fail.
        let _ = synth.render(block, &mut samples);
        for (out, s) in pcm.iter_mut().zip(&samples) {
            *out = f32_to_s16(*s);
        }
        let from = request.start_frame.saturating_sub(block).min(chunk) as usize;
        let to = (end - block).min(chunk) as usize;
        sink(&pcm[from * CHANNELS..to * CHANNELS]);
        block += chunk;
    }
}

/// Renders to a 16-bit stereo WAV file.
///
/// # Errors
/// [`RenderFileError::Wav`] when the file cannot be written.
pub fn render_wav(request: &RenderRequest, path: &Path) -> Result<(), RenderFileError> {
    let wav_error = |source| RenderFileError::Wav {
        path: path.display().to_string(),
        source,
    };
    let spec = hound::WavSpec {
        channels: CHANNELS as u16,
        sample_rate: request.timeline.sample_rate(),
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(wav_error)?;
    let mut result = Ok(());
    render_pcm(request, |block| {
        if result.is_ok() {
            let mut samples = writer.get_i16_writer(block.len() as u32);
            for &s in block {
                samples.write_sample(s);
            }
            result = samples.flush();
        }
    });
    result.map_err(wav_error)?;
    writer.finalize().map_err(wav_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Score;

    fn timeline(seed: u64) -> Timeline {
        Score::new(seed, 48_000).into()
    }

    #[test]
    fn unaligned_ranges_match_aligned_ones() {
        let request = |start_frame, frames| RenderRequest {
            timeline: timeline(4),
            chunk_frames: 4800,
            start_frame,
            frames,
        };
        let mut whole = Vec::new();
        render_pcm(&request(0, 14_400), |b| whole.extend_from_slice(b));
        let mut part = Vec::new();
        render_pcm(&request(1000, 9000), |b| part.extend_from_slice(b));
        assert_eq!(whole.len(), 14_400 * 2);
        assert_eq!(part, whole[2000..20_000]);
    }

    #[test]
    fn writes_a_wav_file() {
        let dir = std::env::temp_dir().join(format!("auralis-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.wav");
        let request = RenderRequest::from_seconds(timeline(1), 4800, 0.0, 0.5).unwrap();
        render_wav(&request, &path).unwrap();
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.len(), 48_000);
        assert!(RenderRequest::from_seconds(timeline(1), 4800, -1.0, 1.0).is_err());
        assert!(RenderRequest::from_seconds(timeline(1), 4800, 0.0, 0.0).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
