//! TLS to `https://` upstreams: the rustls client configuration of a route
//! (system trust store, or the route's own CA bundle; an optional client
//! certificate), and what a failed handshake means in an operator's words.
//!
//! Verification cannot be turned off: there is no setting for it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};

use crate::settings::UpstreamTls;

/// A route's TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    #[error("{key}: cannot read {path}: {reason}")]
    Read {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{key}: {path} holds no {what}")]
    Empty {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("tls.client_cert and tls.client_key must be given together")]
    HalfClientAuth,
    #[error("{key}: {reason}")]
    Rejected { key: &'static str, reason: String },
    #[error("no trusted certificates: the system store is empty or unreadable; set tls.ca_file")]
    NoRoots,
}

/// The client configuration for a route's upstream (ALPN is set by the
/// connector). A plain `http://` upstream without TLS settings trusts
/// nothing (it never makes a TLS connection).
pub fn client_config(tls: &UpstreamTls, https: bool) -> Result<ClientConfig, TlsConfigError> {
    let roots = match &tls.ca_file {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certs("tls.ca_file", path)? {
                roots.add(cert).map_err(|e| TlsConfigError::Rejected {
                    key: "tls.ca_file",
                    reason: format!("{}: {e}", path.display()),
                })?;
            }
            Arc::new(roots)
        }
        None if https => system_roots()?,
        None => Arc::new(RootCertStore::empty()),
    };
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Rejected {
                key: "tls",
                reason: e.to_string(),
            })?
            .with_root_certificates(roots);
    match (&tls.client_cert, &tls.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certs("tls.client_cert", cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsConfigError::Read {
                key: "tls.client_key",
                path: key.clone(),
                reason: e.to_string(),
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| TlsConfigError::Rejected {
                    key: "tls.client_key",
                    reason: e.to_string(),
                })
        }
        _ => Err(TlsConfigError::HalfClientAuth),
    }
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let read_err = |reason: String| TlsConfigError::Read {
        key,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsConfigError::Empty {
            key,
            path: path.to_owned(),
            what: "PEM certificate",
        });
    }
    Ok(certs)
}

/// The system trust store (`/etc/ssl/certs` on Debian, so an operator's
/// `update-ca-certificates` counts), read once.
fn system_roots() -> Result<Arc<RootCertStore>, TlsConfigError> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    if let Some(r) = ROOTS.get() {
        return Ok(r.clone());
    }
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsConfigError::NoRoots);
    }
    Ok(ROOTS.get_or_init(|| Arc::new(roots)).clone())
}

/// Why a handshake failed and which setting fixes it, when `error` (or
/// anything it wraps) is a TLS error.
pub fn diagnose(error: &(dyn std::error::Error + 'static)) -> Option<(String, &'static str)> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(explain(tls));
        }
        // An io::Error's source() skips the error it wraps: look inside.
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

fn explain(e: &rustls::Error) -> (String, &'static str) {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => (
                "its certificate has expired".into(),
                "the upstream's certificate (renew it)",
            ),
            C::NotValidYet | C::NotValidYetContext { .. } => (
                "its certificate is not valid yet".into(),
                "the upstream's certificate, or this machine's clock",
            ),
            C::UnknownIssuer => (
                "its certificate has an unknown issuer".into(),
                "tls.ca_file (the CA bundle that signed the upstream's certificate)",
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => (
                "its certificate does not name the upstream's host (name mismatch)".into(),
                "upstream (use a host name the certificate names)",
            ),
            other => (
                format!("its certificate was rejected: {other:?}"),
                "tls.ca_file or the upstream's certificate",
            ),
        },
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::HandshakeFailure
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied,
        ) => (
            format!(
                "the upstream refused the handshake ({e}); it may require a client certificate"
            ),
            "tls.client_cert and tls.client_key",
        ),
        other => (format!("TLS failed: {other}"), "tls"),
    }
}
