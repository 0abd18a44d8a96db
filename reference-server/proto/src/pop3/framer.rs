//! Framing: [`LineFramer`] cuts command lines out of a client's byte stream (server side, and
//! the client leg of a recording proxy); [`ReplyFramer`] cuts whole replies out of a server's
//! byte stream (client side), given the shape each reply is expected to have.
//!
//! Both take bytes as they arrive, in any chunking, never block and never fail on odd input:
//! a line ending in a bare LF is framed and flagged, an over-long line is framed and reported
//! (its bytes dropped so memory stays bounded), and a reply without its terminator yet is
//! [`Framed::Incomplete`].

use std::collections::VecDeque;

use super::response::ReplyStatus;
use super::response::{RespCode, parse_status_line};

/// How a line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    /// CRLF, as RFC 1939 3 requires.
    CrLf,
    /// A bare LF: tolerated when reading, flagged for the checks.
    Lf,
}

/// Splits `line_with_lf` (ending in LF) into its content and its ending.
fn split_ending(line_with_lf: &[u8]) -> (&[u8], LineEnding) {
    let line = &line_with_lf[..line_with_lf.len() - 1];
    match line.strip_suffix(b"\r") {
        Some(l) => (l, LineEnding::CrLf),
        None => (line, LineEnding::Lf),
    }
}

/// One line from [`LineFramer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramedLine {
    /// A complete line, without its terminator.
    Line { bytes: Vec<u8>, ending: LineEnding },
    /// A line longer than the limit; `len` is its full length, terminator included. Its bytes
    /// were dropped as they arrived.
    TooLong { len: usize },
}

/// Cuts lines out of a byte stream, with a cap on the length of one line.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max_line: usize,
    /// Octets of an over-long line dropped so far; `Some` while skipping to its end.
    skipping: Option<usize>,
    /// How much of `buf` is known to hold no LF (avoids rescanning on every feed).
    scanned: usize,
}

impl LineFramer {
    /// `max_line` counts the terminator, e.g. [`super::MAX_COMMAND_LINE`].
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_line,
            skipping: None,
            scanned: 0,
        }
    }

    /// Changes the cap for the lines not yet framed (e.g. a longer one for SASL responses).
    pub fn set_max_line(&mut self, max_line: usize) {
        self.max_line = max_line;
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, if one has arrived.
    pub fn next_line(&mut self) -> Option<FramedLine> {
        loop {
            let found = self.buf[self.scanned..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| self.scanned + i);
            if let Some(skipped) = self.skipping {
                return match found {
                    Some(lf) => {
                        self.buf.drain(..=lf);
                        self.scanned = 0;
                        self.skipping = None;
                        Some(FramedLine::TooLong {
                            len: skipped + lf + 1,
                        })
                    }
                    None => {
                        self.skipping = Some(skipped + self.buf.len());
                        self.buf.clear();
                        self.scanned = 0;
                        None
                    }
                };
            }
            match found {
                Some(lf) if lf < self.max_line => {
                    let raw: Vec<u8> = self.buf.drain(..=lf).collect();
                    self.scanned = 0;
                    let (line, ending) = split_ending(&raw);
                    return Some(FramedLine::Line {
                        bytes: line.to_vec(),
                        ending,
                    });
                }
                Some(lf) => {
                    self.buf.drain(..=lf);
                    self.scanned = 0;
                    return Some(FramedLine::TooLong { len: lf + 1 });
                }
                None if self.buf.len() >= self.max_line => {
                    // Over the limit with no end in sight: drop what we have, count it, and
                    // keep dropping up to the next LF.
                    self.skipping = Some(0);
                    continue;
                }
                None => {
                    self.scanned = self.buf.len();
                    return None;
                }
            }
        }
    }

    /// Octets received but not yet framed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Drops everything not yet framed (e.g. plaintext pipelined after STLS, RFC 2595 4).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.skipping = None;
    }
}

/// The shape of the next reply, known from the command that caused it
/// ([`super::Command::expect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One status line.
    SingleLine,
    /// After `+OK`, lines up to a lone `.`; after anything else, one line.
    MultiLine,
    /// During AUTH: a `+ ` continuation, `+OK` or `-ERR`, each one line. After a
    /// continuation the client sends its response line and queues another `Sasl`.
    Sasl,
}

/// One whole reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: ReplyStatus,
    /// The RFC 2449 8 response code, if the status line has a valid one.
    pub code: Option<RespCode>,
    /// The status line's text after the status and code (the continuation's payload for
    /// [`ReplyStatus::Continuation`]), decoded as lossy UTF-8.
    pub text: String,
    /// The body lines of a multi-line reply, dot-unstuffed and without terminators; `None`
    /// for a single-line reply.
    pub lines: Option<Vec<Vec<u8>>>,
    /// Every octet of the reply exactly as received.
    pub raw: Vec<u8>,
    /// The ending of each line in order: status line, body lines, terminator.
    pub endings: Vec<LineEnding>,
    /// Indexes into `lines` of body lines that arrived as `.` followed by something other than
    /// `.`: a correct server never sends one, because it stuffs every line starting with `.`
    /// (RFC 1939 3), so each marks a missed stuffing.
    pub unstuffed_dots: Vec<usize>,
    /// True when no reply was expected (nothing queued with [`ReplyFramer::expect`]); such a
    /// reply is framed as a single line.
    pub unsolicited: bool,
}

impl Reply {
    /// Whether any line of the reply ended in a bare LF.
    pub fn bare_lf(&self) -> bool {
        self.endings.contains(&LineEnding::Lf)
    }

    /// The status line exactly as received, terminator included (RFC 2449 4 caps it at
    /// [`super::MAX_RESPONSE_LINE`] octets).
    pub fn status_line(&self) -> &[u8] {
        let end = self
            .raw
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.raw.len(), |i| i + 1);
        &self.raw[..end]
    }

    /// Octets of the body as the client reconstructs it (each unstuffed line plus CRLF), to
    /// compare with the sizes of STAT and LIST (RFC 1939 5).
    pub fn body_octets(&self) -> usize {
        self.lines
            .as_ref()
            .map_or(0, |lines| lines.iter().map(|l| l.len() + 2).sum())
    }
}

/// Progress of [`ReplyFramer::next_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    Reply(Reply),
    /// More bytes are needed (e.g. a multi-line reply whose `.` has not arrived).
    Incomplete,
}

/// Why framing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The reply grew beyond the cap before it was complete. The framer has dropped it and
    /// cannot find the next reply's start reliably: end the session.
    #[error("reply exceeds {limit} octets without ending")]
    TooLarge { limit: usize },
}

/// A reply being framed: the status line is in, body lines are still arriving.
#[derive(Debug)]
struct Partial {
    reply: Reply,
    /// Where the next unread line of this reply starts in the buffer.
    pos: usize,
}

/// Frames a server's replies (client side).
#[derive(Debug)]
pub struct ReplyFramer {
    buf: Vec<u8>,
    max_reply: usize,
    queue: VecDeque<Expect>,
    partial: Option<Partial>,
    /// How far past `pos` (or the buffer start) is known to hold no LF.
    scanned: usize,
}

impl ReplyFramer {
    /// `max_reply` caps one whole reply (raw octets, all lines): a server that never sends the
    /// terminator cannot make the client buffer without bound.
    pub fn new(max_reply: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_reply,
            queue: VecDeque::new(),
            partial: None,
            scanned: 0,
        }
    }

    /// Queues the shape of the reply to a command just sent. With PIPELINING, queue one per
    /// command in sending order. The greeting is [`Expect::SingleLine`].
    pub fn expect(&mut self, shape: Expect) {
        self.queue.push_back(shape);
    }

    /// Shapes queued for replies not yet framed.
    pub fn expected(&self) -> usize {
        self.queue.len()
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Octets received but not yet part of a framed reply (e.g. after the server closed).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Drops unframed bytes and queued shapes (e.g. after STLS, RFC 2595 4).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.queue.clear();
        self.partial = None;
        self.scanned = 0;
    }

    fn find_lf(&mut self, from: usize) -> Option<usize> {
        let start = from.max(self.scanned);
        match self.buf[start..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.scanned = 0;
                Some(start + i)
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Gives up on the current reply: it is over the cap.
    fn overflow(&mut self) -> FrameError {
        self.buf.clear();
        self.partial = None;
        self.scanned = 0;
        self.queue.pop_front();
        FrameError::TooLarge {
            limit: self.max_reply,
        }
    }

    /// No complete line yet: wait for more, unless the reply is already over the cap.
    fn incomplete(&mut self) -> Result<Framed, FrameError> {
        if self.buf.len() > self.max_reply {
            return Err(self.overflow());
        }
        Ok(Framed::Incomplete)
    }

    /// The next whole reply, or [`Framed::Incomplete`].
    pub fn next_reply(&mut self) -> Result<Framed, FrameError> {
        loop {
            let Some(partial) = self.partial.as_ref() else {
                let Some(lf) = self.find_lf(0) else {
                    return self.incomplete();
                };
                if lf + 1 > self.max_reply {
                    return Err(self.overflow());
                }
                let (line, ending) = split_ending(&self.buf[..=lf]);
                let (status, code, text) = parse_status_line(line);
                let shape = self.queue.front().copied();
                let reply = Reply {
                    status,
                    code,
                    text,
                    lines: None,
                    raw: Vec::new(),
                    endings: vec![ending],
                    unstuffed_dots: Vec::new(),
                    unsolicited: shape.is_none(),
                };
                if shape == Some(Expect::MultiLine) && status == ReplyStatus::Ok {
                    self.partial = Some(Partial {
                        reply: Reply {
                            lines: Some(Vec::new()),
                            ..reply
                        },
                        pos: lf + 1,
                    });
                    continue;
                }
                return Ok(Framed::Reply(self.finish(reply, lf)));
            };
            let pos = partial.pos;
            let Some(lf) = self.find_lf(pos) else {
                return self.incomplete();
            };
            if lf + 1 > self.max_reply {
                return Err(self.overflow());
            }
            let (line, ending) = split_ending(&self.buf[pos..=lf]);
            let line = line.to_vec();
            let Some(partial) = self.partial.as_mut() else {
                continue;
            };
            partial.reply.endings.push(ending);
            partial.pos = lf + 1;
            if line == b"." {
                let reply = match self.partial.take() {
                    Some(p) => p.reply,
                    None => continue,
                };
                return Ok(Framed::Reply(self.finish(reply, lf)));
            }
            let lines = partial.reply.lines.get_or_insert_with(Vec::new);
            let unstuffed = match line.strip_prefix(b".") {
                Some(rest) => {
                    if rest.first() != Some(&b'.') {
                        partial.reply.unstuffed_dots.push(lines.len());
                    }
                    rest.to_vec()
                }
                None => line,
            };
            lines.push(unstuffed);
        }
    }

    /// Completes `reply` with the raw bytes up to and including `lf`.
    fn finish(&mut self, mut reply: Reply, lf: usize) -> Reply {
        reply.raw = self.buf.drain(..=lf).collect();
        self.scanned = 0;
        if !reply.unsolicited {
            self.queue.pop_front();
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::super::response::{SingleLine, encode_message};
    use super::*;

    fn lines(f: &mut LineFramer) -> Vec<FramedLine> {
        std::iter::from_fn(|| f.next_line()).collect()
    }

    fn line(s: &str, ending: LineEnding) -> FramedLine {
        FramedLine::Line {
            bytes: s.as_bytes().to_vec(),
            ending,
        }
    }

    #[test]
    fn line_framer_handles_any_chunking_and_bare_lf() {
        let input = b"USER alice\r\nPASS x\nSTAT\r\n";
        for split in 0..input.len() {
            let mut f = LineFramer::new(255);
            f.feed(&input[..split]);
            let mut got = lines(&mut f);
            f.feed(&input[split..]);
            got.extend(lines(&mut f));
            assert_eq!(
                got,
                vec![
                    line("USER alice", LineEnding::CrLf),
                    line("PASS x", LineEnding::Lf),
                    line("STAT", LineEnding::CrLf),
                ],
                "split at {split}"
            );
            assert!(f.buffered().is_empty());
        }
    }

    #[test]
    fn line_framer_caps_lines() {
        let mut f = LineFramer::new(10);
        // Exactly at the cap, terminator included, is fine.
        f.feed(b"12345678\r\n");
        assert_eq!(lines(&mut f), vec![line("12345678", LineEnding::CrLf)]);
        f.feed(b"123456789\r\nNOOP\r\n");
        assert_eq!(
            lines(&mut f),
            vec![
                FramedLine::TooLong { len: 11 },
                line("NOOP", LineEnding::CrLf)
            ]
        );
        // A huge line arriving in pieces is dropped as it comes, then reported once.
        for _ in 0..100 {
            f.feed(&[b'x'; 7]);
            assert_eq!(f.next_line(), None);
            assert!(f.buffered().len() < 10);
        }
        f.feed(b"\r\nQUIT\r\n");
        assert_eq!(
            lines(&mut f),
            vec![
                FramedLine::TooLong { len: 702 },
                line("QUIT", LineEnding::CrLf)
            ]
        );
    }

    #[test]
    fn line_framer_clear_drops_pipelined_bytes() {
        let mut f = LineFramer::new(255);
        f.feed(b"STLS\r\nUSER mallory\r\n");
        assert_eq!(f.next_line(), Some(line("STLS", LineEnding::CrLf)));
        f.clear();
        assert_eq!(f.next_line(), None);
    }

    fn reply(f: &mut ReplyFramer) -> Reply {
        match f.next_reply() {
            Ok(Framed::Reply(r)) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn single_line_replies() {
        let mut f = ReplyFramer::new(1 << 20);
        f.expect(Expect::SingleLine);
        f.expect(Expect::SingleLine);
        f.feed(b"+OK POP3 ready\r\n-ERR [IN-USE] lock");
        let r = reply(&mut f);
        assert_eq!((r.status, r.text.as_str()), (ReplyStatus::Ok, "POP3 ready"));
        assert_eq!(r.raw, b"+OK POP3 ready\r\n");
        assert_eq!(r.lines, None);
        assert!(!r.unsolicited && !r.bare_lf());
        assert_eq!(f.next_reply(), Ok(Framed::Incomplete));
        f.feed(b"ed\r\n");
        let r = reply(&mut f);
        assert_eq!(r.status, ReplyStatus::Err);
        assert_eq!(r.code, Some(RespCode::IN_USE));
        assert_eq!(r.text, "locked");
        assert_eq!(f.expected(), 0);
    }

    #[test]
    fn multi_line_unstuffs_and_keeps_raw() {
        let wire = b"+OK 24 octets\r\nSubject: x\r\n\r\n..dot\r\n..\r\n...\r\n.\r\n+OK\r\n";
        let mut f = ReplyFramer::new(1 << 20);
        f.expect(Expect::MultiLine);
        f.expect(Expect::SingleLine);
        f.feed(wire);
        let r = reply(&mut f);
        assert_eq!(r.status, ReplyStatus::Ok);
        let want: Vec<Vec<u8>> = [&b"Subject: x"[..], b"", b".dot", b".", b".."]
            .iter()
            .map(|l| l.to_vec())
            .collect();
        assert_eq!(r.lines.as_ref(), Some(&want));
        assert_eq!(r.raw, &wire[..wire.len() - 5]);
        assert_eq!(r.status_line(), b"+OK 24 octets\r\n");
        assert_eq!(r.endings.len(), 7);
        assert!(r.unstuffed_dots.is_empty());
        assert_eq!(r.body_octets(), 12 + 2 + 6 + 3 + 4);
        let r = reply(&mut f);
        assert_eq!((r.status, r.lines), (ReplyStatus::Ok, None));
    }

    #[test]
    fn dot_stuffing_round_trips() {
        let messages: [&[u8]; 5] = [
            b"Subject: a\r\n\r\n.\r\n..\r\n.x\r\nend\r\n",
            b"",
            b".\r\n",
            b"no final newline",
            b"bare\nlf\n.dot\n",
        ];
        for msg in messages {
            let mut wire = Vec::new();
            encode_message(&SingleLine::ok("follows"), msg, &mut wire);
            for split in 0..wire.len() {
                let mut f = ReplyFramer::new(1 << 20);
                f.expect(Expect::MultiLine);
                f.feed(&wire[..split]);
                assert_eq!(f.next_reply(), Ok(Framed::Incomplete), "split {split}");
                f.feed(&wire[split..]);
                let r = reply(&mut f);
                let got: Vec<&[u8]> = r.lines.iter().flatten().map(Vec::as_slice).collect();
                let want: Vec<&[u8]> = super::super::message_lines(msg).collect();
                assert_eq!(got, want, "{msg:?}");
                assert_eq!(r.body_octets(), super::super::normalized_len(msg));
                assert_eq!(r.raw, wire);
                assert!(!r.bare_lf());
            }
        }
    }

    #[test]
    fn missing_terminator_stays_incomplete() {
        let mut f = ReplyFramer::new(1 << 20);
        f.expect(Expect::MultiLine);
        f.feed(b"+OK\r\nline\r\n..\r\n");
        assert_eq!(f.next_reply(), Ok(Framed::Incomplete));
        assert_eq!(f.next_reply(), Ok(Framed::Incomplete));
        // `..` is a stuffed `.`, not the end; ". " is not the end either.
        f.feed(b". \r\n");
        assert_eq!(f.next_reply(), Ok(Framed::Incomplete));
        f.feed(b".\r\n");
        let r = reply(&mut f);
        assert_eq!(
            r.lines,
            Some(vec![b"line".to_vec(), b".".to_vec(), b" ".to_vec()])
        );
        assert_eq!(r.unstuffed_dots, vec![2]);
    }

    #[test]
    fn bare_lf_is_framed_and_flagged() {
        let mut f = ReplyFramer::new(1 << 20);
        f.expect(Expect::MultiLine);
        f.feed(b"+OK\r\na\nb\r\n.\n");
        let r = reply(&mut f);
        assert!(r.bare_lf());
        assert_eq!(
            r.endings,
            vec![
                LineEnding::CrLf,
                LineEnding::Lf,
                LineEnding::CrLf,
                LineEnding::Lf
            ]
        );
        assert_eq!(r.lines, Some(vec![b"a".to_vec(), b"b".to_vec()]));
    }

    #[test]
    fn err_to_a_multi_line_command_is_one_line() {
        let mut f = ReplyFramer::new(1 << 20);
        f.expect(Expect::MultiLine);
        f.expect(Expect::SingleLine);
        f.feed(b"-ERR no such message\r\n+OK\r\n");
        let r = reply(&mut f);
        assert_eq!((r.status, r.lines), (ReplyStatus::Err, None));
        assert_eq!(reply(&mut f).status, ReplyStatus::Ok);
    }

    #[test]
    fn sasl_continuation() {
        let mut f = ReplyFramer::new(1 << 20);
        f.expect(Expect::Sasl);
        f.expect(Expect::Sasl);
        f.feed(b"+ \r\n+OK logged in\r\n");
        let r = reply(&mut f);
        assert_eq!((r.status, r.text.as_str()), (ReplyStatus::Continuation, ""));
        assert_eq!(reply(&mut f).status, ReplyStatus::Ok);
    }

    #[test]
    fn unsolicited_and_malformed() {
        let mut f = ReplyFramer::new(1 << 20);
        f.feed(b"-ERR autologout\r\n");
        let r = reply(&mut f);
        assert!(r.unsolicited);
        f.expect(Expect::MultiLine);
        f.feed(b"OK fine\r\n");
        let r = reply(&mut f);
        assert_eq!(r.status, ReplyStatus::Malformed);
        assert_eq!(r.text, "OK fine");
        assert_eq!(f.expected(), 0);
    }

    #[test]
    fn size_cap() {
        let mut f = ReplyFramer::new(64);
        f.expect(Expect::MultiLine);
        f.feed(b"+OK\r\n");
        for _ in 0..4 {
            f.feed(b"0123456789\r\n");
        }
        assert_eq!(f.next_reply(), Ok(Framed::Incomplete));
        f.feed(b"0123456789\r\n");
        assert_eq!(f.next_reply(), Err(FrameError::TooLarge { limit: 64 }));
        assert_eq!(f.expected(), 0);
        // A status line with no end is capped as well.
        let mut f = ReplyFramer::new(64);
        f.expect(Expect::SingleLine);
        f.feed(&[b'+'; 65]);
        assert_eq!(f.next_reply(), Err(FrameError::TooLarge { limit: 64 }));
    }
}
