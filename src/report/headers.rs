//! Message headers whose values vary from run to run or from server to server: Date and
//! Message-ID get a placeholder, and so do the trace headers an MTA adds on delivery
//! (Received, Return-Path, ...), whose values name hosts, queue ids and times. One filter for
//! IMAP literals (`report::normalize`) and POP3 RETR/TOP replies (`report::normalize_text`).

use std::borrow::Cow;

use super::normalize::{DATE, MESSAGE_ID};

/// Replaces the value of a trace header an MTA adds (Received, Return-Path, Delivered-To).
pub const TRACE: &str = "<trace>";

/// Headers an MTA adds on delivery; their values name hosts, queue ids and times.
const TRACE_HEADERS: [&str; 4] = ["Received", "Return-Path", "Delivered-To", "X-Original-To"];

/// Header lines of one message, line by line: a replaced header is one line, its folded
/// continuations (RFC 5322 2.2.3) dropped. The body, after the first empty line (or a POP3
/// `.`), passes unchanged.
pub struct HeaderFilter {
    in_header: bool,
    skipping_fold: bool,
}

impl HeaderFilter {
    /// `message`: whether the lines are a message at all (else everything passes).
    pub fn new(message: bool) -> HeaderFilter {
        HeaderFilter {
            in_header: message,
            skipping_fold: false,
        }
    }

    /// The line to show, or `None` to drop it.
    pub fn line(&mut self, l: &str) -> Option<String> {
        if !self.in_header {
            return Some(l.to_string());
        }
        if l.is_empty() || l == "." {
            self.in_header = false;
            return Some(l.to_string());
        }
        if l.starts_with(' ') || l.starts_with('\t') {
            return (!self.skipping_fold).then(|| l.to_string());
        }
        self.skipping_fold = false;
        let Some((name, _)) = l.split_once(':') else {
            return Some(l.to_string());
        };
        let placeholder = if name.eq_ignore_ascii_case("Date") {
            Some(DATE)
        } else if name.eq_ignore_ascii_case("Message-ID") {
            Some(MESSAGE_ID)
        } else if TRACE_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            Some(TRACE)
        } else {
            None
        };
        match placeholder {
            Some(p) => {
                self.skipping_fold = true;
                Some(format!("{name}: {p}"))
            }
            None => Some(l.to_string()),
        }
    }
}

/// A literal's bytes (CRLF lines) with its headers filtered, if it looks like a message (its
/// first line is a header field); anything else comes back as it is, borrowed. Lines that
/// stay keep their bytes exactly, and the body after the header is copied whole.
pub fn normalize_message(data: &[u8]) -> Cow<'_, [u8]> {
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let looks_like_header = first
        .iter()
        .position(|&b| b == b':')
        .is_some_and(|colon| colon > 0 && !first[..colon].contains(&b' '));
    if !looks_like_header {
        return Cow::Borrowed(data);
    }
    let mut filter = HeaderFilter::new(true);
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    loop {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(end) => (&rest[..end], Some(&rest[end + 2..])),
            None => (rest, None),
        };
        let text = String::from_utf8_lossy(line);
        if let Some(shown) = filter.line(&text) {
            if shown == text {
                out.extend_from_slice(line);
            } else {
                out.extend_from_slice(shown.as_bytes());
            }
            if next.is_some() {
                out.extend_from_slice(b"\r\n");
            }
        }
        match next {
            // Past the header nothing changes: the body goes over as it is.
            Some(n) if !filter.in_header => {
                out.extend_from_slice(n);
                break;
            }
            Some(n) => rest = n,
            None => break,
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_and_trace_headers_become_one_line_each() {
        let msg = b"Return-Path: <bob@example.test>\r\nReceived: from a ([127.0.0.1])\r\n\tby b with ESMTP id 2.1\r\n\tfor <alice@example.test>; Mon, 7 Dec 2026 03:35:39 +0000\r\nDate: Mon,\r\n 7 Dec 2026\r\nMessage-Id: <x@y>\r\nX-Raw: \xff\r\nSubject: hi\r\n\r\nDate: in the body\r\n\tindented body\r\n";
        assert_eq!(
            normalize_message(msg).as_ref(),
            b"Return-Path: <trace>\r\nReceived: <trace>\r\nDate: <date>\r\nMessage-Id: <message-id>\r\nX-Raw: \xff\r\nSubject: hi\r\n\r\nDate: in the body\r\n\tindented body\r\n"
        );
    }

    #[test]
    fn text_that_is_not_a_message_is_left_alone() {
        for text in [&b"just text\r\nDate: x"[..], b"", b"a b: c\r\nReceived: x"] {
            assert_eq!(normalize_message(text).as_ref(), text);
        }
    }
}
