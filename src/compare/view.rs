//! One cell's transcript as text two servers can be compared on.
//!
//! IMAP sessions go through the snapshot normalizer (`report::normalize`), POP3 and SMTP
//! sessions through [`crate::report::normalize_text`]; the lines stay in the order they crossed the wire. Two
//! texts come out: the whole transcript (the harness's login and SELECT included, shown in
//! reports) and the part servers are compared on, the script's own lines. Setup exchanges
//! differ between any two products (capability lists, greeting codes) and would make every
//! scenario look different.

use std::collections::BTreeMap;

use crate::report::normalize::{SEPARATOR, line_prefix, normalize_entries, substitute};
use crate::report::normalize_text::TextSession;
use crate::report::{Transcript, TranscriptEntry};
use crate::script::{Protocol, Scenario};

/// The normalized text of one cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellText {
    /// Every script session's messages, setup included.
    pub full: String,
    /// Only the script's own lines: what servers are compared on.
    pub compared: String,
}

/// Normalizes one cell's transcript. `substitutions` are the run's (fresh mailbox names,
/// logins); `separator` is the server's hierarchy separator, so that `{box}/child` on one
/// server and `{box}.child` on another read the same.
pub fn cell_text(
    scenario: &Scenario,
    transcript: &Transcript,
    substitutions: &[(String, String)],
    separator: Option<&str>,
) -> CellText {
    let subs = with_separator(substitutions, separator);
    let view = crate::engine::snapshot_view(transcript, &[]);
    let protocol_of = |session: &str| {
        scenario
            .sessions
            .get(session)
            .map(|s| s.protocol)
            .unwrap_or(scenario.protocol)
    };
    // The IMAP messages are normalized together (AUTHENTICATE spans messages), then split
    // back into one chunk per message: continuation lines start with spaces, first lines
    // with their `C`/`S` prefix.
    let imap: Vec<TranscriptEntry> = view
        .entries
        .iter()
        .filter(|e| protocol_of(&e.session) == Protocol::Imap)
        .cloned()
        .collect();
    let imap_count = imap.len();
    // In the canonical form: what RFC 3501 leaves open (order of flags, capabilities and
    // FETCH items, quoting of an atom-like string) is not a disagreement.
    let imap_text = normalize_entries(&Transcript { entries: imap }, &subs, true).concat();
    let mut imap_chunks = split_chunks(&imap_text).into_iter();
    let chunks_match = imap_text.lines().filter(|l| !l.starts_with(' ')).count() == imap_count;

    let mut text_sessions: BTreeMap<String, TextSession> = BTreeMap::new();
    let mut out = CellText::default();
    for e in &view.entries {
        let protocol = protocol_of(&e.session);
        let chunk = if protocol == Protocol::Imap {
            match imap_chunks.next() {
                Some(c) if chunks_match => c,
                // Cannot happen with the normalizer's line format; keep the text anyway.
                _ => continue,
            }
        } else {
            let session = text_sessions
                .entry(e.session.clone())
                .or_insert_with(|| TextSession::new(protocol));
            let prefix = line_prefix(&e.session, e.direction, e.setup);
            let mut chunk = String::new();
            for (i, line) in session.message(e.direction, &e.bytes).iter().enumerate() {
                let line = substitute(line, &subs);
                let text = if i == 0 {
                    format!("{prefix} {line}")
                } else {
                    format!("    | {line}")
                };
                chunk.push_str(text.trim_end());
                chunk.push('\n');
            }
            chunk
        };
        out.full.push_str(&chunk);
        if !e.setup {
            out.compared.push_str(&chunk);
        }
    }
    if !chunks_match {
        // Never expected; shown rather than lost.
        out.full.push_str(&imap_text);
        out.compared.push_str(&imap_text);
    }
    out
}

/// The run's substitutions plus `<mailbox><sep>` -> `{var}{sep}` for each fresh mailbox.
fn with_separator(
    substitutions: &[(String, String)],
    separator: Option<&str>,
) -> Vec<(String, String)> {
    let mut subs = substitutions.to_vec();
    if let Some(sep) = separator.filter(|s| !s.is_empty()) {
        // The delimiter field of LIST and LSUB responses (RFC 3501 7.2.2).
        subs.push((format!("\"{sep}\""), format!("\"{SEPARATOR}\"")));
        for (value, placeholder) in substitutions {
            // Account logins are `{user:name}`; mailbox variables are plain `{name}`.
            if !placeholder.starts_with("{user:") && !value.is_empty() {
                subs.push((format!("{value}{sep}"), format!("{placeholder}{SEPARATOR}")));
            }
        }
    }
    subs
}

/// Splits normalizer output into one chunk per message (a first line and its indented
/// continuation lines), each chunk ending in a newline.
fn split_chunks(text: &str) -> Vec<String> {
    let mut chunks: Vec<String> = Vec::new();
    for line in text.lines() {
        match chunks.last_mut() {
            Some(c) if line.starts_with(' ') => {
                c.push_str(line);
                c.push('\n');
            }
            _ => chunks.push(format!("{line}\n")),
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Direction::{self, Client, Server};

    fn scenario() -> Scenario {
        let text = r#"Scenario(id: "x.t", title: "t", spec: ["RFC 3501 6"], protocol: "smtp",
            sessions: {"m": (protocol: "smtp", state: "not-authenticated"), "i": (protocol: "imap")},
            script: r"
Sm: 220
Ci: a1 NOOP
Si: a1 OK
")"#;
        match crate::script::parse_str(std::path::Path::new("t.ron"), text) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn e(session: &str, direction: Direction, setup: bool, text: &str) -> TranscriptEntry {
        TranscriptEntry {
            session: session.to_string(),
            direction,
            setup,
            bytes: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn protocols_keep_their_order_and_setup_is_left_out_of_the_comparison() {
        let t = Transcript {
            entries: vec![
                e(
                    "i",
                    Server,
                    true,
                    "* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n",
                ),
                e("m", Server, false, "220 mx ESMTP Postfix\r\n"),
                e("i", Client, false, "a1 SELECT INBOX.mt-1-0/child\r\n"),
                e(
                    "i",
                    Server,
                    false,
                    "a1 OK [READ-WRITE] Select completed\r\n",
                ),
                e("i", Server, false, "* LIST () \"/\" INBOX\r\n"),
                e("m", Client, false, "MAIL FROM:<alice@example.test>\r\n"),
                e("m", Server, false, "250 2.1.0 Ok\r\n"),
            ],
        };
        let subs = vec![("INBOX.mt-1-0".to_string(), "{box}".to_string())];
        let text = cell_text(&scenario(), &t, &subs, Some("/"));
        assert_eq!(
            text.full,
            "Si setup: * OK [CAPABILITY IMAP4rev1]\nSm: 220\nCi: a1 SELECT {box}{sep}child\n\
             Si: a1 OK [READ-WRITE]\nSi: * LIST () \"{sep}\" INBOX\n\
             Cm: MAIL FROM:<alice@example.test>\nSm: 250 2.1.0\n"
        );
        assert_eq!(
            text.compared,
            "Sm: 220\nCi: a1 SELECT {box}{sep}child\nSi: a1 OK [READ-WRITE]\n\
             Si: * LIST () \"{sep}\" INBOX\nCm: MAIL FROM:<alice@example.test>\nSm: 250 2.1.0\n"
        );
    }

    #[test]
    fn literals_stay_with_their_message() {
        let t = Transcript {
            entries: vec![
                e("i", Client, false, "a1 FETCH 1 BODY[]\r\n"),
                e("m", Server, false, "220 ok\r\n"),
                e("i", Server, false, "* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\n"),
                e("i", Server, false, "a1 OK done\r\n"),
            ],
        };
        let text = cell_text(&scenario(), &t, &[], None);
        assert_eq!(
            text.full,
            "Ci: a1 FETCH 1 BODY[]\nSm: 220\nSi: * 1 FETCH (BODY[] {5}\n    | ab\n    | c\n    \\ no CRLF at end of literal\n    > )\nSi: a1 OK\n"
        );
    }
}
