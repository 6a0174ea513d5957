//! Who may change the music: listening and controlling are separate rights.
//!
//! With a control token configured, every control request must present it (compared in constant
//! time). Without one, only requests from the server's own machine (loopback) are accepted, so a
//! fresh install is never steerable from the network by accident.

use std::net::IpAddr;

use subtle::ConstantTimeEq;

/// The control policy of a server.
#[derive(Clone, Default)]
pub struct ControlAccess {
    token: Option<String>,
}

impl std::fmt::Debug for ControlAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ControlAccess")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A control request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("this server requires a control token")]
    TokenRequired,
    #[error("the control token is not valid")]
    BadToken,
    #[error("control is only accepted from this machine unless the server sets --control-token")]
    RemoteNeedsToken,
}

impl ControlAccess {
    /// `token`: the configured control token, if any (empty means none).
    pub fn new(token: Option<String>) -> Self {
        Self {
            token: token.filter(|t| !t.is_empty()),
        }
    }

    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// Decides whether `peer`, presenting `token`, may control.
    ///
    /// # Errors
    /// [`AccessError`] saying what is missing.
    pub fn check(&self, peer: IpAddr, token: Option<&str>) -> Result<(), AccessError> {
        match (&self.token, token) {
            (Some(expected), Some(presented)) => {
                if bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
                    Ok(())
                } else {
                    Err(AccessError::BadToken)
                }
            }
            (Some(_), None) => Err(AccessError::TokenRequired),
            (None, _) if peer.to_canonical().is_loopback() => Ok(()),
            (None, _) => Err(AccessError::RemoteNeedsToken),
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
        let access = ControlAccess::new(None);
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
        let access = ControlAccess::new(Some("s3cret".into()));
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
            assert_eq!(access.check(ip(peer), Some("")), Err(AccessError::BadToken));
        }
    }

    #[test]
    fn an_empty_token_means_none_and_debug_hides_it() {
        assert!(!ControlAccess::new(Some(String::new())).token_required());
        let shown = format!("{:?}", ControlAccess::new(Some("s3cret".into())));
        assert!(!shown.contains("s3cret"));
    }
}
