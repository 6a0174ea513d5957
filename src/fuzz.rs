//! The properties the fuzz targets in `fuzz/` check, kept in the library so the regression tests
//! (`tests/fuzz_regressions.rs`) replay every saved input through exactly the same code.
//!
//! Each function takes arbitrary bytes and panics only when a property breaks.

use bytes::Bytes;

use crate::edge::tokens::{Scope, TokenPolicy};
use crate::stream::protocol::{
    frame_with_payload, parse_client_message, with_flags, ClientMessage, FrameHeader,
    FLAG_DISCONTINUITY,
};
use crate::synth::params::ParamChange;

/// Client text messages: parsing never panics, a refusal always says why, and a control body
/// goes through parameter validation without panicking either.
pub fn client_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the WebSocket layer closes with 1007 before parsing
    };
    match parse_client_message(text) {
        Ok(ClientMessage::Control(body)) => {
            if let Ok(change) = ParamChange::from_json(&body) {
                let params = change.apply(&crate::synth::MusicParams::from_seed(1));
                assert!(params.bpm.is_finite() && params.intensity.is_finite());
            }
        }
        Ok(_) => {}
        Err(rejection) => assert!(!rejection.message.is_empty()),
    }
}

/// Audio frames: decoding never panics; a frame that decodes re-encodes to the same header, and
/// adding a flag changes only the flags.
pub fn frame(data: &[u8]) {
    let Ok((header, payload)) = FrameHeader::decode(data) else {
        return;
    };
    if header.codec.fixed_size() {
        assert_eq!(payload.len(), header.pcm_payload_len());
    }
    let again = frame_with_payload(&header, header.codec, payload);
    let (decoded, _) = FrameHeader::decode(&again).expect("an encoded header decodes");
    assert_eq!(decoded, header);
    let flagged = with_flags(&Bytes::copy_from_slice(data), FLAG_DISCONTINUITY);
    let (flagged, _) = FrameHeader::decode(&flagged).expect("a flagged frame decodes");
    assert_eq!(flagged.flags, header.flags | FLAG_DISCONTINUITY);
    assert_eq!(flagged.sequence, header.sequence);
}

/// Tokens: any presented string is refused (nobody can guess a signature) without panicking.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = TokenPolicy::new(Some("fuzzing-secret-0123456789"), None, None, true)
        .expect("a long secret");
    for scope in [Scope::Listen, Scope::Control] {
        assert!(policy.verify(Some(text), scope, 0).is_err(), "{text:?}");
    }
}
