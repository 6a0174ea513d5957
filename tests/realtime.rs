//! The real-time contract of the synthesis thread: after start-up, rendering a chunk and moving it
//! through the ring never allocates. A counting global allocator checks it on this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use auralis::pipeline::ring::{chunk_ring, RenderedChunk};
use auralis::pipeline::synthesis::{control_link, ControlRequest};
use auralis::synth::params::{Key, Preset};
use auralis::synth::{MusicParams, Score, Synth, CHANNELS};

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

#[test]
fn rendering_and_ring_traffic_do_not_allocate() {
    const FRAMES: usize = 4800;
    // Start-up: everything is allocated here.
    let mut synth = Synth::new(Score::new(5, 48_000), FRAMES);
    let (mut producer, mut consumer) = chunk_ring(5, FRAMES * CHANNELS);
    let (mut outbox, mut inbox) = control_link(4);
    let start = 1_795_000_000u64 * 48_000;
    let mut position = start;
    let changes: Vec<MusicParams> = (0..12u8)
        .map(|i| MusicParams {
            key: Key::new(i),
            bpm: 60.0 + 10.0 * i as f64,
            ..Preset::ALL[i as usize % 4].params(Key::new(i))
        })
        .collect();

    let before = allocations();
    assert!(
        before > 0,
        "the counting allocator sees start-up allocations"
    );
    // Ten minutes of stream: every section, chord change, swell and kick pattern, and a live
    // change every ten seconds travelling through the control link as on the synthesis thread.
    for block in 0..6000usize {
        if block % 100 == 50 {
            let params = changes[(block / 100) % changes.len()];
            outbox
                .requests
                .push(ControlRequest {
                    id: block as u64,
                    params,
                })
                .expect("room for a request");
        }
        while let Some(request) = inbox.pop_request() {
            let result = synth.schedule(request.params, position);
            inbox.reply(request.id, result);
        }
        while outbox.replies.pop().is_ok() {}
        let mut samples = producer.take_buffer().expect("a free buffer");
        synth.render(position, &mut samples).expect("render");
        let chunk = RenderedChunk {
            position,
            rendered_unix_ns: auralis::pipeline::unix_nanos(),
            render_nanos: 0,
            samples,
        };
        if let Err(refused) = producer.push(chunk) {
            producer.give_back(refused.samples);
        }
        let popped = consumer.pop().expect("the chunk just pushed");
        assert_eq!(popped.position, position);
        consumer.recycle(popped.samples);
        position += FRAMES as u64;
    }
    assert_eq!(allocations() - before, 0, "the real-time path allocated");
}
