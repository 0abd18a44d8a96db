//! Trace header fields added on final delivery (RFC 5321 section 4.4): `Return-Path:` with
//! the reverse-path, then a `Received:` field naming the client, this server, the protocol
//! (RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA), an id and the recipient.

use std::net::IpAddr;

use chrono::{DateTime, FixedOffset};

/// What the `Received:` field records about the transaction.
#[derive(Debug)]
pub(crate) struct TraceInfo<'a> {
    pub reverse_path: &'a str,
    /// The EHLO/HELO argument as the client gave it.
    pub helo: &'a str,
    pub peer: IpAddr,
    pub domain: &'a str,
    pub esmtp: bool,
    pub tls: bool,
    pub authenticated: bool,
    pub id: &'a str,
    pub date: DateTime<FixedOffset>,
}

/// An address literal for `ip` (RFC 5321 4.1.3).
fn address_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("[{v4}]"),
        IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
    }
}

/// The client's EHLO argument may be used in the `from` clause only if it is a Domain or an
/// address-literal; anything else could break the header's grammar.
fn presentable_helo(helo: &str) -> Option<&str> {
    let is_literal = helo.starts_with('[')
        && helo.ends_with(']')
        && helo.len() > 2
        && helo[1..helo.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:-".contains(&b));
    let is_domain = !helo.is_empty()
        && helo.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    (is_literal || is_domain).then_some(helo)
}

impl TraceInfo<'_> {
    /// The protocol name of RFC 3848 for the `with` clause.
    fn protocol(&self) -> &'static str {
        match (self.esmtp, self.tls, self.authenticated) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        }
    }

    /// `Return-Path:` and `Received:` for the copy delivered to `recipient`, CRLF-ended,
    /// continuation lines folded with a tab.
    pub fn headers(&self, recipient: &str) -> String {
        let literal = address_literal(self.peer);
        let from = match presentable_helo(self.helo) {
            Some(helo) => format!("{helo} ({literal})"),
            None => literal,
        };
        format!(
            "Return-Path: <{reverse_path}>\r\n\
             Received: from {from}\r\n\
             \tby {domain} (mailtape reference server) with {protocol} id {id}\r\n\
             \tfor <{recipient}>; {date}\r\n",
            reverse_path = self.reverse_path,
            domain = self.domain,
            protocol = self.protocol(),
            id = self.id,
            date = self.date.to_rfc2822(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(helo: &str) -> TraceInfo<'_> {
        TraceInfo {
            reverse_path: "carol@remote.test",
            helo,
            peer: IpAddr::from([127, 0, 0, 1]),
            domain: "example.test",
            esmtp: true,
            tls: true,
            authenticated: false,
            id: "1.1",
            date: DateTime::parse_from_rfc2822("Sat, 28 Nov 2026 05:56:16 +0000").unwrap(),
        }
    }

    #[test]
    fn headers_follow_rfc5321_section_4_4() {
        assert_eq!(
            info("client.test").headers("alice@example.test"),
            "Return-Path: <carol@remote.test>\r\n\
             Received: from client.test ([127.0.0.1])\r\n\
             \tby example.test (mailtape reference server) with ESMTPS id 1.1\r\n\
             \tfor <alice@example.test>; Sat, 28 Nov 2026 05:56:16 +0000\r\n"
        );
    }

    #[test]
    fn odd_helo_is_replaced_by_the_address_literal() {
        let h = info("bad host (x)").headers("bob@example.test");
        assert!(h.contains("Received: from [127.0.0.1]\r\n"), "{h}");
        let h = info("[127.0.0.1]").headers("bob@example.test");
        assert!(h.contains("from [127.0.0.1] ([127.0.0.1])"), "{h}");
    }

    #[test]
    fn protocol_names_follow_rfc3848() {
        let mut i = info("c.test");
        assert_eq!(i.protocol(), "ESMTPS");
        i.authenticated = true;
        assert_eq!(i.protocol(), "ESMTPSA");
        i.tls = false;
        assert_eq!(i.protocol(), "ESMTPA");
        i.esmtp = false;
        assert_eq!(i.protocol(), "SMTP");
    }
}
