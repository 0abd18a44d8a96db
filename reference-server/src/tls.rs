//! TLS set-up: a rustls server configuration (ring provider only) from a generated
//! self-signed certificate or from PEM files.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::ServerError;

/// Where the server certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TlsSource {
    /// A fresh self-signed certificate for `localhost` and `127.0.0.1` (rcgen).
    #[default]
    Generate,
    /// A PEM certificate chain and a PEM private key.
    Files { cert: PathBuf, key: PathBuf },
}

/// The ready TLS configuration plus the leaf certificate clients should trust.
pub struct TlsSetup {
    pub config: Arc<ServerConfig>,
    pub certificate: CertificateDer<'static>,
}

pub fn build(source: &TlsSource) -> Result<TlsSetup, ServerError> {
    let (chain, key) = match source {
        TlsSource::Generate => {
            let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            let certified = rcgen::generate_simple_self_signed(names)
                .map_err(|e| ServerError::Certificate(e.to_string()))?;
            let cert = certified.cert.der().clone();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                certified.signing_key.serialize_der(),
            ));
            (vec![cert], key)
        }
        TlsSource::Files { cert, key } => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| ServerError::Certificate(format!("{}: {e}", cert.display())))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ServerError::Certificate(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| ServerError::Certificate(format!("{}: {e}", key.display())))?;
            (chain, key)
        }
    };
    let certificate = chain
        .first()
        .cloned()
        .ok_or_else(|| ServerError::Certificate("certificate file holds no certificate".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ServerError::Tls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(ServerError::Tls)?;
    Ok(TlsSetup {
        config: Arc::new(config),
        certificate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn temp_path(name: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("refserver-tls-{}-{n}-{name}", std::process::id()))
    }

    #[test]
    fn loads_pem_files() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = temp_path("cert.pem");
        let key = temp_path("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        let setup = build(&TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap();
        assert_eq!(setup.certificate.as_ref(), certified.cert.der().as_ref());
        let _ = std::fs::remove_file(cert);
        let _ = std::fs::remove_file(key);
    }

    #[test]
    fn missing_files_are_an_error() {
        let missing = TlsSource::Files {
            cert: temp_path("nope.pem"),
            key: temp_path("nokey.pem"),
        };
        assert!(matches!(build(&missing), Err(ServerError::Certificate(_))));
    }

    #[test]
    fn generated_certificate_is_usable() {
        let setup = build(&TlsSource::Generate).unwrap();
        assert!(!setup.certificate.is_empty());
    }
}
