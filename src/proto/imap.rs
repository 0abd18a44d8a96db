//! Framing of an IMAP server's byte stream into whole messages (line + literals), parsed by
//! imap-codec where possible; a message that does not parse is kept as raw bytes.
//!
//! [`frame::Framer`] does the sans-I/O framing; [`ImapConnection`] drives it from a [`Stream`]
//! with a deadline per read and decodes each message: the first as a greeting, later ones as
//! responses. A message imap-codec rejects becomes [`Parsed::Unparsed`] and the session goes
//! on: framing does not depend on parsing.

pub mod frame;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use imap_codec::decode::{Decoder, GreetingDecodeError, ResponseDecodeError};
use imap_codec::{GreetingCodec, ResponseCodec};
use imap_types::IntoStatic;
use imap_types::response::{Greeting, Response};
use tokio::io::AsyncWriteExt;

use crate::net::{NetError, Read, Stream, TlsClient};
use frame::{FrameError, Framer, RawMessage};

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

/// How much is read from the socket at once; also the most unframed data ever held.
const READ_CHUNK: usize = 16 * 1024;

/// STARTTLS handshake timeout unless [`ImapConnection::with_tls_timeout`] sets one.
const DEFAULT_TLS_TIMEOUT: Duration = Duration::from_secs(10);

/// An IMAP client connection: sends bytes, reads whole server messages with a deadline.
///
/// `read_frame` is cancel-safe: bytes received before a timeout or a dropped call stay
/// buffered for the next call.
pub struct ImapConnection {
    /// `None` only after a failed STARTTLS handshake consumed the socket.
    stream: Option<Stream>,
    framer: Framer,
    /// The greeting has been read; later messages are responses.
    greeted: bool,
    tls_timeout: Duration,
    buf: Box<[u8]>,
}

impl ImapConnection {
    /// Wrap a connected stream. The first frame read is decoded as a greeting.
    /// `max_message` caps one message (line + literals) in bytes.
    pub fn new(stream: Stream, max_message: usize) -> Self {
        ImapConnection {
            stream: Some(stream),
            framer: Framer::new(max_message),
            greeted: false,
            tls_timeout: DEFAULT_TLS_TIMEOUT,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// Sets the STARTTLS handshake timeout (the target's `timeouts.tls`).
    pub fn with_tls_timeout(mut self, wait: Duration) -> Self {
        self.tls_timeout = wait;
        self
    }

    fn stream(&mut self) -> Result<&mut Stream, NetError> {
        self.stream.as_mut().ok_or_else(lost_in_handshake)
    }

    /// Writes all bytes and flushes.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        self.stream()?.send_all(bytes).await
    }

    /// The next whole server message, or `NetError::Timeout` after `wait`.
    ///
    /// # Errors
    /// - [`NetError::Timeout`]: no whole message within `wait`; partial data is kept.
    /// - [`NetError::Closed`]: end of stream; the text says if it cut a message short.
    /// - [`NetError::TooLarge`] / [`NetError::LineTooLong`]: the message exceeds the limit;
    ///   the stream cannot be framed further, so close the connection.
    pub async fn read_frame(&mut self, wait: Duration) -> Result<ServerFrame, NetError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(raw) = self.framer.poll()? {
                return Ok(self.decode(raw));
            }
            // Split borrows: the buffer and the stream are separate fields.
            let Some(stream) = self.stream.as_mut() else {
                return Err(lost_in_handshake());
            };
            let n = match stream
                .read_by(&mut self.buf, deadline, wait, "a server response")
                .await?
            {
                Read::Data(n) => n,
                Read::Eof => return Err(NetError::Closed(self.framer.eof_description())),
                Read::Reset(e) => {
                    let cut = self.framer.eof_description();
                    return Err(NetError::Closed(format!(" (reset: {e}){cut}")));
                }
            };
            self.framer.push(&self.buf[..n]);
        }
    }

    fn decode(&mut self, raw: RawMessage) -> ServerFrame {
        let parsed = if self.greeted {
            decode_response(&raw.bytes)
        } else {
            self.greeted = true;
            decode_greeting(&raw.bytes)
        };
        ServerFrame {
            raw: raw.bytes,
            line_ending: raw.line_ending,
            parsed,
        }
    }

    /// Whether received bytes are waiting that no `read_frame` has returned yet (a whole
    /// message or part of one). Bytes still in the socket are not seen here; to take what
    /// has already arrived without waiting, call `read_frame(Duration::ZERO)`.
    pub fn has_buffered(&mut self) -> bool {
        self.framer.has_buffered()
    }

    /// Upgrade after a successful STARTTLS (RFC 3501 6.2.1); buffered bytes are an error.
    ///
    /// `server_name` is the name (or IP address) the certificate must match. Bytes the server
    /// sent after its tagged OK and before the handshake are refused with
    /// [`NetError::StartTlsInjection`] (they could have been injected in plain text).
    pub async fn starttls(&mut self, tls: &TlsClient, server_name: &str) -> Result<(), NetError> {
        if self.framer.has_buffered() {
            return Err(NetError::StartTlsInjection(self.framer.buffered_len()));
        }
        let stream = self.stream.take().ok_or_else(lost_in_handshake)?;
        self.stream = Some(stream.upgrade(tls, server_name, self.tls_timeout).await?);
        Ok(())
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.as_ref().and_then(|s| s.local_addr().ok())
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.as_ref().and_then(|s| s.peer_addr().ok())
    }

    pub fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(Stream::is_tls)
    }

    /// Negotiated TLS version and cipher suite, for reports.
    pub fn tls_info(&self) -> Option<String> {
        self.stream.as_ref().and_then(Stream::tls_info)
    }

    /// Closes the write side (after LOGOUT, or to end a session early).
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        if let Some(s) = self.stream.as_mut() {
            s.shutdown().await?;
        }
        Ok(())
    }
}

fn lost_in_handshake() -> NetError {
    NetError::Closed(" (the connection was lost in a failed TLS handshake)".into())
}

impl From<FrameError> for NetError {
    fn from(e: FrameError) -> NetError {
        match e {
            FrameError::TooLarge { limit, announced } => NetError::TooLarge { limit, announced },
            FrameError::LineTooLong { limit } => NetError::LineTooLong { limit },
        }
    }
}

/// Decodes a whole message as a greeting (RFC 3501 7.1: `* OK`, `* PREAUTH` or `* BYE`).
pub fn decode_greeting(bytes: &[u8]) -> Parsed {
    match GreetingCodec::default().decode(bytes) {
        Ok(([], greeting)) => Parsed::Greeting(greeting.into_static()),
        Ok((rest, _)) => Parsed::Unparsed(trailing(rest.len(), "greeting")),
        Err(GreetingDecodeError::Incomplete) => {
            Parsed::Unparsed("not a valid greeting (imap-codec expected more input)".into())
        }
        Err(GreetingDecodeError::Failed) => {
            Parsed::Unparsed("not a valid greeting (imap-codec could not parse it)".into())
        }
    }
}

/// Decodes a whole message as a server response (status, data or continuation request).
pub fn decode_response(bytes: &[u8]) -> Parsed {
    match ResponseCodec::default().decode(bytes) {
        Ok(([], response)) => Parsed::Response(response.into_static()),
        Ok((rest, _)) => Parsed::Unparsed(trailing(rest.len(), "response")),
        Err(ResponseDecodeError::Incomplete) => {
            Parsed::Unparsed("not a valid response (imap-codec expected more input)".into())
        }
        Err(ResponseDecodeError::LiteralFound { length }) => Parsed::Unparsed(format!(
            "not a valid response (imap-codec expected a {length}-byte literal)"
        )),
        Err(ResponseDecodeError::Failed) => {
            Parsed::Unparsed("not a valid response (imap-codec could not parse it)".into())
        }
    }
}

fn trailing(n: usize, what: &str) -> String {
    format!("{n} unexpected byte(s) after a valid {what}")
}
