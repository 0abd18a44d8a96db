//! The SMTP connection's byte handling: one input buffer from which command lines, SASL
//! lines and DATA are taken in order (so pipelined input is never lost), the pending output,
//! and timeouts and shutdown on every read and write.

use std::io;
use std::time::Duration;

use smtp_proto::request::receiver::DataReceiver;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::trace;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// Why a session ended before QUIT.
#[derive(Debug)]
pub(crate) enum End {
    Closed,
    Timeout,
    Shutdown,
    Io(io::Error),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> Self {
        End::Io(e)
    }
}

/// One input line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line with its terminator (LF, normally preceded by CR).
    Complete(Vec<u8>),
    /// Longer than allowed; its bytes were read and dropped up to the LF.
    TooLong,
}

/// A received DATA section and what was wrong with it.
#[derive(Debug, Default)]
pub(crate) struct Data {
    /// The dot-unstuffed message, ending with CRLF; empty when it was too big.
    pub message: Vec<u8>,
    /// Its size in octets, counted also when it was not kept.
    pub size: usize,
    pub too_big: bool,
    /// A line exceeded [`super::limits::MAX_TEXT_LINE`].
    pub long_line: bool,
    /// A CR or LF appeared other than as part of CRLF.
    pub bare_newline: bool,
}

/// Checks the text lines of DATA as they arrive on the wire: line length and bare CR/LF.
#[derive(Debug)]
pub(crate) struct TextCheck {
    max_line: usize,
    prev: u8,
    line_len: usize,
    pub long_line: bool,
    pub bare_newline: bool,
}

impl TextCheck {
    /// `max_line` counts the CRLF. The DATA command line's LF precedes the first byte.
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            prev: b'\n',
            line_len: 0,
            long_line: false,
            bare_newline: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.prev == b'\r' && b != b'\n' {
                self.bare_newline = true;
            }
            match b {
                b'\n' => {
                    if self.prev != b'\r' {
                        self.bare_newline = true;
                    }
                    self.line_len = 0;
                }
                b'\r' => {}
                _ => {
                    self.line_len += 1;
                    if self.line_len + 2 > self.max_line {
                        self.long_line = true;
                    }
                }
            }
            self.prev = b;
        }
    }
}

/// The stream plus buffered input and pending output.
pub(crate) struct Connection<S> {
    stream: S,
    input: Vec<u8>,
    pub out: Vec<u8>,
    timeout: Duration,
    shutdown: watch::Receiver<bool>,
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    // A closed channel means the server is gone: that is a shutdown too.
    let _ = rx.wait_for(|stop| *stop).await;
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, timeout: Duration, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            stream,
            input: Vec::new(),
            out: Vec::new(),
            timeout,
            shutdown,
        }
    }

    /// Gives the stream back for a TLS upgrade. Input the client sent after STARTTLS is
    /// dropped on purpose: RFC 3207 section 4.2 requires that nothing sent in plaintext
    /// is acted on after the upgrade (the STARTTLS command injection attack).
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// Writes the pending output, bounded by the idle timeout and shutdown.
    pub async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        trace!(bytes = out.len(), "send");
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        tokio::select! {
            r = write => r?,
            _ = tokio::time::sleep(self.timeout) => return Err(End::Timeout),
            _ = wait_shutdown(&mut self.shutdown) => return Err(End::Shutdown),
        }
        Ok(())
    }

    /// Best-effort final write (a 421 or 221), bounded so it cannot hold up a shutdown.
    pub async fn flush_goodbye(&mut self, limit: Duration) {
        let out = std::mem::take(&mut self.out);
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await?;
            self.stream.shutdown().await
        };
        let _ = tokio::time::timeout(limit, write).await;
    }

    /// Sends what is pending (replies are batched until the client must wait for them, as
    /// RFC 2920 allows), then reads more input.
    async fn fill(&mut self) -> Result<(), End> {
        self.flush().await?;
        let mut chunk = vec![0u8; READ_CHUNK];
        let n = tokio::select! {
            r = self.stream.read(&mut chunk) => r?,
            _ = tokio::time::sleep(self.timeout) => return Err(End::Timeout),
            _ = wait_shutdown(&mut self.shutdown) => return Err(End::Shutdown),
        };
        if n == 0 {
            return Err(End::Closed);
        }
        trace!(bytes = n, "received");
        self.input.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads one line of at most `max` octets (terminator included). A longer line is read
    /// to its end and dropped, so the next line is framed correctly and memory stays bounded.
    pub async fn read_line(&mut self, max: usize) -> Result<Line, End> {
        let mut discarding = false;
        loop {
            if let Some(pos) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=pos).collect();
                if discarding || line.len() > max {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Complete(line));
            }
            if self.input.len() > max {
                discarding = true;
                self.input.clear();
            }
            self.fill().await?;
        }
    }

    /// Reads a DATA section up to CRLF.CRLF, dot-unstuffed by smtp-proto's DataReceiver.
    /// The whole section is always read, also when it is refused, so that the reply comes
    /// after it and the following commands stay in step (RFC 5321 4.5.3.1.10 / 3.3).
    pub async fn read_data(&mut self, max_size: usize, max_line: usize) -> Result<Data, End> {
        let mut receiver = DataReceiver::new();
        // The receiver recognises "." only after a CRLF it has seen; the DATA line's CRLF
        // came before, so feed one to let a first line of "." (an empty message) end it.
        let mut scratch = Vec::new();
        receiver.ingest(&mut b"\r\n".iter(), &mut scratch);
        let mut check = TextCheck::new(max_line);
        let mut data = Data::default();
        let mut dropped = 0usize;
        loop {
            if !self.input.is_empty() {
                let mut rest = self.input.iter();
                let done = receiver.ingest(&mut rest, &mut data.message);
                let consumed = self.input.len() - rest.as_slice().len();
                check.feed(&self.input[..consumed]);
                self.input.drain(..consumed);
                if data.message.len() > max_size {
                    // Keep counting but stop keeping: memory stays bounded.
                    data.too_big = true;
                    dropped = dropped.saturating_add(data.message.len());
                    data.message.clear();
                }
                if done {
                    data.size = dropped.saturating_add(data.message.len());
                    data.too_big |= data.size > max_size;
                    if data.too_big {
                        data.message = Vec::new();
                    }
                    data.long_line = check.long_line;
                    data.bare_newline = check.bare_newline;
                    return Ok(data);
                }
            }
            self.fill().await?;
        }
    }

    /// Reads and drops `n` octets (a BDAT chunk that is refused).
    pub async fn discard(&mut self, mut n: usize) -> Result<(), End> {
        loop {
            let take = n.min(self.input.len());
            self.input.drain(..take);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&[u8]]) -> TextCheck {
        let mut c = TextCheck::new(1000);
        for chunk in chunks {
            c.feed(chunk);
        }
        c
    }

    #[test]
    fn crlf_text_is_clean_even_across_chunks() {
        let c = check(&[b"a: b\r", b"\n\r\nbody\r\n.\r\n"]);
        assert!(!c.bare_newline && !c.long_line);
    }

    #[test]
    fn bare_lf_and_bare_cr_are_seen() {
        assert!(check(&[b"a\nb\r\n"]).bare_newline);
        assert!(check(&[b"a\rb\r\n"]).bare_newline);
        assert!(check(&[b"\n"]).bare_newline);
    }

    #[test]
    fn line_limit_counts_the_crlf() {
        let ok = vec![b'x'; 998];
        assert!(!check(&[&ok, b"\r\n"]).long_line);
        let long = vec![b'x'; 999];
        assert!(check(&[&long, b"\r\n"]).long_line);
        // Split across chunks, the count carries over.
        assert!(check(&[&ok, b"x", b"\r\n"]).long_line);
    }

    /// A connection fed with `input`; the peer and the shutdown sender are returned so
    /// that they stay open (a read then waits instead of seeing EOF).
    async fn connection_with(
        input: &[u8],
    ) -> (
        Connection<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        watch::Sender<bool>,
    ) {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        theirs.write_all(input).await.unwrap();
        let (tx, rx) = watch::channel(false);
        (
            Connection::new(ours, Duration::from_secs(5), rx),
            theirs,
            tx,
        )
    }

    #[tokio::test]
    async fn data_is_unstuffed_and_following_commands_stay_buffered() {
        let (mut c, _peer, _stop) = connection_with(b".\r\n..dot\r\nx\r\n.\r\nQUIT\r\n").await;
        let d = c.read_data(100, 1000).await.unwrap();
        // The first line "." ends an empty message at once.
        assert_eq!(d.message, b"");
        let d = c.read_data(100, 1000).await.unwrap();
        assert_eq!(d.message, b".dot\r\nx\r\n");
        assert_eq!(d.size, 9);
        assert_eq!(
            c.read_line(512).await.unwrap(),
            Line::Complete(b"QUIT\r\n".to_vec())
        );
    }

    #[tokio::test]
    async fn too_big_data_is_read_to_its_end() {
        let mut input = vec![b'y'; 500];
        input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        let (mut c, _peer, _stop) = connection_with(&input).await;
        let d = c.read_data(100, 1000).await.unwrap();
        assert!(d.too_big && d.message.is_empty());
        assert_eq!(d.size, 502);
        assert_eq!(
            c.read_line(512).await.unwrap(),
            Line::Complete(b"NOOP\r\n".to_vec())
        );
    }

    #[tokio::test]
    async fn long_line_is_dropped_and_framing_recovers() {
        let mut input = vec![b'z'; 2000];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let (mut c, _peer, _stop) = connection_with(&input).await;
        assert_eq!(c.read_line(512).await.unwrap(), Line::TooLong);
        assert_eq!(
            c.read_line(512).await.unwrap(),
            Line::Complete(b"NOOP\r\n".to_vec())
        );
    }
}
