//! Client side of the line-based protocols, POP3 and SMTP: send lines, read whole replies
//! with a deadline.
//!
//! POP3 replies are framed by `mailtape_proto`'s `ReplyFramer`, which must be told the shape
//! of each reply (single line, multi-line, SASL) from the command that causes it. SMTP replies
//! frame themselves: lines `ddd-text` continue a reply, `ddd text` ends it (RFC 5321 4.2).
//! Each SMTP line is cut by our line framer (the checks need every line's bytes and ending as
//! received) and read by smtp-proto's reply parser, which gives the code and whether the line
//! ends the reply. A line that is no reply line at all also ends the reply, so garbage cannot
//! stall framing.

use std::time::Duration;

use mailtape_proto::pop3::{
    Expect, FrameError, Framed, FramedLine, LineEnding as Pop3Ending, LineFramer, ReplyFramer,
    ReplyStatus,
};

use crate::net::{NetError, Read, Stream, TlsClient};
use crate::proto::imap::LineEnding;

/// How much is read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// Longest SMTP reply line accepted: RFC 5321 4.5.3.1.5 sets 512 octets; a generous multiple
/// still bounds memory against a server that never sends LF.
const MAX_SMTP_LINE: usize = 64 * 1024;

/// What a reply says, for the engine's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// POP3 `+OK`, SMTP 2xx.
    Positive,
    /// SMTP 3xx (354 for DATA, 334 for AUTH) or a POP3 `+ ` continuation.
    Intermediate,
    /// POP3 `-ERR`, SMTP 4xx/5xx.
    Negative,
    /// Not a reply line.
    Malformed,
}

/// One whole reply.
#[derive(Debug, Clone)]
pub struct LineReply {
    /// Every octet as received.
    pub raw: Vec<u8>,
    /// Each line of the reply as scripts match it, without its line ending: for POP3 the
    /// status line, the dot-unstuffed body lines and the terminating `.`; for SMTP every
    /// line of a multi-line reply.
    pub lines: Vec<Vec<u8>>,
    pub line_ending: LineEnding,
    pub kind: ReplyKind,
    /// SMTP reply code (0 for POP3 or a malformed line).
    pub code: u16,
}

enum Framing {
    Pop3(ReplyFramer),
    Smtp {
        lines: LineFramer,
        partial: Vec<Vec<u8>>,
        raw: Vec<u8>,
        lf: bool,
    },
}

/// A POP3 or SMTP client connection.
pub struct LineConnection {
    stream: Option<Stream>,
    framing: Framing,
    buf: Box<[u8]>,
    tls_timeout: Duration,
}

impl LineConnection {
    /// A POP3 connection; the greeting is already expected. `max_reply` caps one reply.
    pub fn pop3(stream: Stream, max_reply: usize, tls_timeout: Duration) -> LineConnection {
        let mut f = ReplyFramer::new(max_reply);
        f.expect(Expect::SingleLine);
        LineConnection::with(stream, Framing::Pop3(f), tls_timeout)
    }

    pub fn smtp(stream: Stream, tls_timeout: Duration) -> LineConnection {
        let framing = Framing::Smtp {
            lines: LineFramer::new(MAX_SMTP_LINE),
            partial: Vec::new(),
            raw: Vec::new(),
            lf: false,
        };
        LineConnection::with(stream, framing, tls_timeout)
    }

    fn with(stream: Stream, framing: Framing, tls_timeout: Duration) -> LineConnection {
        LineConnection {
            stream: Some(stream),
            framing,
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            tls_timeout,
        }
    }

    /// POP3 only: the shape of the reply to the command about to be sent.
    pub fn expect(&mut self, shape: Expect) {
        if let Framing::Pop3(f) = &mut self.framing {
            f.expect(shape);
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        self.stream.as_mut().ok_or_else(lost)?.send_all(bytes).await
    }

    /// The next whole reply, or `NetError::Timeout` after `wait` (partial data is kept).
    pub async fn read_reply(&mut self, wait: Duration) -> Result<LineReply, NetError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(r) = self.poll()? {
                return Ok(r);
            }
            let stream = self.stream.as_mut().ok_or_else(lost)?;
            let n = match stream
                .read_by(&mut self.buf, deadline, wait, "a server reply")
                .await?
            {
                Read::Data(n) => n,
                Read::Reset(e) => return Err(NetError::Closed(format!(" (reset: {e})"))),
                Read::Eof => {
                    let held = self.buffered_len();
                    let cut = if held > 0 {
                        format!(" in the middle of a reply ({held} bytes received)")
                    } else {
                        String::new()
                    };
                    return Err(NetError::Closed(cut));
                }
            };
            let chunk = &self.buf[..n];
            match &mut self.framing {
                Framing::Pop3(f) => f.feed(chunk),
                Framing::Smtp { lines, .. } => lines.feed(chunk),
            }
        }
    }

    fn buffered_len(&self) -> usize {
        match &self.framing {
            Framing::Pop3(f) => f.pending().len(),
            Framing::Smtp { lines, raw, .. } => lines.buffered().len() + raw.len(),
        }
    }

    fn poll(&mut self) -> Result<Option<LineReply>, NetError> {
        match &mut self.framing {
            Framing::Pop3(f) => match f.next_reply() {
                Ok(Framed::Incomplete) => Ok(None),
                Ok(Framed::Reply(r)) => {
                    let mut lines = vec![strip_ending(r.status_line()).to_vec()];
                    if let Some(body) = &r.lines {
                        lines.extend(body.iter().cloned());
                        lines.push(b".".to_vec());
                    }
                    let kind = match r.status {
                        ReplyStatus::Ok => ReplyKind::Positive,
                        ReplyStatus::Err => ReplyKind::Negative,
                        ReplyStatus::Continuation => ReplyKind::Intermediate,
                        _ => ReplyKind::Malformed,
                    };
                    let line_ending = if r.endings.contains(&Pop3Ending::Lf) {
                        LineEnding::Lf
                    } else {
                        LineEnding::Crlf
                    };
                    Ok(Some(LineReply {
                        raw: r.raw,
                        lines,
                        line_ending,
                        kind,
                        code: 0,
                    }))
                }
                Err(FrameError::TooLarge { limit }) => Err(NetError::TooLarge {
                    limit,
                    announced: limit as u64,
                }),
                Err(_) => Err(NetError::Closed(" (the reply could not be framed)".into())),
            },
            Framing::Smtp {
                lines,
                partial,
                raw,
                lf,
            } => {
                while let Some(line) = lines.next_line() {
                    let (bytes, ending) = match line {
                        FramedLine::Line { bytes, ending } => (bytes, ending),
                        FramedLine::TooLong { .. } => {
                            return Err(NetError::LineTooLong {
                                limit: MAX_SMTP_LINE,
                            });
                        }
                    };
                    raw.extend_from_slice(&bytes);
                    if ending == Pop3Ending::Lf {
                        raw.push(b'\n');
                        *lf = true;
                    } else {
                        raw.extend_from_slice(b"\r\n");
                    }
                    let (code, last) = smtp_line(&bytes);
                    partial.push(bytes);
                    if last {
                        let kind = match code / 100 {
                            2 => ReplyKind::Positive,
                            3 => ReplyKind::Intermediate,
                            4 | 5 => ReplyKind::Negative,
                            _ => ReplyKind::Malformed,
                        };
                        let reply = LineReply {
                            raw: std::mem::take(raw),
                            lines: std::mem::take(partial),
                            line_ending: if std::mem::take(lf) {
                                LineEnding::Lf
                            } else {
                                LineEnding::Crlf
                            },
                            kind,
                            code,
                        };
                        return Ok(Some(reply));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Upgrade after `+OK` to STLS (RFC 2595 4) or `220` to STARTTLS (RFC 3207 4). Bytes
    /// already received after that reply are refused: they could have been injected.
    pub async fn starttls(&mut self, tls: &TlsClient, server_name: &str) -> Result<(), NetError> {
        let held = self.buffered_len();
        if held > 0 {
            return Err(NetError::StartTlsInjection(held));
        }
        let stream = self.stream.take().ok_or_else(lost)?;
        self.stream = Some(stream.upgrade(tls, server_name, self.tls_timeout).await?);
        Ok(())
    }
}

fn lost() -> NetError {
    NetError::Closed(" (the connection was lost in a failed TLS handshake)".into())
}

fn strip_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The code of an SMTP reply line and whether it ends the reply (RFC 5321 4.2: `ddd-` goes
/// on, `ddd ` or a bare `ddd` ends it), read by smtp-proto. A line that is not a reply line
/// ends the reply with code 0. Only the line's head goes to the parser: the code, separator
/// and enhanced code are in its first octets, and the text (kept whole in the reply's lines)
/// would only count against the parser's own length limit.
fn smtp_line(line: &[u8]) -> (u16, bool) {
    let mut head = line[..line.len().min(HEAD)].to_vec();
    head.extend_from_slice(b"\r\n");
    let mut receiver = smtp_proto::response::parser::ResponseReceiver::default();
    match receiver.parse(&mut head.iter()) {
        Ok(reply) => (reply.code, true),
        Err(smtp_proto::Error::NeedsMoreData { .. }) => {
            // A `ddd-` line: the parser waits for the rest; the code is its first digits.
            match line.get(..3) {
                Some(d) if d.iter().all(u8::is_ascii_digit) => (
                    d.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')),
                    false,
                ),
                _ => (0, true),
            }
        }
        Err(_) => (0, true),
    }
}

/// Octets of an SMTP reply line given to the parser: code, separator, enhanced code and more.
const HEAD: usize = 32;

#[cfg(test)]
mod tests {
    use super::smtp_line;

    #[test]
    fn smtp_reply_lines_continue_on_dash_only() {
        assert_eq!(smtp_line(b"250-PIPELINING"), (250, false));
        assert_eq!(smtp_line(b"250 HELP"), (250, true));
        assert_eq!(smtp_line(b"354"), (354, true));
        assert_eq!(smtp_line(b"garbage"), (0, true));
        assert_eq!(smtp_line(b"25"), (0, true));
        assert_eq!(smtp_line(b"250 2.1.5 Ok"), (250, true));
        assert_eq!(smtp_line(b"2x0 oops"), (0, true));
        assert_eq!(smtp_line(b"250_PIPELINING"), (0, true));
        let long = [b"250-".as_slice(), &[b'x'; 9000]].concat();
        assert_eq!(smtp_line(&long), (250, false));
    }
}
