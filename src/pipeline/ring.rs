//! The SPSC ring between the synthesis thread and the pacer.
//!
//! Rendered chunks travel through one `rtrb` ring; their sample buffers come back through a second
//! ring, so after start-up the synthesis side never allocates: it takes a recycled buffer, fills it
//! and pushes it. Neither side ever locks or blocks.

use rtrb::{Consumer, Producer, RingBuffer};

/// A chunk of rendered audio and when it was made.
#[derive(Debug)]
pub struct RenderedChunk {
    /// Stream position (frame index) of the first frame.
    pub position: u64,
    /// Wall clock (Unix ns) when rendering finished.
    pub rendered_unix_ns: u64,
    /// How long composing and rendering took, in ns.
    pub render_nanos: u64,
    /// Rendered by the GPU engine's batch (false: by the CPU renderer, a GPU fallback included).
    pub on_gpu: bool,
    /// Interleaved stereo samples.
    pub samples: Box<[f32]>,
}

/// The synthesis side of the ring.
pub struct ChunkProducer {
    full: Producer<RenderedChunk>,
    free: Consumer<Box<[f32]>>,
    /// A buffer handed back after a refused push, used before the pool.
    spare: Option<Box<[f32]>>,
}

/// The pacer side of the ring.
pub struct ChunkConsumer {
    full: Consumer<RenderedChunk>,
    free: Producer<Box<[f32]>>,
}

/// A ring for `capacity` chunks of `samples_per_chunk` samples, with every buffer preallocated.
pub fn chunk_ring(capacity: usize, samples_per_chunk: usize) -> (ChunkProducer, ChunkConsumer) {
    let capacity = capacity.max(1);
    let (full_tx, full_rx) = RingBuffer::new(capacity);
    // One buffer more than the ring holds: the producer fills one while the ring is full.
    let (mut free_tx, free_rx) = RingBuffer::new(capacity + 1);
    for _ in 0..capacity + 1 {
        let _ = free_tx.push(vec![0.0f32; samples_per_chunk].into_boxed_slice());
    }
    (
        ChunkProducer {
            full: full_tx,
            free: free_rx,
            spare: None,
        },
        ChunkConsumer {
            full: full_rx,
            free: free_tx,
        },
    )
}

impl ChunkProducer {
    /// An empty buffer to render into, if one is free.
    pub fn take_buffer(&mut self) -> Option<Box<[f32]>> {
        self.spare.take().or_else(|| self.free.pop().ok())
    }

    /// Publishes a chunk; hands it back when the ring is full.
    ///
    /// # Errors
    /// The chunk itself, when the ring is full (an overrun).
    pub fn push(&mut self, chunk: RenderedChunk) -> Result<(), RenderedChunk> {
        self.full.push(chunk).map_err(|rtrb::PushError::Full(c)| c)
    }

    /// Keeps an unused buffer for the next [`take_buffer`](Self::take_buffer).
    pub fn give_back(&mut self, buffer: Box<[f32]>) {
        self.spare = Some(buffer);
    }

    /// Chunks waiting in the ring.
    pub fn depth(&self) -> usize {
        self.full.buffer().capacity() - self.full.slots()
    }

    pub fn capacity(&self) -> usize {
        self.full.buffer().capacity()
    }

    /// Whether the pacer side is gone (the station stopped).
    pub fn is_abandoned(&self) -> bool {
        self.full.is_abandoned()
    }
}

impl ChunkConsumer {
    /// The oldest rendered chunk, if any.
    pub fn pop(&mut self) -> Option<RenderedChunk> {
        self.full.pop().ok()
    }

    /// Returns a chunk's buffer to the synthesis side once it has been encoded.
    pub fn recycle(&mut self, buffer: Box<[f32]>) {
        let _ = self.free.push(buffer);
    }

    /// Chunks waiting in the ring.
    pub fn depth(&self) -> usize {
        self.full.slots()
    }

    pub fn capacity(&self) -> usize {
        self.full.buffer().capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preallocated_buffers_and_only_they_circulate() {
        let (mut producer, mut consumer) = chunk_ring(3, 8);
        let mut pointers = std::collections::HashSet::new();
        let (mut pushed, mut popped) = (0u64, 0u64);
        // Keep the ring full, as a synthesis thread ahead of its pacer does: every turn the
        // producer fills buffers until the ring refuses one, then the consumer takes one out.
        for _ in 0..40 {
            while let Some(buffer) = producer.take_buffer() {
                pointers.insert(buffer.as_ptr() as usize);
                let chunk = RenderedChunk {
                    position: pushed,
                    rendered_unix_ns: 0,
                    render_nanos: 0,
                    on_gpu: false,
                    samples: buffer,
                };
                match producer.push(chunk) {
                    Ok(()) => pushed += 1,
                    Err(refused) => {
                        producer.give_back(refused.samples);
                        break;
                    }
                }
            }
            assert_eq!(consumer.depth(), 3, "the ring is full");
            let chunk = consumer.pop().unwrap();
            assert_eq!(chunk.position, popped, "chunks come out in order");
            popped += 1;
            consumer.recycle(chunk.samples);
        }
        // Capacity plus the one being filled: a fifth pointer would be a new allocation.
        assert_eq!(pointers.len(), 4, "buffers are reused, not reallocated");
        assert_eq!(pushed, popped + 2, "two chunks are still in the ring");
    }

    #[test]
    fn full_ring_hands_the_chunk_back() {
        let (mut producer, consumer) = chunk_ring(2, 4);
        for position in 0..2 {
            let samples = producer.take_buffer().unwrap();
            producer
                .push(RenderedChunk {
                    position,
                    rendered_unix_ns: 0,
                    render_nanos: 0,
                    on_gpu: false,
                    samples,
                })
                .unwrap();
        }
        assert_eq!(producer.depth(), 2);
        assert_eq!(consumer.depth(), 2);
        let samples = producer.take_buffer().expect("spare buffer while full");
        let back = producer
            .push(RenderedChunk {
                position: 9,
                rendered_unix_ns: 0,
                render_nanos: 0,
                on_gpu: false,
                samples,
            })
            .unwrap_err();
        assert_eq!(back.position, 9);
        producer.give_back(back.samples);
        assert!(producer.take_buffer().is_some());
    }
}
