//! Small encoders for the IMAP response grammar (RFC 3501 section 9) used by the data
//! responses (FETCH, LIST, STATUS, ...): strings as quoted or literal, nstring, flag lists and
//! date-time.

use chrono::{DateTime, FixedOffset};

/// Whether `bytes` may go in a quoted string (7-bit TEXT-CHAR, no CR/LF/NUL).
fn quotable(bytes: &[u8]) -> bool {
    bytes.len() < 1024
        && bytes
            .iter()
            .all(|&b| b != 0 && b != b'\r' && b != b'\n' && b < 0x80)
}

/// Appends `bytes` as a quoted string, or as a literal when quoting is not possible.
pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    if quotable(bytes) {
        out.push(b'"');
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, bytes);
    }
}

/// Appends `bytes` as a synchronizing-style literal `{n}\r\n...`.
pub fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
}

/// Appends an nstring: NIL or a string.
pub fn nstring(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => string(out, b),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A parenthesised flag list.
pub fn flag_list<'a>(flags: impl IntoIterator<Item = &'a str>) -> String {
    let all: Vec<&str> = flags.into_iter().collect();
    format!("({})", all.join(" "))
}

/// RFC 3501 date-time: `"dd-Mon-yyyy hh:mm:ss +zzzz"` with a space-padded day.
pub fn date_time(dt: &DateTime<FixedOffset>) -> String {
    format!("\"{}\"", dt.format("%e-%b-%Y %H:%M:%S %z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_quote_or_literal() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\" \\c");
        assert_eq!(out, b"\"a \\\"b\\\" \\\\c\"");
        out.clear();
        string(&mut out, b"line\r\nbreak");
        assert_eq!(out, b"{11}\r\nline\r\nbreak");
        out.clear();
        nstring(&mut out, None);
        assert_eq!(out, b"NIL");
    }

    #[test]
    fn date_time_pads_the_day() {
        let dt = DateTime::parse_from_rfc3339("1994-02-07T21:52:25-08:00").unwrap();
        assert_eq!(date_time(&dt), "\" 7-Feb-1994 21:52:25 -0800\"");
    }
}
