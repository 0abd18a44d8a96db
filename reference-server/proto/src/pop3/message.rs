//! A stored message as POP3 transfers it: a sequence of lines, each sent with CRLF (RFC 1939 3:
//! "all lines ... terminated by a CRLF pair"), whatever line endings the stored octets use.
//! The octet counts of STAT and LIST are those of this CRLF form before dot-stuffing
//! (RFC 1939 5 LIST: sizes exclude the stuffing), so a client's count of what RETR delivered
//! matches them exactly.

/// The lines of a message without their terminators. A line ends at LF; one CR right before
/// that LF belongs to the terminator. A last line without LF still counts as a line (it is sent
/// with CRLF); an empty message has no lines.
pub fn message_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    let empty = raw.is_empty();
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Octets of the message as RETR sends it (CRLF lines), before dot-stuffing.
pub fn normalized_len(raw: &[u8]) -> usize {
    message_lines(raw).map(|l| l.len() + 2).sum()
}

/// The lines TOP sends (RFC 1939 7): the header, the blank line that separates it from the
/// body, and at most `body_lines` lines of the body. A message without a blank line is all
/// header.
pub fn top_lines(raw: &[u8], body_lines: u32) -> impl Iterator<Item = &[u8]> {
    let mut in_body = false;
    let mut left = u64::from(body_lines);
    message_lines(raw).take_while(move |line| {
        if !in_body {
            in_body = line.is_empty();
            return true;
        }
        if left == 0 {
            return false;
        }
        left -= 1;
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(raw: &[u8]) -> Vec<&[u8]> {
        message_lines(raw).collect()
    }

    #[test]
    fn lines_ignore_the_terminator_kind() {
        assert_eq!(lines(b"a\r\nb\r\n"), vec![&b"a"[..], b"b"]);
        assert_eq!(lines(b"a\nb\n"), vec![&b"a"[..], b"b"]);
        assert_eq!(lines(b"a\r\nb"), vec![&b"a"[..], b"b"]);
        assert_eq!(lines(b"a\r\n\r\n"), vec![&b"a"[..], b""]);
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"\r\n"), vec![&b""[..]]);
        // A CR not followed by LF is data.
        assert_eq!(lines(b"a\rb\r\r\n"), vec![&b"a\rb\r"[..]]);
    }

    #[test]
    fn size_counts_crlf_lines() {
        assert_eq!(normalized_len(b"a\r\nb\r\n"), 6);
        assert_eq!(normalized_len(b"a\nb\n"), 6);
        assert_eq!(normalized_len(b"a\nb"), 6);
        assert_eq!(normalized_len(b""), 0);
        // Dot-stuffing is not counted.
        assert_eq!(normalized_len(b".\r\n..x\r\n"), 8);
    }

    #[test]
    fn top_takes_header_blank_and_n_lines() {
        let msg = b"Subject: x\r\nFrom: y\r\n\r\nl1\r\nl2\r\nl3\r\n";
        let top = |n| top_lines(msg, n).collect::<Vec<_>>();
        assert_eq!(top(0), vec![&b"Subject: x"[..], b"From: y", b""]);
        assert_eq!(
            top(2),
            vec![&b"Subject: x"[..], b"From: y", b"", b"l1", b"l2"]
        );
        assert_eq!(top(99).len(), 6);
        assert_eq!(top(u32::MAX).len(), 6);
        let header_only = b"Subject: x\r\nFrom: y\r\n";
        assert_eq!(top_lines(header_only, 5).count(), 2);
    }
}
