//! The TLS client configuration: rustls with the ring provider only, trusting the bundled
//! Mozilla roots plus `--ca-file` and extra certificates, or (`--insecure`) any certificate
//! while still checking the handshake signature.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::NetError;
use crate::target::TlsOptions;

/// A TLS client configuration built once per target.
#[derive(Clone)]
pub struct TlsClient(pub Arc<rustls::ClientConfig>);

impl TlsClient {
    /// Builds the configuration. Fails if the CA file cannot be read, holds no certificate,
    /// or holds a certificate rustls rejects as a trust anchor.
    pub fn new(opts: &TlsOptions) -> Result<TlsClient, NetError> {
        // Naming the provider explicitly: with no process-wide default installed,
        // `ClientConfig::builder()` would panic.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| NetError::Tls(format!("protocol versions: {e}")))?;
        let config = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert { provider }))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(root_store(opts)?)
                .with_no_client_auth()
        };
        Ok(TlsClient(Arc::new(config)))
    }

    /// A connector for tokio-rustls.
    pub(super) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.0.clone())
    }
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

fn root_store(opts: &TlsOptions) -> Result<RootCertStore, NetError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &opts.ca_file {
        let shown = path.display();
        let iter = CertificateDer::pem_file_iter(path)
            .map_err(|e| NetError::Tls(format!("CA file {shown}: {e}")))?;
        let mut count = 0;
        for cert in iter {
            let cert = cert.map_err(|e| NetError::Tls(format!("CA file {shown}: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| NetError::Tls(format!("CA file {shown}: {e}")))?;
            count += 1;
        }
        if count == 0 {
            return Err(NetError::Tls(format!(
                "CA file {shown}: no PEM CERTIFICATE section found"
            )));
        }
    }
    for cert in &opts.extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| NetError::Tls(format!("extra trusted certificate: {e}")))?;
    }
    Ok(roots)
}

/// `--insecure`: any certificate chain is accepted, but the server must still prove it holds
/// the key of the certificate it sent, so a broken handshake is still reported.
#[derive(Debug)]
struct AcceptAnyCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The name to verify the certificate against: a DNS name or an IP address.
pub(super) fn server_name(host: &str) -> Result<ServerName<'static>, NetError> {
    ServerName::try_from(host.to_string())
        .map_err(|e| NetError::Tls(format!("`{host}` is not a valid TLS server name: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let opts = |p: &std::path::Path| TlsOptions {
            ca_file: Some(p.to_path_buf()),
            ..TlsOptions::default()
        };
        let e = TlsClient::new(&opts(&missing)).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let e = TlsClient::new(&opts(&empty)).unwrap_err().to_string();
        assert!(e.contains("no PEM CERTIFICATE"), "{e}");
    }

    #[test]
    fn ca_file_with_a_certificate_loads() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ck.cert.pem()).unwrap();
        let opts = TlsOptions {
            ca_file: Some(path),
            ..TlsOptions::default()
        };
        assert!(TlsClient::new(&opts).is_ok());
    }

    #[test]
    fn server_names() {
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("::1").is_ok());
        assert!(server_name("mail.example").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
