//! FLAC: each chunk as whole FLAC frames of a fixed block size (streamable subset: at most 4608
//! samples per frame at 48 kHz, so a 100 ms chunk is two frames), 16 bits per sample, each
//! prefixed with its length like Opus packets (FLAC frames carry no length of their own).

use flacenc::component::{BitRepr, Stream};
use flacenc::error::Verify;
use flacenc::source::{Fill, FrameBuf};

use super::{f32_to_s16, ChunkEncoder, CodecError, CodecSetup, PcmFormat};
use crate::codec::Codec;

/// Largest block the streamable subset allows at 48 kHz and below.
pub const MAX_SUBSET_BLOCK: u32 = 4608;
/// Frame numbers are 31 bits in a fixed-block-size stream; they wrap (decoders do not rely on it).
const FRAME_NUMBER_MODULUS: u64 = 1 << 31;

pub(super) struct FlacEncoder {
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    stream_info: flacenc::component::StreamInfo,
    framebuf: FrameBuf,
    block_frames: usize,
    channels: usize,
    scratch: Vec<i32>,
    sink: flacenc::bitsink::ByteSink,
    setup: CodecSetup,
}

fn encode_failed(e: impl std::fmt::Display) -> CodecError {
    CodecError::Encode {
        codec: Codec::Flac,
        reason: e.to_string(),
    }
}

impl FlacEncoder {
    pub(super) fn new(format: PcmFormat) -> Result<Self, CodecError> {
        let unsupported = |reason: String| CodecError::Unsupported {
            codec: Codec::Flac,
            reason,
        };
        let chunk = format.frames_per_chunk;
        // The fewest equal blocks that fit the subset limit.
        let blocks = (1..=chunk.max(1))
            .find(|n| chunk.is_multiple_of(*n) && chunk / n <= MAX_SUBSET_BLOCK)
            .unwrap_or(1);
        let block_frames = (chunk / blocks) as usize;
        if block_frames < 16 {
            return Err(unsupported(format!(
                "chunks of {chunk} frames do not split into FLAC blocks of 16 to {MAX_SUBSET_BLOCK}"
            )));
        }
        let channels = format.channels as usize;
        let mut stream = Stream::new(format.sample_rate as usize, channels, 16)
            .map_err(|e| unsupported(e.to_string()))?;
        stream
            .stream_info_mut()
            .set_block_sizes(block_frames, block_frames)
            .map_err(|e| unsupported(e.to_string()))?;
        // Frame sizes are not known ahead of a live stream: 0 says so (RFC 9639, 8.2).
        stream
            .stream_info_mut()
            .set_frame_sizes(0, 0)
            .map_err(|e| unsupported(e.to_string()))?;
        let stream_info = stream.stream_info().clone();
        let mut sink = flacenc::bitsink::ByteSink::new();
        stream
            .write(&mut sink)
            .map_err(|e| unsupported(e.to_string()))?;
        let setup = sink.as_slice().to_vec();
        let config = flacenc::config::Encoder::default()
            .into_verified()
            .map_err(|(_, e)| unsupported(e.to_string()))?;
        let framebuf =
            FrameBuf::with_size(channels, block_frames).map_err(|e| unsupported(e.to_string()))?;
        Ok(Self {
            config,
            stream_info,
            framebuf,
            block_frames,
            channels,
            scratch: Vec::with_capacity(block_frames * channels),
            sink: flacenc::bitsink::ByteSink::new(),
            setup: CodecSetup {
                codec: Codec::Flac,
                setup,
                pre_skip: None,
                bitrate: None,
            },
        })
    }
}

impl ChunkEncoder for FlacEncoder {
    fn setup(&self) -> &CodecSetup {
        &self.setup
    }

    fn encode(
        &mut self,
        samples: &[f32],
        position: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let block_samples = self.block_frames * self.channels;
        let first_frame = position / self.block_frames as u64;
        for (i, block) in samples.chunks(block_samples).enumerate() {
            self.scratch.clear();
            self.scratch
                .extend(block.iter().map(|&s| i32::from(f32_to_s16(s))));
            self.framebuf
                .fill_interleaved(&self.scratch)
                .map_err(encode_failed)?;
            let number = (first_frame + i as u64) % FRAME_NUMBER_MODULUS;
            let frame = flacenc::encode_fixed_size_frame(
                &self.config,
                &self.framebuf,
                number as usize,
                &self.stream_info,
            )
            .map_err(encode_failed)?;
            self.sink.clear();
            frame.write(&mut self.sink).map_err(encode_failed)?;
            let bytes = self.sink.as_slice();
            let len = u16::try_from(bytes.len())
                .map_err(|_| encode_failed(format!("a {} byte frame", bytes.len())))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        Ok(())
    }
}
