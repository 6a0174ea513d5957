//! `auralis listen`: plays a stream through the sound card.
//!
//! Data flow: [`network`] (a tokio task) receives frames, maps channels, resamples to the device
//! rate with [`drift`] correction ([`resample`]) and pushes `f32` frames into an `rtrb` ring.
//! The sound card's callback ([`output`], behind the `playback` feature) only pops from that ring,
//! converts to the device's sample format, fills silence on underrun and counts it in atomics.
//! What was played can be copied to a second ring that a thread writes to WAV ([`record`]).

pub mod drift;
pub mod network;
#[cfg(feature = "playback")]
pub mod output;
pub mod record;
pub mod resample;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// What the player shares between the network task and the real-time callback. Atomics only:
/// the callback never locks.
#[derive(Debug, Default)]
pub struct PlaybackShared {
    /// Set by the network task once the prebuffer is full; cleared by the callback on underrun
    /// (playback then waits for the prebuffer again).
    pub primed: AtomicBool,
    /// Times the ring ran dry while playing (after the prebuffer was first filled).
    pub underruns: AtomicU64,
    /// Frames of silence played because of those underruns.
    pub underrun_frames: AtomicU64,
    /// Frames handed to the device while playing.
    pub played_frames: AtomicU64,
    /// Samples the WAV recorder could not take (its ring was full).
    pub record_dropped: AtomicU64,
}

/// Network-side figures for the status line.
#[derive(Debug, Default)]
pub struct ListenStats {
    pub connected: AtomicBool,
    pub chunks: AtomicU64,
    /// Sequence jumps (a reconnect resuming at the live edge, or the server skipping us ahead).
    pub gaps: AtomicU64,
    pub reconnects: AtomicU64,
    /// Render (server clock) to playout estimate, in µs; 0 until known.
    pub latency_us: AtomicU64,
    /// Ring level at the last arrival, in µs of audio.
    pub buffer_us: AtomicU64,
    /// Current drift correction in parts per million.
    pub correction_ppm: AtomicI64,
    /// Samples that did not fit in the ring (the buffer was full).
    pub overflow_samples: AtomicU64,
    /// Frames whose payload did not decode (each is skipped, like a lost chunk).
    pub decode_errors: AtomicU64,
    /// The codec of the last frame played (`Codec as u8`; 0 before the first).
    pub codec: std::sync::atomic::AtomicU8,
    /// Reconnects that resumed with nothing missed, and those the server could not resume.
    pub resumes: AtomicU64,
    pub resumes_refused: AtomicU64,
    /// Resumed chunks dropped (crossfaded over) to return to the target latency.
    pub catch_up_dropped: AtomicU64,
}

/// What `auralis listen` was asked to do.
#[derive(Clone, Debug)]
pub struct ListenConfig {
    /// `ws://HOST:PORT/ws[?station=NAME]`, or `wss://` through TLS.
    pub url: String,
    /// TLS for a `wss://` URL; `None` for `ws://`.
    pub tls: Option<crate::client_tls::ClientTls>,
    /// Output device: a name or id as `--list-devices` prints it; the default device if `None`.
    pub device: Option<String>,
    /// Audio queued before playback starts (and after an underrun).
    pub buffer: Duration,
    /// Also write what was played to this WAV file.
    pub record_to: Option<std::path::PathBuf>,
    /// Stop after this long (for scripted runs); until interrupted if `None`.
    pub duration: Option<Duration>,
}

/// Why listening stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("bad URL {0:?}: expected ws[s]://HOST:PORT/ws (optionally ?station=NAME)")]
    BadUrl(String),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("unknown output device {wanted:?}; available: {available}")]
    UnknownDevice { wanted: String, available: String },
    #[error("no output device (is a sound card or ALSA configured?)")]
    NoDevice,
    #[error("audio device: {0}")]
    Device(String),
    #[error("cannot record to {path}: {reason}")]
    Record { path: String, reason: String },
    #[error("cannot start the network runtime: {0}")]
    Runtime(std::io::Error),
}

/// The end-of-run summary.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ListenSummary {
    pub played_seconds: f64,
    pub underruns: u64,
    pub underrun_seconds: f64,
    pub chunks: u64,
    pub gaps: u64,
    pub reconnects: u64,
    /// Reconnects that resumed with nothing missed.
    pub resumes: u64,
    /// Resumed chunks dropped, crossfaded over, to return to the target latency.
    pub catch_up_dropped: u64,
    pub codec: String,
    pub decode_errors: u64,
    pub correction_percent: f64,
    pub latency_ms: Option<f64>,
    pub device: String,
    pub device_rate: u32,
    pub device_channels: u16,
    pub sample_format: String,
}

impl ListenSummary {
    /// One line for stdout.
    pub fn line(&self) -> String {
        let latency = self
            .latency_ms
            .map_or_else(|| "unknown".to_string(), |ms| format!("{ms:.0} ms"));
        format!(
            "listen: played {:.1} s on {} ({} Hz, {} ch, {}); underruns {} ({:.2} s); chunks {} ({}); decode errors {}; gaps {}; reconnects {}; resumes {}; catch-up dropped {}; drift correction {:+.3} %; latency {}",
            self.played_seconds,
            self.device,
            self.device_rate,
            self.device_channels,
            self.sample_format,
            self.underruns,
            self.underrun_seconds,
            self.chunks,
            self.codec,
            self.decode_errors,
            self.gaps,
            self.reconnects,
            self.resumes,
            self.catch_up_dropped,
            self.correction_percent,
            latency
        )
    }
}

/// The one-line live status.
pub fn status_line(shared: &PlaybackShared, stats: &ListenStats) -> String {
    let latency = stats.latency_us.load(Ordering::Relaxed);
    let latency = if latency == 0 {
        "   -  ".to_string()
    } else {
        format!("{:4.0} ms", latency as f64 / 1000.0)
    };
    format!(
        "{} latency {latency} | buffer {:3.0} ms | underruns {} | drift {:+.3} % | gaps {} | reconnects {}",
        if stats.connected.load(Ordering::Relaxed) {
            "▶"
        } else {
            "…"
        },
        stats.buffer_us.load(Ordering::Relaxed) as f64 / 1000.0,
        shared.underruns.load(Ordering::Relaxed),
        stats.correction_ppm.load(Ordering::Relaxed) as f64 / 10_000.0,
        stats.gaps.load(Ordering::Relaxed),
        stats.reconnects.load(Ordering::Relaxed),
    )
}
