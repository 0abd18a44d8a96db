//! POP3 and SMTP transcripts as stable text, line by line: what [`super::normalize`] does for
//! IMAP, for the line protocols.
//!
//! Kept: SMTP reply codes and enhanced status codes (RFC 3463), the keyword lines of an EHLO
//! reply, POP3 `+OK`/`-ERR` with a `[RESP-CODE]` (RFC 2449 8), the numbers of STAT, LIST n and
//! UIDL n replies, every line of a multi-line POP3 reply, client commands and message content.
//! Dropped: the human-readable text after a code or status (RFC 5321 4.2, RFC 1939 3) - it
//! names hosts, queue ids and products. Replaced: passwords and SASL data, and the Date,
//! Message-ID and Received headers of message content (they differ per delivery).

use std::collections::VecDeque;

use super::normalize::{DATE, MESSAGE_ID, PASSWORD, escape_lossy, line_prefix, substitute};
use super::{Direction, TranscriptEntry};
use crate::script::Protocol;

/// Replaces a Received header's value.
pub const RECEIVED: &str = "<received>";

/// What the lines so far say about the next one.
#[derive(Debug, Default)]
struct State {
    /// SMTP: an EHLO/LHLO was sent and its reply has not ended.
    ehlo: bool,
    /// SMTP: index of the next line within the current reply.
    reply_line: usize,
    /// SMTP: DATA sent, waiting for 354.
    data_sent: bool,
    /// SMTP: message content follows (after 354, up to `.`); POP3: a RETR/TOP body.
    content: bool,
    /// In the header section of message content.
    header: bool,
    /// The header being skipped continues on folded lines.
    folding: bool,
    /// The server asked for SASL data (334 / `+ `): the next client line is credentials.
    sasl: bool,
    /// POP3: commands waiting for a reply (verb, has an argument); the greeting first.
    pop3_queue: VecDeque<(String, bool)>,
    /// POP3: the verb whose multi-line body is being read.
    pop3_body: Option<String>,
}

/// One text per entry (each entry is one line of a POP3 or SMTP session).
pub fn normalize_text(
    protocol: Protocol,
    entries: &[TranscriptEntry],
    substitutions: &[(String, String)],
) -> Vec<String> {
    let mut state = State {
        pop3_queue: VecDeque::from([(String::new(), false)]),
        ..State::default()
    };
    entries
        .iter()
        .map(|e| {
            let line = e.bytes.strip_suffix(b"\n").unwrap_or(&e.bytes);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let text = escape_lossy(line);
            let shown = match (protocol, e.direction) {
                (Protocol::Smtp, Direction::Server) => smtp_server(&text, &mut state),
                (Protocol::Smtp, Direction::Client) => smtp_client(&text, &mut state),
                (_, Direction::Server) => pop3_server(&text, &mut state),
                (_, Direction::Client) => pop3_client(&text, &mut state),
            };
            let prefix = line_prefix(&e.session, e.direction, e.setup);
            let line = format!("{prefix} {}", substitute(&shown, substitutions));
            format!("{}\n", line.trim_end())
        })
        .collect()
}

/// `d.d.d` with 1-3 digits after each dot (RFC 3463 2).
fn is_enhanced_code(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 3
        && parts.iter().enumerate().all(|(i, p)| {
            let max = if i == 0 { 1 } else { 3 };
            !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
        })
}

fn smtp_server(text: &str, st: &mut State) -> String {
    let b = text.as_bytes();
    let is_reply = b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit);
    if !is_reply {
        return text.to_string();
    }
    let last = b.get(3) != Some(&b'-');
    let index = st.reply_line;
    st.reply_line = if last { 0 } else { index + 1 };
    let code = &text[..3];
    let head = &text[..text.len().min(4)];
    let rest = text.get(4..).unwrap_or_default();
    let shown = if st.ehlo && index > 0 {
        // An EHLO keyword line (RFC 5321 4.1.1.1): all of it means something.
        text.to_string()
    } else {
        match rest.split(' ').next() {
            Some(w) if is_enhanced_code(w) => format!("{head}{w}"),
            _ => head.to_string(),
        }
    };
    if last {
        st.ehlo = false;
        st.sasl = code == "334";
        if code == "354" && st.data_sent {
            st.content = true;
            st.header = true;
        }
        st.data_sent = false;
    }
    shown
}

fn smtp_client(text: &str, st: &mut State) -> String {
    if st.content {
        if text == "." {
            st.content = false;
            return text.to_string();
        }
        return content_line(text, st);
    }
    if std::mem::take(&mut st.sasl) {
        return if text == "*" {
            text.into()
        } else {
            PASSWORD.into()
        };
    }
    let mut words = text.splitn(3, ' ');
    let verb = words.next().unwrap_or_default().to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" | "LHLO" => st.ehlo = true,
        "DATA" => st.data_sent = true,
        "AUTH" => {
            let mech = words.next().unwrap_or_default();
            if words.next().is_some() {
                return format!("AUTH {mech} {PASSWORD}");
            }
        }
        _ => {}
    }
    text.to_string()
}

/// A line of message content: Date, Message-ID and Received header values vary.
fn content_line(text: &str, st: &mut State) -> String {
    if !st.header {
        return text.to_string();
    }
    if text.is_empty() {
        st.header = false;
        st.folding = false;
        return String::new();
    }
    if st.folding && (text.starts_with(' ') || text.starts_with("\\t")) {
        return String::new();
    }
    st.folding = false;
    let Some((name, _)) = text.split_once(':') else {
        return text.to_string();
    };
    let placeholder = match name.to_ascii_lowercase().as_str() {
        "date" => DATE,
        "message-id" => MESSAGE_ID,
        "received" => RECEIVED,
        _ => return text.to_string(),
    };
    st.folding = true;
    format!("{name}: {placeholder}")
}

fn pop3_server(text: &str, st: &mut State) -> String {
    if let Some(verb) = &st.pop3_body {
        if text == "." {
            st.pop3_body = None;
            st.content = false;
            return text.to_string();
        }
        if matches!(verb.as_str(), "RETR" | "TOP") {
            // Dot-stuffing is the server's; the line as recorded is unstuffed.
            return content_line(text, st);
        }
        return text.to_string();
    }
    let (verb, has_arg) = st.pop3_queue.pop_front().unwrap_or_default();
    let mut words = text.splitn(2, ' ');
    let status = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default();
    match status {
        "+OK" => {
            let multi = match verb.as_str() {
                "LIST" | "UIDL" => !has_arg,
                "RETR" | "TOP" | "CAPA" => true,
                _ => false,
            };
            if multi {
                st.pop3_body = Some(verb.clone());
                st.content = matches!(verb.as_str(), "RETR" | "TOP");
                st.header = st.content;
            }
            match verb.as_str() {
                // `+OK nn mm` (RFC 1939 5): the numbers are the answer, not human text.
                "STAT" => text.to_string(),
                "LIST" | "UIDL" if has_arg => text.to_string(),
                _ => with_resp_code(status, rest),
            }
        }
        "-ERR" => with_resp_code(status, rest),
        "+" => {
            st.sasl = true;
            "+".to_string()
        }
        _ => text.to_string(),
    }
}

/// A status and its `[RESP-CODE]` if it has one (RFC 2449 8); the rest is human text.
fn with_resp_code(status: &str, rest: &str) -> String {
    match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((code, _)) => format!("{status} [{code}]"),
        None => status.to_string(),
    }
}

fn pop3_client(text: &str, st: &mut State) -> String {
    if std::mem::take(&mut st.sasl) {
        st.pop3_queue.push_back((String::new(), false));
        return if text == "*" {
            text.into()
        } else {
            PASSWORD.into()
        };
    }
    let mut words = text.splitn(3, ' ');
    let verb = words.next().unwrap_or_default().to_ascii_uppercase();
    let arg = words.next();
    st.pop3_queue.push_back((verb.clone(), arg.is_some()));
    match (verb.as_str(), arg) {
        ("PASS", Some(_)) => format!("PASS {PASSWORD}"),
        ("APOP", Some(name)) => format!("APOP {name} {PASSWORD}"),
        ("AUTH", Some(mech)) if words.next().is_some() => format!("AUTH {mech} {PASSWORD}"),
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(protocol: Protocol, lines: &[(&str, &str)]) -> String {
        let entries: Vec<TranscriptEntry> = lines
            .iter()
            .map(|(d, t)| TranscriptEntry {
                session: "1".into(),
                direction: if *d == "C" {
                    Direction::Client
                } else {
                    Direction::Server
                },
                setup: false,
                bytes: format!("{t}\r\n").into_bytes(),
            })
            .collect();
        normalize_text(
            protocol,
            &entries,
            &[("alice".into(), "{user:alice}".into())],
        )
        .concat()
    }

    #[test]
    fn smtp_keeps_codes_and_keywords_and_drops_text() {
        let out = run(
            Protocol::Smtp,
            &[
                ("S", "220 mx.example.test ESMTP Postfix (Debian)"),
                ("C", "EHLO client.example"),
                ("S", "250-mx.example.test Hello client"),
                ("S", "250-SIZE 10240000"),
                ("S", "250 ENHANCEDSTATUSCODES"),
                ("C", "AUTH PLAIN AGFsaWNlAGFsaWNlcHc="),
                ("S", "235 2.7.0 Authentication successful"),
                ("C", "MAIL FROM:<alice@example.test>"),
                ("S", "250 2.1.0 Ok"),
                ("C", "DATA"),
                ("S", "354 End data with <CR><LF>.<CR><LF>"),
                ("C", "Date: Mon, 7 Dec 2026 01:00:00 +0000"),
                ("C", "Received: from x"),
                ("C", "\tby y; Mon, 7 Dec 2026"),
                ("C", "Subject: hi"),
                ("C", ""),
                ("C", "Date: in the body"),
                ("C", "."),
                ("S", "250 2.0.0 Ok: queued as 4F2A1C0"),
            ],
        );
        assert_eq!(
            out,
            "S1: 220\nC1: EHLO client.example\nS1: 250-\nS1: 250-SIZE 10240000\nS1: 250 ENHANCEDSTATUSCODES\n\
             C1: AUTH PLAIN <password>\nS1: 235 2.7.0\nC1: MAIL FROM:<{user:alice}@example.test>\nS1: 250 2.1.0\n\
             C1: DATA\nS1: 354\nC1: Date: <date>\nC1: Received: <received>\nC1:\nC1: Subject: hi\nC1:\n\
             C1: Date: in the body\nC1: .\nS1: 250 2.0.0\n"
        );
    }

    #[test]
    fn pop3_keeps_numbers_that_answer_and_drops_text() {
        let out = run(
            Protocol::Pop3,
            &[
                ("S", "+OK Dovecot ready."),
                ("C", "USER alice"),
                ("S", "+OK"),
                ("C", "PASS secret"),
                ("S", "-ERR [AUTH] Authentication failed."),
                ("C", "STAT"),
                ("S", "+OK 2 320"),
                ("C", "RETR 1"),
                ("S", "+OK 120 octets"),
                ("S", "Message-ID: <a@b>"),
                ("S", ""),
                ("S", "body"),
                ("S", "."),
            ],
        );
        assert_eq!(
            out,
            "S1: +OK\nC1: USER {user:alice}\nS1: +OK\nC1: PASS <password>\nS1: -ERR [AUTH]\nC1: STAT\n\
             S1: +OK 2 320\nC1: RETR 1\nS1: +OK\nS1: Message-ID: <message-id>\nS1:\nS1: body\nS1: .\n"
        );
    }
}
