//! Server configuration: what `main` parses from flags and `AURALIS_*` variables, and what tests
//! build directly.

use std::net::SocketAddr;
use std::time::Duration;

use crate::codec::{Codec, CodecSettings, OPUS_BITRATE_RANGE};
use crate::edge::tokens::{TokenPolicy, WeakSecret};
use crate::synth::params::Preset;

/// Most stations one server runs (each has its own thread; the `station` label stays small).
pub const MAX_STATIONS: usize = 32;

/// Most HTTP connections `--max-connections` may allow (far above any file-descriptor limit).
pub const MAX_CONNECTIONS: usize = 1 << 20;

pub use crate::synth::BackendChoice;

/// One station: a name listeners pick, the seed its music grows from, and optionally a preset
/// to start with (otherwise the seed picks key, mode and tempo of the `focus` preset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StationConfig {
    pub name: String,
    pub seed: u64,
    pub preset: Option<Preset>,
    /// Codecs this station offers, first the default (otherwise the server's `--codecs`).
    pub codecs: Option<Vec<Codec>>,
    /// This station's Opus bit rate (otherwise the server's `--opus-bitrate`).
    pub opus_bitrate: Option<u32>,
}

impl StationConfig {
    /// The station's codec settings: its own where it has them, else the server's.
    pub fn codec_settings(&self, server: &CodecSettings) -> CodecSettings {
        CodecSettings {
            offered: self
                .codecs
                .clone()
                .unwrap_or_else(|| server.offered.clone()),
            opus_bitrate: self.opus_bitrate.unwrap_or(server.opus_bitrate),
        }
    }
}

/// A codec list (`opus,flac,pcm_s16le`): known names, none twice, at least one.
///
/// # Errors
/// [`ConfigError::BadCodecs`] naming what is wrong.
pub fn parse_codecs(list: &str) -> Result<Vec<Codec>, ConfigError> {
    let bad = |why: String| ConfigError::BadCodecs(why);
    let mut codecs = Vec::new();
    for name in list
        .split([',', '+'])
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let codec = Codec::parse(name).ok_or_else(|| bad(format!("unknown codec {name:?}")))?;
        if codecs.contains(&codec) {
            return Err(bad(format!("{name:?} named twice")));
        }
        codecs.push(codec);
    }
    if codecs.is_empty() {
        return Err(bad("no codec named".to_string()));
    }
    Ok(codecs)
}

/// A station specification on the command line is not `NAME=SEED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("station {0:?}: expected NAME=SEED[:PRESET][/codecs=C+C][/opus_bitrate=BPS] (name: letters, digits, '-' or '_'; seed: an unsigned integer; preset: ambient, focus, pulse or night; codecs: opus, flac, pcm_s16le)")]
    BadStation(String),
    #[error("codecs: {0} (known: opus, flac, pcm_s16le)")]
    BadCodecs(String),
    #[error("Opus bit rate must be between 6000 and 510000 bit/s (got {0})")]
    BadOpusBitrate(u32),
    #[error("at most {MAX_STATIONS} stations (got {0})")]
    TooManyStations(usize),
    #[error("duplicate station name {0:?}")]
    DuplicateStation(String),
    #[error(
        "--chunk-ms must be between 10 and 1000 and give whole frames at the sample rate (got {0})"
    )]
    BadChunk(u32),
    #[error("--sample-rate must be between 8000 and 192000 (got {0})")]
    BadSampleRate(u32),
    #[error("--buffer-ms must be at least one chunk and at most 10000 ms (got {0})")]
    BadBuffer(u32),
    #[error("--resume-window-ms must be at least one chunk and at most 60000 ms (got {0})")]
    BadResumeWindow(u32),
    #[error(transparent)]
    WeakSecret(#[from] WeakSecret),
    #[error(
        "--require-listen-token needs --listen-token or --token-secret to check tokens against"
    )]
    NoListenTokens,
    #[error("--idle-timeout-ms must be longer than --ping-interval-ms (clients answer pings)")]
    IdleBeforePing,
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    #[error("--max-connections may be at most {MAX_CONNECTIONS} (got {0})")]
    TooManyConnections(usize),
}

/// A secret from configuration: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl std::str::FromStr for StationConfig {
    type Err = ConfigError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::BadStation(spec.to_string());
        let mut parts = spec.split('/');
        let head = parts.next().unwrap_or_default();
        let (mut codecs, mut opus_bitrate) = (None, None);
        for option in parts {
            match option.split_once('=') {
                Some(("codecs", list)) => codecs = Some(parse_codecs(list)?),
                Some(("opus_bitrate", bps)) => {
                    opus_bitrate = Some(bps.trim().parse().map_err(|_| bad())?);
                }
                _ => return Err(bad()),
            }
        }
        let (name, seed) = head.split_once('=').ok_or_else(bad)?;
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(bad());
        }
        let (seed, preset) = match seed.split_once(':') {
            Some((seed, preset)) => (seed, Some(Preset::parse(preset.trim()).ok_or_else(bad)?)),
            None => (seed, None),
        };
        let seed = seed.trim().parse().map_err(|_| bad())?;
        Ok(Self {
            name: name.to_string(),
            seed,
            preset,
            codecs,
            opus_bitrate,
        })
    }
}

/// Everything the server needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (used by `main`; tests bind their own listener on port 0).
    pub addr: SocketAddr,
    /// Stations to serve; the first is the default for `/ws` without a station.
    pub stations: Vec<StationConfig>,
    pub sample_rate: u32,
    /// Duration of one chunk (one WebSocket audio message).
    pub chunk_ms: u32,
    /// How far synthesis renders ahead of the pacer: the ring's target depth.
    pub buffer_ms: u32,
    pub backend: BackendChoice,
    /// Chunks a listener may fall behind before it skips to the live edge.
    pub listener_queue_chunks: usize,
    /// A single frame write that takes longer than this disconnects the listener (it stopped reading).
    pub send_timeout: Duration,
    /// Kernel send buffer per listener socket; bounds memory and latency for stalled clients.
    pub tcp_send_buffer_bytes: Option<usize>,
    /// Largest client text message accepted (bytes).
    pub max_client_message_bytes: usize,
    /// Longest the whole shutdown waits for HTTP connections and listeners to close.
    pub shutdown_grace: Duration,
    /// Static token required for music control. Without it (or a token secret), only loopback
    /// clients may control.
    pub control_token: Option<Secret>,
    /// Static token listeners must present (`?token=` or `Authorization: Bearer`).
    pub listen_token: Option<Secret>,
    /// Key for signed, expiring tokens (`auralis token`); at least 16 bytes.
    pub token_secret: Option<Secret>,
    /// Listeners need a token even without a static listen token (signed ones, then).
    pub require_listen_token: bool,
    /// Origins besides the server's own whose pages may open streams (`*`: any).
    pub allowed_origins: Vec<String>,
    /// Refuse WebSocket upgrades without an `Origin` header (non-browser clients send none).
    pub require_origin: bool,
    /// Most listeners connected at once, over all stations.
    pub max_listeners: usize,
    /// Most listeners from one address (IPv6: one /64); 0 means no per-address limit.
    pub max_listeners_per_ip: usize,
    /// Most HTTP connections open at once (before upgrade; listeners are counted separately).
    pub max_connections: usize,
    /// A client must send its request head within this time, or the connection is closed.
    pub header_read_timeout: Duration,
    /// A request must be answered within this time from its head (slow bodies get 408).
    pub request_timeout: Duration,
    /// How often the server pings each listener.
    pub ping_interval: Duration,
    /// A listener that sends nothing (not even a pong) for this long is disconnected.
    pub idle_timeout: Duration,
    /// A listener that skips to the live edge this many times within a minute is disconnected
    /// (it cannot keep up); 0 never disconnects for lag.
    pub max_lag_skips_per_minute: u32,
    /// Export Prometheus metrics on `/metrics` (off only to measure what telemetry costs).
    pub metrics_enabled: bool,
    /// Codecs stations offer unless they name their own, and the Opus bit rate.
    pub codecs: CodecSettings,
    /// Where control logs survive restarts; `None` keeps them in memory (nothing survives).
    pub state_dir: Option<std::path::PathBuf>,
    /// How far back a reconnecting listener can resume (chunks kept, and rendered again after a
    /// restart).
    pub resume_window_ms: u32,
    /// Resumes a station accepts per second (five seconds' worth at once).
    pub max_resumes_per_second: u32,
    /// Chunks an HTTP mount listener gets at once on joining, the newest ones (Icecast's
    /// burst-on-connect; at least 1, at most the resume window).
    pub mount_burst_chunks: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            stations: vec![StationConfig {
                name: "default".to_string(),
                seed: 1,
                ..StationConfig::default()
            }],
            sample_rate: 48_000,
            chunk_ms: 100,
            buffer_ms: 300,
            backend: BackendChoice::Auto,
            listener_queue_chunks: 16,
            send_timeout: Duration::from_secs(5),
            tcp_send_buffer_bytes: Some(64 * 1024),
            max_client_message_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(5),
            control_token: None,
            listen_token: None,
            token_secret: None,
            require_listen_token: false,
            allowed_origins: Vec::new(),
            require_origin: false,
            max_listeners: 10_000,
            max_listeners_per_ip: 0,
            max_connections: 4_096,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            max_lag_skips_per_minute: 10,
            metrics_enabled: true,
            codecs: CodecSettings::default(),
            state_dir: None,
            resume_window_ms: 8_000,
            max_resumes_per_second: 200,
            mount_burst_chunks: 1,
        }
    }
}

impl Config {
    /// Frames in one chunk.
    pub fn chunk_frames(&self) -> usize {
        (self.sample_rate as u64 * self.chunk_ms as u64 / 1000) as usize
    }

    pub fn chunk_period(&self) -> Duration {
        Duration::from_millis(self.chunk_ms as u64)
    }

    /// Chunks a resume can reach back.
    pub fn resume_window_chunks(&self) -> usize {
        (self.resume_window_ms as usize)
            .div_ceil(self.chunk_ms.max(1) as usize)
            .max(1)
    }

    /// Chunks the synthesis thread keeps rendered ahead.
    pub fn buffer_chunks(&self) -> usize {
        (self.buffer_ms as usize)
            .div_ceil(self.chunk_ms as usize)
            .max(1)
    }

    /// Checks the values that flags and tests can get wrong.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(8_000..=192_000).contains(&self.sample_rate) {
            return Err(ConfigError::BadSampleRate(self.sample_rate));
        }
        let bitrates = self.stations.iter().filter_map(|s| s.opus_bitrate);
        for bps in std::iter::once(self.codecs.opus_bitrate).chain(bitrates) {
            if !OPUS_BITRATE_RANGE.contains(&bps) {
                return Err(ConfigError::BadOpusBitrate(bps));
            }
        }
        if !(10..=1000).contains(&self.chunk_ms)
            || !(self.sample_rate as u64 * self.chunk_ms as u64).is_multiple_of(1000)
        {
            return Err(ConfigError::BadChunk(self.chunk_ms));
        }
        if self.buffer_ms < self.chunk_ms || self.buffer_ms > 10_000 {
            return Err(ConfigError::BadBuffer(self.buffer_ms));
        }
        if self.resume_window_ms < self.chunk_ms || self.resume_window_ms > 60_000 {
            return Err(ConfigError::BadResumeWindow(self.resume_window_ms));
        }
        if self.max_resumes_per_second == 0 {
            return Err(ConfigError::ZeroLimit("--max-resumes-per-second"));
        }
        if self.stations.len() > MAX_STATIONS {
            return Err(ConfigError::TooManyStations(self.stations.len()));
        }
        for (i, station) in self.stations.iter().enumerate() {
            if self.stations[..i].iter().any(|s| s.name == station.name) {
                return Err(ConfigError::DuplicateStation(station.name.clone()));
            }
        }
        let tokens = self.token_policy()?;
        if self.require_listen_token && !tokens.listen_required() {
            return Err(ConfigError::NoListenTokens);
        }
        if self.idle_timeout <= self.ping_interval {
            return Err(ConfigError::IdleBeforePing);
        }
        for (name, value) in [
            ("--max-listeners", self.max_listeners),
            ("--max-connections", self.max_connections),
            (
                "--ping-interval-ms",
                self.ping_interval.as_millis() as usize,
            ),
            (
                "--header-read-timeout-ms",
                self.header_read_timeout.as_millis() as usize,
            ),
            (
                "--request-timeout-ms",
                self.request_timeout.as_millis() as usize,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        if self.max_connections > MAX_CONNECTIONS {
            return Err(ConfigError::TooManyConnections(self.max_connections));
        }
        Ok(())
    }

    /// The listen and control tokens this configuration accepts.
    ///
    /// # Errors
    /// [`WeakSecret`] when the token secret is too short.
    pub fn token_policy(&self) -> Result<TokenPolicy, WeakSecret> {
        let expose = |s: &Option<Secret>| s.as_ref().map(|s| s.0.clone());
        let secret = expose(&self.token_secret);
        let listen = expose(&self.listen_token);
        let control = expose(&self.control_token);
        let require = self.require_listen_token && secret.as_deref().is_some_and(|s| !s.is_empty());
        TokenPolicy::new(
            secret.as_deref(),
            listen.as_deref(),
            control.as_deref(),
            require,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_station_specs() {
        let s: StationConfig = "jazz-2=42".parse().unwrap();
        assert_eq!(s.name, "jazz-2");
        assert_eq!(s.seed, 42);
        assert_eq!(s.preset, None);
        let s: StationConfig = "late=7:night".parse().unwrap();
        assert_eq!((s.seed, s.preset), (7, Some(Preset::Night)));
        for bad in [
            "jazz",
            "=1",
            "a b=1",
            "x=-1",
            "x=abc",
            "x=",
            "x=1:disco",
            "x=1:",
            "x=1/codecs=mp3",
            "x=1/codecs=",
            "x=1/codecs=opus+opus",
            "x=1/opus_bitrate=fast",
            "x=1/loud=yes",
        ] {
            assert!(bad.parse::<StationConfig>().is_err(), "{bad}");
        }
    }

    #[test]
    fn stations_may_name_their_own_codecs_and_bitrate() {
        let s: StationConfig = "talk=3:focus/codecs=flac+pcm/opus_bitrate=64000"
            .parse()
            .unwrap();
        assert_eq!(s.preset, Some(Preset::Focus));
        assert_eq!(s.codecs, Some(vec![Codec::Flac, Codec::PcmS16Le]));
        let settings = s.codec_settings(&CodecSettings::default());
        assert_eq!(settings.offered, [Codec::Flac, Codec::PcmS16Le]);
        assert_eq!(settings.opus_bitrate, 64_000);
        let plain: StationConfig = "x=1".parse().unwrap();
        assert_eq!(
            plain.codec_settings(&CodecSettings::default()),
            CodecSettings::default()
        );
        let c = Config {
            stations: vec!["x=1/opus_bitrate=1000".parse().unwrap()],
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::BadOpusBitrate(1000)));
        assert_eq!(
            parse_codecs("opus, flac"),
            Ok(vec![Codec::Opus, Codec::Flac])
        );
        assert!(matches!(parse_codecs(","), Err(ConfigError::BadCodecs(_))));
    }

    #[test]
    fn validates() {
        assert!(Config::default().validate().is_ok());
        let c = Config {
            chunk_ms: 7,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::BadChunk(7)));
        let mut c = Config::default();
        c.stations.push(c.stations[0].clone());
        assert!(matches!(
            c.validate(),
            Err(ConfigError::DuplicateStation(_))
        ));
        let c = Config {
            buffer_ms: 50,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::BadBuffer(50)));
        let c = Config {
            stations: (0..33)
                .map(|i| format!("s{i}={i}").parse().unwrap())
                .collect(),
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::TooManyStations(33)));
        let c = Config {
            ping_interval: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroLimit("--ping-interval-ms"))
        );
        let c = Config {
            max_connections: MAX_CONNECTIONS + 1,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TooManyConnections(_))
        ));
        assert_eq!(Config::default().chunk_frames(), 4800);
        assert_eq!(Config::default().buffer_chunks(), 3);
    }
}
