//! Opus: 20 ms packets from libopus, five per 100 ms chunk, each prefixed with its length.

use super::{ChunkEncoder, CodecError, CodecSetup, PcmFormat, OPUS_BITRATE_RANGE};
use crate::codec::Codec;

/// Opus frame length: 20 ms, the usual choice for music (low overhead, good quality).
pub const OPUS_FRAME_MS: u32 = 20;
/// Largest packet libopus produces for one frame (RFC 6716: 1275 bytes per frame, 3 frames).
pub const MAX_PACKET_BYTES: usize = 3 * 1275;

pub(super) struct OpusEncoder {
    encoder: opus::Encoder,
    setup: CodecSetup,
    /// Interleaved samples per Opus frame.
    frame_samples: usize,
    packet: Box<[u8]>,
}

impl OpusEncoder {
    pub(super) fn new(format: PcmFormat, bitrate: u32) -> Result<Self, CodecError> {
        let unsupported = |reason: String| CodecError::Unsupported {
            codec: Codec::Opus,
            reason,
        };
        if ![8_000, 12_000, 16_000, 24_000, 48_000].contains(&format.sample_rate) {
            return Err(unsupported(format!(
                "sample rate {} Hz (Opus takes 8, 12, 16, 24 or 48 kHz)",
                format.sample_rate
            )));
        }
        let channels = match format.channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            n => return Err(unsupported(format!("{n} channels (Opus here: 1 or 2)"))),
        };
        let frame_frames = format.sample_rate * OPUS_FRAME_MS / 1000;
        if format.frames_per_chunk == 0 || !format.frames_per_chunk.is_multiple_of(frame_frames) {
            return Err(unsupported(format!(
                "chunks of {} frames are not whole {OPUS_FRAME_MS} ms Opus frames ({frame_frames})",
                format.frames_per_chunk
            )));
        }
        if !OPUS_BITRATE_RANGE.contains(&bitrate) {
            return Err(unsupported(format!(
                "bit rate {bitrate} bit/s (between {} and {})",
                OPUS_BITRATE_RANGE.start(),
                OPUS_BITRATE_RANGE.end()
            )));
        }
        let failed = |e: opus::Error| unsupported(e.to_string());
        let mut encoder =
            opus::Encoder::new(format.sample_rate, channels, opus::Application::Audio)
                .map_err(failed)?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(bitrate as i32))
            .map_err(failed)?;
        // The lookahead is in samples at the encoder's rate; OpusHead counts them at 48 kHz.
        let lookahead = encoder.get_lookahead().map_err(failed)?.max(0) as u32;
        let pre_skip = lookahead * (48_000 / format.sample_rate);
        Ok(Self {
            encoder,
            setup: CodecSetup {
                codec: Codec::Opus,
                setup: opus_head(format.channels, pre_skip as u16, format.sample_rate),
                pre_skip: Some(pre_skip),
                bitrate: Some(bitrate),
            },
            frame_samples: frame_frames as usize * format.channels as usize,
            packet: vec![0u8; MAX_PACKET_BYTES].into_boxed_slice(),
        })
    }
}

impl ChunkEncoder for OpusEncoder {
    fn setup(&self) -> &CodecSetup {
        &self.setup
    }

    fn encode(&mut self, samples: &[f32], _: u64, out: &mut Vec<u8>) -> Result<(), CodecError> {
        for frame in samples.chunks(self.frame_samples) {
            let len = self
                .encoder
                .encode_float(frame, &mut self.packet)
                .map_err(|e| CodecError::Encode {
                    codec: Codec::Opus,
                    reason: e.to_string(),
                })?;
            out.extend_from_slice(&(len as u16).to_le_bytes());
            out.extend_from_slice(&self.packet[..len]);
        }
        Ok(())
    }
}

/// The identification header of RFC 7845 section 5.1 (channel mapping family 0).
fn opus_head(channels: u8, pre_skip: u16, input_rate: u32) -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(channels);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&input_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family: mono or stereo, no table
    head
}
