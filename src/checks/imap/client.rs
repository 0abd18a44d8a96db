//! Client messages as the checks see them: the command's tag, what it does to the mailbox
//! model, the states it is valid in, and how many synchronizing literals it announced.
//! Commands are parsed with imap-codec's `CommandCodec`; a command it rejects is still
//! tracked by its tag so its completion is matched.

use std::collections::BTreeSet;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_types::command::{Command, CommandBody};
use imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_types::flag::StoreType;
use imap_types::mailbox::Mailbox;
use imap_types::sequence::SequenceSet;

use super::flags::flag_name;

/// The states a command is valid in (RFC 3501 6.1-6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Valid {
    Any,
    NotAuthenticated,
    /// Authenticated or selected.
    Authenticated,
    Selected,
    /// Unknown command: no state check.
    Unknown,
}

/// What a command does, as far as the model cares.
#[derive(Debug, Clone)]
pub enum Kind {
    Logout,
    /// The SASL mechanism (upper-case) and the user, when PLAIN's initial response names it.
    Authenticate {
        mechanism: String,
        user: Option<String>,
    },
    Login {
        user: String,
    },
    Select {
        mailbox: String,
        examine: bool,
    },
    Create {
        mailbox: String,
    },
    Delete {
        mailbox: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Status {
        mailbox: String,
    },
    Append {
        mailbox: String,
    },
    /// CLOSE or UNSELECT.
    Deselect,
    Expunge,
    Search {
        uid: bool,
    },
    Fetch {
        uid: bool,
        body: bool,
    },
    Store {
        uid: bool,
        set: SequenceSet,
        op: StoreType,
        flags: BTreeSet<String>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
        is_move: bool,
    },
    Idle,
    Other,
}

/// One client command.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub tag: String,
    pub name: String,
    pub kind: Kind,
    pub valid: Valid,
    /// imap-codec parsed it. A server may answer a command it cannot parse with an untagged
    /// BAD (RFC 3501 7.1.3), so a rejected one is not owed a tagged completion.
    pub parsed: bool,
}

fn mailbox(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    }
}

/// Whether a FETCH's items read a body without PEEK, which sets \Seen (RFC 3501 6.4.5).
fn sets_seen(items: &MacroOrMessageDataItemNames<'_>) -> bool {
    match items {
        MacroOrMessageDataItemNames::Macro(_) => false,
        MacroOrMessageDataItemNames::MessageDataItemNames(names) => names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::BodyExt { peek: false, .. }
                    | MessageDataItemName::Binary { peek: false, .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Text
            )
        }),
    }
}

impl Cmd {
    fn from_command(c: &Command<'_>) -> Cmd {
        use CommandBody as B;
        let (kind, valid) = match &c.body {
            B::Capability | B::Noop => (Kind::Other, Valid::Any),
            B::Logout => (Kind::Logout, Valid::Any),
            #[allow(unreachable_patterns)]
            B::Id { .. } => (Kind::Other, Valid::Any),
            B::StartTLS => (Kind::Other, Valid::NotAuthenticated),
            B::Authenticate {
                mechanism,
                initial_response,
            } => {
                let mechanism = mechanism.to_string().to_ascii_uppercase();
                let user = initial_response
                    .as_ref()
                    .and_then(|r| sasl_user(&mechanism, r.declassify()));
                (
                    Kind::Authenticate { mechanism, user },
                    Valid::NotAuthenticated,
                )
            }
            B::Login { username, .. } => (
                Kind::Login {
                    user: String::from_utf8_lossy(username.as_ref()).into_owned(),
                },
                Valid::NotAuthenticated,
            ),
            B::Select { mailbox: m, .. } => (
                Kind::Select {
                    mailbox: mailbox(m),
                    examine: false,
                },
                Valid::Authenticated,
            ),
            B::Examine { mailbox: m, .. } => (
                Kind::Select {
                    mailbox: mailbox(m),
                    examine: true,
                },
                Valid::Authenticated,
            ),
            B::Create { mailbox: m } => (
                Kind::Create {
                    mailbox: mailbox(m),
                },
                Valid::Authenticated,
            ),
            B::Delete { mailbox: m } => (
                Kind::Delete {
                    mailbox: mailbox(m),
                },
                Valid::Authenticated,
            ),
            B::Rename { from, to } => (
                Kind::Rename {
                    from: mailbox(from),
                    to: mailbox(to),
                },
                Valid::Authenticated,
            ),
            B::Status { mailbox: m, .. } => (
                Kind::Status {
                    mailbox: mailbox(m),
                },
                Valid::Authenticated,
            ),
            B::Append { mailbox: m, .. } => (
                Kind::Append {
                    mailbox: mailbox(m),
                },
                Valid::Authenticated,
            ),
            B::Subscribe { .. }
            | B::Unsubscribe { .. }
            | B::List { .. }
            | B::Lsub { .. }
            | B::Namespace
            | B::Enable { .. }
            | B::Compress { .. }
            | B::GetQuota { .. }
            | B::GetQuotaRoot { .. }
            | B::SetQuota { .. } => (Kind::Other, Valid::Authenticated),
            B::Idle => (Kind::Idle, Valid::Authenticated),
            B::Close | B::Unselect => (Kind::Deselect, Valid::Selected),
            B::Expunge | B::ExpungeUid { .. } => (Kind::Expunge, Valid::Selected),
            B::Check | B::Sort { .. } | B::Thread { .. } => (Kind::Other, Valid::Selected),
            B::Search { uid, .. } => (Kind::Search { uid: *uid }, Valid::Selected),
            B::Fetch {
                uid,
                macro_or_item_names,
                ..
            } => (
                Kind::Fetch {
                    uid: *uid,
                    body: sets_seen(macro_or_item_names),
                },
                Valid::Selected,
            ),
            B::Store {
                sequence_set,
                kind,
                flags,
                uid,
                ..
            } => (
                Kind::Store {
                    uid: *uid,
                    set: sequence_set.clone(),
                    op: *kind,
                    flags: flags.iter().map(flag_name).collect(),
                },
                Valid::Selected,
            ),
            B::Copy {
                sequence_set,
                mailbox: m,
                uid,
            } => (
                Kind::Copy {
                    uid: *uid,
                    set: sequence_set.clone(),
                    mailbox: mailbox(m),
                    is_move: false,
                },
                Valid::Selected,
            ),
            B::Move {
                sequence_set,
                mailbox: m,
                uid,
            } => (
                Kind::Copy {
                    uid: *uid,
                    set: sequence_set.clone(),
                    mailbox: mailbox(m),
                    is_move: true,
                },
                Valid::Selected,
            ),
            // Extensions (METADATA and the like) are not state-checked.
            #[allow(unreachable_patterns)]
            _ => (Kind::Other, Valid::Unknown),
        };
        Cmd {
            tag: c.tag.as_ref().to_string(),
            name: c.name().to_string(),
            kind,
            valid,
            parsed: true,
        }
    }

    /// A command imap-codec rejected: keep its tag (first token) and name.
    fn fallback(bytes: &[u8]) -> Option<Cmd> {
        let line = first_line(bytes);
        let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
        let tag = words.next()?;
        if tag == b"*" || tag == b"+" || tag.iter().any(|b| b.is_ascii_control()) {
            return None;
        }
        let mut name =
            String::from_utf8_lossy(words.next().unwrap_or_default()).to_ascii_uppercase();
        if name == "UID" {
            name = String::from_utf8_lossy(words.next().unwrap_or_default()).to_ascii_uppercase();
        }
        let kind = match name.as_str() {
            "LOGOUT" => Kind::Logout,
            "AUTHENTICATE" => Kind::Authenticate {
                mechanism: String::new(),
                user: None,
            },
            "IDLE" => Kind::Idle,
            _ => Kind::Other,
        };
        Some(Cmd {
            tag: String::from_utf8_lossy(tag).into_owned(),
            name,
            kind,
            valid: Valid::Unknown,
            parsed: false,
        })
    }
}

/// Decode standard base64 (whitespace and padding tolerated); `None` on anything else.
pub fn base64(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text
        .iter()
        .filter(|c| !c.is_ascii_whitespace() && **c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The user a SASL PLAIN response (already base64-decoded) or LOGIN's first response names.
pub fn sasl_user(mechanism: &str, decoded: &[u8]) -> Option<String> {
    let user = match mechanism {
        // authzid NUL authcid NUL passwd (RFC 4616 2): the authorization identity wins.
        "PLAIN" => {
            let mut parts = decoded.split(|b| *b == 0);
            let authz = parts.next()?;
            let authc = parts.next()?;
            if authz.is_empty() { authc } else { authz }
        }
        "LOGIN" => decoded,
        _ => return None,
    };
    (!user.is_empty()).then(|| String::from_utf8_lossy(user).into_owned())
}

/// The first line of a message, without its line ending.
pub fn first_line(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Parse one client command message (line plus literals).
pub fn parse_command(bytes: &[u8]) -> Option<Cmd> {
    match CommandCodec::default().decode(bytes) {
        Ok((_, cmd)) => Some(Cmd::from_command(&cmd)),
        Err(_) => Cmd::fallback(bytes),
    }
}

/// Whether the message is IDLE's `DONE` (RFC 2177 3).
pub fn is_done(bytes: &[u8]) -> bool {
    first_line(bytes).eq_ignore_ascii_case(b"DONE")
}

/// How many synchronizing literals (`{n}`, not `{n+}`) the message announces: each needs a `+`.
pub fn sync_literals(bytes: &[u8]) -> u32 {
    let mut count = 0u32;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(nl) = bytes[pos..].iter().position(|b| *b == b'\n') else {
            break;
        };
        let line_end = pos + nl;
        let line = &bytes[pos..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = line_end + 1;
        let Some(inner) = line.strip_suffix(b"}") else {
            break;
        };
        let Some(open) = inner.iter().rposition(|b| *b == b'{') else {
            break;
        };
        let spec = &inner[open + 1..];
        let (digits, sync) = match spec.strip_suffix(b"+").or_else(|| spec.strip_suffix(b"-")) {
            Some(d) => (d, false),
            None => (spec, true),
        };
        let Some(n) = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        if sync {
            count = count.saturating_add(1);
        }
        pos = pos.saturating_add(n);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sync_literals_only() {
        assert_eq!(sync_literals(b"a LOGIN {3}\r\nbob {4+}\r\npass\r\n"), 1);
        assert_eq!(sync_literals(b"a APPEND x {5}\r\n{1}\r\n\r\n"), 1);
        assert_eq!(sync_literals(b"a NOOP\r\n"), 0);
        assert_eq!(sync_literals(b"a LOGIN {1}\r\nx {1}\r\ny\r\n"), 2);
    }

    #[test]
    fn parses_and_falls_back() {
        let c = parse_command(b"A1 UID FETCH 1:* (FLAGS BODY[])\r\n").expect("parsed");
        assert_eq!(c.tag, "A1");
        assert!(matches!(
            c.kind,
            Kind::Fetch {
                uid: true,
                body: true
            }
        ));
        assert_eq!(c.valid, Valid::Selected);
        let c = parse_command(b"B2 FROBNICATE now\r\n").expect("fallback");
        assert_eq!(
            (c.tag.as_str(), c.name.as_str(), c.valid),
            ("B2", "FROBNICATE", Valid::Unknown)
        );
        assert!(parse_command(b"\r\n").is_none());
    }
}
