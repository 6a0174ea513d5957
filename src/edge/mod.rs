//! The server's edge: what every connection passes before it reaches a station.
//!
//! [`serve`] accepts TCP connections with a header read timeout and a connection cap;
//! [`origin`] decides which web pages may open a stream; [`tokens`] checks listen and control
//! tokens; [`slots`] caps listeners overall and per address. Every refusal is counted in
//! `auralis_ws_rejections_total{reason}` with a [`Rejection`] reason.

pub mod origin;
pub mod serve;
pub mod slots;
pub mod tokens;

pub use crate::labels::Rejection;

impl From<origin::OriginError> for Rejection {
    fn from(error: origin::OriginError) -> Self {
        match error {
            origin::OriginError::NotAllowed => Rejection::OriginNotAllowed,
            origin::OriginError::Missing => Rejection::OriginMissing,
        }
    }
}

impl From<tokens::TokenError> for Rejection {
    fn from(error: tokens::TokenError) -> Self {
        match error {
            tokens::TokenError::Missing => Rejection::TokenMissing,
            tokens::TokenError::Invalid => Rejection::TokenInvalid,
            tokens::TokenError::Expired => Rejection::TokenExpired,
        }
    }
}

impl From<slots::SlotError> for Rejection {
    fn from(error: slots::SlotError) -> Self {
        match error {
            slots::SlotError::ServerFull => Rejection::ServerFull,
            slots::SlotError::AddressFull => Rejection::AddressFull,
        }
    }
}

/// Everything an upgrade passes before a session starts, built once per server.
#[derive(Debug)]
pub struct EdgeGuards {
    pub origins: origin::OriginPolicy,
    pub tokens: std::sync::Arc<tokens::TokenPolicy>,
    pub slots: std::sync::Arc<slots::ListenerSlots>,
    pub metrics: std::sync::Arc<crate::telemetry::metrics::EdgeMetrics>,
}
