//! Hot-path benchmarks: rendering one chunk on the CPU, encoding a frame, fanning out to N
//! listeners. Run with `cargo bench --bench stream`; figures go to docs/perf.md.

use std::hint::black_box;
use std::sync::Arc;

use auralis::stream::hub::{Frame, StationHub};
use auralis::stream::protocol::{encode_frame, Codec, FrameHeader, StreamFormat};
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

fn encode(c: &mut Criterion) {
    let samples: Vec<f32> = (0..CHUNK_FRAMES * CHANNELS)
        .map(|i| ((i as f32) * 0.001).sin() * 0.5)
        .collect();
    let mut group = c.benchmark_group("frame_encode");
    group.throughput(Throughput::Bytes((CHUNK_FRAMES * CHANNELS * 2) as u64));
    group.bench_function("pcm_s16le_100ms", |b| {
        b.iter(|| black_box(encode_frame(&header(), black_box(&samples))))
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bytes = encode_frame(&header(), &vec![0.1f32; CHUNK_FRAMES * CHANNELS]);
    let mut group = c.benchmark_group("fan_out_one_chunk");
    for listeners in [1usize, 100, 1000] {
        let hub = Arc::new(StationHub::new(
            format!("bench-{listeners}"),
            1,
            Backend::Cpu,
            StreamFormat {
                codec: "pcm_s16le".into(),
                sample_rate: SAMPLE_RATE,
                channels: 2,
                frames_per_chunk: CHUNK_FRAMES as u32,
            },
            100,
            5,
            16,
        ));
        let mut receivers: Vec<_> = (0..listeners).map(|_| hub.subscribe().1).collect();
        let mut sequence = 0;
        group.throughput(Throughput::Elements(listeners as u64));
        group.bench_function(BenchmarkId::from_parameter(listeners), |b| {
            b.iter(|| {
                sequence += 1;
                hub.publish(Frame {
                    sequence,
                    position: sequence * CHUNK_FRAMES as u64,
                    flags: 0,
                    bytes: bytes.clone(),
                    popped_at: runtime.block_on(async { tokio::time::Instant::now() }),
                });
                for rx in &mut receivers {
                    black_box(rx.try_recv().unwrap());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, cpu_render, encode, fan_out);
criterion_main!(benches);
