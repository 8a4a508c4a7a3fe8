//! TLS on the client listener: the certificate and key revcache presents,
//! ALPN h2 and HTTP/1.1, and re-reading them on SIGHUP. A reload swaps the
//! configuration new handshakes use; connections already open keep theirs.
//! A reload that fails keeps the previous certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The listener's certificate cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenerTlsError {
    #[error("{key}: cannot read {path}: {reason}")]
    Read {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("tls.cert_file: {0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("tls.key_file: {0}")]
    Rejected(String),
}

/// Marks a request that came over the TLS listener (a request extension).
#[derive(Clone, Copy, Debug)]
pub struct ClientTls;

pub struct ListenerTls {
    /// The files and the configuration read from them, swapped together.
    current: RwLock<Loaded>,
}

struct Loaded {
    cert_file: PathBuf,
    key_file: PathBuf,
    config: Arc<ServerConfig>,
}

impl ListenerTls {
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Self>, ListenerTlsError> {
        Ok(Arc::new(ListenerTls {
            current: RwLock::new(Loaded::read(cert_file, key_file)?),
        }))
    }

    /// Reads the certificate and key again; new handshakes use them.
    pub fn reload(&self) -> Result<(), ListenerTlsError> {
        let (cert_file, key_file) = {
            let current = self.current.read();
            (current.cert_file.clone(), current.key_file.clone())
        };
        self.reload_from(&cert_file, &key_file)
    }

    /// Reads a certificate and key, possibly from other files than before;
    /// new handshakes use them. A failure keeps the previous ones.
    pub fn reload_from(&self, cert_file: &Path, key_file: &Path) -> Result<(), ListenerTlsError> {
        let loaded = Loaded::read(cert_file, key_file)?;
        *self.current.write() = loaded;
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        let current = self.current.read();
        TlsAcceptor::from(current.config.clone())
    }
}

impl Loaded {
    fn read(cert_file: &Path, key_file: &Path) -> Result<Self, ListenerTlsError> {
        Ok(Loaded {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            config: Arc::new(server_config(cert_file, key_file)?),
        })
    }
}

fn server_config(cert_file: &Path, key_file: &Path) -> Result<ServerConfig, ListenerTlsError> {
    let read = |key: &'static str, path: &Path, reason: String| ListenerTlsError::Read {
        key,
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| read("tls.cert_file", cert_file, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read("tls.cert_file", cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(ListenerTlsError::NoCertificate(cert_file.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| read("tls.key_file", key_file, e.to_string()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ListenerTlsError::Rejected(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| ListenerTlsError::Rejected(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
