//! Streaming: the wire protocol, the per-station fan-out hub and the per-listener WebSocket logic.

pub mod protocol;
pub mod hub;
pub mod ws;
