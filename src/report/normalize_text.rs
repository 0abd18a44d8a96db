//! Stable text for POP3 and SMTP messages, so that two servers' transcripts can be compared
//! (`compare`: two servers; `replay`: a recording and a server).
//!
//! The IMAP normalizer (`report::normalize`) lexes IMAP; POP3 and SMTP lines need their own
//! rules. What is kept: status indicators (`+OK`, `-ERR`, reply codes), POP3 response codes
//! (`[IN-USE]`), SMTP enhanced status codes, EHLO keywords, the data of STAT/LIST/UIDL
//! replies and of multi-line listings and messages. What goes: the human-readable text after
//! a status (it differs from product to product and says nothing about behaviour),
//! credentials, SASL challenges, unique-ids (each server makes its own), and message headers
//! whose values vary (Date, Message-ID) or that an MTA adds on its way (Received, ...).

use crate::report::Direction;
use crate::report::headers::HeaderFilter;
use crate::report::normalize::{PASSWORD, escape_lossy};
use crate::script::Protocol;

/// Replaces a POP3 unique-id (UIDL): every server makes up its own.
pub const UIDL: &str = "<uidl>";
/// Replaces the implementation string in a POP3 CAPA listing.
pub const IMPLEMENTATION: &str = "<implementation>";

/// What one POP3 or SMTP session needs to remember between messages.
#[derive(Debug, Clone)]
pub struct TextSession {
    protocol: Protocol,
    /// The verb of the client command the next reply answers (upper case), and whether it
    /// had an argument.
    last: Option<(String, bool)>,
    /// Inside a SASL exchange: client lines are credentials.
    sasl: bool,
    /// Inside SMTP DATA content (after 354, until the client's `.` line).
    data: bool,
}

impl TextSession {
    pub fn new(protocol: Protocol) -> TextSession {
        TextSession {
            protocol,
            last: None,
            sasl: false,
            data: false,
        }
    }

    /// The normalized lines of one message (without the prefix); the first line is the
    /// message's own, later ones are the rest of a multi-line reply.
    pub fn message(&mut self, direction: Direction, bytes: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix("\r\n").unwrap_or(&text);
        let lines: Vec<&str> = text.split("\r\n").collect();
        match direction {
            Direction::Client => vec![self.client_line(text)],
            Direction::Server => match self.protocol {
                Protocol::Smtp => self.smtp_reply(&lines),
                _ => self.pop3_reply(&lines),
            },
        }
    }

    fn client_line(&mut self, line: &str) -> String {
        if self.data {
            if line == "." {
                self.data = false;
            }
            return escape_lossy(line.as_bytes());
        }
        if self.sasl {
            // `*` cancels the exchange (RFC 4954 4, RFC 5034 4); anything else is SASL data.
            return match line {
                "*" => "*".to_string(),
                _ => PASSWORD.to_string(),
            };
        }
        let mut words = line.splitn(3, ' ');
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let first = words.next();
        let rest = words.next();
        self.last = Some((verb.clone(), first.is_some_and(|w| !w.is_empty())));
        let shown = match (verb.as_str(), first, rest) {
            ("PASS", Some(_), _) => format!("{verb} {PASSWORD}"),
            ("APOP", Some(user), Some(_)) => format!("{verb} {user} {PASSWORD}"),
            // AUTH mechanism [initial-response]
            ("AUTH", Some(mech), Some(_)) => format!("{verb} {mech} {PASSWORD}"),
            _ => line.to_string(),
        };
        escape_lossy(shown.as_bytes())
    }

    fn pop3_reply(&mut self, lines: &[&str]) -> Vec<String> {
        let first = lines.first().copied().unwrap_or("");
        let (verb, has_arg) = self.last.clone().unwrap_or_default();
        let mut out = Vec::with_capacity(lines.len());
        if first == "+" || first.starts_with("+ ") {
            // A SASL challenge: its data varies.
            self.sasl = true;
            out.push("+".to_string());
            return out;
        }
        self.sasl = false;
        let (status, text) = first.split_once(' ').unwrap_or((first, ""));
        let mut line = status.to_string();
        if status.eq_ignore_ascii_case("+OK") {
            match verb.as_str() {
                // `+OK nn mm`: message count and size, or number and size.
                "STAT" => push_words(&mut line, text, 2, &[]),
                "LIST" if has_arg => push_words(&mut line, text, 2, &[]),
                "UIDL" if has_arg => push_words(&mut line, text, 2, &[1]),
                _ => push_code(&mut line, text),
            }
        } else if status.eq_ignore_ascii_case("-ERR") {
            push_code(&mut line, text);
        } else {
            // Not a status line: shown whole, so the difference is visible.
            line = first.to_string();
        }
        out.push(escape_lossy(line.as_bytes()));
        let mut body: Vec<&str> = lines[1.min(lines.len())..].to_vec();
        if verb == "CAPA" && body.last() == Some(&".") {
            // Capabilities are a set (RFC 2449 5): sorted, the final `.` kept last.
            let end = body.len() - 1;
            body[..end].sort_by_key(|l| l.to_ascii_uppercase());
        }
        let message = matches!(verb.as_str(), "RETR" | "TOP");
        let mut headers = HeaderFilter::new(message);
        for l in &body {
            let shown = match verb.as_str() {
                "UIDL" if *l != "." => {
                    let mut s = String::new();
                    push_words(&mut s, l, 2, &[1]);
                    s.trim_start().to_string()
                }
                "CAPA" if l.to_ascii_uppercase().starts_with("IMPLEMENTATION ") => {
                    format!("IMPLEMENTATION {IMPLEMENTATION}")
                }
                _ => match headers.line(l) {
                    Some(s) => s,
                    None => continue,
                },
            };
            out.push(escape_lossy(shown.as_bytes()));
        }
        out
    }

    fn smtp_reply(&mut self, lines: &[&str]) -> Vec<String> {
        let (verb, _) = self.last.clone().unwrap_or_default();
        let ehlo = verb == "EHLO";
        let mut out = Vec::with_capacity(lines.len());
        let mut code = "";
        let mut keywords = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let (c, sep, text) = split_smtp(l);
            code = c;
            let mut line = format!("{c}{sep}");
            if c.len() != 3 {
                // Not a reply line at all: shown whole, so the difference is visible.
                line = l.to_string();
            } else if ehlo && i > 0 && c.starts_with('2') {
                // An EHLO keyword and its parameters (RFC 5321 4.1.1.1): their order means
                // nothing, so they are listed sorted, without the repeated code.
                keywords.push(escape_lossy(text.trim_end().as_bytes()));
                continue;
            } else if c == "334" {
                // A SASL challenge: base64 data that varies.
            } else if let Some(enhanced) = enhanced_code(text) {
                line.push_str(enhanced);
            }
            out.push(escape_lossy(line.trim_end().as_bytes()));
        }
        keywords.sort_by_key(|k| k.to_ascii_uppercase());
        out.extend(keywords);
        match code {
            "334" => self.sasl = true,
            "354" => {
                self.sasl = false;
                self.data = true;
            }
            _ => self.sasl = false,
        }
        out
    }
}

/// Appends up to `count` words of `text` (space-separated), replacing the ones at the
/// positions in `uidl` by [`UIDL`].
fn push_words(line: &mut String, text: &str, count: usize, uidl: &[usize]) {
    for (i, w) in text
        .split(' ')
        .filter(|w| !w.is_empty())
        .take(count)
        .enumerate()
    {
        line.push(' ');
        line.push_str(if uidl.contains(&i) { UIDL } else { w });
    }
}

/// Appends a POP3 response code (`[IN-USE]`, RFC 2449 8) if the text starts with one.
fn push_code(line: &mut String, text: &str) {
    if text.starts_with('[')
        && let Some(end) = text.find(']')
    {
        line.push(' ');
        line.push_str(&text[..=end]);
    }
}

/// Code, separator (`-`, ` ` or nothing) and text of one SMTP reply line.
fn split_smtp(line: &str) -> (&str, &str, &str) {
    let code_len = line.bytes().take_while(u8::is_ascii_digit).count();
    let (code, rest) = line.split_at(code_len);
    match rest.chars().next() {
        Some(c @ ('-' | ' ')) => (code, &rest[..1], &rest[c.len_utf8()..]),
        _ => (code, "", rest),
    }
}

/// An enhanced status code (`2.1.0`, RFC 3463) at the start of a reply's text.
fn enhanced_code(text: &str) -> Option<&str> {
    let word = text.split(' ').next()?;
    let parts: Vec<&str> = word.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Client, Server};

    fn run(protocol: Protocol, messages: &[(Direction, &str)]) -> Vec<String> {
        let mut s = TextSession::new(protocol);
        messages
            .iter()
            .flat_map(|(d, m)| s.message(*d, m.as_bytes()))
            .collect()
    }

    #[test]
    fn pop3_text_goes_data_stays() {
        let out = run(
            Protocol::Pop3,
            &[
                (Server, "+OK Dovecot ready. <1.2@host>\r\n"),
                (Client, "USER alice\r\n"),
                (Server, "+OK\r\n"),
                (Client, "PASS secret\r\n"),
                (Server, "+OK Logged in.\r\n"),
                (Client, "STAT\r\n"),
                (Server, "+OK 2 320\r\n"),
                (Client, "UIDL 1\r\n"),
                (Server, "+OK 1 000000017a2b\r\n"),
                (Client, "UIDL\r\n"),
                (Server, "+OK listing\r\n1 abc\r\n2 def\r\n.\r\n"),
                (Client, "DELE 9\r\n"),
                (Server, "-ERR [SYS/PERM] There's no message 9.\r\n"),
            ],
        );
        assert_eq!(
            out,
            [
                "+OK",
                "USER alice",
                "+OK",
                "PASS <password>",
                "+OK",
                "STAT",
                "+OK 2 320",
                "UIDL 1",
                "+OK 1 <uidl>",
                "UIDL",
                "+OK",
                "1 <uidl>",
                "2 <uidl>",
                ".",
                "DELE 9",
                "-ERR [SYS/PERM]",
            ]
        );
    }

    #[test]
    fn pop3_capabilities_are_sorted_and_the_implementation_hidden() {
        let out = run(
            Protocol::Pop3,
            &[
                (Client, "CAPA\r\n"),
                (
                    Server,
                    "+OK\r\nUIDL\r\nIMPLEMENTATION Dovecot\r\nTOP\r\n.\r\n",
                ),
            ],
        );
        assert_eq!(
            out,
            [
                "CAPA",
                "+OK",
                "IMPLEMENTATION <implementation>",
                "TOP",
                "UIDL",
                "."
            ]
        );
    }

    #[test]
    fn pop3_message_headers_are_normalized() {
        let out = run(
            Protocol::Pop3,
            &[
                (Client, "RETR 1\r\n"),
                (
                    Server,
                    "+OK 120 octets\r\nReturn-Path: <bob@example.test>\r\nReceived: from x\r\n\tby y; Mon, 1 Dec 2026\r\nDate: Mon, 1 Dec 2026\r\nSubject: hi\r\n\r\nDate: body\r\n.\r\n",
                ),
            ],
        );
        assert_eq!(
            out,
            [
                "RETR 1",
                "+OK",
                "Return-Path: <trace>",
                "Received: <trace>",
                "Date: <date>",
                "Subject: hi",
                "",
                "Date: body",
                ".",
            ]
        );
    }

    #[test]
    fn pop3_sasl_data_is_hidden() {
        let out = run(
            Protocol::Pop3,
            &[
                (Client, "AUTH PLAIN\r\n"),
                (Server, "+ \r\n"),
                (Client, "AGFsaWNlAGFsaWNlcHc=\r\n"),
                (Server, "+OK\r\n"),
                (Client, "AUTH PLAIN AGFsaWNlAGFsaWNlcHc=\r\n"),
            ],
        );
        assert_eq!(
            out,
            [
                "AUTH PLAIN",
                "+",
                "<password>",
                "+OK",
                "AUTH PLAIN <password>"
            ]
        );
    }

    #[test]
    fn smtp_keeps_codes_enhanced_codes_and_ehlo_keywords() {
        let out = run(
            Protocol::Smtp,
            &[
                (Server, "220 mx.example.test ESMTP Postfix\r\n"),
                (Client, "EHLO client\r\n"),
                (
                    Server,
                    "250-mx.example.test Hello\r\n250-SIZE 1000\r\n250 ENHANCEDSTATUSCODES\r\n",
                ),
                (Client, "MAIL FROM:<a@b>\r\n"),
                (Server, "250 2.1.0 Ok\r\n"),
                (Client, "AUTH LOGIN\r\n"),
                (Server, "334 VXNlcm5hbWU6\r\n"),
                (Client, "YWxpY2U=\r\n"),
                (Server, "535 5.7.8 Error: authentication failed\r\n"),
                (Client, "DATA\r\n"),
                (Server, "354 End data with <CR><LF>.<CR><LF>\r\n"),
                (Client, "PASS is content here\r\n"),
                (Client, ".\r\n"),
                (Server, "250 2.0.0 Ok: queued as 4ABC\r\n"),
                (Client, "QUIT\r\n"),
                (Server, "221 2.0.0 Bye\r\n"),
            ],
        );
        assert_eq!(
            out,
            [
                "220",
                "EHLO client",
                "250-",
                "ENHANCEDSTATUSCODES",
                "SIZE 1000",
                "MAIL FROM:<a@b>",
                "250 2.1.0",
                "AUTH LOGIN",
                "334",
                "<password>",
                "535 5.7.8",
                "DATA",
                "354",
                "PASS is content here",
                ".",
                "250 2.0.0",
                "QUIT",
                "221 2.0.0",
            ]
        );
    }

    #[test]
    fn garbage_is_escaped_not_dropped() {
        let out = run(Protocol::Smtp, &[(Server, "hello\x1b[31m\r\n")]);
        assert_eq!(out, ["hello\\x1b[31m"]);
    }
}
