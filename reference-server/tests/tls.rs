//! TLS: implicit TLS on the imaps port and STARTTLS on the plain port, with a rustls client
//! that trusts only `Running::certificate`.

mod common;

use std::sync::Arc;

use common::{Client, has, server, tagged};
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn connector(running: &reference_server::Running) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(running.certificate.clone())
        .expect("add certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn implicit_tls_port() {
    let running = server().await;
    let tcp = TcpStream::connect(running.imaps.expect("imaps"))
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = connector(&running)
        .connect(name, tcp)
        .await
        .expect("handshake");
    let mut c = Client {
        stream: tls,
        buf: Vec::new(),
        check: true,
    };
    let greeting = c.line().await;
    assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
    assert!(!greeting.contains("STARTTLS"), "{greeting}");
    let r = c.cmd("a LOGIN alice alicepw").await;
    assert!(tagged(&r).starts_with("a OK"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn starttls_upgrades_and_drops_the_capability() {
    let running = server().await;
    let mut plain = Client::connect(&running).await;
    let r = plain.cmd("c CAPABILITY").await;
    assert!(has(&r, "STARTTLS"), "{r:?}");
    assert!(!has(&r, "LOGINDISABLED"), "{r:?}");
    let r = plain.cmd("s STARTTLS").await;
    assert!(tagged(&r).starts_with("s OK"), "{r:?}");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let tls = connector(&running)
        .connect(name, plain.stream)
        .await
        .expect("handshake");
    let mut c = Client {
        stream: tls,
        buf: Vec::new(),
        check: true,
    };
    let r = c.cmd("c2 CAPABILITY").await;
    assert!(!has(&r, "STARTTLS"), "{r:?}");
    let r = c.cmd("s2 STARTTLS").await;
    assert!(tagged(&r).starts_with("s2 BAD"), "{r:?}");
    let r = c.cmd("a AUTHENTICATE PLAIN AGFsaWNlAGFsaWNlcHc=").await;
    assert!(tagged(&r).starts_with("a OK"), "{r:?}");
    running.shutdown().await;
}
