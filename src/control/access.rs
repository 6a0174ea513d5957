//! Who may change the music: listening and controlling are separate rights.
//!
//! With a control token (static, or signed with the token secret) configured, every control request
//! must present a valid one (see [`crate::edge::tokens`]). Without one, only requests from the
//! server's own machine (loopback) are accepted, so a fresh install is never steerable from the
//! network by accident.

use std::net::IpAddr;
use std::sync::Arc;

use crate::edge::tokens::{now_unix, Scope, TokenError, TokenPolicy};

/// The control policy of a server.
#[derive(Clone, Debug, Default)]
pub struct ControlAccess {
    /// Never printed: `TokenPolicy`'s `Debug` hides every token.
    tokens: Arc<TokenPolicy>,
}

/// A control request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("this server requires a control token")]
    TokenRequired,
    #[error("the control token is not valid")]
    BadToken,
    #[error("the control token has expired")]
    TokenExpired,
    #[error("control is only accepted from this machine unless the server sets --control-token")]
    RemoteNeedsToken,
}

impl ControlAccess {
    /// Control as `tokens` allow: with a control token or token secret configured, a valid
    /// control token; otherwise loopback clients only.
    pub fn new(tokens: Arc<TokenPolicy>) -> Self {
        Self { tokens }
    }

    /// A policy with only a static control token (empty or `None`: loopback only).
    pub fn with_static_token(token: Option<&str>) -> Self {
        Self::new(Arc::new(
            TokenPolicy::new(None, None, token, false).unwrap_or_default(),
        ))
    }

    pub fn token_required(&self) -> bool {
        self.tokens.control_configured()
    }

    /// Decides whether `peer`, presenting `token`, may control.
    ///
    /// # Errors
    /// [`AccessError`] saying what is missing.
    pub fn check(&self, peer: IpAddr, token: Option<&str>) -> Result<(), AccessError> {
        if self.tokens.control_configured() {
            return self
                .tokens
                .verify(token, Scope::Control, now_unix())
                .map_err(|e| match e {
                    TokenError::Missing => AccessError::TokenRequired,
                    TokenError::Invalid => AccessError::BadToken,
                    TokenError::Expired => AccessError::TokenExpired,
                });
        }
        if peer.to_canonical().is_loopback() {
            Ok(())
        } else {
            Err(AccessError::RemoteNeedsToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: [&str; 3] = ["127.0.0.1", "::1", "::ffff:127.0.0.1"];
    const REMOTE: [&str; 3] = ["192.168.1.20", "2001:db8::1", "::ffff:10.0.0.1"];

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_a_token_only_loopback_may_control() {
        let access = ControlAccess::with_static_token(None);
        for peer in LOOPBACK {
            assert_eq!(access.check(ip(peer), None), Ok(()), "{peer}");
        }
        for peer in REMOTE {
            assert_eq!(
                access.check(ip(peer), Some("anything")),
                Err(AccessError::RemoteNeedsToken),
                "{peer}"
            );
        }
    }

    #[test]
    fn with_a_token_everyone_must_present_it() {
        let access = ControlAccess::with_static_token(Some("s3cret"));
        for peer in LOOPBACK.into_iter().chain(REMOTE) {
            assert_eq!(access.check(ip(peer), Some("s3cret")), Ok(()));
            assert_eq!(
                access.check(ip(peer), None),
                Err(AccessError::TokenRequired)
            );
            assert_eq!(
                access.check(ip(peer), Some("s3cret ")),
                Err(AccessError::BadToken)
            );
            // An empty token is no token.
            assert_eq!(
                access.check(ip(peer), Some("")),
                Err(AccessError::TokenRequired)
            );
        }
    }

    #[test]
    fn an_empty_token_means_none_and_debug_hides_it() {
        assert!(!ControlAccess::with_static_token(Some("")).token_required());
        let shown = format!("{:?}", ControlAccess::with_static_token(Some("s3cret")));
        assert!(!shown.contains("s3cret"));
    }
}
