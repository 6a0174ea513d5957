//! Client-side decoding of a chunk's payload back to interleaved `f32` samples (the native
//! listener, the load harness and the tests). A decoder keeps its state across chunks.

use super::Codec;

/// A payload that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload cut short: {0}")]
    Truncated(&'static str),
    #[error("{codec} decoder: {reason}")]
    Codec { codec: Codec, reason: String },
    #[error("decoded {got} frames, the header announced {expected}")]
    FrameCount { got: usize, expected: usize },
}

/// The s16 sample a decoded `f32` came from (decoders scale by 1/32768): exact for PCM and FLAC.
#[inline]
pub fn decoded_to_s16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Decodes one codec's payloads.
pub struct ChunkDecoder {
    kind: Kind,
    channels: usize,
}

enum Kind {
    Pcm,
    Opus(Box<opus::Decoder>),
    Flac(Vec<i32>),
}

impl ChunkDecoder {
    /// A decoder for `codec` at `sample_rate` with `channels` (1 or 2 for Opus).
    ///
    /// # Errors
    /// [`DecodeError::Codec`] when the decoder cannot be made for this format.
    pub fn new(codec: Codec, sample_rate: u32, channels: u8) -> Result<Self, DecodeError> {
        let kind = match codec {
            Codec::PcmS16Le => Kind::Pcm,
            Codec::Flac => Kind::Flac(Vec::new()),
            Codec::Opus => {
                let layout = match channels {
                    1 => opus::Channels::Mono,
                    2 => opus::Channels::Stereo,
                    n => {
                        return Err(DecodeError::Codec {
                            codec,
                            reason: format!("{n} channels"),
                        })
                    }
                };
                let decoder =
                    opus::Decoder::new(sample_rate, layout).map_err(|e| DecodeError::Codec {
                        codec,
                        reason: e.to_string(),
                    })?;
                Kind::Opus(Box::new(decoder))
            }
        };
        Ok(Self {
            kind,
            channels: channels.max(1) as usize,
        })
    }

    /// Appends the payload's samples (interleaved, -1..1) to `out` and checks that they are the
    /// `frames` the header announced.
    ///
    /// # Errors
    /// [`DecodeError`] for a payload the codec rejects or that decodes to the wrong length.
    pub fn decode(
        &mut self,
        payload: &[u8],
        frames: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), DecodeError> {
        let start = out.len();
        match &mut self.kind {
            Kind::Pcm => out.extend(
                payload
                    .chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
            ),
            Kind::Opus(decoder) => decode_opus(decoder, payload, self.channels, out)?,
            Kind::Flac(buffer) => decode_flac(buffer, payload, out)?,
        }
        let got = (out.len() - start) / self.channels;
        if got != frames {
            out.truncate(start);
            return Err(DecodeError::FrameCount {
                got,
                expected: frames,
            });
        }
        Ok(())
    }
}

/// A connection's decoder: made for the codec of its first frame, made anew when the codec
/// changes (after a `hello` switch).
#[derive(Default)]
pub struct StreamDecoder {
    current: Option<(Codec, ChunkDecoder)>,
}

impl StreamDecoder {
    /// Appends the samples of one frame's payload to `out`.
    ///
    /// # Errors
    /// [`DecodeError`] when no decoder can be made for the format or the payload does not decode.
    pub fn decode(
        &mut self,
        codec: Codec,
        sample_rate: u32,
        channels: u8,
        frames: usize,
        payload: &[u8],
        out: &mut Vec<f32>,
    ) -> Result<(), DecodeError> {
        let decoder = match &mut self.current {
            Some((current, decoder)) if *current == codec => decoder,
            slot => {
                &mut slot
                    .insert((codec, ChunkDecoder::new(codec, sample_rate, channels)?))
                    .1
            }
        };
        decoder.decode(payload, frames, out)
    }
}

/// Splits an Opus or FLAC payload into its length-prefixed packets (Opus packets, FLAC frames).
///
/// # Errors
/// [`DecodeError::Truncated`] when a length runs past the end.
pub fn packets(payload: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut packets = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let [a, b, tail @ ..] = rest else {
            return Err(DecodeError::Truncated("packet length"));
        };
        let len = u16::from_le_bytes([*a, *b]) as usize;
        if len == 0 || tail.len() < len {
            return Err(DecodeError::Truncated("packet"));
        }
        packets.push(&tail[..len]);
        rest = &tail[len..];
    }
    Ok(packets)
}

fn decode_opus(
    decoder: &mut opus::Decoder,
    payload: &[u8],
    channels: usize,
    out: &mut Vec<f32>,
) -> Result<(), DecodeError> {
    let failed = |e: opus::Error| DecodeError::Codec {
        codec: Codec::Opus,
        reason: e.to_string(),
    };
    for packet in packets(payload)? {
        let frames = decoder.get_nb_samples(packet).map_err(failed)?;
        let start = out.len();
        out.resize(start + frames * channels, 0.0);
        let got = decoder
            .decode_float(packet, &mut out[start..], false)
            .map_err(failed)?;
        out.truncate(start + got * channels);
    }
    Ok(())
}

fn decode_flac(
    buffer: &mut Vec<i32>,
    payload: &[u8],
    out: &mut Vec<f32>,
) -> Result<(), DecodeError> {
    let failed = |e: claxon::Error| DecodeError::Codec {
        codec: Codec::Flac,
        reason: e.to_string(),
    };
    for frame in packets(payload)? {
        let mut reader = claxon::frame::FrameReader::new(claxon::input::BufferedReader::new(frame));
        let block = match reader.read_next_or_eof(std::mem::take(buffer)) {
            Ok(Some(block)) => block,
            Ok(None) => return Err(DecodeError::Truncated("flac frame")),
            Err(e) => return Err(failed(e)),
        };
        let channels = block.channels();
        for i in 0..block.duration() {
            for ch in 0..channels {
                out.push(block.sample(ch, i) as f32 / 32768.0);
            }
        }
        *buffer = block.into_buffer();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{f32_to_s16, CodecSettings, PcmFormat, StationEncoders};

    const FORMAT: PcmFormat = PcmFormat {
        sample_rate: 48_000,
        channels: 2,
        frames_per_chunk: 4800,
    };

    /// A chord with a slow sweep: enough structure for the codecs to work on.
    fn chunk(k: u64) -> Vec<f32> {
        (0..4800u64)
            .flat_map(|i| {
                let t = (k * 4800 + i) as f32 / 48_000.0;
                let l = 0.3 * (t * 440.0 * std::f32::consts::TAU).sin()
                    + 0.2 * (t * (200.0 + 50.0 * t) * std::f32::consts::TAU).sin();
                let r = 0.3 * (t * 660.0 * std::f32::consts::TAU).sin();
                [l, r]
            })
            .collect()
    }

    fn round_trip(codec: Codec, chunks: u64) -> (Vec<f32>, Vec<f32>) {
        let settings = CodecSettings {
            offered: vec![codec],
            ..CodecSettings::default()
        };
        let mut encoders = StationEncoders::new(&settings, FORMAT).unwrap();
        let mut decoder = ChunkDecoder::new(codec, 48_000, 2).unwrap();
        let (mut input, mut output) = (Vec::new(), Vec::new());
        let mut scratch = Vec::new();
        for k in 0..chunks {
            let samples = chunk(k);
            encoders.encode(&samples, k * 4800, &mut scratch, |_, payload, _| {
                decoder.decode(payload.unwrap(), 4800, &mut output).unwrap();
            });
            input.extend(samples);
        }
        (input, output)
    }

    #[test]
    fn flac_is_lossless_at_16_bits_across_chunks() {
        let (input, output) = round_trip(Codec::Flac, 5);
        let expected: Vec<f32> = input
            .iter()
            .map(|&s| f32::from(f32_to_s16(s)) / 32768.0)
            .collect();
        assert_eq!(output, expected);
    }

    #[test]
    fn opus_decodes_to_whole_chunks_close_to_the_input() {
        let (input, output) = round_trip(Codec::Opus, 10);
        assert_eq!(output.len(), input.len());
        // Aligned by the encoder's lookahead, the decoded signal follows the input closely.
        let settings = CodecSettings::default();
        let encoders = StationEncoders::new(&settings, FORMAT).unwrap();
        let skip = encoders.setups()[0].pre_skip.unwrap() as usize * 2;
        let (a, b) = (&input[..input.len() - skip], &output[skip..]);
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let correlation = dot / (norm(a) * norm(b));
        assert!(correlation > 0.98, "correlation {correlation}");
    }

    #[test]
    fn damaged_payloads_are_errors_not_panics() {
        let mut decoder = ChunkDecoder::new(Codec::Opus, 48_000, 2).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            decoder.decode(&[5, 0, 1], 4800, &mut out),
            Err(DecodeError::Truncated("packet"))
        );
        assert!(decoder
            .decode(&[3, 0, 0xff, 0xff, 0xff], 4800, &mut out)
            .is_err());
        let mut flac = ChunkDecoder::new(Codec::Flac, 48_000, 2).unwrap();
        assert!(flac.decode(&[4, 0, 1, 2, 3, 4], 4800, &mut out).is_err());
        assert!(out.is_empty());
    }
}
