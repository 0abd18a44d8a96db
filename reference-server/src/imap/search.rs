//! SEARCH (RFC 3501 6.4.4): evaluates search keys against the selected view. String keys
//! match case-insensitively as substrings, on raw and on decoded header and body text.

use chrono::NaiveDate;
use imap_codec::imap_types::search::SearchKey;
use mail_parser::Message;

use super::mime;
use super::select::{Selected, in_set};

/// Lazily parsed view of one message for the text keys.
struct Candidate<'a> {
    raw: &'a [u8],
    parsed: Option<Option<mime::Parsed<'a>>>,
}

impl<'a> Candidate<'a> {
    fn message(&mut self) -> Option<&Message<'a>> {
        let raw = self.raw;
        self.parsed
            .get_or_insert_with(|| mime::parse(raw))
            .as_ref()
            .map(|p| &**p)
    }
}

fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn header_text_matches(c: &mut Candidate<'_>, field: &str, needle: &str) -> bool {
    let raw = c.raw;
    let Some(msg) = c.message() else {
        return false;
    };
    let Some(root) = msg.parts.first() else {
        return false;
    };
    root.headers.iter().any(|h| {
        if !h.name.as_str().eq_ignore_ascii_case(field) {
            return false;
        }
        if needle.is_empty() {
            return true;
        }
        let start = (h.offset_start as usize).min(raw.len());
        let end = (h.offset_end as usize).clamp(start, raw.len());
        let raw_value = String::from_utf8_lossy(&raw[start..end]).replace("\r\n", "");
        if contains(&raw_value, needle) {
            return true;
        }
        let decoded = match &h.value {
            mail_parser::HeaderValue::Text(t) => t.to_string(),
            mail_parser::HeaderValue::TextList(l) => l.join(" "),
            mail_parser::HeaderValue::Address(a) => a
                .iter()
                .map(|x| {
                    format!(
                        "{} <{}>",
                        x.name.as_deref().unwrap_or(""),
                        x.address.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        contains(&decoded, needle)
    })
}

fn body_matches(c: &mut Candidate<'_>, needle: &str) -> bool {
    let raw = c.raw;
    let body_start = c
        .message()
        .and_then(|m| m.parts.first())
        .map_or(0, |p| (p.offset_body as usize).min(raw.len()));
    if contains(&String::from_utf8_lossy(&raw[body_start..]), needle) {
        return true;
    }
    c.message()
        .is_some_and(|m| mime::body_texts(m).iter().any(|t| contains(t, needle)))
}

fn sent_date(c: &mut Candidate<'_>) -> Option<NaiveDate> {
    let d = c.message()?.date()?;
    NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
}

fn text(s: &impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(s.as_ref()).into_owned()
}

/// Evaluates `key` for view entry `i`.
fn matches(sel: &Selected, i: usize, key: &SearchKey<'_>, c: &mut Candidate<'_>) -> bool {
    use SearchKey as K;
    let e = &sel.view[i];
    let flag = |f: &str| e.flags.contains(f);
    let recent = sel.recent.contains(&e.uid);
    let internal = e.content.internal_date.date_naive();
    let size = e.content.raw.len() as u64;
    match key {
        K::And(keys) => keys.as_ref().iter().all(|k| matches(sel, i, k, c)),
        K::SequenceSet(set) => in_set(set, i as u32 + 1, sel.view.len() as u32),
        K::Uid(set) => in_set(set, e.uid, sel.view.last().map_or(0, |l| l.uid)),
        K::All => true,
        K::Answered => flag("\\Answered"),
        K::Deleted => flag("\\Deleted"),
        K::Draft => flag("\\Draft"),
        K::Flagged => flag("\\Flagged"),
        K::Seen => flag("\\Seen"),
        K::Unanswered => !flag("\\Answered"),
        K::Undeleted => !flag("\\Deleted"),
        K::Undraft => !flag("\\Draft"),
        K::Unflagged => !flag("\\Flagged"),
        K::Unseen => !flag("\\Seen"),
        K::Keyword(k) => flag(k.as_ref()),
        K::Unkeyword(k) => !flag(k.as_ref()),
        K::Recent => recent,
        K::New => recent && !flag("\\Seen"),
        K::Old => !recent,
        K::Before(d) => internal < *d.as_ref(),
        K::On(d) => internal == *d.as_ref(),
        K::Since(d) => internal >= *d.as_ref(),
        K::SentBefore(d) => sent_date(c).unwrap_or(internal) < *d.as_ref(),
        K::SentOn(d) => sent_date(c).unwrap_or(internal) == *d.as_ref(),
        K::SentSince(d) => sent_date(c).unwrap_or(internal) >= *d.as_ref(),
        K::Larger(n) => size > u64::from(*n),
        K::Smaller(n) => size < u64::from(*n),
        K::Not(k) => !matches(sel, i, k, c),
        K::Or(a, b) => matches(sel, i, a, c) || matches(sel, i, b, c),
        K::Bcc(s) => header_text_matches(c, "Bcc", &text(s)),
        K::Cc(s) => header_text_matches(c, "Cc", &text(s)),
        K::From(s) => header_text_matches(c, "From", &text(s)),
        K::To(s) => header_text_matches(c, "To", &text(s)),
        K::Subject(s) => header_text_matches(c, "Subject", &text(s)),
        K::Header(name, s) => header_text_matches(c, &text(name), &text(s)),
        K::Body(s) => body_matches(c, &text(s)),
        K::Text(s) => {
            let needle = text(s);
            contains(&String::from_utf8_lossy(c.raw), &needle) || body_matches(c, &needle)
        }
        K::ModSequence { .. } => false,
        // WITHIN keys exist only when another crate enables imap-codec's ext_within.
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Indexes of the view entries matching all `keys`.
pub fn search(sel: &Selected, keys: &[SearchKey<'_>]) -> Vec<usize> {
    (0..sel.view.len())
        .filter(|&i| {
            let mut c = Candidate {
                raw: &sel.view[i].content.raw,
                parsed: None,
            };
            keys.iter().all(|k| matches(sel, i, k, &mut c))
        })
        .collect()
}
