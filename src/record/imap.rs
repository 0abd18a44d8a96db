//! IMAP transcript: both directions framed with imap-codec's `Fragmentizer` (lines and
//! literals, nothing parsed, at most [`RECORD_CAP`] bytes kept per message), written in the
//! language's literal form. A synchronizing client literal gets its `S: + ...` line right
//! after the announcing line; LITERAL+ gets none. LOGIN and AUTHENTICATE PLAIN/LOGIN
//! credentials become variables; STARTTLS is followed to its tagged OK.

use std::collections::{HashMap, HashSet};

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer};
use imap_types::command::CommandBody;
use imap_types::core::LiteralMode;

use super::journal::Entry;
use super::lines::{
    RECORD_CAP, content_text, line_text, looks_like_variable, preview, sasl_response_var,
    server_line_loads,
};
use super::observe::Observer;

/// An AUTHENTICATE exchange in progress.
#[derive(Debug)]
struct Sasl {
    tag: String,
    mechanism: String,
    responses: usize,
}

/// One script line of a message: a line of the message, or (client side) the server's
/// continuation request that stands between a synchronizing literal's announcement and data.
#[derive(Debug)]
enum Piece {
    Line(String),
    Plus(String),
}

pub struct ImapObserver {
    keep_secrets: bool,
    client: Fragmentizer,
    server: Fragmentizer,
    client_frags: Vec<FragmentInfo>,
    /// Continuation requests received while the client's message waited for them: (number
    /// of the message's fragments before it, text).
    client_plus: Vec<(usize, String)>,
    server_frags: Vec<FragmentInfo>,
    starttls_tag: Option<String>,
    upgrade: bool,
    sasl: Option<Sasl>,
    /// Tags of client commands not written: their completions are noted, not written, so
    /// a replay does not wait for a command it never sent.
    dropped: HashSet<String>,
    user: Option<String>,
    /// `--capture-uidvalidity`: each UIDVALIDITY value seen and the variable standing for it.
    uidvalidity: Option<HashMap<String, String>>,
}

impl ImapObserver {
    pub fn new(keep_secrets: bool, capture_uidvalidity: bool) -> Self {
        let cap = RECORD_CAP as u32;
        ImapObserver {
            keep_secrets,
            client: Fragmentizer::new(cap),
            server: Fragmentizer::new(cap),
            client_frags: Vec::new(),
            client_plus: Vec::new(),
            server_frags: Vec::new(),
            starttls_tag: None,
            upgrade: false,
            sasl: None,
            dropped: HashSet::new(),
            user: None,
            uidvalidity: capture_uidvalidity.then(HashMap::new),
        }
    }

    /// Writes UIDVALIDITY values (after UIDVALIDITY, and the first number of APPENDUID and
    /// COPYUID) as a capture the first time and as that variable after, so that a run
    /// against another server, whose UIDVALIDITY differs, still matches.
    fn capture_uidvalidity(&mut self, text: &str) -> String {
        let Some(known) = self.uidvalidity.as_mut() else {
            return text.to_owned();
        };
        let mut out = String::with_capacity(text.len());
        let mut words = text.split(' ').peekable();
        let mut first = true;
        while let Some(word) = words.next() {
            if !first {
                out.push(' ');
            }
            first = false;
            out.push_str(word);
            let key = word.trim_start_matches(['[', '(']).to_ascii_uppercase();
            // Each names a mailbox's UIDVALIDITY (RFC 3501 7.1, RFC 4315 3).
            if !matches!(key.as_str(), "UIDVALIDITY" | "APPENDUID" | "COPYUID") {
                continue;
            }
            let Some(next) = words.peek() else { continue };
            let digits: String = next.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() {
                continue;
            }
            let name = match known.get(&digits) {
                Some(name) => name.clone(),
                None => {
                    let name = match known.len() {
                        0 => "uidvalidity".to_string(),
                        n => format!("uidvalidity{}", n + 1),
                    };
                    known.insert(digits.clone(), name.clone());
                    name
                }
            };
            let rest = &next[digits.len()..];
            out.push_str(&format!(" {{{name}}}{rest}"));
            words.next();
        }
        out
    }

    /// The client's current message announced a synchronizing literal and waits for `+`.
    fn client_waits_for_plus(&self) -> bool {
        matches!(
            self.client_frags.last(),
            Some(FragmentInfo::Line {
                announcement: Some(a),
                ..
            }) if a.mode == LiteralMode::Sync
        )
    }

    fn sasl_var(&mut self, b64: &str) -> String {
        let Some(sasl) = self.sasl.as_mut() else {
            return b64.to_owned();
        };
        let index = sasl.responses;
        sasl.responses += 1;
        let (var, login) = sasl_response_var(&sasl.mechanism, index, b64);
        if login.is_some() {
            self.user = login;
        }
        if self.keep_secrets {
            b64.to_owned()
        } else {
            var.to_owned()
        }
    }

    fn client_message(&mut self, out: &mut Vec<Entry>) {
        let frags = std::mem::take(&mut self.client_frags);
        let plus = std::mem::take(&mut self.client_plus);
        let bytes = self.client.message_bytes().to_vec();
        let first_words = first_line_words(&bytes);
        let tag = first_words.first().cloned();
        let pieces = match assemble(&self.client, &frags, &plus, "client", out) {
            Ok(p) => p,
            Err(why) => {
                out.push(Entry::Note(format!(
                    "client message not written ({why}): {}",
                    preview(&bytes)
                )));
                if let Some(t) = tag.filter(|_| self.sasl.is_none()) {
                    self.dropped.insert(t);
                }
                return;
            }
        };
        // An AUTHENTICATE response line.
        if self.sasl.is_some()
            && let [Piece::Line(line)] = pieces.as_slice()
        {
            let text = if line == "*" {
                line.clone()
            } else {
                self.sasl_var(line)
            };
            out.push(Entry::Client(text));
            return;
        }
        let verb = first_words
            .get(1)
            .map(|v| v.to_ascii_uppercase())
            .unwrap_or_default();
        let tag = tag.unwrap_or_default();
        match verb.as_str() {
            "LOGIN" => {
                let (user, _) = login_args(&bytes, &first_words);
                if let Some(u) = user {
                    self.user = Some(u);
                }
                if !self.keep_secrets {
                    out.push(Entry::Client(format!(
                        "{tag} {} {{user}} {{password}}",
                        first_words[1]
                    )));
                    return;
                }
            }
            "AUTHENTICATE" => {
                let mechanism = first_words
                    .get(2)
                    .map(|m| m.to_ascii_uppercase())
                    .unwrap_or_default();
                self.sasl = Some(Sasl {
                    tag: tag.clone(),
                    mechanism,
                    responses: 0,
                });
                if let Some(ir) = first_words.get(3) {
                    let var = if ir == "=" {
                        ir.clone()
                    } else {
                        self.sasl_var(ir)
                    };
                    out.push(Entry::Client(format!(
                        "{tag} {} {} {var}",
                        first_words[1], first_words[2]
                    )));
                    return;
                }
            }
            "STARTTLS" => self.starttls_tag = Some(tag.clone()),
            _ => {}
        }
        if let Some(Piece::Line(first)) = pieces.first()
            && looks_like_variable(first)
        {
            out.push(Entry::Note(format!(
                "client message not written: it contains `{{name}}`, which a script reads as a variable: {}",
                preview(first.as_bytes())
            )));
            self.dropped.insert(tag);
            return;
        }
        for p in pieces {
            out.push(match p {
                Piece::Line(t) => Entry::Client(t),
                Piece::Plus(t) => Entry::Server(t),
            });
        }
    }

    fn server_message(&mut self, out: &mut Vec<Entry>) {
        let frags = std::mem::take(&mut self.server_frags);
        let bytes = self.server.message_bytes().to_vec();
        let words = first_line_words(&bytes);
        let tag = words.first().cloned().unwrap_or_default();
        if tag == "+" || bytes.starts_with(b"+") {
            if self.client_waits_for_plus() {
                let text = line_text(&bytes)
                    .map(|t| t.text)
                    .unwrap_or_else(|_| "+".into());
                self.client_plus.push((self.client_frags.len(), text));
                return;
            }
        } else if tag != "*" {
            let status = words.get(1).map(|s| s.to_ascii_uppercase());
            if self.starttls_tag.as_deref() == Some(tag.as_str()) {
                self.upgrade = status.as_deref() == Some("OK");
                self.starttls_tag = None;
            }
            if self.sasl.as_ref().is_some_and(|s| s.tag == tag) {
                self.sasl = None;
            }
            // A synchronizing literal the server refused: the client will not send it.
            if self.client_waits_for_plus()
                && first_line_words(self.client.message_bytes()).first() == Some(&tag)
            {
                out.push(Entry::Note(format!(
                    "client command not written: the server refused its literal: {}",
                    preview(self.client.message_bytes())
                )));
                self.client.skip_message();
                self.client_frags.clear();
                self.client_plus.clear();
                self.dropped.insert(tag.clone());
            }
            if self.dropped.remove(&tag) {
                out.push(Entry::Note(format!(
                    "server response to a command not written: {}",
                    preview(&bytes)
                )));
                return;
            }
        }
        let pieces = match assemble(&self.server, &frags, &[], "server", out) {
            Ok(p) => p,
            Err(why) => {
                out.push(Entry::Note(format!(
                    "server message not written ({why}): {}",
                    preview(&bytes)
                )));
                return;
            }
        };
        let joined = bytes
            .strip_suffix(b"\n")
            .map(|b| b.strip_suffix(b"\r").unwrap_or(b))
            .unwrap_or(&bytes);
        if let Err(why) = server_line_loads(true, joined) {
            out.push(Entry::Note(format!(
                "server message not written (it does not load as a pattern: {why}): {}",
                preview(&bytes)
            )));
            return;
        }
        for p in pieces {
            let (Piece::Line(t) | Piece::Plus(t)) = p;
            let t = self.capture_uidvalidity(&t);
            out.push(Entry::Server(t));
        }
    }
}

/// Notes a fragment of the current message. Once the message is over the cap it will not be
/// written anyway: only the last fragment is kept (for the `+` bookkeeping), so a message of
/// countless tiny literals costs no memory.
fn keep_fragment(frz: &Fragmentizer, frags: &mut Vec<FragmentInfo>, info: FragmentInfo) {
    if frz.is_max_message_size_exceeded()
        && let Some(last) = frags.last_mut()
    {
        *last = info;
        return;
    }
    frags.push(info);
}

/// The words of a message's first line (up to 4), as sent.
fn first_line_words(bytes: &[u8]) -> Vec<String> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .split(' ')
        .take(4)
        .map(str::to_owned)
        .collect()
}

/// LOGIN's user name (and whether it parsed): imap-codec for every form (atom, quoted,
/// literal), the plain second word as a fallback.
fn login_args(bytes: &[u8], words: &[String]) -> (Option<String>, bool) {
    if let Ok((_, cmd)) = CommandCodec::default().decode(bytes)
        && let CommandBody::Login { username, .. } = cmd.body
    {
        let user: &[u8] = username.as_ref();
        return (Some(String::from_utf8_lossy(user).into_owned()), true);
    }
    (words.get(2).map(|w| w.trim_matches('"').to_owned()), false)
}

/// Cuts a framed message into script lines: each line fragment ends a script line, a
/// literal's lines are lines of their own, and a literal that ends mid-line shares its last
/// line with the rest of the message. Fails when the bytes cannot be written that way.
fn assemble(
    frz: &Fragmentizer,
    frags: &[FragmentInfo],
    plus: &[(usize, String)],
    side: &str,
    out: &mut Vec<Entry>,
) -> Result<Vec<Piece>, String> {
    if frz.is_max_message_size_exceeded() {
        return Err(format!(
            "larger than {RECORD_CAP} bytes, the recorder keeps no more of one message; it was forwarded whole"
        ));
    }
    let mut pieces = Vec::new();
    let mut cur = String::new();
    for (i, info) in frags.iter().enumerate() {
        for (_, text) in plus.iter().filter(|(at, _)| *at == i) {
            pieces.push(Piece::Plus(text.clone()));
        }
        let bytes = frz.fragment_bytes(*info);
        match info {
            FragmentInfo::Line { .. } => {
                let t = line_text(bytes)?;
                if t.bare_lf {
                    out.push(Entry::Note(format!(
                        "a {side} line below ended in a bare LF (a script sends CRLF)"
                    )));
                }
                cur.push_str(&t.text);
                pieces.push(Piece::Line(std::mem::take(&mut cur)));
            }
            FragmentInfo::Literal { .. } => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| "a literal is not UTF-8 text".to_string())?;
                if text.ends_with('\r') {
                    return Err("a literal ends between CR and LF".into());
                }
                let segments: Vec<&str> = text.split("\r\n").collect();
                let (last, whole) = segments.split_last().unwrap_or((&"", &[]));
                for seg in whole {
                    cur.push_str(
                        &content_text(seg.as_bytes()).map_err(|e| format!("literal: {e}"))?,
                    );
                    pieces.push(Piece::Line(std::mem::take(&mut cur)));
                }
                cur.push_str(&content_text(last.as_bytes()).map_err(|e| format!("literal: {e}"))?);
            }
        }
    }
    Ok(pieces)
}

impl Observer for ImapObserver {
    fn client(&mut self, bytes: &[u8], out: &mut Vec<Entry>) {
        self.client.enqueue_bytes(bytes);
        while let Some(info) = self.client.progress() {
            keep_fragment(&self.client, &mut self.client_frags, info);
            if self.client.is_message_complete() {
                self.client_message(out);
            }
        }
    }

    fn server(&mut self, bytes: &[u8], out: &mut Vec<Entry>) {
        self.server.enqueue_bytes(bytes);
        while let Some(info) = self.server.progress() {
            keep_fragment(&self.server, &mut self.server_frags, info);
            if self.server.is_message_complete() {
                self.server_message(out);
            }
        }
    }

    fn starttls_pending(&self) -> bool {
        self.starttls_tag.is_some()
    }

    fn take_upgrade(&mut self) -> bool {
        std::mem::take(&mut self.upgrade)
    }

    fn user(&self) -> Option<String> {
        self.user.clone()
    }

    fn finish(&mut self, out: &mut Vec<Entry>) {
        for (side, frz) in [("client", &self.client), ("server", &self.server)] {
            let pending = frz.message_bytes();
            if !frz.is_message_complete() && !pending.is_empty() {
                out.push(Entry::Note(format!(
                    "the connection ended in the middle of a {side} message: {}",
                    preview(pending)
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(o: &mut ImapObserver, steps: &[(bool, &[u8])]) -> Vec<Entry> {
        let mut out = Vec::new();
        for (client, bytes) in steps {
            if *client {
                o.client(bytes, &mut out);
            } else {
                o.server(bytes, &mut out);
            }
        }
        out
    }

    #[test]
    fn sync_literal_gets_its_continuation_line_in_place() {
        let mut o = ImapObserver::new(false, false);
        let out = script(
            &mut o,
            &[
                (false, b"* OK hi\r\n"),
                (true, b"a1 APPEND INBOX {12}\r\n"),
                (false, b"* 3 EXISTS\r\n+ go\r\n"),
                (true, b"Subject: x\r\n)\r\n"),
                (false, b"a1 OK done\r\n"),
            ],
        );
        let want = vec![
            Entry::Server("* OK hi".into()),
            Entry::Server("* 3 EXISTS".into()),
            Entry::Client("a1 APPEND INBOX {12}".into()),
            Entry::Server("+ go".into()),
            Entry::Client("Subject: x".into()),
            Entry::Client(")".into()),
            Entry::Server("a1 OK done".into()),
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn literal_ending_mid_line_and_server_literal() {
        let mut o = ImapObserver::new(true, false);
        let out = script(
            &mut o,
            &[
                (true, b"a1 LOGIN {5+}\r\nalice {3+}\r\npw!\r\n"),
                (false, b"* 1 FETCH (BODY[] {4}\r\nab\r\n)\r\n"),
            ],
        );
        assert_eq!(
            out,
            vec![
                Entry::Client("a1 LOGIN {5+}".into()),
                Entry::Client("alice {3+}".into()),
                Entry::Client("pw!".into()),
                Entry::Server("* 1 FETCH (BODY[] {4}".into()),
                Entry::Server("ab".into()),
                Entry::Server(")".into()),
            ]
        );
        assert_eq!(o.user().as_deref(), Some("alice"));
    }

    #[test]
    fn login_with_literals_is_redacted_whole() {
        let mut o = ImapObserver::new(false, false);
        let out = script(
            &mut o,
            &[
                (true, b"a1 login {5}\r\n"),
                (false, b"+ ok\r\n"),
                (true, b"alice \"pw\"\r\n"),
                (false, b"a1 OK\r\n"),
            ],
        );
        assert_eq!(
            out,
            vec![
                Entry::Client("a1 login {user} {password}".into()),
                Entry::Server("a1 OK".into()),
            ]
        );
        assert_eq!(o.user().as_deref(), Some("alice"));
    }

    #[test]
    fn authenticate_and_starttls() {
        let mut o = ImapObserver::new(false, false);
        let out = script(
            &mut o,
            &[
                (true, b"a1 AUTHENTICATE PLAIN\r\n"),
                (false, b"+ \r\n"),
                (true, b"AGFsaWNlAGFsaWNlcHc=\r\n"),
                (false, b"a1 OK\r\n"),
                (true, b"a2 STARTTLS\r\n"),
            ],
        );
        assert_eq!(out[2], Entry::Client("{auth_plain}".into()));
        assert!(o.starttls_pending());
        let mut more = Vec::new();
        o.server(b"a2 OK begin\r\n", &mut more);
        assert!(o.take_upgrade());
        assert!(!o.starttls_pending());
    }

    #[test]
    fn uidvalidity_becomes_a_capture_then_a_variable() {
        let mut o = ImapObserver::new(false, true);
        let out = script(
            &mut o,
            &[
                (false, b"* OK [UIDVALIDITY 7226] UIDs valid\r\n"),
                (false, b"a1 OK [APPENDUID 7226 3] done\r\n"),
                (false, b"* STATUS x (UIDVALIDITY 99 UIDNEXT 2)\r\n"),
                (false, b"a2 OK [COPYUID 99 1 2] done\r\n"),
            ],
        );
        let texts: Vec<String> = out
            .iter()
            .map(|e| match e {
                Entry::Server(t) => t.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            texts,
            [
                "* OK [UIDVALIDITY {uidvalidity}] UIDs valid",
                "a1 OK [APPENDUID {uidvalidity} 3] done",
                "* STATUS x (UIDVALIDITY {uidvalidity2} UIDNEXT 2)",
                "a2 OK [COPYUID {uidvalidity2} 1 2] done",
            ]
        );
    }

    #[test]
    fn refused_literal_and_bad_bytes_become_notes() {
        let mut o = ImapObserver::new(false, false);
        let out = script(
            &mut o,
            &[
                (true, b"a1 APPEND INBOX {99999}\r\n"),
                (false, b"a1 NO too big\r\n"),
                (true, b"a2 NOOP\r\n"),
                (false, b"* 1 FETCH (BODY[] {2}\r\n\xff\xfe)\r\na2 OK\r\n"),
            ],
        );
        assert!(
            matches!(&out[0], Entry::Note(n) if n.contains("refused")),
            "{out:?}"
        );
        assert!(matches!(&out[1], Entry::Note(_)));
        assert_eq!(out[2], Entry::Client("a2 NOOP".into()));
        assert!(
            matches!(&out[3], Entry::Note(n) if n.contains("UTF-8")),
            "{out:?}"
        );
        assert_eq!(out[4], Entry::Server("a2 OK".into()));
    }
}
