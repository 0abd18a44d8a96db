//! `Stream`: a plain TCP or TLS byte stream behind one AsyncRead + AsyncWrite type, with the
//! STARTTLS upgrade from the first to the second - as the client (the harness towards a
//! server) or as the server (the recording proxy towards a client).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{NetError, TlsClient, tls};

/// A plain or TLS byte stream; the TLS side is either end of the handshake.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The negotiated protocol version and cipher suite (`TLSv1_3 TLS13_AES_256_GCM_SHA384`),
    /// for reports; `None` on a plain stream.
    pub fn tls_info(&self) -> Option<String> {
        let Stream::Tls(s) = self else { return None };
        let conn = s.get_ref().1;
        let version = conn
            .protocol_version()
            .map_or_else(|| "?".to_string(), |v| format!("{v:?}"));
        let suite = conn
            .negotiated_cipher_suite()
            .map_or_else(|| "?".to_string(), |s| format!("{:?}", s.suite()));
        Some(format!("{version} {suite}"))
    }

    /// Runs the TLS handshake on a plain stream (implicit TLS or after STARTTLS), within `wait`.
    /// `host` is the name the certificate must match.
    pub async fn upgrade(
        self,
        tls: &TlsClient,
        host: &str,
        wait: Duration,
    ) -> Result<Stream, NetError> {
        let Stream::Plain(tcp) = self else {
            return Err(NetError::Tls("the connection already uses TLS".into()));
        };
        let name = tls::server_name(host)?;
        let handshake = tls.connector().connect(name, tcp);
        match tokio::time::timeout(wait, handshake).await {
            Err(_) => Err(NetError::Timeout(wait, "the TLS handshake")),
            Ok(Err(e)) => Err(NetError::Tls(format!("handshake with {host} failed: {e}"))),
            Ok(Ok(s)) => Ok(Stream::Tls(Box::new(s.into()))),
        }
    }

    /// Runs the server side of a TLS handshake on a plain stream, within `wait`: the peer
    /// is a client that asked for TLS (implicit, or after its STARTTLS).
    pub async fn accept_tls(
        self,
        acceptor: &tokio_rustls::TlsAcceptor,
        wait: Duration,
    ) -> Result<Stream, NetError> {
        let Stream::Plain(tcp) = self else {
            return Err(NetError::Tls("the connection already uses TLS".into()));
        };
        match tokio::time::timeout(wait, acceptor.accept(tcp)).await {
            Err(_) => Err(NetError::Timeout(wait, "the client's TLS handshake")),
            Ok(Err(e)) => Err(NetError::Tls(format!(
                "TLS handshake with the client failed: {e}"
            ))),
            Ok(Ok(s)) => Ok(Stream::Tls(Box::new(s.into()))),
        }
    }
}

/// What one bounded read of [`Stream::read_by`] brought.
pub enum Read {
    Data(usize),
    /// End of stream (a TLS peer closing without close_notify included).
    Eof,
    /// The peer reset or aborted the connection.
    Reset(io::Error),
}

impl Stream {
    /// Writes all bytes and flushes; a peer that went away is [`NetError::Closed`].
    pub async fn send_all(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        use tokio::io::AsyncWriteExt as _;
        let written = match self.write_all(bytes).await {
            Ok(()) => self.flush().await,
            Err(e) => Err(e),
        };
        written.map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => {
                NetError::Closed(format!(" (while sending: {e})"))
            }
            _ => NetError::Io(e),
        })
    }

    /// One read into `buf` before `deadline`; past it, [`NetError::Timeout`] naming `what`
    /// and the whole `wait`. The caller's framer keeps what earlier reads brought.
    pub async fn read_by(
        &mut self,
        buf: &mut [u8],
        deadline: tokio::time::Instant,
        wait: Duration,
        what: &'static str,
    ) -> Result<Read, NetError> {
        use tokio::io::AsyncReadExt as _;
        match tokio::time::timeout_at(deadline, self.read(buf)).await {
            Err(_) => Err(NetError::Timeout(wait, what)),
            Ok(Ok(0)) => Ok(Read::Eof),
            Ok(Ok(n)) => Ok(Read::Data(n)),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Read::Eof),
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                Ok(Read::Reset(e))
            }
            Ok(Err(e)) => Err(NetError::Io(e)),
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_tls() { "Tls" } else { "Plain" };
        write!(f, "Stream::{kind}({:?})", self.peer_addr().ok())
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}
