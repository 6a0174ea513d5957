//! The `auralis` binary: parses flags (and `AURALIS_*` variables) and calls the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use auralis::config::{BackendChoice, Config, Secret, StationConfig};
use auralis::edge::tokens::Scope;
use auralis::synth::{MusicParams, Preset, Timeline};
use auralis::telemetry::{init_logging, LogFormat};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "auralis",
    version,
    about = "Real-time generative audio streaming server with built-in telemetry"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format.
    #[arg(long, global = true, env = "AURALIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stream to WebSocket listeners (the default when no command is given).
    Serve(ServeArgs),
    /// Render audio offline to a WAV file, bit-identical to what `serve` streams at that position.
    Render(RenderArgs),
    /// Connect many listeners to a server and report what they experience.
    Load(LoadArgs),
    /// Play a stream through the sound card (needs the `playback` feature).
    Listen(ListenArgs),
    /// Issue a signed listen or control token (for servers started with --token-secret).
    Token(TokenArgs),
}

#[derive(Args, Debug)]
struct TokenArgs {
    /// What the token allows: listen, or control (which includes listening).
    #[arg(long, value_enum, default_value_t = Scope::Listen)]
    scope: Scope,
    /// How long the token is valid: `1h`, `30d`, `90s`.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    ttl: Duration,
    /// The server's token secret.
    #[arg(long, env = "AURALIS_TOKEN_SECRET", hide_env_values = true)]
    secret: Secret,
}

#[derive(Args, Debug)]
struct ListenArgs {
    /// Stream URL, e.g. ws://127.0.0.1:8080/ws, or wss://HOST/ws through TLS.
    #[arg(default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// For a wss:// URL: trust only the CA certificates in this PEM file instead of the
    /// system's roots (a private CA).
    #[arg(long, env = "AURALIS_CA")]
    ca: Option<PathBuf>,
    /// Station to listen to (appended as ?station=).
    #[arg(long)]
    station: Option<String>,
    /// Codec to receive: opus, flac or pcm_s16le (appended as ?codec=).
    #[arg(long, default_value = "opus")]
    codec: String,
    /// Listen token, if the server requires one (sent as ?token=).
    #[arg(long, env = "AURALIS_LISTEN_TOKEN", hide_env_values = true)]
    token: Option<Secret>,
    /// Output device, by name or id as --list-devices prints it (default: the system default).
    #[arg(long)]
    device: Option<String>,
    /// Audio buffered before playback starts (and after an underrun), in ms.
    #[arg(long, default_value_t = 150)]
    buffer_ms: u64,
    /// Also record what is played to this WAV file (16-bit, at the device rate).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop after this long (`30s`, `5m`); until Ctrl-C otherwise.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// List output devices and exit.
    #[arg(long)]
    list_devices: bool,
}

#[derive(Args, Debug, Clone)]
struct AudioArgs {
    /// Sample rate in Hz.
    #[arg(long, env = "AURALIS_SAMPLE_RATE", default_value_t = 48_000)]
    sample_rate: u32,
    /// Chunk duration in ms (one WebSocket message each).
    #[arg(long, env = "AURALIS_CHUNK_MS", default_value_t = 100)]
    chunk_ms: u32,
    /// Renderer: auto, gpu or cpu.
    #[arg(long, env = "AURALIS_BACKEND", value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "AURALIS_ADDR", default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Seed of the default station (used when no --station is given).
    #[arg(long, env = "AURALIS_SEED", default_value_t = 1)]
    seed: u64,
    /// Preset of the default station: ambient, focus, pulse or night (default: chosen by the seed).
    #[arg(long, env = "AURALIS_PRESET", value_enum)]
    preset: Option<Preset>,
    /// A station as NAME=SEED or NAME=SEED:PRESET, optionally with its own codecs and Opus bit
    /// rate (`night=42:night/codecs=opus+pcm_s16le/opus_bitrate=96000`); repeat for several
    /// (env: comma-separated).
    #[arg(long = "station", env = "AURALIS_STATIONS", value_delimiter = ',')]
    stations: Vec<StationConfig>,
    /// Codecs stations offer, the first being what a client that names none gets:
    /// opus, flac, pcm_s16le.
    #[arg(long, env = "AURALIS_CODECS", default_value = "opus,flac,pcm_s16le", value_parser = parse_codec_list)]
    codecs: CodecList,
    /// Opus bit rate in bit/s (stereo music: 96000 to 192000 is usual).
    #[arg(long, env = "AURALIS_OPUS_BITRATE", default_value_t = auralis::codec::DEFAULT_OPUS_BITRATE)]
    opus_bitrate: u32,
    /// Switch the Prometheus exporter off (`/metrics` answers 404): the baseline for measuring
    /// what telemetry costs. Not for production.
    #[arg(long, env = "AURALIS_NO_METRICS")]
    no_metrics: bool,
    /// Token that music control requires. Without one (or --token-secret), only clients on
    /// this machine may control.
    #[arg(long, env = "AURALIS_CONTROL_TOKEN", hide_env_values = true)]
    control_token: Option<Secret>,
    /// Token every listener must present (`?token=` or `Authorization: Bearer`).
    #[arg(long, env = "AURALIS_LISTEN_TOKEN", hide_env_values = true)]
    listen_token: Option<Secret>,
    /// Key (16 bytes or more) for signed, expiring tokens issued with `auralis token`. Signed
    /// control tokens are then accepted; listen tokens too with --require-listen-token.
    #[arg(long, env = "AURALIS_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<Secret>,
    /// Listeners must present a listen token (static or signed).
    #[arg(long, env = "AURALIS_REQUIRE_LISTEN_TOKEN")]
    require_listen_token: bool,
    /// An origin (`https://radio.example`) whose pages may open streams besides the server's
    /// own; `*` allows any. Repeat for several (env: comma-separated).
    #[arg(
        long = "allowed-origin",
        env = "AURALIS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Refuse WebSocket upgrades that carry no Origin header (all non-browser clients).
    #[arg(long, env = "AURALIS_REQUIRE_ORIGIN")]
    require_origin: bool,
    /// Most listeners at once, over all stations (more get 503).
    #[arg(long, env = "AURALIS_MAX_LISTENERS", default_value_t = 10_000)]
    max_listeners: usize,
    /// Most listeners from one address, IPv6 counted per /64 (0: no limit).
    #[arg(long, env = "AURALIS_MAX_LISTENERS_PER_IP", default_value_t = 0)]
    max_listeners_per_ip: usize,
    /// Most HTTP connections open at once before upgrade (more wait in the kernel backlog).
    #[arg(long, env = "AURALIS_MAX_CONNECTIONS", default_value_t = 4_096)]
    max_connections: usize,
    /// A client must send a complete request head within this many ms.
    #[arg(long, env = "AURALIS_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    header_read_timeout_ms: u64,
    /// A request must be answered within this many ms of its head (a slow body gets 408).
    #[arg(long, env = "AURALIS_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// How often each listener is pinged, in ms.
    #[arg(long, env = "AURALIS_PING_INTERVAL_MS", default_value_t = 15_000)]
    ping_interval_ms: u64,
    /// A listener that sends nothing, not even a pong, for this many ms is disconnected.
    #[arg(long, env = "AURALIS_IDLE_TIMEOUT_MS", default_value_t = 45_000)]
    idle_timeout_ms: u64,
    /// A listener that skips to the live edge more often than this in a minute is disconnected
    /// (0: never).
    #[arg(long, env = "AURALIS_MAX_LAG_SKIPS_PER_MINUTE", default_value_t = 10)]
    max_lag_skips_per_minute: u32,
    /// How far synthesis renders ahead of the pacer, in ms.
    #[arg(long, env = "AURALIS_BUFFER_MS", default_value_t = 300)]
    buffer_ms: u32,
    /// A chunk write slower than this disconnects the listener, in ms.
    #[arg(long, env = "AURALIS_SEND_TIMEOUT_MS", default_value_t = 5000)]
    send_timeout_ms: u64,
    /// Chunks a listener may fall behind before it skips to the live edge.
    #[arg(long, env = "AURALIS_LISTENER_QUEUE_CHUNKS", default_value_t = 16)]
    listener_queue_chunks: usize,
    /// Chunks an HTTP mount listener (`/stations/NAME.opus`) gets at once on joining, the newest
    /// ones; more fills a player's buffer faster at the cost of latency.
    #[arg(long, env = "AURALIS_MOUNT_BURST_CHUNKS", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    mount_burst_chunks: u64,
    /// Kernel send buffer per listener socket in bytes (0: leave to the kernel).
    #[arg(long, env = "AURALIS_TCP_SEND_BUFFER", default_value_t = 64 * 1024)]
    tcp_send_buffer: usize,
    /// Largest client message accepted, in bytes.
    #[arg(long, env = "AURALIS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    max_message_bytes: usize,
    /// On shutdown, how long to wait for HTTP connections and listeners to close, in ms (one
    /// period for both; what is left open then is dropped).
    #[arg(long, env = "AURALIS_SHUTDOWN_GRACE_MS", default_value_t = 5000)]
    shutdown_grace_ms: u64,
    /// Where control logs are kept across restarts (created if missing; one server per
    /// directory). Default: $XDG_STATE_HOME/auralis, else ~/.local/state/auralis.
    #[arg(long, env = "AURALIS_STATE_DIR", conflicts_with = "ephemeral")]
    state_dir: Option<PathBuf>,
    /// Keep control logs in memory only: every music change is gone after a restart.
    #[arg(long, env = "AURALIS_EPHEMERAL")]
    ephemeral: bool,
    /// How far back, in ms, a listener that lost its connection can resume without a gap.
    #[arg(long, env = "AURALIS_RESUME_WINDOW_MS", default_value_t = 8_000)]
    resume_window_ms: u32,
    /// Resumes each station accepts per second (five seconds' worth at once); more get the
    /// live edge.
    #[arg(long, env = "AURALIS_MAX_RESUMES_PER_SECOND", default_value_t = 200)]
    max_resumes_per_second: u32,
    #[command(flatten)]
    audio: AudioArgs,
}

impl Default for ServeArgs {
    fn default() -> Self {
        // Parsing no arguments applies every default and every AURALIS_* variable.
        match ServeCli::try_parse_from(["auralis"]) {
            Ok(cli) => cli.args,
            Err(e) => e.exit(),
        }
    }
}

/// Parser used to build [`ServeArgs`] defaults for a bare `auralis`.
#[derive(Parser, Debug)]
struct ServeCli {
    #[command(flatten)]
    args: ServeArgs,
}

#[derive(Args, Debug)]
struct RenderArgs {
    /// Seconds of audio to render.
    #[arg(long)]
    seconds: f64,
    /// Stream position to start at, in seconds (stream time 0 is the Unix epoch).
    #[arg(long, default_value_t = 0.0)]
    start: f64,
    /// Station seed.
    #[arg(long, env = "AURALIS_SEED", default_value_t = 1)]
    seed: u64,
    /// Preset: ambient, focus, pulse or night (default: chosen by the seed).
    #[arg(long, value_enum, conflicts_with = "control_log")]
    preset: Option<Preset>,
    /// Replay a station's control log: the JSON from `GET /api/stations/{name}/control` (its
    /// seed is used) or a JSON array of log entries.
    #[arg(long)]
    control_log: Option<PathBuf>,
    /// Output WAV file.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    audio: AudioArgs,
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// Stream URL: `ws://HOST:PORT/ws` for auralis, `http://HOST:PORT/stations/NAME.opus` for
    /// its Ogg Opus mount, `http://HOST:PORT/MOUNT` for a plain HTTP stream of raw PCM (an
    /// Icecast mount, say); `wss://` and `https://` through TLS.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// For wss:// and https:// URLs: trust only the CA certificates in this PEM file instead
    /// of the system's roots (a private CA).
    #[arg(long, env = "AURALIS_CA")]
    ca: Option<PathBuf>,
    /// Station to listen to (appended as ?station=).
    #[arg(long)]
    station: Option<String>,
    /// Listen token, if the server requires one (sent as ?token=).
    #[arg(long, env = "AURALIS_LISTEN_TOKEN", hide_env_values = true)]
    token: Option<Secret>,
    /// Number of listeners.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// How long every listener stays after the ramp: `60s`, `2m`, or plain seconds.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Start clients evenly over this time (`10s`).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    ramp: Duration,
    /// Audio the simulated player buffers before it starts, in ms.
    #[arg(long, default_value_t = 200)]
    prebuffer_ms: u64,
    /// Share of clients (0 to 1) that read slowly or stall, to show whether healthy listeners
    /// are isolated from them.
    #[arg(long, default_value_t = 0.0)]
    slow_fraction: f64,
    /// Codec to receive (WebSocket): opus, flac or pcm_s16le; the station's default otherwise.
    #[arg(long)]
    codec: Option<String>,
    /// Share of clients (0 to 1) that decode every payload and count decode errors; the others
    /// check the framing only.
    #[arg(long, default_value_t = 0.1)]
    decode_fraction: f64,
    /// Reconnect lost WebSocket connections (with backoff), resuming after the last chunk held.
    #[arg(long)]
    reconnect: bool,
    /// What the slow clients do: read at half rate, stop reading, or half of each.
    #[arg(long, value_enum, default_value_t = SlowModeArg::Mixed)]
    slow_mode: SlowModeArg,
    /// Threshold the run must meet, e.g. `jitter_p95<20ms` or `gaps==0`; repeatable. A missed
    /// threshold exits with code 99.
    #[arg(long = "slo")]
    slos: Vec<String>,
    /// Server metrics to scrape before and after (default: /metrics of a ws:// URL's host).
    #[arg(long)]
    metrics_url: Option<String>,
    /// Do not scrape server metrics.
    #[arg(long, conflicts_with = "metrics_url")]
    no_server_metrics: bool,
    /// Byte rate of an http:// raw PCM stream (default: 48 kHz, 16-bit stereo).
    #[arg(long, default_value_t = 192_000)]
    pcm_bytes_per_second: u32,
    /// Harness runtime threads (1 keeps the load generator on one core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Also write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SlowModeArg {
    Slow,
    Stall,
    Mixed,
}

/// `60s`, `1m30s`, `250ms` (humantime), or a plain number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (e.g. 60s, 2m, 250ms)"))
}

/// `url` with `KEY=VALUE` appended to its query (percent-encoded), when a value is given. A URL
/// that does not parse is left as it is: connecting to it reports the error.
fn with_query(url: String, key: &str, value: Option<&str>) -> String {
    let (Some(value), Ok(mut parsed)) = (value, url::Url::parse(&url)) else {
        return url;
    };
    parsed.query_pairs_mut().append_pair(key, value);
    parsed.to_string()
}

/// Exit code of a load run that missed a `--slo` threshold.
const SLO_MISSED_EXIT_CODE: i32 = 99;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli
        .command
        .unwrap_or_else(|| Command::Serve(ServeArgs::default()))
    {
        Command::Serve(args) => tokio::runtime::Runtime::new()
            .context("cannot start the async runtime")?
            .block_on(serve(args)),
        Command::Render(args) => render(args),
        Command::Load(args) => load(args),
        Command::Listen(args) => listen(args),
        Command::Token(args) => {
            let expires = auralis::edge::tokens::now_unix().saturating_add(args.ttl.as_secs());
            println!(
                "{}",
                auralis::edge::tokens::issue(args.secret.expose(), args.scope, expires)?
            );
            Ok(())
        }
    }
}

/// A parsed `--codecs` list (a newtype: clap treats a bare `Vec` as repeated values).
#[derive(Clone, Debug)]
struct CodecList(Vec<auralis::codec::Codec>);

fn parse_codec_list(list: &str) -> Result<CodecList, auralis::config::ConfigError> {
    auralis::config::parse_codecs(list).map(CodecList)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let stations = if args.stations.is_empty() {
        vec![StationConfig {
            name: "default".to_string(),
            seed: args.seed,
            preset: args.preset,
            ..StationConfig::default()
        }]
    } else {
        args.stations
    };
    let config = Config {
        addr: args.addr,
        stations,
        sample_rate: args.audio.sample_rate,
        chunk_ms: args.audio.chunk_ms,
        buffer_ms: args.buffer_ms,
        backend: args.audio.backend,
        listener_queue_chunks: args.listener_queue_chunks,
        mount_burst_chunks: args.mount_burst_chunks as usize,
        send_timeout: Duration::from_millis(args.send_timeout_ms),
        tcp_send_buffer_bytes: (args.tcp_send_buffer > 0).then_some(args.tcp_send_buffer),
        max_client_message_bytes: args.max_message_bytes,
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
        control_token: args.control_token,
        listen_token: args.listen_token,
        token_secret: args.token_secret,
        require_listen_token: args.require_listen_token,
        allowed_origins: args.allowed_origins,
        require_origin: args.require_origin,
        max_listeners: args.max_listeners,
        max_listeners_per_ip: args.max_listeners_per_ip,
        max_connections: args.max_connections,
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        ping_interval: Duration::from_millis(args.ping_interval_ms),
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        max_lag_skips_per_minute: args.max_lag_skips_per_minute,
        metrics_enabled: !args.no_metrics,
        codecs: auralis::codec::CodecSettings {
            offered: args.codecs.0,
            opus_bitrate: args.opus_bitrate,
        },
        state_dir: (!args.ephemeral).then(|| {
            args.state_dir
                .unwrap_or_else(auralis::state::default_state_dir)
        }),
        resume_window_ms: args.resume_window_ms,
        max_resumes_per_second: args.max_resumes_per_second,
    };
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.addr))?;
    let addr = listener.local_addr()?;
    println!("Auralis is streaming.");
    println!("  listen in a browser:  http://{addr}/");
    println!(
        "  WebSocket stream:     ws://{addr}/ws  (stations: {})",
        config
            .stations
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  metrics:              http://{addr}/metrics");
    println!("  status:               http://{addr}/api/status");
    println!("  stations and control: http://{addr}/api/stations");
    println!("Press Ctrl-C to stop.");
    auralis::server::run(listener, config, auralis::shutdown::shutdown_signal()).await?;
    Ok(())
}

fn render(args: RenderArgs) -> anyhow::Result<()> {
    let config = Config {
        sample_rate: args.audio.sample_rate,
        chunk_ms: args.audio.chunk_ms,
        // Rendering offline needs no ring; keep the buffer check out of the way.
        buffer_ms: args.audio.chunk_ms.max(Config::default().buffer_ms),
        backend: args.audio.backend,
        ..Config::default()
    };
    config.validate()?;
    // Offline renders are the reference: always the CPU renderer, bit for bit.
    if config.backend == BackendChoice::Gpu {
        anyhow::bail!(
            "render always uses the CPU reference renderer (bit-exact); --backend gpu applies to serve"
        );
    }
    let timeline = match &args.control_log {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let (seed, log) = auralis::render::parse_control_log(&text, args.seed)
                .with_context(|| format!("{} is not a control log", path.display()))?;
            Timeline::from_log(seed, config.sample_rate, &log)
                .with_context(|| format!("{} does not replay", path.display()))?
        }
        None => {
            let params = match args.preset {
                Some(preset) => MusicParams::from_preset(args.seed, preset),
                None => MusicParams::from_seed(args.seed),
            };
            Timeline::new(args.seed, config.sample_rate, params)
        }
    };
    let seed = timeline.seed();
    let request = auralis::render::RenderRequest::from_seconds(
        timeline,
        config.chunk_frames(),
        args.start,
        args.seconds,
    )?;
    auralis::render::render_wav(&request, &args.out)?;
    println!(
        "wrote {} ({:.1} s, seed {seed}, from {:.3} s)",
        args.out.display(),
        request.frames as f64 / config.sample_rate as f64,
        args.start
    );
    Ok(())
}

fn load(args: LoadArgs) -> anyhow::Result<()> {
    // Everything the user got wrong is reported before a single connection is made.
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(!args.duration.is_zero(), "--duration must be positive");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.slow_fraction),
        "--slow-fraction must be between 0 and 1"
    );
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    anyhow::ensure!(
        args.pcm_bytes_per_second > 0,
        "--pcm-bytes-per-second must be positive"
    );
    let slos = args
        .slos
        .iter()
        .map(|text| auralis::load::Slo::parse(text))
        .collect::<Result<Vec<_>, _>>()?;
    let transport = auralis::load::Transport::of_url(&args.url).with_context(|| {
        format!(
            "--url {:?}: expected ws[s]://HOST:PORT/ws or http[s]://HOST:PORT/PATH",
            args.url
        )
    })?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.decode_fraction),
        "--decode-fraction must be between 0 and 1"
    );
    if let Some(codec) = &args.codec {
        anyhow::ensure!(
            auralis::codec::Codec::parse(codec).is_some(),
            "--codec must be opus, flac or pcm_s16le (got {codec:?})"
        );
    }
    let tls = auralis::client_tls::ClientTls::for_url(&args.url, args.ca.as_deref())?;
    let url = with_query(args.url, "station", args.station.as_deref());
    let url = with_query(url, "codec", args.codec.as_deref());
    let url = with_query(url, "token", args.token.as_ref().map(Secret::expose));
    let metrics_url = if args.no_server_metrics {
        None
    } else {
        args.metrics_url
            .or_else(|| auralis::load::metrics_url_for(&url))
    };
    // 100 ms of audio per timed chunk, as auralis sends it.
    let chunk_bytes = (args.pcm_bytes_per_second / 10).max(1);
    let config = auralis::load::LoadConfig {
        url,
        transport,
        clients: args.clients,
        duration: args.duration,
        ramp: args.ramp,
        prebuffer: Duration::from_millis(args.prebuffer_ms),
        slow_fraction: args.slow_fraction,
        decode_fraction: args.decode_fraction,
        reconnect: args.reconnect,
        slow_mode: match args.slow_mode {
            SlowModeArg::Slow => auralis::load::SlowMode::Slow,
            SlowModeArg::Stall => auralis::load::SlowMode::Stall,
            SlowModeArg::Mixed => auralis::load::SlowMode::Mixed,
        },
        metrics_url,
        station: args.station,
        slos,
        pcm: auralis::load::PcmFormat {
            bytes_per_second: args.pcm_bytes_per_second,
            chunk_bytes,
        },
        threads: args.threads,
        progress: true,
        tls,
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    let report = runtime.block_on(auralis::load::run(&config));
    print!("{}", auralis::load::summary(&report));
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    anyhow::ensure!(report.connected > 0, "no client could connect");
    if !report.passed {
        let missed: Vec<&str> = report
            .slo
            .iter()
            .filter(|o| !o.passed)
            .map(|o| o.slo.as_str())
            .collect();
        eprintln!("auralis load: thresholds missed: {}", missed.join(", "));
        std::process::exit(SLO_MISSED_EXIT_CODE);
    }
    Ok(())
}

#[cfg(feature = "playback")]
fn listen(args: ListenArgs) -> anyhow::Result<()> {
    if args.list_devices {
        for device in auralis::listen::output::list_devices()? {
            println!("{device}");
        }
        return Ok(());
    }
    anyhow::ensure!(
        (20..=1500).contains(&args.buffer_ms),
        "--buffer-ms must be between 20 and 1500"
    );
    anyhow::ensure!(
        auralis::codec::Codec::parse(&args.codec).is_some(),
        "--codec must be opus, flac or pcm_s16le (got {:?})",
        args.codec
    );
    let tls = auralis::client_tls::ClientTls::for_url(&args.url, args.ca.as_deref())?;
    let url = with_query(args.url, "station", args.station.as_deref());
    let url = with_query(url, "codec", Some(&args.codec));
    let url = with_query(url, "token", args.token.as_ref().map(Secret::expose));
    let config = auralis::listen::ListenConfig {
        url,
        tls,
        device: args.device,
        buffer: Duration::from_millis(args.buffer_ms),
        record_to: args.out,
        duration: args.duration,
    };
    let summary = auralis::listen::output::play(&config)?;
    println!("{}", summary.line());
    Ok(())
}

#[cfg(not(feature = "playback"))]
fn listen(_args: ListenArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "this auralis was built without sound card support. Rebuild with the `playback` feature: \
         `cargo run --release --features playback -- listen ws://HOST:PORT/ws` \
         (on Debian/Ubuntu it needs the ALSA headers: apt-get install libasound2-dev pkg-config)"
    )
}
