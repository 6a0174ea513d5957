//! TLS for the native clients (`auralis listen`, `auralis load`) on `wss://` and `https://`
//! URLs: rustls (no system OpenSSL to build against), trusting the system's root certificates,
//! or with `--ca FILE` only the certificates in that file (as `curl --cacert` does), for a
//! private CA in front of a LAN or a test deployment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_tungstenite::{Connector, MaybeTlsStream};

/// Why the TLS set-up could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("the CA file {0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("the CA file {path} holds a certificate rustls cannot use: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "no system root certificates were found (install the ca-certificates package, or pass \
         --ca FILE)"
    )]
    NoSystemRoots,
    #[error("--ca applies to wss:// and https:// URLs only, not {0:?}")]
    CaWithoutTls(String),
    #[error("TLS set-up: {0}")]
    Rustls(rustls::Error),
}

/// The certificates a server must chain to, shared by every connection a client makes.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    /// Trusts the system's root certificates, or with `ca` only the PEM certificates in that
    /// file.
    pub fn new(ca: Option<&Path>) -> Result<Self, TlsSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(path) => {
                let unreadable = |reason: String| TlsSetupError::CaFile {
                    path: path.to_path_buf(),
                    reason,
                };
                let certificates = CertificateDer::pem_file_iter(path)
                    .map_err(|e| unreadable(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| unreadable(e.to_string()))?;
                if certificates.is_empty() {
                    return Err(TlsSetupError::NoCertificate(path.to_path_buf()));
                }
                for certificate in certificates {
                    roots
                        .add(certificate)
                        .map_err(|e| TlsSetupError::BadCertificate {
                            path: path.to_path_buf(),
                            reason: e.to_string(),
                        })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsSetupError::NoSystemRoots);
                }
            }
        }
        // The provider is named rather than taken from the process default, so the set-up
        // does not depend on which rustls features other crates enable.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Rustls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The set-up a client needs for `url`: `None` for plain `ws://` and `http://` (where a
    /// `ca` is a mistake worth saying), this set-up for `wss://` and `https://`.
    pub fn for_url(url: &str, ca: Option<&Path>) -> Result<Option<Self>, TlsSetupError> {
        if is_tls_url(url) {
            Self::new(ca).map(Some)
        } else if ca.is_some() {
            Err(TlsSetupError::CaWithoutTls(
                crate::edge::tokens::redact_url(url),
            ))
        } else {
            Ok(None)
        }
    }

    /// The connector for tokio-tungstenite's `connect_async_tls_with_config`.
    pub fn connector(&self) -> Connector {
        Connector::Rustls(Arc::clone(&self.config))
    }

    /// Runs the TLS handshake on `stream` for `host` (a DNS name, or an IP address with or
    /// without IPv6 brackets) and verifies the server's certificate.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> std::io::Result<MaybeTlsStream<TcpStream>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is not a name a TLS certificate can be checked against"),
            )
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let tls = connector.connect(name, stream).await?;
        Ok(MaybeTlsStream::Rustls(tls))
    }
}

/// Whether `url` is one of the TLS schemes (`wss://`, `https://`).
pub fn is_tls_url(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("wss://") || lower.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_schemes_are_recognised() {
        assert!(is_tls_url("wss://example.org/ws"));
        assert!(is_tls_url("HTTPS://example.org/stations/a.opus"));
        assert!(!is_tls_url("ws://example.org/ws"));
        assert!(!is_tls_url("http://example.org/x"));
    }

    #[test]
    fn a_ca_on_a_plain_url_is_refused() {
        let error = ClientTls::for_url("ws://h/ws?token=secret", Some(Path::new("ca.pem")))
            .expect_err("--ca needs TLS");
        assert!(matches!(error, TlsSetupError::CaWithoutTls(_)));
        assert!(!error.to_string().contains("secret"), "{error}");
        assert!(ClientTls::for_url("ws://h/ws", None)
            .expect("plain needs nothing")
            .is_none());
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        assert!(matches!(
            ClientTls::new(Some(&empty)),
            Err(TlsSetupError::NoCertificate(_))
        ));
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            ClientTls::new(Some(&missing)),
            Err(TlsSetupError::CaFile { .. })
        ));
    }
}
