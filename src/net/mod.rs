//! CONTRACT STUB - the net helper replaces this file.
//! TCP connect, TLS (rustls, ring), STARTTLS upgrade, timeouts.

use std::sync::Arc;

use crate::target::{Endpoint, Timeouts, TlsOptions};

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
}

/// A TLS client configuration built once per target.
#[derive(Clone)]
pub struct TlsClient(pub Arc<rustls::ClientConfig>);

impl TlsClient {
    pub fn new(_opts: &TlsOptions) -> Result<TlsClient, NetError> {
        todo!()
    }
}

/// A plain or TLS byte stream.
pub enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

/// Connect (and for implicit TLS, handshake) within the target's timeouts.
pub async fn connect(_ep: &Endpoint, _tls: &TlsClient, _t: &Timeouts) -> Result<Stream, NetError> {
    todo!()
}
