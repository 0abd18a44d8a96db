//! Wire-level checks on each server message: CRLF line endings, formal syntax (what imap-codec
//! cannot parse), response-code syntax, out-of-range UIDVALIDITY/UIDNEXT, and the greeting.

use imap_types::response::{Code, Response, Status};

use super::client::first_line;
use super::rules;
use crate::checks::Violation;
use crate::proto::imap::{LineEnding, Parsed, ServerFrame};

/// Untagged responses of standard extensions that imap-codec does not parse: legal, not flagged.
const UNPARSED_EXTENSIONS: &[&str] = &[
    "ESEARCH",
    "ACL",
    "LISTRIGHTS",
    "MYRIGHTS",
    "METADATA",
    "ANNOTATION",
    "LANGUAGE",
    "COMPARATOR",
    "CONVERTED",
    "GENURLAUTH",
    "URLFETCH",
    "URLMECH",
    "XLIST",
    "NOTIFY",
];

/// Extension data imap-codec does not parse inside LIST, STATUS and FETCH responses
/// (RFC 5258 CHILDINFO/OLDNAME, RFC 8438 SIZE, RFC 7889 APPENDLIMIT, RFC 8474 object ids,
/// RFC 8514 SAVEDATE, RFC 8970 PREVIEW, Gmail's X-GM-*): legal when the client asked for them.
const UNPARSED_ITEMS: &[&str] = &[
    "\"CHILDINFO\"",
    "\"OLDNAME\"",
    "APPENDLIMIT",
    "MAILBOXID",
    "EMAILID",
    "THREADID",
    "SAVEDATE",
    "PREVIEW",
    "X-GM-",
    " SIZE ",
    "(SIZE ",
];

fn uses_unparsed_extension(line: &[u8]) -> bool {
    let upper = line.to_ascii_uppercase();
    let (_, t1, rest) = tokens(&upper);
    let word = if t1.bytes().all(|b| b.is_ascii_digit()) {
        // `* n FETCH ...`
        String::from_utf8_lossy(rest.split(|b| *b == b' ').next().unwrap_or_default()).into_owned()
    } else {
        t1
    };
    matches!(word.as_str(), "LIST" | "LSUB" | "STATUS" | "FETCH")
        && UNPARSED_ITEMS
            .iter()
            .any(|item| upper.windows(item.len()).any(|w| w == item.as_bytes()))
}

/// `APPENDUID`/`COPYUID` arguments in their set forms (MULTIAPPEND), which imap-codec keeps as
/// unknown codes: `nz-number SP uid-set [SP uid-set]` (RFC 4315 4).
fn uidplus_set_form(text: &[u8]) -> bool {
    let words: Vec<&[u8]> = text.split(|b| *b == b' ').collect();
    let number = |w: &[u8]| !w.is_empty() && w[0] != b'0' && w.iter().all(u8::is_ascii_digit);
    let set = |w: &[u8]| {
        !w.is_empty()
            && w.split(|b| *b == b',').all(|r| {
                !r.is_empty()
                    && r.split(|b| *b == b':').all(number)
                    && r.split(|b| *b == b':').count() <= 2
            })
    };
    let name = words.first().map(|w| w.to_ascii_uppercase());
    match (name.as_deref(), words.len()) {
        (Some(b"APPENDUID"), 3) => number(words[1]) && set(words[2]),
        (Some(b"COPYUID"), 4) => number(words[1]) && set(words[2]) && set(words[3]),
        _ => false,
    }
}

/// The first tokens of an unparsed message: (tag or `*`/`+`, the word after it, rest of line).
pub fn tokens(raw: &[u8]) -> (String, String, &[u8]) {
    let line = first_line(raw);
    let mut parts = line.splitn(3, |b| *b == b' ');
    let t0 = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let t1 = String::from_utf8_lossy(parts.next().unwrap_or_default()).to_ascii_uppercase();
    (t0, t1, parts.next().unwrap_or_default())
}

/// A UIDVALIDITY or UIDNEXT value outside 1..=2^32-1 anywhere in the first line.
fn bad_number(line: &[u8]) -> Option<(String, String)> {
    let upper = line.to_ascii_uppercase();
    for word in ["UIDVALIDITY ", "UIDNEXT "] {
        let mut from = 0;
        while let Some(pos) = upper[from..]
            .windows(word.len())
            .position(|w| w == word.as_bytes())
        {
            let start = from + pos + word.len();
            let digits: Vec<u8> = upper[start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            from = start;
            if digits.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(&digits).into_owned();
            let in_range = text
                .parse::<u64>()
                .is_ok_and(|n| n >= 1 && n <= u64::from(u32::MAX));
            if !in_range {
                return Some((word.trim().to_string(), text));
            }
        }
    }
    None
}

/// Syntax checks for one frame.
pub fn check(session: &str, frame: &ServerFrame, out: &mut Vec<Violation>) {
    if frame.line_ending == LineEnding::Lf {
        out.push(rules::SYNTAX_CRLF.violation(
            session,
            "line ends with a bare LF instead of CRLF",
            &frame.raw,
        ));
    }
    check_code(session, frame, out);
    let Parsed::Unparsed(reason) = &frame.parsed else {
        return;
    };
    if frame.line_ending == LineEnding::Lf {
        // The bare LF is the likely reason it did not parse: report it once.
        return;
    }
    let (t0, t1, rest) = tokens(&frame.raw);
    if let Some((what, value)) = bad_number(first_line(&frame.raw)) {
        out.push(rules::UIDVALIDITY_RANGE.violation(
            session,
            format!("{what} {value} is not a non-zero 32-bit number"),
            &frame.raw,
        ));
        return;
    }
    if t0 == "*" && (UNPARSED_EXTENSIONS.contains(&t1.as_str()) || t1.starts_with('X')) {
        return;
    }
    if t0 == "*" && uses_unparsed_extension(first_line(&frame.raw)) {
        return;
    }
    let status = matches!(t1.as_str(), "OK" | "NO" | "BAD" | "BYE" | "PREAUTH");
    if status && rest.first() == Some(&b'[') {
        out.push(rules::SYNTAX_RESPONSE_CODE.violation(
            session,
            format!("malformed response code: {reason}"),
            &frame.raw,
        ));
    } else {
        out.push(rules::SYNTAX_RESPONSE.violation(
            session,
            format!("response does not follow the formal syntax: {reason}"),
            &frame.raw,
        ));
    }
}

/// The first message of a connection must be a greeting.
pub fn check_greeting(session: &str, frame: &ServerFrame, out: &mut Vec<Violation>) -> bool {
    if matches!(frame.parsed, Parsed::Greeting(_)) {
        return true;
    }
    out.push(rules::GREETING.violation(
        session,
        "first server message is not an OK, PREAUTH or BYE greeting",
        &frame.raw,
    ));
    false
}

/// Response codes of RFC 3501, UIDPLUS and CONDSTORE that imap-codec parses when well formed:
/// one it kept as an unknown code has malformed arguments.
const KNOWN_CODES: &[&str] = &[
    "ALERT",
    "BADCHARSET",
    "CAPABILITY",
    "PARSE",
    "PERMANENTFLAGS",
    "READ-ONLY",
    "READ-WRITE",
    "TRYCREATE",
    "UIDNEXT",
    "UIDVALIDITY",
    "UNSEEN",
    "APPENDUID",
    "COPYUID",
    "UIDNOTSTICKY",
    "HIGHESTMODSEQ",
    "NOMODSEQ",
    "MODIFIED",
    "CLOSED",
];

/// The response code of a parsed status response, greeting or BYE.
pub fn response_code(parsed: &Parsed) -> Option<&Code<'static>> {
    match parsed {
        Parsed::Greeting(g) => g.code.as_ref(),
        Parsed::Response(Response::Status(Status::Untagged(b))) => b.code.as_ref(),
        Parsed::Response(Response::Status(Status::Tagged(t))) => t.body.code.as_ref(),
        Parsed::Response(Response::Status(Status::Bye(b))) => b.code.as_ref(),
        _ => None,
    }
}

/// A standard response code with arguments imap-codec could not read.
pub fn check_code(session: &str, frame: &ServerFrame, out: &mut Vec<Violation>) {
    let Some(Code::Other(other)) = response_code(&frame.parsed) else {
        return;
    };
    let text = other.inner();
    let name = text
        .split(|b| *b == b' ')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let name = String::from_utf8_lossy(&name).into_owned();
    if !KNOWN_CODES.contains(&name.as_str()) || uidplus_set_form(text) {
        return;
    }
    let mut probe = text.to_vec();
    probe.push(b']');
    if let Some((what, value)) = bad_number(&probe) {
        out.push(rules::UIDVALIDITY_RANGE.violation(
            session,
            format!("{what} {value} is not a non-zero 32-bit number"),
            &frame.raw,
        ));
    } else {
        out.push(rules::SYNTAX_RESPONSE_CODE.violation(
            session,
            format!(
                "malformed {name} response code: [{}]",
                String::from_utf8_lossy(text)
            ),
            &frame.raw,
        ));
    }
}
