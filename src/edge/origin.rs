//! Which web pages may open a stream: the `Origin` check on WebSocket upgrades.
//!
//! Browsers send `Origin` on every WebSocket upgrade, and a page cannot forge it, so the header
//! says which site's script is connecting. The policy:
//! - same origin (the `Origin` host equals the request's `Host`) is always allowed, so the
//!   bundled web client works wherever the server is reached;
//! - any origin on the allow-list (`--allowed-origin https://radio.example`; `*` allows all);
//! - no `Origin` at all is a non-browser client (the native listener, the load harness, curl):
//!   allowed, unless the server sets `--require-origin`;
//! - everything else, `null` included, is refused with 403.

use axum::http::HeaderValue;

/// The upgrade was refused because of its `Origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("this origin may not open streams on this server")]
    NotAllowed,
    #[error("this server only accepts connections that carry an Origin header")]
    Missing,
}

/// The origin policy of a server.
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    /// Normalised `scheme://host[:port]` entries.
    allowed: Vec<String>,
    any: bool,
    require: bool,
}

impl OriginPolicy {
    /// `allowed`: origins as `scheme://host[:port]` (case and a trailing `/` do not matter), or
    /// `*` for any. `require`: refuse upgrades without an `Origin` header.
    pub fn new(allowed: &[String], require: bool) -> Self {
        let allowed: Vec<String> = allowed
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        Self {
            any: allowed.iter().any(|o| o == "*"),
            allowed,
            require,
        }
    }

    /// Decides on an upgrade with these `Origin` and `Host` headers.
    ///
    /// # Errors
    /// [`OriginError`] when the origin is foreign and not listed, or missing but required.
    pub fn check(
        &self,
        origin: Option<&HeaderValue>,
        host: Option<&HeaderValue>,
    ) -> Result<(), OriginError> {
        let Some(origin) = origin else {
            return if self.require {
                Err(OriginError::Missing)
            } else {
                Ok(())
            };
        };
        let origin = origin
            .to_str()
            .map_err(|_| OriginError::NotAllowed)?
            .trim()
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if self.any || self.allowed.contains(&origin) {
            return Ok(());
        }
        let origin_host = origin
            .split_once("://")
            .map(|(_, host)| host)
            .filter(|host| !host.is_empty() && !host.contains('/'));
        let same_origin = match (origin_host, host.and_then(|h| h.to_str().ok())) {
            (Some(origin_host), Some(host)) => origin_host.eq_ignore_ascii_case(host.trim()),
            _ => false,
        };
        if same_origin {
            Ok(())
        } else {
            Err(OriginError::NotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    fn check(policy: &OriginPolicy, origin: Option<&str>, host: &str) -> Result<(), OriginError> {
        policy.check(origin.map(header).as_ref(), Some(&header(host)))
    }

    #[test]
    fn same_origin_and_listed_origins_pass_others_do_not() {
        let policy = OriginPolicy::new(&["https://Radio.example/".to_string()], false);
        let host = "127.0.0.1:8080";
        assert_eq!(check(&policy, Some("http://127.0.0.1:8080"), host), Ok(()));
        assert_eq!(check(&policy, Some("https://radio.example"), host), Ok(()));
        assert_eq!(check(&policy, None, host), Ok(()));
        for foreign in [
            "https://evil.example",
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8080.evil.example",
            "https://radio.example.evil",
            "null",
            "",
        ] {
            assert_eq!(
                check(&policy, Some(foreign), host),
                Err(OriginError::NotAllowed),
                "{foreign}"
            );
        }
    }

    #[test]
    fn a_wildcard_allows_any_and_require_refuses_a_missing_origin() {
        let any = OriginPolicy::new(&["*".to_string()], false);
        assert_eq!(check(&any, Some("https://evil.example"), "a:1"), Ok(()));
        let strict = OriginPolicy::new(&[], true);
        assert_eq!(check(&strict, None, "a:1"), Err(OriginError::Missing));
        assert_eq!(check(&strict, Some("http://a:1"), "a:1"), Ok(()));
    }
}
