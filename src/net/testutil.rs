//! Test support: a self-signed certificate for 127.0.0.1 (rcgen) and small loopback servers.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::target::TlsOptions;

/// A certificate for `127.0.0.1` / `localhost` and the matching rustls server config.
pub(crate) struct TestCert {
    pub der: CertificateDer<'static>,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

pub(crate) fn test_cert() -> TestCert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("rcgen certificate");
    let der = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server certificate");
    TestCert {
        der,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    }
}

/// TLS options trusting exactly this certificate (besides the bundled roots).
pub(crate) fn tls_options(cert: &TestCert) -> TlsOptions {
    TlsOptions {
        extra_roots: vec![cert.der.clone()],
        ..TlsOptions::default()
    }
}

/// A one-connection loopback server, aborted when dropped.
pub(crate) struct TestServer {
    pub port: u16,
    pub cert: TestCert,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Accepts one TLS connection and echoes what it reads.
    pub async fn tls_echo() -> TestServer {
        let cert = test_cert();
        let acceptor = cert.acceptor.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = [0u8; 1024];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let _ = tls.flush().await;
            }
        });
        TestServer { port, cert, task }
    }

    /// Runs `script` on the first accepted plain TCP connection.
    pub async fn plain<F, Fut>(script: F) -> TestServer
    where
        F: FnOnce(tokio::net::TcpStream, tokio_rustls::TlsAcceptor) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let cert = test_cert();
        let acceptor = cert.acceptor.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            if let Ok((tcp, _)) = listener.accept().await {
                script(tcp, acceptor).await;
            }
        });
        TestServer { port, cert, task }
    }
}
