//! The sound card side (cpal): device choice, and the real-time callback that only pops from
//! the ring. The callback never allocates, locks, logs or awaits.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample, StreamConfig};
use rtrb::{Consumer, Producer};

use super::network::{self, Feeder};
use super::record::Recorder;
use super::{ListenConfig, ListenError, ListenStats, ListenSummary, PlaybackShared};

/// The stream's native rate and layout, preferred when the device offers them.
const STREAM_RATE: u32 = 48_000;
const STREAM_CHANNELS: u16 = 2;
/// Ring capacity: enough for any sensible `--buffer-ms` plus a chunk of slack.
const RING_SECONDS: f64 = 2.0;
/// Device period asked for: 10 ms. Left to the driver, some ALSA plugins pick seconds of
/// buffer, which is latency the jitter buffer cannot see or correct.
const PERIOD_SECONDS: f64 = 0.010;

/// Every output device as `id (description)`, the default marked.
pub fn list_devices() -> Result<Vec<String>, ListenError> {
    let host = cpal::default_host();
    let default_id = host
        .default_output_device()
        .and_then(|d| d.id().ok())
        .map(|id| id.to_string());
    let devices = host
        .output_devices()
        .map_err(|e| ListenError::Device(e.to_string()))?;
    Ok(devices
        .map(|device| {
            let id = device
                .id()
                .map_or_else(|_| "?".to_string(), |id| id.to_string());
            let description = device
                .description()
                .map(|d| d.name().to_string())
                .unwrap_or_default();
            let config = device
                .default_output_config()
                .map(|c| {
                    format!(
                        "{} Hz, {} ch, {}",
                        c.sample_rate(),
                        c.channels(),
                        c.sample_format()
                    )
                })
                .unwrap_or_else(|e| format!("no output config: {e}"));
            let mark = if Some(&id) == default_id.as_ref() {
                " [default]"
            } else {
                ""
            };
            format!("{id}{mark}  {description}  ({config})")
        })
        .collect())
}

fn find_device(host: &cpal::Host, wanted: Option<&str>) -> Result<cpal::Device, ListenError> {
    let Some(wanted) = wanted else {
        return host.default_output_device().ok_or(ListenError::NoDevice);
    };
    let devices: Vec<cpal::Device> = host
        .output_devices()
        .map_err(|e| ListenError::Device(e.to_string()))?
        .collect();
    let id_of = |d: &cpal::Device| d.id().map(|id| id.to_string()).unwrap_or_default();
    let name_of = |d: &cpal::Device| {
        d.description()
            .map(|d| d.name().to_string())
            .unwrap_or_default()
    };
    devices
        .iter()
        .find(|d| id_of(d) == wanted || name_of(d) == wanted)
        .or_else(|| {
            devices
                .iter()
                .find(|d| id_of(d).ends_with(&format!(":{wanted}")))
        })
        .cloned()
        .ok_or_else(|| ListenError::UnknownDevice {
            wanted: wanted.to_string(),
            available: devices.iter().map(id_of).collect::<Vec<_>>().join(", "),
        })
}

/// The stream's rate and stereo when the device supports them, else its default.
fn choose_config(device: &cpal::Device) -> Result<cpal::SupportedStreamConfig, ListenError> {
    let native = device.supported_output_configs().ok().and_then(|ranges| {
        let mut candidates: Vec<_> = ranges
            .filter(|r| r.channels() == STREAM_CHANNELS)
            .filter_map(|r| r.try_with_sample_rate(STREAM_RATE))
            .collect();
        // Prefer formats that carry 16-bit samples exactly.
        candidates.sort_by_key(|c| match c.sample_format() {
            SampleFormat::F32 => 0,
            SampleFormat::I16 => 1,
            SampleFormat::I32 | SampleFormat::F64 => 2,
            _ => 3,
        });
        candidates.into_iter().next()
    });
    match native {
        Some(config) => Ok(config),
        None => device
            .default_output_config()
            .map_err(|e| ListenError::Device(e.to_string())),
    }
}

/// Plays `config.url` until the duration passes or the process is interrupted.
pub fn play(config: &ListenConfig) -> Result<ListenSummary, ListenError> {
    let scheme = config.url.to_ascii_lowercase();
    if !scheme.starts_with("ws://") && !scheme.starts_with("wss://") {
        return Err(ListenError::BadUrl(crate::edge::tokens::redact_url(
            &config.url,
        )));
    }
    let host = cpal::default_host();
    let device = find_device(&host, config.device.as_deref())?;
    let supported = choose_config(&device)?;
    let sample_format = supported.sample_format();
    let base_config: StreamConfig = supported.config();
    let rate = base_config.sample_rate;
    let channels = base_config.channels;
    let device_name = device
        .id()
        .map_or_else(|_| "?".to_string(), |id| id.to_string());
    let shared = Arc::new(PlaybackShared::default());
    let stats = Arc::new(ListenStats::default());

    // Small device periods first; some drivers refuse them, and the driver's own choice is the
    // last resort. A failed attempt drops its callback (and the rings it owned), so each attempt
    // gets fresh rings and, when recording, a fresh file.
    let mut last_error = None;
    let mut opened = None;
    for buffer_size in buffer_sizes(rate, supported.buffer_size()) {
        let capacity = (f64::from(rate) * f64::from(channels) * RING_SECONDS) as usize;
        let (producer, consumer) = rtrb::RingBuffer::new(capacity);
        let (recorder, record) = match &config.record_to {
            Some(path) => {
                let (recorder, ring) = Recorder::start(path, rate, channels, 4)?;
                (Some(recorder), Some(ring))
            }
            None => (None, None),
        };
        let player = Player {
            consumer,
            shared: Arc::clone(&shared),
            record,
        };
        let stream_config = StreamConfig {
            buffer_size,
            ..base_config
        };
        match build_for_format(&device, stream_config, sample_format, player) {
            Ok(stream) => {
                opened = Some((stream, producer, recorder));
                break;
            }
            Err(error) => {
                if let Some(recorder) = recorder {
                    let _ = recorder.finish();
                }
                last_error = Some(error);
            }
        }
    }
    let Some((stream, producer, recorder)) = opened else {
        return Err(last_error.unwrap_or(ListenError::NoDevice));
    };
    stream
        .play()
        .map_err(|e| ListenError::Device(e.to_string()))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ListenError::Runtime)?;
    let mut feeder = Feeder::new(
        producer,
        rate,
        usize::from(channels),
        config.buffer,
        Duration::from_millis(100),
        Arc::clone(&shared),
        Arc::clone(&stats),
    );
    let duration = config.duration;
    let result = runtime.block_on(async {
        let status = tokio::spawn(show_status(Arc::clone(&shared), Arc::clone(&stats)));
        let stop = async move {
            match duration {
                Some(d) => tokio::select! {
                    () = tokio::time::sleep(d) => {}
                    () = crate::shutdown::shutdown_signal() => {}
                },
                None => crate::shutdown::shutdown_signal().await,
            }
        };
        let result = network::run(&config.url, config.tls.as_ref(), &mut feeder, stop).await;
        status.abort();
        result
    });
    // Let the device play out what it already took, then stop it before closing the file.
    drop(stream);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    if let Some(recorder) = recorder {
        recorder.finish().map_err(|reason| ListenError::Record {
            path: config
                .record_to
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            reason,
        })?;
    }
    result?;
    let latency_us = stats.latency_us.load(Ordering::Relaxed);
    Ok(ListenSummary {
        played_seconds: shared.played_frames.load(Ordering::Relaxed) as f64 / f64::from(rate),
        underruns: shared.underruns.load(Ordering::Relaxed),
        underrun_seconds: shared.underrun_frames.load(Ordering::Relaxed) as f64 / f64::from(rate),
        chunks: stats.chunks.load(Ordering::Relaxed),
        gaps: stats.gaps.load(Ordering::Relaxed),
        codec: crate::codec::Codec::from_u8(stats.codec.load(Ordering::Relaxed))
            .map_or("none", crate::codec::Codec::name)
            .to_string(),
        decode_errors: stats.decode_errors.load(Ordering::Relaxed),
        reconnects: stats.reconnects.load(Ordering::Relaxed),
        resumes: stats.resumes.load(Ordering::Relaxed),
        catch_up_dropped: stats.catch_up_dropped.load(Ordering::Relaxed),
        correction_percent: stats.correction_ppm.load(Ordering::Relaxed) as f64 / 10_000.0,
        latency_ms: (latency_us > 0).then(|| latency_us as f64 / 1000.0),
        device: device_name,
        device_rate: rate,
        device_channels: channels,
        sample_format: sample_format.to_string(),
    })
}

/// Redraws the status line twice a second when stderr is a terminal.
async fn show_status(shared: Arc<PlaybackShared>, stats: Arc<ListenStats>) {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        eprint!("\r{}\x1b[K", super::status_line(&shared, &stats));
    }
}

/// Device buffer sizes to try, best first.
fn buffer_sizes(rate: u32, supported: &cpal::SupportedBufferSize) -> Vec<cpal::BufferSize> {
    let mut sizes = Vec::new();
    if let cpal::SupportedBufferSize::Range { min, max } = *supported {
        for factor in [1.0, 2.0, 4.0] {
            let period = ((f64::from(rate) * PERIOD_SECONDS * factor) as u32).clamp(min, max);
            let size = cpal::BufferSize::Fixed(period);
            if !sizes.contains(&size) {
                sizes.push(size);
            }
        }
    }
    sizes.push(cpal::BufferSize::Default);
    sizes
}

/// Builds the output stream for the device's sample format: one generic callback for all of
/// them.
fn build_for_format(
    device: &cpal::Device,
    config: StreamConfig,
    format: SampleFormat,
    player: Player,
) -> Result<cpal::Stream, ListenError> {
    match format {
        SampleFormat::I8 => build::<i8>(device, config, player),
        SampleFormat::I16 => build::<i16>(device, config, player),
        SampleFormat::I24 => build::<cpal::I24>(device, config, player),
        SampleFormat::I32 => build::<i32>(device, config, player),
        SampleFormat::I64 => build::<i64>(device, config, player),
        SampleFormat::U8 => build::<u8>(device, config, player),
        SampleFormat::U16 => build::<u16>(device, config, player),
        SampleFormat::U32 => build::<u32>(device, config, player),
        SampleFormat::U64 => build::<u64>(device, config, player),
        SampleFormat::F32 => build::<f32>(device, config, player),
        SampleFormat::F64 => build::<f64>(device, config, player),
        other => Err(ListenError::Device(format!(
            "unsupported sample format {other}"
        ))),
    }
}

/// What the callback owns.
struct Player {
    consumer: Consumer<f32>,
    shared: Arc<PlaybackShared>,
    record: Option<Producer<f32>>,
}

fn build<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut player: Player,
) -> Result<cpal::Stream, ListenError>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels).max(1);
    device
        .build_output_stream(
            config,
            move |out: &mut [T], _: &cpal::OutputCallbackInfo| player.fill(out, channels),
            // Device errors (an xrun, a device gone) are reported by cpal on its own thread.
            |e| tracing::warn!(error = %e, "audio device error"),
            None,
        )
        .map_err(|e| ListenError::Device(e.to_string()))
}

impl Player {
    /// The real-time callback: pop, convert, fill silence on underrun, count. No allocation,
    /// lock, log or await.
    fn fill<T: Sample + FromSample<f32>>(&mut self, out: &mut [T], channels: usize) {
        let shared = &self.shared;
        if !shared.primed.load(Ordering::Acquire) {
            out.fill(T::EQUILIBRIUM);
            return;
        }
        let wanted = out.len() / channels * channels;
        let available = self.consumer.slots() / channels * channels;
        let take = wanted.min(available);
        if let Ok(chunk) = self.consumer.read_chunk(take) {
            let (first, second) = chunk.as_slices();
            for (slot, &sample) in out.iter_mut().zip(first.iter().chain(second)) {
                *slot = T::from_sample(sample);
            }
            if let Some(record) = self.record.as_mut() {
                for &sample in first.iter().chain(second) {
                    if record.push(sample).is_err() {
                        shared.record_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            chunk.commit_all();
        }
        if take < out.len() {
            out[take..].fill(T::EQUILIBRIUM);
            if let Some(record) = self.record.as_mut() {
                for _ in take..out.len() {
                    let _ = record.push(0.0);
                }
            }
            // Ran dry: count it and wait for the prebuffer again.
            shared.underruns.fetch_add(1, Ordering::Relaxed);
            shared
                .underrun_frames
                .fetch_add(((out.len() - take) / channels) as u64, Ordering::Relaxed);
            shared.primed.store(false, Ordering::Release);
        }
        shared
            .played_frames
            .fetch_add((out.len() / channels) as u64, Ordering::Relaxed);
    }
}
