//! Wire protocol v2: binary audio frames (server -> client) and JSON control messages (both ways).
//!
//! Documented byte by byte in `docs/protocol.md`; keep the two in step.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::control::ControlAck;
pub use crate::labels::{ErrorCode, ResumeOutcome};

/// Protocol version carried in every audio frame and in `welcome`.
pub const PROTOCOL_VERSION: u8 = 2;
/// First four bytes of every audio frame.
pub const MAGIC: [u8; 4] = *b"AURA";
/// Length of the fixed audio frame header.
pub const HEADER_LEN: usize = 56;

/// Frame flag: the chunk is silence sent because synthesis fell behind (an underrun).
pub const FLAG_UNDERRUN_FILL: u16 = 1 << 0;
/// Frame flag: the stream skipped ahead before this chunk (this listener lagged, or the pacer did).
pub const FLAG_DISCONTINUITY: u16 = 1 << 1;

/// Frame flag: the chunk is sent late to fill what a reconnecting listener missed (a resume),
/// not at its release time.
pub const FLAG_RESUMED: u16 = 1 << 2;

/// Byte offset of the flags field, patched per listener when it skips ahead.
const FLAGS_OFFSET: usize = 16;

use crate::codec::decode::{DecodeError, StreamDecoder};
use crate::codec::CodecSetup;
pub use crate::codec::{f32_to_s16, Codec};

/// The fixed header of an audio frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub codec: Codec,
    pub channels: u8,
    pub sample_rate: u32,
    /// Frames (samples per channel) in the payload.
    pub frames: u32,
    pub flags: u16,
    /// Per-station chunk counter; contiguous for a listener unless `FLAG_DISCONTINUITY` is set.
    pub sequence: u64,
    /// Stream position (frame index) of the payload's first frame.
    pub position: u64,
    /// Server wall clock (Unix ns) when the chunk finished rendering (or was filled with silence).
    pub rendered_unix_ns: u64,
    /// Server wall clock (Unix ns) when the pacer released the chunk to listeners.
    pub sent_unix_ns: u64,
}

/// A binary message is not a valid audio frame of this protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame shorter than its header ({0} bytes)")]
    Truncated(usize),
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported protocol version {0}")]
    Version(u8),
    #[error("unknown codec {0}")]
    Codec(u8),
    #[error("payload length {got} does not match header ({expected})")]
    PayloadLength { got: usize, expected: usize },
}

impl FrameHeader {
    /// Decodes this frame's payload with a connection's `decoder`, appending the samples to `out`.
    ///
    /// # Errors
    /// [`DecodeError`] when the payload does not decode to this header's frames.
    pub fn decode_payload(
        &self,
        decoder: &mut StreamDecoder,
        payload: &[u8],
        out: &mut Vec<f32>,
    ) -> Result<(), DecodeError> {
        let frames = self.frames as usize;
        decoder.decode(
            self.codec,
            self.sample_rate,
            self.channels,
            frames,
            payload,
            out,
        )
    }

    /// Payload bytes of a PCM frame with this header.
    pub fn pcm_payload_len(&self) -> usize {
        self.frames as usize * self.channels as usize * 2
    }

    fn write(&self, buf: &mut BytesMut, payload_len: usize) {
        buf.put_slice(&MAGIC);
        buf.put_u8(PROTOCOL_VERSION);
        buf.put_u8(HEADER_LEN as u8);
        buf.put_u8(self.codec as u8);
        buf.put_u8(self.channels);
        buf.put_u32_le(self.sample_rate);
        buf.put_u32_le(self.frames);
        buf.put_u16_le(self.flags);
        buf.put_u16_le(0); // reserved
        buf.put_u32_le(payload_len as u32);
        buf.put_u64_le(self.sequence);
        buf.put_u64_le(self.position);
        buf.put_u64_le(self.rendered_unix_ns);
        buf.put_u64_le(self.sent_unix_ns);
    }

    /// Parses and checks a frame; returns the header and the payload.
    ///
    /// # Errors
    /// [`FrameError`] for anything that is not a complete frame of this version.
    ///
    /// # Examples
    /// ```
    /// use auralis::stream::protocol::{encode_frame, Codec, FrameHeader, FrameError};
    ///
    /// let header = FrameHeader {
    ///     codec: Codec::PcmS16Le, channels: 2, sample_rate: 48_000, frames: 2, flags: 0,
    ///     sequence: 9, position: 18, rendered_unix_ns: 1, sent_unix_ns: 2,
    /// };
    /// let bytes = encode_frame(&header, &[0.0, 0.5, -0.5, 1.0]);
    /// let (decoded, payload) = FrameHeader::decode(&bytes)?;
    /// assert_eq!(decoded, header);
    /// assert_eq!(payload.len(), 8); // 2 frames x 2 channels x 2 bytes
    /// assert_eq!(FrameHeader::decode(&bytes[..20]), Err(FrameError::Truncated(20)));
    /// # Ok::<(), FrameError>(())
    /// ```
    pub fn decode(frame: &[u8]) -> Result<(FrameHeader, &[u8]), FrameError> {
        if frame.len() < HEADER_LEN {
            return Err(FrameError::Truncated(frame.len()));
        }
        if frame[0..4] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        if frame[4] != PROTOCOL_VERSION {
            return Err(FrameError::Version(frame[4]));
        }
        let header_len = (frame[5] as usize).max(HEADER_LEN);
        if frame.len() < header_len {
            return Err(FrameError::Truncated(frame.len()));
        }
        let codec = Codec::from_u8(frame[6]).ok_or(FrameError::Codec(frame[6]))?;
        let u16_at = |i: usize| u16::from_le_bytes([frame[i], frame[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(frame[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_le_bytes(frame[i..i + 8].try_into().unwrap_or([0; 8]));
        let header = FrameHeader {
            codec,
            channels: frame[7],
            sample_rate: u32_at(8),
            frames: u32_at(12),
            flags: u16_at(FLAGS_OFFSET),
            sequence: u64_at(24),
            position: u64_at(32),
            rendered_unix_ns: u64_at(40),
            sent_unix_ns: u64_at(48),
        };
        let payload = &frame[header_len..];
        let announced = u32_at(20) as usize;
        let expected = if codec.fixed_size() {
            header.pcm_payload_len()
        } else {
            announced
        };
        if payload.len() != expected || announced != payload.len() || payload.is_empty() {
            return Err(FrameError::PayloadLength {
                got: payload.len(),
                expected,
            });
        }
        Ok((header, payload))
    }
}

/// Encodes a frame: header plus `samples` (interleaved `f32`, -1..1) as s16le, in one buffer that
/// every listener then shares.
pub fn encode_frame(header: &FrameHeader, samples: &[f32]) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + samples.len() * 2);
    header.write(&mut buf, samples.len() * 2);
    for &s in samples {
        buf.put_i16_le(f32_to_s16(s));
    }
    buf.freeze()
}

/// Encodes a silent PCM frame of the header's size.
pub fn encode_silence(header: &FrameHeader) -> Bytes {
    let len = header.pcm_payload_len();
    let mut buf = BytesMut::with_capacity(HEADER_LEN + len);
    header.write(&mut buf, len);
    buf.put_bytes(0, len);
    buf.freeze()
}

/// A frame of `header` (its codec byte set to `codec`) around an encoded `payload`.
pub fn frame_with_payload(header: &FrameHeader, codec: Codec, payload: &[u8]) -> Bytes {
    let header = FrameHeader { codec, ..*header };
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload.len());
    header.write(&mut buf, payload.len());
    buf.put_slice(payload);
    buf.freeze()
}

/// One chunk as every codec of its station encoded it: complete frames, shared by listeners.
#[derive(Clone, Debug, Default)]
pub struct CodecFrames([Option<Bytes>; Codec::COUNT]);

impl CodecFrames {
    /// The frame for `codec`, if the station encoded it.
    pub fn get(&self, codec: Codec) -> Option<&Bytes> {
        self.0[codec.index()].as_ref()
    }

    pub fn set(&mut self, codec: Codec, frame: Bytes) {
        self.0[codec.index()] = Some(frame);
    }

    /// Bytes over all codecs (for memory accounting).
    pub fn total_len(&self) -> usize {
        self.0.iter().flatten().map(Bytes::len).sum()
    }
}

/// Returns a copy of `frame` with `flags` added (only for the rare per-listener skip).
pub fn with_flags(frame: &Bytes, flags: u16) -> Bytes {
    let mut copy = BytesMut::from(&frame[..]);
    let current = u16::from_le_bytes([copy[FLAGS_OFFSET], copy[FLAGS_OFFSET + 1]]);
    copy[FLAGS_OFFSET..FLAGS_OFFSET + 2].copy_from_slice(&(current | flags).to_le_bytes());
    copy.freeze()
}

/// Stream format, as announced in `welcome`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFormat {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u8,
    pub frames_per_chunk: u32,
    /// What the decoder needs first, base64: Opus's `OpusHead`, FLAC's `fLaC` + STREAMINFO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
    /// Opus: samples at 48 kHz the decoded audio lags the input by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_skip: Option<u32>,
    /// Opus: the encoder's target bit rate, bit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u32>,
}

impl StreamFormat {
    /// The PCM format of a stream (before any codec's setup is added).
    pub fn pcm(sample_rate: u32, channels: u8, frames_per_chunk: u32) -> Self {
        Self {
            codec: Codec::PcmS16Le.name().to_string(),
            sample_rate,
            channels,
            frames_per_chunk,
            setup: None,
            pre_skip: None,
            bitrate: None,
        }
    }

    /// This format as `setup`'s codec carries it.
    pub fn with_codec(&self, setup: &CodecSetup) -> Self {
        use base64::Engine as _;
        Self {
            codec: setup.codec.name().to_string(),
            setup: (!setup.setup.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(&setup.setup)),
            pre_skip: setup.pre_skip,
            bitrate: setup.bitrate,
            ..self.clone()
        }
    }

    /// The setup bytes, decoded from base64.
    pub fn setup_bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let text = self.setup.as_deref()?;
        base64::engine::general_purpose::STANDARD.decode(text).ok()
    }
}

/// Messages a client may send (JSON text, tagged by `type`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Optional greeting; the server answers with `welcome`.
    Hello {
        #[serde(default)]
        protocol: Option<u8>,
        #[serde(default)]
        client: Option<String>,
        /// The codec to receive from now on (`opus`, `flac`, `pcm_s16le`).
        #[serde(default)]
        codec: Option<String>,
    },
    /// Clock-offset probe; `client_time` is echoed back in `pong`.
    Ping {
        #[serde(default)]
        client_time: Option<f64>,
    },
    /// Playback report, about once a second.
    Stats {
        /// Audio buffered in the client, in ms.
        buffer_ms: f64,
        /// Underruns since the connection started (cumulative).
        underruns: u64,
        /// Render timestamp to playout, in ms (as measured by the client).
        #[serde(default)]
        latency_ms: Option<f64>,
        /// Chunks the client could not decode since the connection started (cumulative).
        #[serde(default)]
        decode_errors: Option<u64>,
    },
    /// Music parameter change (see docs/protocol.md).
    Control(serde_json::Map<String, serde_json::Value>),
}

/// The outcome of a resume, in `welcome`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeReport {
    pub outcome: ResumeOutcome,
    /// The sequence the client asked for.
    pub from: u64,
    /// Chunks flagged [`FLAG_RESUMED`] that follow this message, before the live stream.
    pub chunks: u64,
}

/// Messages the server sends as JSON text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        protocol: u8,
        session: u64,
        station: String,
        stations: Vec<String>,
        format: StreamFormat,
        /// Every codec the station offers, its default first.
        codecs: Vec<String>,
        chunk_ms: u32,
        server_time_unix_ns: u64,
        /// The station's epoch: sequence numbers mean the same audio for as long as it is
        /// unchanged, so a resume is meaningful only with the same epoch.
        #[serde(default)]
        epoch: String,
        /// How many chunks back a resume can reach.
        #[serde(default)]
        resume_window_chunks: u32,
        /// What the `resume_from` of the request got (absent without one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<ResumeReport>,
    },
    Pong {
        client_time: Option<f64>,
        server_time_unix_ns: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
        /// The offending field of an invalid `control` message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    /// A `control` change was accepted: where it takes effect.
    ControlAck {
        /// The `id` of the control message, echoed when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
        #[serde(flatten)]
        ack: ControlAck,
    },
    Warning {
        code: String,
        message: String,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// JSON text of the message.
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail; fall back to a fixed error just in case.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialisation failed"}"#.to_string()
        })
    }
}

/// Why a client message was refused: the code plus a human-readable message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

const KNOWN_TYPES: [&str; 4] = ["hello", "ping", "stats", "control"];

/// Parses a client text message, telling malformed JSON, unknown types and bad fields apart.
///
/// # Errors
/// A [`Rejection`] describing what is wrong, ready to send back as an `error` message.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, Rejection> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Rejection {
        code: ErrorCode::MalformedJson,
        message: format!("not valid JSON: {e}"),
    })?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| Rejection {
            code: ErrorCode::MalformedJson,
            message: "expected a JSON object with a string \"type\" field".to_string(),
        })?;
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        let mut shown: String = kind.chars().take(32).collect();
        if shown.len() < kind.len() {
            shown.push('…');
        }
        return Err(Rejection {
            code: ErrorCode::UnknownType,
            message: format!(
                "unknown message type {shown:?}; expected one of {}",
                KNOWN_TYPES.join(", ")
            ),
        });
    }
    let message: ClientMessage = serde_json::from_value(value).map_err(|e| Rejection {
        code: ErrorCode::InvalidMessage,
        message: format!("invalid {kind} message: {e}"),
    })?;
    if let ClientMessage::Stats {
        buffer_ms,
        latency_ms,
        ..
    } = &message
    {
        let sane = |v: f64| v.is_finite() && (0.0..=600_000.0).contains(&v);
        if !sane(*buffer_ms) || !latency_ms.is_none_or(sane) {
            return Err(Rejection {
                code: ErrorCode::InvalidMessage,
                message:
                    "invalid stats message: buffer_ms and latency_ms must be between 0 and 600000"
                        .to_string(),
            });
        }
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            codec: Codec::PcmS16Le,
            channels: 2,
            sample_rate: 48_000,
            frames: 4,
            flags: FLAG_UNDERRUN_FILL,
            sequence: 7,
            position: 28,
            rendered_unix_ns: 1_700_000_000_000_000_000,
            sent_unix_ns: 1_700_000_000_100_000_000,
        }
    }

    #[test]
    fn frame_round_trips() {
        let samples = [0.0, 1.0, -1.0, 0.5, -0.25, 2.0, -2.0, 0.000_01];
        let bytes = encode_frame(&header(), &samples);
        assert_eq!(bytes.len(), HEADER_LEN + 16);
        assert_eq!(&bytes[..4], b"AURA");
        let (decoded, payload) = FrameHeader::decode(&bytes).unwrap();
        assert_eq!(decoded, header());
        let pcm: Vec<i16> = payload
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(pcm, [0, 32767, -32767, 16384, -8192, 32767, -32767, 0]);
    }

    #[test]
    fn flags_patch_leaves_everything_else() {
        let bytes = encode_frame(&header(), &[0.1; 8]);
        let patched = with_flags(&bytes, FLAG_DISCONTINUITY);
        let (h, p) = FrameHeader::decode(&patched).unwrap();
        assert_eq!(h.flags, FLAG_UNDERRUN_FILL | FLAG_DISCONTINUITY);
        assert_eq!(p, FrameHeader::decode(&bytes).unwrap().1);
        assert_eq!(h.sequence, 7);
    }

    #[test]
    fn decode_rejects_damaged_frames() {
        let bytes = encode_frame(&header(), &[0.0; 8]);
        assert_eq!(
            FrameHeader::decode(&bytes[..10]),
            Err(FrameError::Truncated(10))
        );
        assert!(matches!(
            FrameHeader::decode(&bytes[..bytes.len() - 1]),
            Err(FrameError::PayloadLength { .. })
        ));
        let mut bad = bytes.to_vec();
        bad[0] = b'X';
        assert_eq!(FrameHeader::decode(&bad), Err(FrameError::BadMagic));
        let mut bad = bytes.to_vec();
        bad[4] = 9;
        assert_eq!(FrameHeader::decode(&bad), Err(FrameError::Version(9)));
        let mut bad = bytes.to_vec();
        bad[6] = 77;
        assert_eq!(FrameHeader::decode(&bad), Err(FrameError::Codec(77)));
    }

    #[test]
    fn client_messages_parse_and_reject_precisely() {
        assert_eq!(
            parse_client_message(r#"{"type":"ping","client_time":12.5}"#),
            Ok(ClientMessage::Ping {
                client_time: Some(12.5)
            })
        );
        assert!(matches!(
            parse_client_message(r#"{"type":"stats","buffer_ms":120,"underruns":0}"#),
            Ok(ClientMessage::Stats { .. })
        ));
        let code = |t: &str| parse_client_message(t).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::MalformedJson);
        assert_eq!(code("[1,2]"), ErrorCode::MalformedJson);
        assert_eq!(code(r#"{"type":5}"#), ErrorCode::MalformedJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"ping","client_time":"x"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"ping","bogus":1}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"stats","buffer_ms":-1,"underruns":0}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"stats","buffer_ms":1e300,"underruns":0}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"type":"stats","buffer_ms":5,"underruns":-3}"#),
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn server_messages_are_tagged_json() {
        let json = ServerMessage::error(ErrorCode::UnknownType, "nope").to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "unknown_type");
        for code in ErrorCode::ALL {
            let v = serde_json::to_value(code).unwrap();
            assert_eq!(v, code.as_str());
        }
    }
}
