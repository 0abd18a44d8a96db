//! Always-on SMTP checks (RFC 5321, 3207, 2034, 2920). Pure: the engine feeds each client
//! line and each whole server reply; violations come back. Replies are matched to commands in
//! the order they were sent, so pipelined commands (RFC 2920) are handled. Only what replies
//! prove is modelled: a server that accepts something a client should not have sent (MAIL
//! before EHLO) is not blamed, and state that cannot be known is left unknown and not checked.

use std::collections::{HashMap, VecDeque};

use smtp_proto::{EXT_ENHANCED_STATUS_CODES, EXT_START_TLS, EhloResponse, Request};

pub use crate::checks::Rule;
use crate::checks::{Violation, must};
use crate::proto::line::LineReply;

pub const REPLY_SYNTAX: Rule = must(
    "smtp.reply.syntax",
    "RFC 5321 4.2",
    "every reply line is a code 2xx-5xx, then SP, \"-\" or the line end; only the last line lacks \"-\"",
);
pub const REPLY_SAME_CODE: Rule = must(
    "smtp.reply.same-code",
    "RFC 5321 4.2.1",
    "every line of a multi-line reply carries the same code",
);
pub const REPLY_CRLF: Rule = must(
    "smtp.reply.crlf",
    "RFC 5321 2.3.8",
    "reply lines end with CRLF, never a bare LF",
);
pub const GREETING: Rule = must(
    "smtp.greeting",
    "RFC 5321 3.1, 4.3.1",
    "the greeting is 220 (or 554, or 421 when the service is unavailable)",
);
pub const RCPT_WITHOUT_MAIL: Rule = must(
    "smtp.sequence.rcpt-without-mail",
    "RFC 5321 3.3, 4.1.4",
    "RCPT is not accepted (2xx) unless a MAIL was accepted in the current transaction",
);
pub const DATA_WITHOUT_RCPT: Rule = must(
    "smtp.sequence.data-without-rcpt",
    "RFC 5321 3.3, 4.1.4",
    "DATA is not answered 354 unless a RCPT was accepted in the current transaction",
);
pub const NESTED_MAIL: Rule = must(
    "smtp.sequence.nested-mail",
    "RFC 5321 4.1.4",
    "MAIL is not accepted (2xx) while a transaction is open",
);
pub const DATA_REPLY: Rule = must(
    "smtp.data.reply",
    "RFC 5321 4.3.2",
    "DATA is answered 354 or an error (4xx/5xx)",
);
pub const DATA_END_REPLY: Rule = must(
    "smtp.data.end-reply",
    "RFC 5321 4.3.2",
    "the end of message data (\".\") is answered 2xx, 4xx or 5xx, never 3xx",
);
pub const QUIT_REPLY: Rule = must(
    "smtp.quit.reply",
    "RFC 5321 4.1.1.10",
    "QUIT is answered 221",
);
pub const EHLO_KEYWORD: Rule = must(
    "smtp.ehlo.keyword",
    "RFC 5321 4.1.1.1",
    "each EHLO reply line after the first is an ehlo-keyword with SP-separated parameters",
);
pub const STARTTLS_READVERTISED: Rule = must(
    "smtp.starttls.readvertised",
    "RFC 3207 4.2",
    "STARTTLS is not announced in the EHLO reply after TLS is established",
);
pub const ENHANCED_CODE: Rule = must(
    "smtp.enhanced.code",
    "RFC 2034 3, 4",
    "after ENHANCEDSTATUSCODES, 2xx/4xx/5xx reply lines (not greeting, HELO, EHLO) start with a status code of the reply's class",
);

/// Every rule, in documentation order.
pub const ALL: &[Rule] = &[
    REPLY_SYNTAX,
    REPLY_SAME_CODE,
    REPLY_CRLF,
    GREETING,
    RCPT_WITHOUT_MAIL,
    DATA_WITHOUT_RCPT,
    NESTED_MAIL,
    DATA_REPLY,
    DATA_END_REPLY,
    QUIT_REPLY,
    EHLO_KEYWORD,
    STARTTLS_READVERTISED,
    ENHANCED_CODE,
];

/// Commands still waiting for their reply; a client that pipelines more than this without
/// reading replies is not realistic, and the bound keeps memory fixed on any input.
const MAX_PENDING: usize = 10_000;

/// What a sent command means for checking its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    /// The final "." of message content.
    DataEnd,
    /// BDAT: its LAST chunk ends the transaction.
    Bdat {
        last: bool,
    },
    StartTls,
    Auth,
    Rset,
    Quit,
    /// Anything else, including lines smtp-proto cannot parse.
    Other,
}

/// What the replies so far prove about a flag of the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Yes,
    No,
    Unknown,
}

#[derive(Debug)]
struct Session {
    greeted: bool,
    pending: VecDeque<Cmd>,
    /// A MAIL was accepted in the current transaction.
    mail: Known,
    /// A RCPT was accepted in the current transaction.
    rcpt: Known,
    tls: bool,
    /// ENHANCEDSTATUSCODES is in force (announced by the last EHLO, not voided since).
    enhanced: bool,
    /// The last reply to AUTH was 334: the next client line is a SASL response.
    sasl_response: bool,
    /// Octets of BDAT chunk data still to come from the client (not commands).
    bdat_remaining: usize,
}

impl Session {
    fn new() -> Self {
        Session {
            greeted: false,
            pending: VecDeque::new(),
            mail: Known::No,
            rcpt: Known::No,
            tls: false,
            enhanced: false,
            sasl_response: false,
            bdat_remaining: 0,
        }
    }

    fn reset_transaction(&mut self) {
        self.mail = Known::No;
        self.rcpt = Known::No;
    }
}

/// The SMTP checker of one scenario: one state per session.
#[derive(Debug, Default)]
pub struct SmtpChecks {
    sessions: HashMap<String, Session>,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl SmtpChecks {
    pub fn new() -> Self {
        SmtpChecks::default()
    }

    pub fn session_opened(&mut self, session: &str) {
        self.sessions.insert(session.to_string(), Session::new());
    }

    /// One client line as sent, CRLF included. Lines of message content (after a 354, up to
    /// and including the final "."), are passed too, with `in_data = true`.
    pub fn client_line(&mut self, session: &str, bytes: &[u8], in_data: bool) -> Vec<Violation> {
        let s = self.sessions.entry(session.to_string()).or_default();
        let cmd = if in_data {
            if strip_eol(bytes) == b"." {
                Some(Cmd::DataEnd)
            } else {
                None
            }
        } else if s.bdat_remaining > 0 {
            s.bdat_remaining = s.bdat_remaining.saturating_sub(bytes.len());
            None
        } else if s.sasl_response {
            s.sasl_response = false;
            None
        } else {
            Some(classify(bytes, &mut s.bdat_remaining))
        };
        if let Some(cmd) = cmd
            && s.pending.len() < MAX_PENDING
        {
            s.pending.push_back(cmd);
        }
        Vec::new()
    }

    /// One whole reply (the first one of a session is the greeting).
    pub fn server_reply(&mut self, session: &str, reply: &LineReply) -> Vec<Violation> {
        let s = self.sessions.entry(session.to_string()).or_default();
        let mut out = Vec::new();
        let bytes = reply.raw.as_slice();
        let codes = check_syntax(session, reply, &mut out);
        if has_bare_lf(bytes) {
            out.push(REPLY_CRLF.violation(session, "reply line ended by a bare LF", bytes));
        }
        // Without a readable code nothing more can be judged, and the reply still answers
        // (and consumes) the command it was sent for.
        let code = codes.first().copied();

        if !s.greeted {
            s.greeted = true;
            if let Some(c) = code
                && !matches!(c, 220 | 554 | 421)
            {
                out.push(GREETING.violation(session, format!("greeting code {c}"), bytes));
            }
            return out;
        }

        let cmd = match s.pending.front().copied() {
            // A 334 keeps AUTH open for a SASL response line.
            Some(Cmd::Auth) if code.is_some_and(|c| c / 100 == 3) => {
                s.sasl_response = true;
                Cmd::Auth
            }
            Some(c) => {
                s.pending.pop_front();
                c
            }
            // A reply to nothing (e.g. 421 before closing): nothing to match it to.
            None => Cmd::Other,
        };
        if cmd != Cmd::Auth {
            s.sasl_response = false;
        }
        let Some(code) = code else {
            // Unknown outcome: the transaction state is no longer proven.
            s.mail = Known::Unknown;
            s.rcpt = Known::Unknown;
            return out;
        };
        let class = code / 100;

        if s.enhanced && matches!(class, 2 | 4 | 5) && !matches!(cmd, Cmd::Ehlo | Cmd::Helo) {
            check_enhanced(session, reply, class, &mut out);
        }

        match cmd {
            Cmd::Ehlo if class == 2 => {
                s.reset_transaction();
                check_ehlo(session, s, reply, &mut out);
            }
            Cmd::Helo if class == 2 => {
                s.reset_transaction();
                // HELO brings no extensions.
                s.enhanced = false;
            }
            Cmd::Mail if class == 2 => {
                if s.mail == Known::Yes {
                    out.push(NESTED_MAIL.violation(
                        session,
                        format!("MAIL accepted ({code}) inside an open transaction (503 expected)"),
                        bytes,
                    ));
                }
                s.mail = Known::Yes;
                s.rcpt = Known::No;
            }
            Cmd::Rcpt if class == 2 => {
                if s.mail == Known::No {
                    out.push(RCPT_WITHOUT_MAIL.violation(
                        session,
                        format!("RCPT accepted ({code}) without an accepted MAIL (503 expected)"),
                        bytes,
                    ));
                }
                s.rcpt = Known::Yes;
            }
            Cmd::Data => match class {
                3 if code == 354 => {
                    if s.rcpt == Known::No {
                        out.push(DATA_WITHOUT_RCPT.violation(
                            session,
                            "DATA answered 354 without an accepted RCPT (503 or 554 expected)",
                            bytes,
                        ));
                    }
                }
                4 | 5 => {}
                _ => out.push(DATA_REPLY.violation(
                    session,
                    format!("DATA answered {code} (354 or an error expected)"),
                    bytes,
                )),
            },
            Cmd::DataEnd => {
                if class == 3 {
                    out.push(DATA_END_REPLY.violation(
                        session,
                        format!("end of data answered {code} (2xx, 4xx or 5xx expected)"),
                        bytes,
                    ));
                }
                // Whatever the outcome, the transaction is over (RFC 5321 4.1.1.4, 3.3).
                s.reset_transaction();
            }
            Cmd::Bdat { last: true } => s.reset_transaction(),
            Cmd::Rset if class == 2 => s.reset_transaction(),
            Cmd::StartTls if code == 220 => {
                // RFC 3207 4.2: the server forgets everything learned before TLS.
                s.tls = true;
                s.enhanced = false;
                s.reset_transaction();
                // Commands pipelined behind STARTTLS are discarded unanswered (RFC 3207 4.2,
                // the CVE-2011-0411 defence; Postfix does so): nothing is owed for them.
                s.pending.clear();
            }
            Cmd::Quit if code != 221 => out.push(QUIT_REPLY.violation(
                session,
                format!("QUIT answered {code} (221 expected)"),
                bytes,
            )),
            _ => {}
        }
        out
    }

    pub fn session_closed(&mut self, session: &str) -> Vec<Violation> {
        self.sessions.remove(session);
        Vec::new()
    }
}

/// The command a client line is, by smtp-proto's parser; BDAT also announces its chunk size.
fn classify(bytes: &[u8], bdat_remaining: &mut usize) -> Cmd {
    match Request::parse(&mut bytes.iter()) {
        Ok(Request::Ehlo { .. } | Request::Lhlo { .. }) => Cmd::Ehlo,
        Ok(Request::Helo { .. }) => Cmd::Helo,
        Ok(Request::Mail { .. }) => Cmd::Mail,
        Ok(Request::Rcpt { .. }) => Cmd::Rcpt,
        Ok(Request::Data) => Cmd::Data,
        Ok(Request::Bdat {
            chunk_size,
            is_last,
        }) => {
            *bdat_remaining = chunk_size;
            Cmd::Bdat { last: is_last }
        }
        Ok(Request::StartTls) => Cmd::StartTls,
        Ok(Request::Auth { .. }) => Cmd::Auth,
        Ok(Request::Rset) => Cmd::Rset,
        Ok(Request::Quit) => Cmd::Quit,
        // A syntax error in a known verb is still that verb for sequencing: the server's
        // reply (normally 501) is what is judged, and only a 2xx changes state.
        Ok(_) | Err(_) => by_verb(bytes),
    }
}

/// The command by its verb alone, for lines the parser rejects (e.g. `MAIL FROM:bad`).
fn by_verb(bytes: &[u8]) -> Cmd {
    let line = strip_eol(bytes);
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let verb = &line[..verb_end];
    let is = |v: &[u8]| verb.eq_ignore_ascii_case(v);
    if is(b"MAIL") {
        Cmd::Mail
    } else if is(b"RCPT") {
        Cmd::Rcpt
    } else if is(b"EHLO") {
        Cmd::Ehlo
    } else if is(b"HELO") {
        Cmd::Helo
    } else if is(b"AUTH") {
        Cmd::Auth
    } else {
        Cmd::Other
    }
}

fn strip_eol(bytes: &[u8]) -> &[u8] {
    let b = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

/// The code of one reply line, and the separator after it, if the line starts with a code
/// of RFC 5321 4.2's `Reply-code` form.
fn line_code(line: &[u8]) -> Option<(u16, Option<u8>)> {
    let d = line.get(..3)?;
    let ok =
        (b'2'..=b'5').contains(&d[0]) && (b'0'..=b'5').contains(&d[1]) && d[2].is_ascii_digit();
    if !ok {
        return None;
    }
    let code = u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0');
    Some((code, line.get(3).copied()))
}

/// Checks the reply's lines against RFC 5321 4.2 and returns the codes read.
fn check_syntax(session: &str, reply: &LineReply, out: &mut Vec<Violation>) -> Vec<u16> {
    let bytes = reply.raw.as_slice();
    if reply.lines.is_empty() {
        out.push(REPLY_SYNTAX.violation(session, "empty reply", bytes));
        return Vec::new();
    }
    let mut codes = Vec::new();
    let last = reply.lines.len() - 1;
    for (i, line) in reply.lines.iter().enumerate() {
        let line = strip_eol(line);
        let Some((code, sep)) = line_code(line) else {
            out.push(REPLY_SYNTAX.violation(
                session,
                format!(
                    "reply line does not start with a 2xx-5xx code: {:?}",
                    String::from_utf8_lossy(line)
                ),
                bytes,
            ));
            return Vec::new();
        };
        let sep_ok = if i < last {
            sep == Some(b'-')
        } else {
            matches!(sep, None | Some(b' '))
        };
        if !sep_ok {
            out.push(REPLY_SYNTAX.violation(
                session,
                format!(
                    "bad separator after the code on reply line {}: {:?}",
                    i + 1,
                    String::from_utf8_lossy(line)
                ),
                bytes,
            ));
        }
        codes.push(code);
    }
    if codes.iter().any(|&c| c != codes[0]) {
        out.push(REPLY_SAME_CODE.violation(
            session,
            format!("multi-line reply mixes codes {codes:?}"),
            bytes,
        ));
    }
    codes
}

/// The text of a reply line after its code and separator.
fn line_text(line: &[u8]) -> &[u8] {
    strip_eol(line).get(4..).unwrap_or(&[])
}

/// RFC 5321 4.1.1.1: `ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`,
/// `ehlo-param = 1*(%d33-126)`, separated by single spaces.
fn ehlo_line_ok(text: &[u8]) -> bool {
    let mut parts = text.split(|&b| b == b' ');
    let Some(keyword) = parts.next() else {
        return false;
    };
    let kw_ok = keyword.first().is_some_and(u8::is_ascii_alphanumeric)
        && keyword
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-');
    kw_ok && parts.all(|p| !p.is_empty() && p.iter().all(|&b| (33..=126).contains(&b)))
}

fn check_ehlo(session: &str, s: &mut Session, reply: &LineReply, out: &mut Vec<Violation>) {
    let bytes = reply.raw.as_slice();
    for line in reply.lines.iter().skip(1) {
        let text = line_text(line);
        if !ehlo_line_ok(text) {
            out.push(EHLO_KEYWORD.violation(
                session,
                format!(
                    "EHLO reply line is no ehlo-keyword: {:?}",
                    String::from_utf8_lossy(text)
                ),
                bytes,
            ));
        }
    }
    // smtp-proto reads the capabilities; a reply it cannot read announces none we rely on.
    let caps = EhloResponse::parse(&mut bytes.iter()).map_or(0, |r| r.capabilities);
    s.enhanced = caps & EXT_ENHANCED_STATUS_CODES != 0;
    if s.tls && caps & EXT_START_TLS != 0 {
        out.push(STARTTLS_READVERTISED.violation(
            session,
            "STARTTLS announced again after TLS was established",
            bytes,
        ));
    }
}

/// RFC 2034 4: `status-code = class "." 1*3digit "." 1*3digit`, then one or more spaces
/// (or the line end), with the class of the reply code.
fn enhanced_ok(text: &[u8], class: u16) -> bool {
    let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    let mut parts = text[..end].split(|&b| b == b'.');
    let (Some(c), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |p: &[u8]| (1..=3).contains(&p.len()) && p.iter().all(u8::is_ascii_digit);
    c.len() == 1
        && u16::from(c[0]).wrapping_sub(u16::from(b'0')) == class
        && digits(subject)
        && digits(detail)
}

fn check_enhanced(session: &str, reply: &LineReply, class: u16, out: &mut Vec<Violation>) {
    for line in &reply.lines {
        let text = line_text(line);
        if !enhanced_ok(text, class) {
            out.push(ENHANCED_CODE.violation(
                session,
                format!(
                    "ENHANCEDSTATUSCODES announced, but no {class}.x.y status code: {:?}",
                    String::from_utf8_lossy(strip_eol(line))
                ),
                &reply.raw,
            ));
            // One report per reply is enough.
            return;
        }
    }
}

#[cfg(test)]
mod tests;
