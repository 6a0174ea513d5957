//! The fixed label values of the metrics, and the error codes clients see: the ground floor that
//! telemetry, the edge, streaming and control all name without importing one another.

/// A client-reported field, the `field` label of `auralis_client_reports_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportField {
    Underruns,
    Buffer,
    Latency,
    DecodeErrors,
}

impl ReportField {
    pub const ALL: [ReportField; 4] = [
        ReportField::Underruns,
        ReportField::Buffer,
        ReportField::Latency,
        ReportField::DecodeErrors,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportField::Underruns => "underruns",
            ReportField::Buffer => "buffer",
            ReportField::Latency => "latency",
            ReportField::DecodeErrors => "decode_errors",
        }
    }
}

/// Machine-readable reasons in `error` messages; also the `reason` label of the client-error counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a JSON object with a string `type`.
    MalformedJson,
    /// A `type` the server does not know.
    UnknownType,
    /// Known `type`, but missing, extra or wrongly typed fields, or values out of range.
    InvalidMessage,
    /// Binary messages from clients are not part of the protocol.
    BinaryNotAccepted,
    /// The client speaks a protocol version this server does not.
    UnsupportedProtocol,
    /// The client asked for a codec that is unknown or that the station does not offer.
    UnsupportedCodec,
    /// A `control` message with an unknown, mistyped or out-of-range parameter (see `field`).
    InvalidControl,
    /// Control without the required token, or from the network without a token configured.
    Unauthorized,
    /// Too many control messages on this connection.
    RateLimited,
    /// The station cannot take a change right now.
    Unavailable,
    /// The server failed to serialise its own reply.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::MalformedJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidMessage,
        ErrorCode::BinaryNotAccepted,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::UnsupportedCodec,
        ErrorCode::InvalidControl,
        ErrorCode::Unauthorized,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::BinaryNotAccepted => "binary_not_accepted",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::UnsupportedCodec => "unsupported_codec",
            ErrorCode::InvalidControl => "invalid_control",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// Why a WebSocket upgrade was refused: the `reason` label of `auralis_ws_rejections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    OriginNotAllowed,
    OriginMissing,
    TokenMissing,
    TokenInvalid,
    TokenExpired,
    ServerFull,
    AddressFull,
    ShuttingDown,
}

impl Rejection {
    pub const ALL: [Rejection; 8] = [
        Rejection::OriginNotAllowed,
        Rejection::OriginMissing,
        Rejection::TokenMissing,
        Rejection::TokenInvalid,
        Rejection::TokenExpired,
        Rejection::ServerFull,
        Rejection::AddressFull,
        Rejection::ShuttingDown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::OriginNotAllowed => "origin_not_allowed",
            Rejection::OriginMissing => "origin_missing",
            Rejection::TokenMissing => "token_missing",
            Rejection::TokenInvalid => "token_invalid",
            Rejection::TokenExpired => "token_expired",
            Rejection::ServerFull => "server_full",
            Rejection::AddressFull => "address_full",
            Rejection::ShuttingDown => "shutting_down",
        }
    }
}

/// How a listener is connected: the `transport` label of the listener series
/// (`auralis_ws_connections`, `auralis_ws_connections_total`, `auralis_ws_disconnections_total`,
/// `auralis_ws_chunks_dropped_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Auralis' own protocol over WebSocket (`/ws/{station}`).
    WebSocket,
    /// A plain HTTP mount for standard players (`/stations/{name}.opus`, `.flac`).
    Http,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::WebSocket, Transport::Http];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Http => "http",
        }
    }
}

/// Why a listener's connection ended: the `reason` label of `auralis_ws_disconnections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the connection or went away.
    ClientClosed,
    /// The server is shutting down.
    ServerShutdown,
    /// A write to the socket failed.
    SendError,
    /// A single write did not complete within the send timeout: the client stopped reading.
    SendTimeout,
    /// The client sent a message larger than the limit.
    MessageTooBig,
    /// The client broke the WebSocket protocol.
    ProtocolError,
    /// The client asked for a protocol version the server does not speak.
    UnsupportedProtocol,
    /// The client asked (in `hello`) for a codec the station does not offer.
    UnsupportedCodec,
    /// A text message was not valid UTF-8.
    InvalidUtf8,
    /// No message (not even a pong to the server's pings) within the idle timeout.
    IdleTimeout,
    /// The listener fell behind the live edge too often: it cannot keep up.
    PersistentLag,
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 11] = [
        DisconnectReason::ClientClosed,
        DisconnectReason::ServerShutdown,
        DisconnectReason::SendError,
        DisconnectReason::SendTimeout,
        DisconnectReason::MessageTooBig,
        DisconnectReason::ProtocolError,
        DisconnectReason::UnsupportedProtocol,
        DisconnectReason::UnsupportedCodec,
        DisconnectReason::InvalidUtf8,
        DisconnectReason::IdleTimeout,
        DisconnectReason::PersistentLag,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientClosed => "client_closed",
            DisconnectReason::ServerShutdown => "server_shutdown",
            DisconnectReason::SendError => "send_error",
            DisconnectReason::SendTimeout => "send_timeout",
            DisconnectReason::MessageTooBig => "message_too_big",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::UnsupportedProtocol => "unsupported_protocol",
            DisconnectReason::UnsupportedCodec => "unsupported_codec",
            DisconnectReason::InvalidUtf8 => "invalid_utf8",
            DisconnectReason::IdleTimeout => "idle_timeout",
            DisconnectReason::PersistentLag => "persistent_lag",
        }
    }
}

/// What a reconnect that asked to resume got (the `outcome` label, and `welcome.resume.outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeOutcome {
    /// Every missed chunk was sent, then the live stream.
    Resumed,
    /// The first missed chunk is older than the retained window: live edge.
    OutsideWindow,
    /// The sequence asked for has not been released yet: live edge.
    Future,
    /// The epoch asked for is not the station's (its history was not kept): live edge.
    EpochChanged,
    /// Too many resumes at once on this station: live edge.
    RateLimited,
}

impl ResumeOutcome {
    pub const ALL: [ResumeOutcome; 5] = [
        ResumeOutcome::Resumed,
        ResumeOutcome::OutsideWindow,
        ResumeOutcome::Future,
        ResumeOutcome::EpochChanged,
        ResumeOutcome::RateLimited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResumeOutcome::Resumed => "resumed",
            ResumeOutcome::OutsideWindow => "outside_window",
            ResumeOutcome::Future => "future",
            ResumeOutcome::EpochChanged => "epoch_changed",
            ResumeOutcome::RateLimited => "rate_limited",
        }
    }
}

/// The outcome of a music control request (the `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlResult {
    Applied,
    Invalid,
    Unauthorized,
    RateLimited,
    Unavailable,
}

impl ControlResult {
    pub const ALL: [ControlResult; 5] = [
        ControlResult::Applied,
        ControlResult::Invalid,
        ControlResult::Unauthorized,
        ControlResult::RateLimited,
        ControlResult::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ControlResult::Applied => "applied",
            ControlResult::Invalid => "invalid",
            ControlResult::Unauthorized => "unauthorized",
            ControlResult::RateLimited => "rate_limited",
            ControlResult::Unavailable => "unavailable",
        }
    }
}

/// The `reason` label values of `auralis_synthesis_fallbacks_total`, indexed by
/// `GpuError::reason_index`.
pub const FALLBACK_REASONS: [&str; 5] = [
    "no_adapter",
    "device_lost",
    "validation",
    "timeout",
    "unsupported",
];
