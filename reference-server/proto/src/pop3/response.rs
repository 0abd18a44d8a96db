//! POP3 responses: the `+OK` / `-ERR` status line with an optional RFC 2449 8 response code,
//! multi-line responses (dot-stuffed, ended by a line holding a single `.`, RFC 1939 3), the
//! SASL `+ ` continuation (RFC 5034 4), and parsing a received status line.

use std::borrow::Cow;

use super::message::message_lines;

/// Longest first line of a response, CRLF included (RFC 2449 4: unchanged at 512 octets).
pub const MAX_RESPONSE_LINE: usize = 512;

/// The status indicator of a response (RFC 1939 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Err,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "+OK",
            Status::Err => "-ERR",
        }
    }
}

/// An extended response code (RFC 2449 8): `resp-level *("/" resp-level)`, written in square
/// brackets right after the status, e.g. `-ERR [IN-USE] maildrop locked`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespCode(Cow<'static, str>);

impl RespCode {
    /// RFC 2449 8.1.2: the maildrop is locked by another session.
    pub const IN_USE: RespCode = RespCode(Cow::Borrowed("IN-USE"));
    /// RFC 2449 8.1.1: logging in again too soon.
    pub const LOGIN_DELAY: RespCode = RespCode(Cow::Borrowed("LOGIN-DELAY"));
    /// RFC 3206 4: a temporary server problem; trying again later may work.
    pub const SYS_TEMP: RespCode = RespCode(Cow::Borrowed("SYS/TEMP"));
    /// RFC 3206 4: a permanent server problem.
    pub const SYS_PERM: RespCode = RespCode(Cow::Borrowed("SYS/PERM"));
    /// RFC 3206 5: the credentials were wrong (not a server problem).
    pub const AUTH: RespCode = RespCode(Cow::Borrowed("AUTH"));

    /// Validates a code (without brackets): levels of `rchar` (printable ASCII except `/` and
    /// `]`) separated by `/`.
    pub fn parse(code: &str) -> Option<RespCode> {
        let rchar = |b: u8| (0x21..=0x7e).contains(&b) && b != b'/' && b != b']';
        let ok = code
            .split('/')
            .all(|level| !level.is_empty() && level.bytes().all(rchar));
        ok.then(|| RespCode(Cow::Owned(code.to_string())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hierarchy levels, e.g. `["SYS", "TEMP"]`.
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

/// A single-line response (RFC 1939 3, RFC 2449 3 `single-line`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleLine {
    pub status: Status,
    pub code: Option<RespCode>,
    pub text: String,
}

impl SingleLine {
    pub fn ok(text: impl Into<String>) -> Self {
        Self {
            status: Status::Ok,
            code: None,
            text: text.into(),
        }
    }

    pub fn err(text: impl Into<String>) -> Self {
        Self {
            status: Status::Err,
            code: None,
            text: text.into(),
        }
    }

    pub fn with_code(mut self, code: RespCode) -> Self {
        self.code = Some(code);
        self
    }

    /// Appends the line with CRLF. CR, LF and NUL in the text become spaces (they would end or
    /// corrupt the line), and the text is cut at a character boundary so the whole line stays
    /// within [`MAX_RESPONSE_LINE`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut line = String::from(self.status.as_str());
        if let Some(code) = &self.code {
            line.push_str(" [");
            line.push_str(code.as_str());
            line.push(']');
        }
        if !self.text.is_empty() {
            line.push(' ');
            line.extend(self.text.chars().map(|c| {
                if matches!(c, '\r' | '\n' | '\0') {
                    ' '
                } else {
                    c
                }
            }));
        }
        let mut cut = line.len().min(MAX_RESPONSE_LINE - 2);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        out.extend_from_slice(&line.as_bytes()[..cut]);
        out.extend_from_slice(b"\r\n");
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Appends one line of a multi-line response, dot-stuffed (RFC 1939 3: a line starting with
/// `.` gets another `.` in front), with CRLF. `line` must not contain CR or LF.
pub fn dot_stuff_line(line: &[u8], out: &mut Vec<u8>) {
    if line.first() == Some(&b'.') {
        out.push(b'.');
    }
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
}

/// Appends a multi-line response: `head`, each line dot-stuffed, then the terminating `.`.
pub fn encode_multiline<'a>(
    head: &SingleLine,
    lines: impl IntoIterator<Item = &'a [u8]>,
    out: &mut Vec<u8>,
) {
    head.encode(out);
    for line in lines {
        dot_stuff_line(line, out);
    }
    out.extend_from_slice(b".\r\n");
}

/// Appends a multi-line response carrying a message (RETR): its lines as
/// [`super::message_lines`] cuts them, each sent with CRLF.
pub fn encode_message(head: &SingleLine, raw: &[u8], out: &mut Vec<u8>) {
    encode_multiline(head, message_lines(raw), out);
}

/// Appends a SASL continuation (RFC 5034 4): `+ ` and the base64 challenge (empty for PLAIN).
pub fn continuation(challenge: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(challenge.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// What a received status line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyStatus {
    /// `+OK`.
    Ok,
    /// `-ERR`.
    Err,
    /// `+ ` (or a lone `+`): a SASL continuation (RFC 5034 4).
    Continuation,
    /// Anything else, `+ok` included (RFC 1939 3: status indicators are upper case).
    Malformed,
}

/// Splits a status line (without its line ending) into status, response code and text. The
/// text is decoded as UTF-8 with replacement characters (the raw bytes stay with the caller).
/// A bracketed prefix that is not a valid code stays part of the text.
pub fn parse_status_line(line: &[u8]) -> (ReplyStatus, Option<RespCode>, String) {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let after = |prefix: &[u8]| -> Option<&[u8]> {
        let rest = line.strip_prefix(prefix)?;
        match rest.first() {
            None => Some(rest),
            Some(b' ') => Some(&rest[1..]),
            Some(_) => None,
        }
    };
    let (status, rest) = if let Some(rest) = after(b"+OK") {
        (ReplyStatus::Ok, rest)
    } else if let Some(rest) = after(b"-ERR") {
        (ReplyStatus::Err, rest)
    } else if let Some(rest) = after(b"+") {
        return (ReplyStatus::Continuation, None, text(rest));
    } else {
        return (ReplyStatus::Malformed, None, text(line));
    };
    if let Some(inner) = rest.strip_prefix(b"[")
        && let Some(close) = inner.iter().position(|&b| b == b']')
        && let Ok(code) = std::str::from_utf8(&inner[..close])
        && let Some(code) = RespCode::parse(code)
    {
        let tail = &inner[close + 1..];
        let tail = tail.strip_prefix(b" ").unwrap_or(tail);
        return (status, Some(code), text(tail));
    }
    (status, None, text(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_lines() {
        assert_eq!(SingleLine::ok("").to_bytes(), b"+OK\r\n");
        assert_eq!(SingleLine::ok("2 320").to_bytes(), b"+OK 2 320\r\n");
        assert_eq!(
            SingleLine::err("maildrop already locked")
                .with_code(RespCode::IN_USE)
                .to_bytes(),
            b"-ERR [IN-USE] maildrop already locked\r\n"
        );
        assert_eq!(
            SingleLine::err("").with_code(RespCode::SYS_TEMP).to_bytes(),
            b"-ERR [SYS/TEMP]\r\n"
        );
    }

    #[test]
    fn text_cannot_break_the_line() {
        assert_eq!(
            SingleLine::err("a\r\n+OK b").to_bytes(),
            b"-ERR a  +OK b\r\n"
        );
        let long = SingleLine::ok("\u{e9}".repeat(600)).to_bytes();
        assert!(long.len() <= MAX_RESPONSE_LINE);
        assert!(long.ends_with(b"\r\n"));
        assert!(std::str::from_utf8(&long).is_ok());
    }

    #[test]
    fn codes_validate() {
        assert_eq!(RespCode::parse("SYS/TEMP"), Some(RespCode::SYS_TEMP));
        assert_eq!(
            RespCode::SYS_TEMP.levels().collect::<Vec<_>>(),
            vec!["SYS", "TEMP"]
        );
        for bad in ["", "A//B", "A B", "A]", "/A"] {
            assert_eq!(RespCode::parse(bad), None, "{bad}");
        }
        for known in [
            RespCode::IN_USE,
            RespCode::LOGIN_DELAY,
            RespCode::SYS_TEMP,
            RespCode::SYS_PERM,
            RespCode::AUTH,
        ] {
            assert_eq!(RespCode::parse(known.as_str()), Some(known.clone()));
        }
    }

    #[test]
    fn multiline_is_dot_stuffed_and_terminated() {
        let mut out = Vec::new();
        let lines: [&[u8]; 4] = [b"Subject: x", b"", b".hidden", b"."];
        encode_multiline(&SingleLine::ok("follows"), lines, &mut out);
        assert_eq!(
            out,
            b"+OK follows\r\nSubject: x\r\n\r\n..hidden\r\n..\r\n.\r\n"
        );
        let mut out = Vec::new();
        encode_message(&SingleLine::ok(""), b"a\n.b\nc", &mut out);
        assert_eq!(out, b"+OK\r\na\r\n..b\r\nc\r\n.\r\n");
        let mut out = Vec::new();
        encode_message(&SingleLine::ok("0 octets"), b"", &mut out);
        assert_eq!(out, b"+OK 0 octets\r\n.\r\n");
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(
            parse_status_line(b"+OK 2 320"),
            (ReplyStatus::Ok, None, "2 320".into())
        );
        assert_eq!(
            parse_status_line(b"+OK"),
            (ReplyStatus::Ok, None, "".into())
        );
        assert_eq!(
            parse_status_line(b"-ERR [IN-USE] locked"),
            (ReplyStatus::Err, Some(RespCode::IN_USE), "locked".into())
        );
        assert_eq!(
            parse_status_line(b"-ERR [SYS/TEMP]"),
            (ReplyStatus::Err, Some(RespCode::SYS_TEMP), "".into())
        );
        assert_eq!(
            parse_status_line(b"-ERR [not a code] x"),
            (ReplyStatus::Err, None, "[not a code] x".into())
        );
        assert_eq!(
            parse_status_line(b"+ "),
            (ReplyStatus::Continuation, None, "".into())
        );
        assert_eq!(
            parse_status_line(b"+ AmFYig=="),
            (ReplyStatus::Continuation, None, "AmFYig==".into())
        );
        assert_eq!(parse_status_line(b"+").0, ReplyStatus::Continuation);
        for bad in [&b"+ok"[..], b"+OKAY", b"-ERRx", b"OK", b"", b"* OK"] {
            assert_eq!(parse_status_line(bad).0, ReplyStatus::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn encoded_lines_parse_back() {
        let line = SingleLine::err("in use").with_code(RespCode::IN_USE);
        let bytes = line.to_bytes();
        let (status, code, text) = parse_status_line(&bytes[..bytes.len() - 2]);
        assert_eq!(
            (status, code, text),
            (ReplyStatus::Err, Some(RespCode::IN_USE), "in use".into())
        );
    }
}
