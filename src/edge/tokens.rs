//! Listen and control tokens: static ones from config, or signed ones with an expiry.
//!
//! A signed token is `auralis1.<scope>.<expires_unix>.<signature>`, the signature being
//! HMAC-SHA256 over everything before it, keyed with the server's token secret (base64url, no
//! padding). Anyone holding the secret can issue tokens (`auralis token`) without the server
//! keeping a list; expiry bounds how long a leaked token is any use. A control token also grants
//! listening. Static tokens are compared in constant time, signatures by `hmac`'s constant-time
//! check; no token is ever logged or printed by `Debug`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix and version of signed tokens.
const PREFIX: &str = "auralis1";
/// Longer presented tokens are refused before any hashing (a signed token is about 80 bytes).
pub const MAX_TOKEN_BYTES: usize = 512;
/// Shortest secret accepted, so a signed token cannot be forged by guessing the key.
pub const MIN_SECRET_BYTES: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// Receive the stream.
    Listen,
    /// Change the music (and listen).
    Control,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Listen => "listen",
            Scope::Control => "control",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "listen" => Some(Scope::Listen),
            "control" => Some(Scope::Control),
            _ => None,
        }
    }

    /// Whether a token of this scope grants `wanted`.
    fn grants(self, wanted: Scope) -> bool {
        self == wanted || self == Scope::Control
    }
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a token is required")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

/// The token secret is too short to sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the token secret must be at least {MIN_SECRET_BYTES} bytes")]
pub struct WeakSecret;

/// Which tokens a server accepts.
#[derive(Clone, Default)]
pub struct TokenPolicy {
    /// Key for signed tokens; `None`: signed tokens are not accepted.
    secret: Option<Vec<u8>>,
    static_listen: Option<String>,
    static_control: Option<String>,
    /// Listeners must present a token.
    listen_required: bool,
}

impl std::fmt::Debug for TokenPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |present: bool| if present { "<set>" } else { "<none>" };
        f.debug_struct("TokenPolicy")
            .field("secret", &set(self.secret.is_some()))
            .field("static_listen", &set(self.static_listen.is_some()))
            .field("static_control", &set(self.static_control.is_some()))
            .field("listen_required", &self.listen_required)
            .finish()
    }
}

impl TokenPolicy {
    /// A policy from configuration; empty strings count as unset. Listening needs a token when
    /// `require_listen` is set or a static listen token is configured.
    ///
    /// # Errors
    /// [`WeakSecret`] when a secret is given but shorter than [`MIN_SECRET_BYTES`].
    pub fn new(
        secret: Option<&str>,
        static_listen: Option<&str>,
        static_control: Option<&str>,
        require_listen: bool,
    ) -> Result<Self, WeakSecret> {
        let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
        let secret = non_empty(secret).map(String::into_bytes);
        if secret.as_ref().is_some_and(|s| s.len() < MIN_SECRET_BYTES) {
            return Err(WeakSecret);
        }
        let static_listen = non_empty(static_listen);
        Ok(Self {
            listen_required: require_listen || static_listen.is_some(),
            secret,
            static_listen,
            static_control: non_empty(static_control),
        })
    }

    /// Listeners must present a listen (or control) token.
    pub fn listen_required(&self) -> bool {
        self.listen_required
    }

    /// Some control token is configured (otherwise control is for loopback clients only).
    pub fn control_configured(&self) -> bool {
        self.static_control.is_some() || self.secret.is_some()
    }

    /// Checks `presented` for `scope` at `now_unix` (seconds).
    ///
    /// # Errors
    /// [`TokenError`] saying whether the token is missing, wrong or expired.
    pub fn verify(
        &self,
        presented: Option<&str>,
        scope: Scope,
        now_unix: u64,
    ) -> Result<(), TokenError> {
        let presented = presented.ok_or(TokenError::Missing)?;
        if presented.is_empty() {
            return Err(TokenError::Missing);
        }
        if presented.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid);
        }
        let statics = match scope {
            Scope::Listen => [&self.static_listen, &self.static_control],
            Scope::Control => [&self.static_control, &None],
        };
        // Digests are compared, not the strings: `ct_eq` on slices of different lengths returns
        // early, which would tell the token's length. Every configured token is compared, so
        // timing does not tell which one matched either.
        let presented_digest = Sha256::digest(presented.as_bytes());
        let mut static_match = false;
        for expected in statics.into_iter().flatten() {
            let expected_digest = Sha256::digest(expected.as_bytes());
            static_match |= bool::from(
                expected_digest
                    .as_slice()
                    .ct_eq(presented_digest.as_slice()),
            );
        }
        if static_match {
            return Ok(());
        }
        match &self.secret {
            Some(secret) if presented.starts_with(PREFIX) => {
                verify_signed(secret, presented, scope, now_unix)
            }
            _ => Err(TokenError::Invalid),
        }
    }
}

fn verify_signed(
    secret: &[u8],
    token: &str,
    wanted: Scope,
    now_unix: u64,
) -> Result<(), TokenError> {
    let (body, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Invalid)?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| TokenError::Invalid)?;
    mac.update(body.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::Invalid)?;
    // Authentic from here on: the fields were written by whoever holds the secret.
    let mut fields = body.split('.');
    let (Some(PREFIX), Some(scope), Some(expires), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(TokenError::Invalid);
    };
    let scope = Scope::parse(scope).ok_or(TokenError::Invalid)?;
    let expires: u64 = expires.parse().map_err(|_| TokenError::Invalid)?;
    if !scope.grants(wanted) {
        return Err(TokenError::Invalid);
    }
    if now_unix >= expires {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// Issues a token of `scope` that expires at `expires_unix` (seconds).
///
/// # Errors
/// [`WeakSecret`] when `secret` is shorter than [`MIN_SECRET_BYTES`].
///
/// # Examples
/// ```
/// use auralis::edge::tokens::{issue, Scope, TokenPolicy};
///
/// let secret = "correct horse battery staple";
/// let token = issue(secret, Scope::Listen, 2_000_000_000)?;
/// let policy = TokenPolicy::new(Some(secret), None, None, true)?;
/// assert!(policy.verify(Some(&token), Scope::Listen, 1_900_000_000).is_ok());
/// assert!(policy.verify(Some(&token), Scope::Control, 1_900_000_000).is_err());
/// # Ok::<(), auralis::edge::tokens::WeakSecret>(())
/// ```
pub fn issue(secret: &str, scope: Scope, expires_unix: u64) -> Result<String, WeakSecret> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(WeakSecret);
    }
    let body = format!("{PREFIX}.{}.{expires_unix}", scope.as_str());
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| WeakSecret)?;
    mac.update(body.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{body}.{signature}"))
}

/// `url` with the value of any `token` query parameter hidden, for reports and error messages.
/// A URL that does not parse loses its whole query: it may hold a token in any shape.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match url.split_once('?') {
            Some((base, _)) => format!("{base}?<redacted>"),
            None => url.to_string(),
        };
    };
    if parsed.query().is_none() {
        return parsed.to_string();
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(key, value)| {
            let value = if key == "token" {
                "redacted".to_string()
            } else {
                value.into_owned()
            };
            (key.into_owned(), value)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef-secret";
    const NOW: u64 = 1_800_000_000;

    fn signed() -> TokenPolicy {
        TokenPolicy::new(Some(SECRET), None, None, true).unwrap()
    }

    #[test]
    fn signed_tokens_carry_scope_and_expiry() {
        let policy = signed();
        let listen = issue(SECRET, Scope::Listen, NOW + 60).unwrap();
        let control = issue(SECRET, Scope::Control, NOW + 60).unwrap();
        assert_eq!(policy.verify(Some(&listen), Scope::Listen, NOW), Ok(()));
        assert_eq!(
            policy.verify(Some(&listen), Scope::Control, NOW),
            Err(TokenError::Invalid)
        );
        assert_eq!(policy.verify(Some(&control), Scope::Listen, NOW), Ok(()));
        assert_eq!(policy.verify(Some(&control), Scope::Control, NOW), Ok(()));
        assert_eq!(
            policy.verify(Some(&listen), Scope::Listen, NOW + 60),
            Err(TokenError::Expired)
        );
        assert_eq!(
            policy.verify(None, Scope::Listen, NOW),
            Err(TokenError::Missing)
        );
    }

    #[test]
    fn tampered_or_foreign_tokens_are_invalid() {
        let policy = signed();
        let token = issue(SECRET, Scope::Listen, NOW + 60).unwrap();
        // A later expiry or another scope with the old signature.
        let (_, signature) = token.rsplit_once('.').unwrap();
        for forged in [
            format!("auralis1.listen.{}.{signature}", NOW + 999_999),
            format!("auralis1.control.{}.{signature}", NOW + 60),
            issue("another-secret-of-16+", Scope::Listen, NOW + 60).unwrap(),
            token.replace('.', ""),
            format!("{token}x"),
            "auralis1...".to_string(),
            "auralis1".to_string(),
            "x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(
                policy.verify(Some(&forged), Scope::Listen, NOW),
                Err(TokenError::Invalid),
                "{forged}"
            );
        }
    }

    #[test]
    fn static_tokens_match_exactly() {
        let policy = TokenPolicy::new(None, Some("l1sten"), Some("c0ntrol"), false).unwrap();
        assert!(policy.listen_required());
        assert!(policy.control_configured());
        assert_eq!(policy.verify(Some("l1sten"), Scope::Listen, NOW), Ok(()));
        assert_eq!(policy.verify(Some("c0ntrol"), Scope::Listen, NOW), Ok(()));
        assert_eq!(policy.verify(Some("c0ntrol"), Scope::Control, NOW), Ok(()));
        for wrong in ["l1sten ", "L1sten", "l1ste", ""] {
            assert!(policy.verify(Some(wrong), Scope::Listen, NOW).is_err());
        }
        assert_eq!(
            policy.verify(Some("l1sten"), Scope::Control, NOW),
            Err(TokenError::Invalid)
        );
        // Without a secret, a signed-looking token is just a wrong static token.
        let token = issue(SECRET, Scope::Control, NOW + 60).unwrap();
        assert_eq!(
            policy.verify(Some(&token), Scope::Control, NOW),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn urls_lose_their_tokens_in_reports() {
        assert_eq!(
            redact_url("ws://h:1/ws?station=a&token=s3cret&x=1"),
            "ws://h:1/ws?station=a&token=redacted&x=1"
        );
        assert_eq!(redact_url("ws://h:1/ws"), "ws://h:1/ws");
        // Percent-encoded keys are still found; an unparseable URL loses its whole query.
        assert_eq!(
            redact_url("ws://h:1/ws?%74oken=s3cret"),
            "ws://h:1/ws?token=redacted"
        );
        assert_eq!(redact_url("//h:1/ws?token=s3cret"), "//h:1/ws?<redacted>");
    }

    #[test]
    fn weak_secrets_are_refused_and_debug_hides_everything() {
        assert_eq!(
            TokenPolicy::new(Some("short"), None, None, false).unwrap_err(),
            WeakSecret
        );
        assert!(issue("short", Scope::Listen, NOW).is_err());
        let policy =
            TokenPolicy::new(Some(SECRET), Some("l1sten"), Some("c0ntrol"), false).unwrap();
        let shown = format!("{policy:?}");
        for secret in [SECRET, "l1sten", "c0ntrol"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let open = TokenPolicy::new(Some(""), Some(""), None, false).unwrap();
        assert!(!open.listen_required() && !open.control_configured());
    }
}
