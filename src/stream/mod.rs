//! Streaming: the wire protocol, the per-station fan-out hub and the per-listener WebSocket logic.

pub mod hub;
pub mod lag;
pub mod protocol;
pub mod reports;
pub mod tally;
pub mod ws;
