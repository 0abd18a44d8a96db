//! The only tokio + rustls code: TCP connect, implicit TLS, the STARTTLS upgrade, timeouts.
//!
//! - [`TlsClient`] (tls.rs): one rustls client configuration per target (ring provider).
//! - [`Stream`] (stream.rs): plain or TLS, one AsyncRead + AsyncWrite type.
//! - [`connect`]: TCP connect plus, for `imaps://` and friends, the handshake.

mod stream;
#[cfg(test)]
pub(crate) mod testutil;
mod tls;

use tokio::net::TcpStream;

pub use stream::{Read, Stream};
pub use tls::TlsClient;

use crate::target::{Endpoint, Security, Timeouts};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, &'static str),
    #[error("connection closed by the server{0}")]
    Closed(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("server message exceeds the limit of {limit} bytes (announced {announced})")]
    TooLarge { limit: usize, announced: u64 },
    /// Connecting to `addr` (`host:port`) failed; `source` says why (I/O, timeout, TLS).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: Box<NetError>,
    },
    /// A line grew past the limit without a line end.
    #[error("server line exceeds the limit of {limit} bytes without a line end")]
    LineTooLong { limit: usize },
    /// The server sent bytes after its STARTTLS OK, before the handshake (RFC 3501 6.2.1:
    /// they could be injected by an attacker and must not be used).
    #[error("the server sent {0} byte(s) after the STARTTLS response, before the TLS handshake")]
    StartTlsInjection(usize),
}

/// Connect (and for implicit TLS, handshake) within the target's timeouts.
///
/// # Errors
/// [`NetError::Connect`] naming `host:port`, wrapping [`NetError::Timeout`], [`NetError::Io`]
/// or [`NetError::Tls`].
pub async fn connect(ep: &Endpoint, tls: &TlsClient, t: &Timeouts) -> Result<Stream, NetError> {
    let wrap = |e: NetError| NetError::Connect {
        addr: ep.authority(),
        source: Box::new(e),
    };
    let tcp = match tokio::time::timeout(t.connect, TcpStream::connect((ep.host.as_str(), ep.port)))
        .await
    {
        Err(_) => return Err(wrap(NetError::Timeout(t.connect, "the TCP connection"))),
        Ok(Err(e)) => return Err(wrap(NetError::Io(e))),
        Ok(Ok(s)) => s,
    };
    // Commands are small and latency-bound; do not let Nagle hold them back.
    tcp.set_nodelay(true).map_err(|e| wrap(NetError::Io(e)))?;
    let stream = Stream::Plain(tcp);
    match ep.security {
        Security::Implicit => stream.upgrade(tls, &ep.host, t.tls).await.map_err(wrap),
        Security::Plain | Security::StartTls => Ok(stream),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::testutil::{TestServer, tls_options};
    use super::*;
    use crate::script::Protocol;
    use crate::target::TlsOptions;

    fn endpoint(security: Security, port: u16) -> Endpoint {
        Endpoint {
            protocol: Protocol::Imap,
            security,
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(5),
            tls: Duration::from_secs(5),
            read: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn implicit_tls_with_trusted_cert() {
        let server = TestServer::tls_echo().await;
        let client = TlsClient::new(&tls_options(&server.cert)).unwrap();
        let mut s = connect(
            &endpoint(Security::Implicit, server.port),
            &client,
            &quick(),
        )
        .await
        .unwrap();
        assert!(s.is_tls());
        assert!(s.tls_info().unwrap().starts_with("TLSv1_3"));
        s.write_all(b"ping\r\n").await.unwrap();
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping\r\n");
    }

    #[tokio::test]
    async fn implicit_tls_rejects_untrusted_cert() {
        let server = TestServer::tls_echo().await;
        let client = TlsClient::new(&TlsOptions::default()).unwrap();
        let e = connect(
            &endpoint(Security::Implicit, server.port),
            &client,
            &quick(),
        )
        .await
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("127.0.0.1:{}", server.port)), "{msg}");
        assert!(msg.contains("certificate"), "{msg}");
    }

    #[tokio::test]
    async fn insecure_accepts_untrusted_cert() {
        let server = TestServer::tls_echo().await;
        let opts = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        let client = TlsClient::new(&opts).unwrap();
        let mut s = connect(
            &endpoint(Security::Implicit, server.port),
            &client,
            &quick(),
        )
        .await
        .unwrap();
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"x");
    }

    #[tokio::test]
    async fn refused_connection_names_the_address() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = TlsClient::new(&TlsOptions::default()).unwrap();
        let e = connect(&endpoint(Security::Plain, port), &client, &quick())
            .await
            .unwrap_err();
        assert!(
            matches!(&e, NetError::Connect { source, .. } if matches!(**source, NetError::Io(_)))
        );
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    #[tokio::test]
    async fn tls_handshake_times_out_on_a_silent_server() {
        // A plain listener that accepts and never answers the ClientHello.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        });
        let client = TlsClient::new(&TlsOptions::default()).unwrap();
        let mut t = quick();
        t.tls = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let e = connect(&endpoint(Security::Implicit, port), &client, &t)
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&e, NetError::Connect { source, .. } if matches!(**source, NetError::Timeout(..))),
            "{e}"
        );
        hold.abort();
    }
}
