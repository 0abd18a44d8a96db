//! CONTRACT STUB - the net helper replaces this file.
//! Framing of an IMAP server's byte stream into whole messages (line + literals), parsed by
//! imap-codec where possible; a message that does not parse is kept as raw bytes.

use std::time::Duration;

use imap_types::response::{Greeting, Response};

use crate::net::{NetError, Stream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LineEnding {
    Crlf,
    /// A bare LF (RFC 3501 2.2 requires CRLF).
    Lf,
}

#[derive(Debug, Clone)]
pub enum Parsed {
    Greeting(Greeting<'static>),
    Response(Response<'static>),
    /// imap-codec could not parse it; the reason.
    Unparsed(String),
}

/// One whole server message.
#[derive(Debug, Clone)]
pub struct ServerFrame {
    /// Exactly the bytes received, line(s) and literal data, line endings included.
    pub raw: Vec<u8>,
    /// The worst line ending seen in the message.
    pub line_ending: LineEnding,
    pub parsed: Parsed,
}

/// An IMAP client connection: sends bytes, reads whole server messages with a deadline.
pub struct ImapConnection {}

impl ImapConnection {
    /// Wrap a connected stream. The first frame read is decoded as a greeting.
    pub fn new(_stream: Stream, _max_message: usize) -> Self {
        todo!()
    }
    pub async fn send(&mut self, _bytes: &[u8]) -> Result<(), NetError> {
        todo!()
    }
    /// The next whole server message, or `NetError::Timeout` after `wait`.
    pub async fn read_frame(&mut self, _wait: Duration) -> Result<ServerFrame, NetError> {
        todo!()
    }
    /// Upgrade after a successful STARTTLS (RFC 3501 6.2.1); buffered bytes are an error.
    pub async fn starttls(
        &mut self,
        _tls: &crate::net::TlsClient,
        _server_name: &str,
    ) -> Result<(), NetError> {
        todo!()
    }
}
