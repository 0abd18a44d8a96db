//! Sans-I/O framing of an IMAP server's byte stream into whole messages (a line, or a line
//! announcing a literal, the literal, and the rest of the line, repeated), on top of
//! imap-codec's `Fragmentizer`. Nothing is parsed here, so a malformed message still has clear
//! boundaries and cannot desynchronise the stream.
//!
//! Memory stays bounded: bytes are handed to the Fragmentizer only when it has consumed the
//! previous ones, a message is capped at `limit` bytes, and a literal whose announced size
//! would exceed the limit is refused as soon as its announcement line ends, before any of its
//! data is buffered.

use imap_codec::fragmentizer::{self, FragmentInfo, Fragmentizer};

use super::LineEnding;

/// One whole message, exactly as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    pub bytes: Vec<u8>,
    /// `Lf` if any line of the message ended with a bare LF.
    pub line_ending: LineEnding,
}

/// Why framing stopped. Either way the stream cannot be framed further: the caller should
/// report it and close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a literal of {announced} bytes would exceed the message limit of {limit} bytes")]
    TooLarge { limit: usize, announced: u64 },
    #[error("a line exceeds the message limit of {limit} bytes")]
    LineTooLong { limit: usize },
}

/// Splits bytes into whole messages; see the module docs.
#[derive(Debug)]
pub struct Framer {
    frag: Fragmentizer,
    limit: usize,
    /// A bare LF ended some line of the current message.
    bare_lf: bool,
    /// The literal being received: (announced length, its start offset in the message).
    literal: Option<(u32, usize)>,
    /// A message completed by [`Framer::has_buffered`] and not yet handed out.
    stash: Option<RawMessage>,
    /// Framing stopped for good; every later call reports this.
    failed: Option<FrameError>,
}

impl Framer {
    /// `limit`: the largest message accepted, in bytes (capped at 4 GiB - 1, the most an IMAP
    /// literal can announce in imap-codec).
    pub fn new(limit: usize) -> Framer {
        let limit = limit.min(u32::MAX as usize);
        Framer {
            frag: Fragmentizer::new(limit as u32),
            limit,
            bare_lf: false,
            literal: None,
            stash: None,
            failed: None,
        }
    }

    /// Adds received bytes. Call only after [`Framer::poll`] returned `Ok(None)`, so that at
    /// most one read's worth of unframed bytes is ever held.
    pub fn push(&mut self, bytes: &[u8]) {
        self.frag.enqueue_bytes(bytes);
    }

    /// The next whole message if the pushed bytes complete one; `Ok(None)` means "push more".
    pub fn poll(&mut self) -> Result<Option<RawMessage>, FrameError> {
        if let Some(msg) = self.stash.take() {
            return Ok(Some(msg));
        }
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.progress();
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    fn progress(&mut self) -> Result<Option<RawMessage>, FrameError> {
        loop {
            let info = self.frag.progress();
            if self.frag.is_max_message_size_exceeded() {
                return Err(FrameError::LineTooLong { limit: self.limit });
            }
            let Some(info) = info else {
                return Ok(None);
            };
            match info {
                FragmentInfo::Line {
                    end,
                    announcement,
                    ending,
                    ..
                } => {
                    if ending == fragmentizer::LineEnding::Lf {
                        self.bare_lf = true;
                    }
                    if let Some(a) = announcement {
                        let total = end as u64 + u64::from(a.length);
                        if total > self.limit as u64 {
                            return Err(FrameError::TooLarge {
                                limit: self.limit,
                                announced: u64::from(a.length),
                            });
                        }
                        self.literal = Some((a.length, end));
                    }
                }
                FragmentInfo::Literal { .. } => self.literal = None,
            }
            if self.frag.is_message_complete() {
                let line_ending = if self.bare_lf {
                    LineEnding::Lf
                } else {
                    LineEnding::Crlf
                };
                self.bare_lf = false;
                self.literal = None;
                return Ok(Some(RawMessage {
                    bytes: self.frag.message_bytes().to_vec(),
                    line_ending,
                }));
            }
        }
    }

    /// Whether any received bytes are still unaccounted for: a complete message not yet
    /// returned by `poll`, or the start of one. Frames what is buffered to find out.
    pub fn has_buffered(&mut self) -> bool {
        if self.stash.is_some() || self.failed.is_some() {
            return true;
        }
        match self.progress() {
            Ok(Some(msg)) => {
                self.stash = Some(msg);
                true
            }
            Ok(None) => !self.frag.message_bytes().is_empty(),
            Err(e) => {
                self.failed = Some(e);
                true
            }
        }
    }

    /// Bytes of the unfinished current message (valid after `poll` returned `Ok(None)`).
    pub fn partial_len(&self) -> usize {
        if self.frag.is_message_complete() {
            0
        } else {
            self.frag.message_bytes().len()
        }
    }

    /// Bytes received and not yet returned, as far as framed (after `has_buffered`): a
    /// completed message held back plus the unfinished one.
    pub fn buffered_len(&self) -> usize {
        self.stash.as_ref().map_or(0, |m| m.bytes.len()) + self.partial_len()
    }

    /// What an end of stream now would cut off, for the "connection closed" message:
    /// empty if nothing is pending.
    pub fn eof_description(&self) -> String {
        let have = self.partial_len();
        if have == 0 {
            return String::new();
        }
        match self.literal {
            Some((announced, start)) => format!(
                " in the middle of a message: {} of {announced} literal bytes received \
                 ({have} bytes of the message so far)",
                have.saturating_sub(start)
            ),
            None => format!(" in the middle of a line ({have} bytes without a line end)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut Framer, input: &[u8]) -> Vec<RawMessage> {
        framer.push(input);
        let mut out = Vec::new();
        while let Some(m) = framer.poll().unwrap() {
            out.push(m);
        }
        out
    }

    #[test]
    fn lines_and_literals() {
        let mut f = Framer::new(1024);
        let got = frames(
            &mut f,
            b"* OK hi\r\n* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\nA1 OK done\r\n",
        );
        let texts: Vec<&[u8]> = got.iter().map(|m| m.bytes.as_slice()).collect();
        assert_eq!(
            texts,
            [
                &b"* OK hi\r\n"[..],
                b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\n",
                b"A1 OK done\r\n"
            ]
        );
        assert!(got.iter().all(|m| m.line_ending == LineEnding::Crlf));
        assert!(!f.has_buffered());
    }

    #[test]
    fn byte_by_byte_gives_the_same_frames() {
        let input = b"* 1 FETCH (BODY[] {3}\r\n\n\n\n)\r\nA1 OK\n";
        let mut f = Framer::new(1024);
        let mut got = Vec::new();
        for b in input {
            got.extend(frames(&mut f, &[*b]));
        }
        assert_eq!(got.len(), 2);
        // Literal data is not a line: its LFs do not count as bare-LF line endings.
        assert_eq!(got[0].line_ending, LineEnding::Crlf);
        assert_eq!(got[1].line_ending, LineEnding::Lf);
        assert_eq!(got[0].bytes.len() + got[1].bytes.len(), input.len());
    }

    #[test]
    fn has_buffered_keeps_the_message() {
        let mut f = Framer::new(1024);
        assert!(frames(&mut f, b"A1 OK\r\n* 2 EXISTS\r\n* 3").len() == 2);
        assert!(f.has_buffered());
        assert_eq!(f.partial_len(), 3);
        let mut f = Framer::new(1024);
        f.push(b"A1 OK\r\nX\r\n");
        assert_eq!(f.poll().unwrap().unwrap().bytes, b"A1 OK\r\n");
        assert!(f.has_buffered());
        assert_eq!(f.poll().unwrap().unwrap().bytes, b"X\r\n");
        assert!(!f.has_buffered());
    }

    #[test]
    fn oversized_literal_is_refused_at_its_announcement() {
        let mut f = Framer::new(1000);
        f.push(b"* 1 FETCH (BODY[] {1073741824}\r\nxxxx");
        assert_eq!(
            f.poll(),
            Err(FrameError::TooLarge {
                limit: 1000,
                announced: 1_073_741_824
            })
        );
        // Sticky: the stream cannot be framed any further.
        assert!(f.poll().is_err());
    }

    #[test]
    fn literal_just_within_the_limit() {
        let line = b"* 1 FETCH (BODY[] {10}\r\n";
        let mut f = Framer::new(line.len() + 10 + 3);
        let mut input = line.to_vec();
        input.extend_from_slice(b"0123456789)\r\n");
        assert_eq!(frames(&mut f, &input).len(), 1);
        let mut f = Framer::new(line.len() + 9);
        f.push(line);
        assert!(matches!(f.poll(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn overlong_line() {
        let mut f = Framer::new(16);
        f.push(b"* OK this line is far too long");
        assert_eq!(f.poll(), Err(FrameError::LineTooLong { limit: 16 }));
    }

    #[test]
    fn eof_descriptions() {
        let mut f = Framer::new(1024);
        assert_eq!(f.eof_description(), "");
        frames(&mut f, b"* 1 FETCH (BODY[] {10}\r\nabc");
        let d = f.eof_description();
        assert!(d.contains("3 of 10 literal bytes"), "{d}");
        let mut f = Framer::new(1024);
        frames(&mut f, b"* OK\r\n* OK par");
        assert_eq!(
            f.eof_description(),
            " in the middle of a line (8 bytes without a line end)"
        );
    }
}
