//! Pieces every protocol's transcript needs: cutting a byte stream into lines with a cap on
//! what is kept, turning a received line into script text (or saying why it cannot be one),
//! checking that a line will load as a scenario line, and reading SASL PLAIN/LOGIN payloads.

use base64::Engine as _;

use crate::script::{Pattern, Template};

/// The most bytes of one message the recorder keeps for the transcript. What passes beyond
/// it is still forwarded, only not recorded (a comment says so).
pub const RECORD_CAP: usize = 1024 * 1024;

/// One line cut out of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// The line's bytes as kept, terminator included (at most [`RECORD_CAP`] bytes).
    pub bytes: Vec<u8>,
    /// Bytes of the line that were not kept.
    pub cut: usize,
}

/// Cuts lines (ending in LF) out of a byte stream, keeping at most [`RECORD_CAP`] bytes of
/// each, so that a client or server that never sends a line end costs bounded memory.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    cut: usize,
}

impl LineSplitter {
    /// Adds bytes and returns the lines they complete.
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<RawLine> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (piece, done) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..=i], true),
                None => (bytes, false),
            };
            bytes = &bytes[piece.len()..];
            let room = RECORD_CAP.saturating_sub(self.buf.len());
            if piece.len() > room {
                self.buf.extend_from_slice(&piece[..room]);
                self.cut += piece.len() - room;
            } else {
                self.buf.extend_from_slice(piece);
            }
            if done {
                out.push(RawLine {
                    bytes: std::mem::take(&mut self.buf),
                    cut: std::mem::take(&mut self.cut),
                });
            }
        }
        out
    }

    /// Bytes of an unfinished line (for the note at the end of a connection).
    pub fn pending(&self) -> usize {
        self.buf.len() + self.cut
    }
}

/// What a multi-line message (a POP3 reply body, SMTP DATA) has used of [`RECORD_CAP`]:
/// the lines beyond it are forwarded but not written, and counted for one note.
#[derive(Debug, Default)]
pub struct Budget {
    used: usize,
    skipped_lines: usize,
    skipped_bytes: usize,
}

impl Budget {
    /// Whether a line of `len` bytes is still written.
    pub fn admit(&mut self, len: usize) -> bool {
        if self.skipped_lines == 0 && self.used + len <= RECORD_CAP {
            self.used += len;
            return true;
        }
        self.skipped_lines += 1;
        self.skipped_bytes += len;
        false
    }

    /// The message ended: the note about what was not written, if anything; starts over.
    pub fn finish(&mut self, what: &str) -> Option<String> {
        let note = (self.skipped_lines > 0).then(|| {
            format!(
                "{what}: {} more lines ({} bytes) forwarded but not written; the recorder keeps at most {RECORD_CAP} bytes of one message",
                self.skipped_lines, self.skipped_bytes
            )
        });
        *self = Budget::default();
        note
    }
}

/// A received line as script text: the content without its terminator, and whether it ended
/// in a bare LF (the script always sends CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineText {
    pub text: String,
    pub bare_lf: bool,
}

/// Why some bytes cannot be written as a script line.
pub fn line_text(raw: &[u8]) -> Result<LineText, String> {
    let (body, bare_lf) = match raw.strip_suffix(b"\n") {
        Some(b) => match b.strip_suffix(b"\r") {
            Some(b) => (b, false),
            None => (b, true),
        },
        None => (raw, false),
    };
    Ok(LineText {
        text: content_text(body)?,
        bare_lf,
    })
}

/// Bytes inside one script line: UTF-8 without CR, LF or NUL.
pub fn content_text(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1))?;
    if let Some(i) = text.find(['\r', '\n', '\0']) {
        let what = match text.as_bytes()[i] {
            b'\r' => "a bare CR",
            b'\n' => "a bare LF",
            _ => "a NUL byte",
        };
        return Err(format!("{what} at byte {} of the line", i + 1));
    }
    Ok(text.to_owned())
}

/// A short, escaped preview of bytes for a comment line (never contains a line break).
pub fn preview(bytes: &[u8]) -> String {
    const MAX: usize = 60;
    let shown = &bytes[..bytes.len().min(MAX)];
    let mut s = format!("{:?}", String::from_utf8_lossy(shown));
    if bytes.len() > MAX {
        s.push_str(&format!(" (+{} bytes)", bytes.len() - MAX));
    }
    s
}

/// Whether client text would be read as a variable reference (`{name}`) by the scenario
/// loader: such a line cannot be written as it was sent.
pub fn looks_like_variable(text: &str) -> bool {
    Template::parse(text).map_or(true, |t| t.vars().next().is_some())
}

/// Whether a server line loads as a pattern of its protocol (IMAP values, or words).
pub fn server_line_loads(imap: bool, joined: &[u8]) -> Result<(), String> {
    let result = if imap {
        Pattern::parse(joined)
    } else {
        let mut words = joined.to_vec();
        words.extend_from_slice(b" ...");
        Pattern::parse_words(&words)
    };
    result.map(|_| ()).map_err(|e| e.message)
}

/// The login inside a SASL PLAIN response (RFC 4616 2: authzid NUL authcid NUL passwd).
pub fn plain_login(b64: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let mut parts = raw.split(|b| *b == 0);
    let _authzid = parts.next()?;
    let authcid = parts.next()?;
    parts.next()?;
    String::from_utf8(authcid.to_vec()).ok()
}

/// A base64 payload decoded as text (the user name of SASL LOGIN).
pub fn b64_text(b64: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    String::from_utf8(raw).ok()
}

/// The variable that stands for the `index`th SASL response of `mechanism` (upper case),
/// and the login it reveals, if any. A mechanism the script language has no variable for
/// gets `*`, the cancel of every protocol's SASL exchange (RFC 3501 6.2.2, RFC 4954 4,
/// RFC 5034 4), so that its secret is never written.
pub fn sasl_response_var(
    mechanism: &str,
    index: usize,
    b64: &str,
) -> (&'static str, Option<String>) {
    match (mechanism, index) {
        ("PLAIN", _) => ("{auth_plain}", plain_login(b64)),
        ("LOGIN", 0) => ("{user_b64}", b64_text(b64)),
        ("LOGIN", _) => ("{password_b64}", None),
        _ => ("*", None),
    }
}

/// The line as script text, or `None` with a note saying why it cannot be one.
pub fn checked(raw: &RawLine, side: &str, out: &mut Vec<super::journal::Entry>) -> Option<String> {
    if raw.cut > 0 {
        out.push(super::journal::Entry::Note(format!(
            "{side} line of {} bytes cut at {} bytes and not written: {}",
            raw.bytes.len() + raw.cut,
            raw.bytes.len(),
            preview(&raw.bytes)
        )));
        return None;
    }
    match line_text(&raw.bytes) {
        Ok(t) => {
            if t.bare_lf {
                out.push(super::journal::Entry::Note(format!(
                    "the next {side} line ended in a bare LF (a script sends CRLF)"
                )));
            }
            Some(t.text)
        }
        Err(why) => {
            out.push(super::journal::Entry::Note(format!(
                "{side} line not written ({why}): {}",
                preview(&raw.bytes)
            )));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_keeps_lines_across_chunks_and_caps_long_ones() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"a1 NO").is_empty());
        let got = s.push(b"OP\r\nb\n");
        assert_eq!(got[0].bytes, b"a1 NOOP\r\n");
        assert_eq!(got[1].bytes, b"b\n");
        let big = vec![b'x'; RECORD_CAP + 10];
        assert!(s.push(&big).is_empty());
        let got = s.push(b"\r\n");
        assert_eq!(got[0].bytes.len(), RECORD_CAP);
        assert_eq!(got[0].cut, 12);
    }

    #[test]
    fn budget_stops_at_the_cap_and_reports_once() {
        let mut b = Budget::default();
        assert!(b.admit(RECORD_CAP - 10));
        assert!(b.admit(10));
        assert!(!b.admit(1));
        // Once over, smaller lines are not written either: the message stays a prefix.
        assert!(!b.admit(0));
        let note = b.finish("RETR").unwrap();
        assert!(note.contains("2 more lines (1 bytes)"), "{note}");
        assert!(b.finish("RETR").is_none());
    }

    #[test]
    fn line_texts() {
        assert_eq!(line_text(b"a1 OK\r\n").unwrap().text, "a1 OK");
        assert!(line_text(b"a1 OK\n").unwrap().bare_lf);
        assert!(line_text(b"a\rb\r\n").unwrap_err().contains("bare CR"));
        assert!(line_text(b"a\0b\r\n").unwrap_err().contains("NUL"));
        assert!(line_text(b"\xff\r\n").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn sasl_payloads() {
        assert_eq!(
            plain_login("AGFsaWNlAGFsaWNlcHc=").as_deref(),
            Some("alice")
        );
        assert_eq!(b64_text("YWxpY2U=").as_deref(), Some("alice"));
        assert_eq!(plain_login("!!"), None);
    }

    #[test]
    fn variables_and_patterns() {
        assert!(looks_like_variable("a1 SEARCH TEXT {foo}"));
        assert!(!looks_like_variable("a1 APPEND x {12}"));
        assert!(server_line_loads(true, b"* OK [CAPABILITY IMAP4rev1] hi").is_ok());
        assert!(server_line_loads(false, b"+OK 2 320").is_ok());
        assert!(server_line_loads(false, b"").is_ok());
    }
}
