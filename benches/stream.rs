//! Hot-path benchmarks: rendering one chunk on the CPU, encoding it with each codec, and
//! encoding once then fanning out to N listeners of mixed codecs (the encode cost does not grow
//! with listeners). Run with `cargo bench --bench stream`; figures go to docs/perf.md.

use std::hint::black_box;
use std::sync::Arc;

use auralis::codec::{CodecSettings, PcmFormat, StationEncoders};
use auralis::mount::MountPages;
use auralis::stream::hub::{Frame, StationHub};
use auralis::stream::protocol::{
    encode_frame, frame_with_payload, Codec, CodecFrames, FrameHeader, StreamFormat,
};
use auralis::synth::{Backend, Score, Synth, CHANNELS};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SAMPLE_RATE: u32 = 48_000;
const CHUNK_FRAMES: usize = 4800;

fn header() -> FrameHeader {
    FrameHeader {
        codec: Codec::PcmS16Le,
        channels: CHANNELS as u8,
        sample_rate: SAMPLE_RATE,
        frames: CHUNK_FRAMES as u32,
        flags: 0,
        sequence: 1,
        position: 0,
        rendered_unix_ns: 0,
        sent_unix_ns: 0,
    }
}

fn cpu_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_render_100ms_stereo_48k");
    for seed in [1u64, 7] {
        let mut synth = Synth::new(Score::new(seed, SAMPLE_RATE), CHUNK_FRAMES);
        let mut out = vec![0.0f32; CHUNK_FRAMES * CHANNELS];
        // Walk through the stream so every part of the arrangement is measured.
        let mut position = 0u64;
        group.bench_function(BenchmarkId::from_parameter(seed), |b| {
            b.iter(|| {
                synth.render(position, &mut out).unwrap();
                position = (position + CHUNK_FRAMES as u64) % (SAMPLE_RATE as u64 * 600);
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// Ten seconds of the default station's music, chunk by chunk (codecs are measured on music).
fn music() -> Vec<Vec<f32>> {
    let mut synth = Synth::new(Score::new(1, SAMPLE_RATE), CHUNK_FRAMES);
    (0..100u64)
        .map(|k| {
            let mut out = vec![0.0f32; CHUNK_FRAMES * CHANNELS];
            synth.render(k * CHUNK_FRAMES as u64, &mut out).unwrap();
            out
        })
        .collect()
}

fn encoders(offered: Vec<Codec>) -> StationEncoders {
    let settings = CodecSettings {
        offered,
        ..CodecSettings::default()
    };
    let format = PcmFormat {
        sample_rate: SAMPLE_RATE,
        channels: CHANNELS as u8,
        frames_per_chunk: CHUNK_FRAMES as u32,
    };
    StationEncoders::new(&settings, format).unwrap()
}

/// Every codec's frames for one chunk, as the pacer makes them.
fn encode_all(
    encoders: &mut StationEncoders,
    scratch: &mut Vec<u8>,
    samples: &[f32],
) -> CodecFrames {
    let mut frames = CodecFrames::default();
    encoders.encode(samples, 0, scratch, |codec, payload, _| {
        frames.set(
            codec,
            frame_with_payload(&header(), codec, payload.unwrap()),
        );
    });
    frames
}

fn encode(c: &mut Criterion) {
    let chunks = music();
    let mut group = c.benchmark_group("chunk_encode_100ms");
    group.bench_function("pcm_s16le_frame", |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % chunks.len();
            black_box(encode_frame(&header(), black_box(&chunks[k])))
        })
    });
    for codec in Codec::ALL {
        let mut encoders = encoders(vec![codec]);
        let mut scratch = Vec::new();
        let mut k = 0;
        group.bench_function(codec.name(), |b| {
            b.iter(|| {
                k = (k + 1) % chunks.len();
                black_box(encode_all(&mut encoders, &mut scratch, &chunks[k]))
            })
        });
    }
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let chunks = music();
    let mut encoders = encoders(Codec::ALL.to_vec());
    let mut scratch = Vec::new();
    let mut k = 0;
    // Encode once per codec, then every listener takes its codec's frame (a third each).
    let mut group = c.benchmark_group("encode_once_fan_out_one_chunk");
    for listeners in [1usize, 100, 1000] {
        let hub = Arc::new(StationHub::new(
            format!("bench-{listeners}"),
            1,
            Backend::Cpu,
            StreamFormat::pcm(SAMPLE_RATE, 2, CHUNK_FRAMES as u32),
            encoders.setups().to_vec(),
            5,
            16,
        ));
        let mut receivers: Vec<_> = (0..listeners).map(|_| hub.subscribe().1).collect();
        let mut sequence = 0;
        group.throughput(Throughput::Elements(listeners as u64));
        group.bench_function(BenchmarkId::from_parameter(listeners), |b| {
            b.iter(|| {
                sequence += 1;
                k = (k + 1) % chunks.len();
                let position = sequence * CHUNK_FRAMES as u64;
                let frames = encode_all(&mut encoders, &mut scratch, &chunks[k]);
                hub.publish(Frame {
                    sequence,
                    position,
                    flags: 0,
                    mounts: MountPages::build(&hub.mount, sequence, position, &frames),
                    frames,
                    popped_at: runtime.block_on(async { tokio::time::Instant::now() }),
                });
                for (i, rx) in receivers.iter_mut().enumerate() {
                    let frame = rx.try_recv().unwrap();
                    black_box(
                        frame
                            .frames
                            .get(Codec::ALL[i % Codec::COUNT])
                            .unwrap()
                            .len(),
                    );
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cpu_render, encode, fan_out);
criterion_main!(benches);
