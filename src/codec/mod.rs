//! Payload codecs: what a chunk's samples become on the wire.
//!
//! A station encodes every chunk once per codec it offers ([`StationEncoders`]), never once per
//! listener; listeners share the bytes. Encoders keep their state across chunks (Opus's overlap,
//! FLAC's frame numbering), so a chunk boundary is inaudible. Clients decode with [`decode`].
//! The payload layouts are in `docs/protocol.md`.

pub mod decode;
mod flac_encoder;
mod opus_encoder;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Payload encodings, as carried in the frame header's codec byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Codec {
    /// Signed 16-bit little-endian PCM, channels interleaved.
    PcmS16Le = 1,
    /// Opus packets of 20 ms, each prefixed with its length.
    Opus = 2,
    /// FLAC frames (streamable subset), 16 bits per sample.
    Flac = 3,
}

impl Codec {
    /// Every codec, in the order a station offers them by default (the first is the default).
    pub const ALL: [Codec; 3] = [Codec::Opus, Codec::Flac, Codec::PcmS16Le];
    /// Number of codecs (size of per-codec tables).
    pub const COUNT: usize = 3;

    pub fn name(self) -> &'static str {
        match self {
            Codec::PcmS16Le => "pcm_s16le",
            Codec::Opus => "opus",
            Codec::Flac => "flac",
        }
    }

    /// The codec of a frame header's codec byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        Codec::ALL.into_iter().find(|c| *c as u8 == v)
    }

    /// The codec a client names (`?codec=`, `hello`, `--codec`); `pcm` is accepted for PCM.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pcm" => Some(Codec::PcmS16Le),
            _ => Codec::ALL.into_iter().find(|c| c.name() == name),
        }
    }

    /// Position in per-codec tables.
    pub fn index(self) -> usize {
        match self {
            Codec::Opus => 0,
            Codec::Flac => 1,
            Codec::PcmS16Le => 2,
        }
    }

    /// Whether the payload size follows from the frame count alone.
    pub fn fixed_size(self) -> bool {
        self == Codec::PcmS16Le
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Opus bit rate used unless a station sets its own (stereo music).
pub const DEFAULT_OPUS_BITRATE: u32 = 128_000;
/// Opus bit rates a station may ask for (libopus's range for stereo).
pub const OPUS_BITRATE_RANGE: std::ops::RangeInclusive<u32> = 6_000..=510_000;

/// A station's codec settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecSettings {
    /// What the station offers; the first is what a client that names none gets.
    pub offered: Vec<Codec>,
    /// Opus bit rate in bit/s.
    pub opus_bitrate: u32,
}

impl Default for CodecSettings {
    fn default() -> Self {
        Self {
            offered: Codec::ALL.to_vec(),
            opus_bitrate: DEFAULT_OPUS_BITRATE,
        }
    }
}

/// What a decoder needs before the first chunk, announced in `welcome`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecSetup {
    pub codec: Codec,
    /// Opus: the `OpusHead` packet (RFC 7845); FLAC: `fLaC` and the STREAMINFO block; PCM: empty.
    pub setup: Vec<u8>,
    /// Opus: samples (at 48 kHz) the decoder's output lags the input by.
    pub pre_skip: Option<u32>,
    /// Opus: the target bit rate in bit/s.
    pub bitrate: Option<u32>,
}

/// A codec cannot run with the station's format or settings, or failed on a chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{codec} cannot stream this format: {reason}")]
    Unsupported { codec: Codec, reason: String },
    #[error("{codec} encoder failed: {reason}")]
    Encode { codec: Codec, reason: String },
}

/// One codec's encoder, run once per chunk for the whole station.
trait ChunkEncoder: Send {
    fn setup(&self) -> &CodecSetup;
    /// Appends the payload for one chunk of interleaved samples (-1..1) starting at `position`.
    fn encode(
        &mut self,
        samples: &[f32],
        position: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError>;
}

/// The stream format every encoder of a station shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcmFormat {
    pub sample_rate: u32,
    pub channels: u8,
    pub frames_per_chunk: u32,
}

/// Every encoder of one station, each fed every chunk in order.
pub struct StationEncoders {
    encoders: Vec<Box<dyn ChunkEncoder>>,
    setups: Vec<CodecSetup>,
}

impl StationEncoders {
    /// Encoders for what `settings` offers.
    ///
    /// # Errors
    /// [`CodecError::Unsupported`] when a codec cannot carry `format` (Opus needs 8, 12, 16, 24
    /// or 48 kHz and chunks of whole 20 ms frames; FLAC needs at most 8 channels).
    pub fn new(settings: &CodecSettings, format: PcmFormat) -> Result<Self, CodecError> {
        let mut encoders: Vec<Box<dyn ChunkEncoder>> = Vec::new();
        for codec in &settings.offered {
            if encoders.iter().any(|e| e.setup().codec == *codec) {
                continue;
            }
            encoders.push(match codec {
                Codec::PcmS16Le => Box::new(PcmEncoder::new()),
                Codec::Opus => Box::new(opus_encoder::OpusEncoder::new(
                    format,
                    settings.opus_bitrate,
                )?),
                Codec::Flac => Box::new(flac_encoder::FlacEncoder::new(format)?),
            });
        }
        let setups = encoders.iter().map(|e| e.setup().clone()).collect();
        Ok(Self { encoders, setups })
    }

    /// What each encoder announces, in the station's order of preference.
    pub fn setups(&self) -> &[CodecSetup] {
        &self.setups
    }

    /// Encodes one chunk with every encoder: `emit` gets each codec's payload and how long it
    /// took. A codec that fails is reported and skipped; the others still run.
    pub fn encode(
        &mut self,
        samples: &[f32],
        position: u64,
        scratch: &mut Vec<u8>,
        mut emit: impl FnMut(Codec, Result<&[u8], CodecError>, Duration),
    ) {
        for encoder in &mut self.encoders {
            let codec = encoder.setup().codec;
            scratch.clear();
            let started = Instant::now();
            let result = encoder.encode(samples, position, scratch);
            let took = started.elapsed();
            emit(codec, result.map(|()| scratch.as_slice()), took);
        }
    }
}

/// The one `f32` -> s16 conversion, shared by every codec and by offline rendering.
#[inline]
pub fn f32_to_s16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// PCM: each sample as s16le.
struct PcmEncoder {
    setup: CodecSetup,
}

impl PcmEncoder {
    fn new() -> Self {
        Self {
            setup: CodecSetup {
                codec: Codec::PcmS16Le,
                setup: Vec::new(),
                pre_skip: None,
                bitrate: None,
            },
        }
    }
}

impl ChunkEncoder for PcmEncoder {
    fn setup(&self) -> &CodecSetup {
        &self.setup
    }

    fn encode(&mut self, samples: &[f32], _: u64, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.reserve(samples.len() * 2);
        for &s in samples {
            out.extend_from_slice(&f32_to_s16(s).to_le_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for codec in Codec::ALL {
            assert_eq!(Codec::parse(codec.name()), Some(codec));
            assert_eq!(Codec::from_u8(codec as u8), Some(codec));
            assert_eq!(Codec::ALL[codec.index()], codec);
        }
        assert_eq!(Codec::parse("pcm"), Some(Codec::PcmS16Le));
        assert_eq!(Codec::parse("mp3"), None);
        assert_eq!(Codec::from_u8(0), None);
    }

    #[test]
    fn a_station_encodes_each_offered_codec_once() {
        let format = PcmFormat {
            sample_rate: 48_000,
            channels: 2,
            frames_per_chunk: 4800,
        };
        let settings = CodecSettings {
            offered: vec![Codec::Flac, Codec::PcmS16Le, Codec::Flac],
            ..CodecSettings::default()
        };
        let mut encoders = StationEncoders::new(&settings, format).unwrap();
        let codecs: Vec<Codec> = encoders.setups().iter().map(|s| s.codec).collect();
        assert_eq!(codecs, [Codec::Flac, Codec::PcmS16Le]);
        let samples = vec![0.25f32; 9600];
        let mut seen = Vec::new();
        encoders.encode(&samples, 0, &mut Vec::new(), |codec, payload, _| {
            seen.push((codec, payload.map(<[u8]>::len)));
        });
        assert_eq!(seen[1], (Codec::PcmS16Le, Ok(19_200)));
        assert!(matches!(seen[0], (Codec::Flac, Ok(n)) if n > 0 && n < 19_200));
    }
}
