//! Status responses (tagged and untagged OK/NO/BAD, BYE) and the greeting, built as
//! imap-types values and encoded with imap-codec's ResponseCodec/GreetingCodec, so their
//! grammar (tag, response code, text) is the codec's, not ours.

use std::num::NonZeroU32;

use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::{Charset, Tag, Text, Vec1};
use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_codec::imap_types::flag::{Flag, FlagPerm};
use imap_codec::imap_types::response::{
    Capability, Code, CodeOther, Greeting, GreetingKind, Response, Status, StatusKind,
};
use imap_codec::{GreetingCodec, ResponseCodec};

/// A response code this server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyCode {
    Capability(Vec<&'static str>),
    PermanentFlags(Vec<String>),
    Unseen(u32),
    UidValidity(u32),
    UidNext(u32),
    ReadOnly,
    ReadWrite,
    TryCreate,
    TooBig,
    BadCharset(Vec<&'static str>),
    AppendUid {
        validity: u32,
        uid: u32,
    },
    CopyUid {
        validity: u32,
        source: Vec<u32>,
        destination: Vec<u32>,
    },
    /// RFC 5530 codes that imap-types has no variant for (NONEXISTENT, CANNOT, ...).
    Rfc5530(&'static str),
}

/// Whether the status is OK, NO, BAD or BYE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ok,
    No,
    Bad,
    Bye,
}

fn nz(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

/// Consecutive UIDs (in the given order) as ranges.
fn uid_set(uids: &[u32]) -> Option<UidSet> {
    let mut elements = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            end = uids[i + 1];
            i += 1;
        }
        elements.push(if start == end {
            UidElement::Single(nz(start)?)
        } else {
            UidElement::Range(nz(start)?, nz(end)?)
        });
        i += 1;
    }
    Some(UidSet(Vec1::try_from(elements).ok()?))
}

impl ReplyCode {
    /// The imap-types form; `None` only if a value cannot be represented (a zero UID).
    fn to_code(&self) -> Option<Code<'_>> {
        Some(match self {
            ReplyCode::Capability(caps) => {
                // Each name must be a valid capability atom, but the line keeps the RFC's
                // spelling ("IMAP4rev1"), which imap-codec's typed encoder would upper-case.
                if caps.is_empty() || caps.iter().any(|c| Capability::try_from(*c).is_err()) {
                    return None;
                }
                Code::Other(CodeOther::unvalidated(
                    format!("CAPABILITY {}", caps.join(" ")).into_bytes(),
                ))
            }
            ReplyCode::PermanentFlags(flags) => Code::PermanentFlags(
                flags
                    .iter()
                    .map(|f| {
                        if f == "\\*" {
                            Some(FlagPerm::Asterisk)
                        } else {
                            Flag::try_from(f.as_str()).ok().map(FlagPerm::Flag)
                        }
                    })
                    .collect::<Option<_>>()?,
            ),
            ReplyCode::Unseen(n) => Code::Unseen(nz(*n)?),
            ReplyCode::UidValidity(n) => Code::UidValidity(nz(*n)?),
            ReplyCode::UidNext(n) => Code::UidNext(nz(*n)?),
            ReplyCode::ReadOnly => Code::ReadOnly,
            ReplyCode::ReadWrite => Code::ReadWrite,
            ReplyCode::TryCreate => Code::TryCreate,
            ReplyCode::TooBig => Code::TooBig,
            ReplyCode::BadCharset(list) => Code::BadCharset {
                allowed: list
                    .iter()
                    .map(|c| Charset::try_from(*c).ok())
                    .collect::<Option<_>>()?,
            },
            ReplyCode::AppendUid { validity, uid } => Code::AppendUid {
                uid_validity: nz(*validity)?,
                uid: nz(*uid)?,
            },
            ReplyCode::CopyUid {
                validity,
                source,
                destination,
            } => Code::CopyUid {
                uid_validity: nz(*validity)?,
                source: uid_set(source)?,
                destination: uid_set(destination)?,
            },
            ReplyCode::Rfc5530(atom) => Code::Other(CodeOther::unvalidated(atom.as_bytes())),
        })
    }
}

/// Text must be non-empty, without CR/LF, and must not start with `[` (RFC 3501 `text`).
fn text(s: &str) -> Text<'static> {
    let cleaned: String = s
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let cleaned = cleaned.trim_start_matches('[').to_string();
    Text::try_from(cleaned).unwrap_or_else(|_| Text::unvalidated("completed"))
}

/// Encodes one status response with its CRLF.
pub fn encode(tag: Option<&str>, kind: Kind, code: Option<&ReplyCode>, message: &str) -> Vec<u8> {
    let code = code.and_then(ReplyCode::to_code);
    let text = text(message);
    let tag = tag.and_then(|t| Tag::try_from(t.to_string()).ok());
    let status = match kind {
        Kind::Bye => Status::bye(code, text),
        Kind::Ok => Status::new(tag, StatusKind::Ok, code, text),
        Kind::No => Status::new(tag, StatusKind::No, code, text),
        Kind::Bad => Status::new(tag, StatusKind::Bad, code, text),
    };
    match status {
        Ok(status) => ResponseCodec::default()
            .encode(&Response::Status(status))
            .dump(),
        // Text was validated above, so this is not reached; answer something well-formed.
        Err(_) => b"* BAD Internal error\r\n".to_vec(),
    }
}

/// The server greeting: `* OK [CAPABILITY ...] text`.
pub fn greeting(capabilities: Vec<&'static str>, message: &'static str) -> Vec<u8> {
    let caps = ReplyCode::Capability(capabilities);
    let code = caps.to_code();
    match Greeting::new(GreetingKind::Ok, code, message) {
        Ok(g) => GreetingCodec::default().encode(&g).dump(),
        Err(_) => b"* OK ready\r\n".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn codes_encode_as_rfc_text() {
        assert_eq!(
            s(encode(
                Some("a1"),
                Kind::Ok,
                Some(&ReplyCode::AppendUid {
                    validity: 38505,
                    uid: 3955
                }),
                "APPEND completed"
            )),
            "a1 OK [APPENDUID 38505 3955] APPEND completed\r\n"
        );
        assert_eq!(
            s(encode(
                Some("a2"),
                Kind::Ok,
                Some(&ReplyCode::CopyUid {
                    validity: 7,
                    source: vec![1, 2, 3, 9],
                    destination: vec![10, 11, 12, 13]
                }),
                "done"
            )),
            "a2 OK [COPYUID 7 1:3,9 10:13] done\r\n"
        );
        assert_eq!(
            s(encode(
                None,
                Kind::Ok,
                Some(&ReplyCode::PermanentFlags(vec![
                    "\\Seen".into(),
                    "$Work".into(),
                    "\\*".into()
                ])),
                "Flags"
            )),
            "* OK [PERMANENTFLAGS (\\Seen $Work \\*)] Flags\r\n"
        );
        assert_eq!(
            s(encode(
                Some("b"),
                Kind::No,
                Some(&ReplyCode::Rfc5530("NONEXISTENT")),
                "No such mailbox"
            )),
            "b NO [NONEXISTENT] No such mailbox\r\n"
        );
        assert_eq!(
            s(encode(None, Kind::Bye, None, "bye\r\nnow")),
            "* BYE bye  now\r\n"
        );
        assert_eq!(
            s(encode(
                Some("c"),
                Kind::No,
                Some(&ReplyCode::BadCharset(vec!["US-ASCII", "UTF-8"])),
                "x"
            )),
            "c NO [BADCHARSET (US-ASCII UTF-8)] x\r\n"
        );
    }

    #[test]
    fn greeting_lists_capabilities() {
        assert_eq!(
            s(greeting(
                vec!["IMAP4rev1", "LITERAL+", "AUTH=PLAIN"],
                "ready"
            )),
            "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] ready\r\n"
        );
    }
}
