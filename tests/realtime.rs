//! The real-time contract of the synthesis thread: after start-up, the step its loop runs (catch
//! up, take control changes, render, publish into the ring) never allocates and never blocks. A
//! counting global allocator checks the first on this thread; the kernel's count of this thread's
//! voluntary context switches checks the second.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::time::{Duration, Instant};

use auralis::pipeline::ring::chunk_ring;
use auralis::pipeline::synthesis::{
    control_link, ControlRequest, CpuStation, StationInput, Step, SynthesisSettings,
};
use auralis::synth::params::{Key, Preset};
use auralis::synth::{MusicParams, Score, Synth, Timeline, CHANNELS};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(|n| n.get())
}

/// Times this thread gave up the CPU by itself (a contended lock, a blocking call, a sleep), from
/// the kernel's own count in `/proc/thread-self/status`.
fn voluntary_switches() -> u64 {
    let status = std::fs::read_to_string("/proc/thread-self/status").expect("thread status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("voluntary_ctxt_switches in the thread status")
}

#[test]
fn the_cpu_synthesis_step_does_not_allocate() {
    const FRAMES: usize = 4800;
    const TARGET_DEPTH: usize = 3;
    // Start-up: everything is allocated here, as `synthesis::spawn` does before the thread runs.
    let (producer, mut consumer) = chunk_ring(TARGET_DEPTH + 2, FRAMES * CHANNELS);
    let (mut outbox, inbox) = control_link(4).expect("control link");
    let start = 1_795_000_000u64 * 48_000;
    let mut station = CpuStation::new(StationInput {
        synth: Synth::new(Score::new(5, 48_000), FRAMES),
        producer,
        controls: inbox,
        settings: SynthesisSettings {
            start_position: start,
            chunk_frames: FRAMES,
            target_depth: TARGET_DEPTH,
            chunk_period: Duration::from_millis(100),
        },
    });
    let changes: Vec<MusicParams> = (0..12u8)
        .map(|i| MusicParams {
            key: Key::new(i),
            bpm: 60.0 + 10.0 * i as f64,
            ..Preset::ALL[i as usize % 4].params(Key::new(i))
        })
        .collect();
    let far_future = Instant::now() + Duration::from_secs(3600);
    // The control side's plan of the timeline: where each change lands (past what is rendered).
    let mut planner = Timeline::from(Score::new(5, 48_000));

    // Read first: reading the count allocates.
    let switches_before = voluntary_switches();
    let before = allocations();
    assert!(
        before > 0,
        "the counting allocator sees start-up allocations"
    );
    // Ten minutes of stream: every section, chord change, swell and kick pattern, and a live
    // change every ten seconds travelling through the control link. This thread plays both
    // sides: the synthesis thread's step (the code `cpu_loop` runs) and the pacer, which pops
    // one chunk per turn, so every ring buffer cycles through render, publish and recycle.
    let mut position = start;
    let mut applied = 0;
    for block in 0..6000usize {
        if block % 100 == 50 {
            let params = changes[(block / 100) % changes.len()];
            let rendered_until = position + ((TARGET_DEPTH + 1) * FRAMES) as u64;
            let entry = planner
                .schedule(params, rendered_until)
                .expect("room in the plan");
            outbox
                .requests
                .push(ControlRequest {
                    id: block as u64,
                    entry,
                    deadline: far_future,
                })
                .expect("room for a request");
        }
        while station.step() == Step::Rendered {}
        while let Ok(reply) = outbox.replies.pop() {
            assert!(reply.result.is_ok(), "change {} not scheduled", reply.id);
            applied += 1;
        }
        let popped = consumer.pop().expect("a rendered chunk");
        assert_eq!(popped.position, position);
        consumer.recycle(popped.samples);
        position += FRAMES as u64;
        station.shared().set_live_position(position);
    }
    assert_eq!(allocations() - before, 0, "the real-time path allocated");
    // Nothing in the step blocked: no lock waited for, no blocking system call, no sleep. (A lock
    // taken without contention cannot be seen from outside; the step's code takes none.)
    assert_eq!(
        voluntary_switches() - switches_before,
        0,
        "the real-time path blocked"
    );
    assert_eq!(applied, 60, "every change travelled through the step");
}
