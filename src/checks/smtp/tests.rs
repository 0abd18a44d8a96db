//! One triggering exchange per rule, and clean Postfix-like and reference-like sessions.

use super::*;
use crate::proto::imap::LineEnding;
use crate::proto::line::ReplyKind;

const S: &str = "s1";

/// A reply built from its wire text (lines separated by `\n`, each sent with CRLF unless
/// `lf_only`).
fn reply_with(text: &str, lf_only: bool) -> LineReply {
    let eol = if lf_only { "\n" } else { "\r\n" };
    let lines: Vec<Vec<u8>> = text.split('\n').map(|l| l.as_bytes().to_vec()).collect();
    let raw: Vec<u8> = text
        .split('\n')
        .flat_map(|l| format!("{l}{eol}").into_bytes())
        .collect();
    let code = line_code(&lines[0]).map_or(0, |(c, _)| c);
    let kind = match code / 100 {
        2 => ReplyKind::Positive,
        3 => ReplyKind::Intermediate,
        4 | 5 => ReplyKind::Negative,
        _ => ReplyKind::Malformed,
    };
    LineReply {
        raw,
        lines,
        line_ending: if lf_only {
            LineEnding::Lf
        } else {
            LineEnding::Crlf
        },
        kind,
        code,
    }
}

/// A transcript step: `C: line`, `D: content line` (in DATA), or `S: reply` (multi-line
/// replies joined by `\n`).
enum Step<'a> {
    C(&'a str),
    D(&'a str),
    S(&'a str),
}
use Step::{C, D, S as R};

fn run(steps: &[Step]) -> Vec<Violation> {
    let mut c = SmtpChecks::new();
    c.session_opened(S);
    let mut out = Vec::new();
    for step in steps {
        match step {
            C(l) => out.extend(c.client_line(S, format!("{l}\r\n").as_bytes(), false)),
            D(l) => out.extend(c.client_line(S, format!("{l}\r\n").as_bytes(), true)),
            R(r) => out.extend(c.server_reply(S, &reply_with(r, false))),
        }
    }
    out.extend(c.session_closed(S));
    out
}

fn ids(v: &[Violation]) -> Vec<&'static str> {
    v.iter().map(|v| v.rule).collect()
}

const POSTFIX_EHLO: &str = "250-mx.example.test\n250-PIPELINING\n250-SIZE 10485760\n250-VRFY\n250-ETRN\n250-STARTTLS\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 CHUNKING";
const POSTFIX_EHLO_TLS: &str = "250-mx.example.test\n250-PIPELINING\n250-SIZE 10485760\n250-VRFY\n250-ETRN\n250-AUTH PLAIN LOGIN\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 CHUNKING";

#[test]
fn postfix_session_is_clean() {
    let v = run(&[
        R("220 mx.example.test ESMTP Postfix"),
        // MAIL before EHLO is accepted by Postfix: the client's fault, not the server's.
        C("MAIL FROM:<a@b.test>"),
        R("250 2.1.0 Ok"),
        C("RSET"),
        R("250 2.0.0 Ok"),
        C("EHLO client.example.test"),
        R(POSTFIX_EHLO),
        C("RCPT TO:<alice@example.test>"),
        R("503 5.5.1 Error: need MAIL command"),
        C("DATA"),
        R("503 5.5.1 Error: need RCPT command"),
        C("MAIL FROM:<s@elsewhere.test>"),
        R("250 2.1.0 Ok"),
        C("MAIL FROM:<s@elsewhere.test>"),
        R("503 5.5.1 Error: nested MAIL command"),
        C("RCPT TO:<nobody@example.test>"),
        R("550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown"),
        C("DATA"),
        R("554 5.5.1 Error: no valid recipients"),
        C("RCPT TO:<alice@example.test>"),
        R("250 2.1.5 Ok"),
        C("DATA"),
        R("354 End data with <CR><LF>.<CR><LF>"),
        D("Subject: hi"),
        D(""),
        D("..leading"),
        D("."),
        R("250 2.0.0 Ok: queued as 0504F9A2052"),
        C("HELO client.example.test"),
        R("250 mx.example.test"),
        C("NOOP"),
        R("250 2.0.0 Ok"),
        C("QUIT"),
        R("221 2.0.0 Bye"),
    ]);
    assert_eq!(v, vec![]);
}

#[test]
fn postfix_starttls_and_pipelining_is_clean() {
    let v = run(&[
        R("220 mx.example.test ESMTP Postfix"),
        C("EHLO c.test"),
        R(POSTFIX_EHLO),
        C("STARTTLS"),
        R("220 2.0.0 Ready to start TLS"),
        C("EHLO c.test"),
        R(POSTFIX_EHLO_TLS),
        C("AUTH LOGIN"),
        R("334 VXNlcm5hbWU6"),
        C("YWxpY2U="),
        R("334 UGFzc3dvcmQ6"),
        C("YWxpY2Vwdw=="),
        R("235 2.7.0 Authentication successful"),
        // Pipelined (RFC 2920): all commands first, then the replies in order.
        C("MAIL FROM:<alice@example.test>"),
        C("RCPT TO:<bob@example.test>"),
        C("RCPT TO:<carol@example.test>"),
        C("DATA"),
        R("250 2.1.0 Ok"),
        R("250 2.1.5 Ok"),
        R("554 5.7.1 <carol@example.test>: Relay access denied"),
        R("354 End data with <CR><LF>.<CR><LF>"),
        D("x"),
        D("."),
        R("250 2.0.0 Ok: queued as 1234567890"),
        C("BDAT 5 LAST"),
        R("503 5.5.1 Error: need MAIL command"),
        C("STARTTLS"),
        R("554 5.5.1 Error: TLS already active"),
        C("QUIT"),
        R("221 2.0.0 Bye"),
    ]);
    assert_eq!(v, vec![]);
}

#[test]
fn reference_like_session_is_clean() {
    let v = run(&[
        R("220 localhost ESMTP mailtape reference server"),
        C("EHLO c.test"),
        R(
            "250-localhost\n250-PIPELINING\n250-8BITMIME\n250-SIZE 10485760\n250-ENHANCEDSTATUSCODES\n250-AUTH PLAIN LOGIN\n250 STARTTLS",
        ),
        C("AUTH PLAIN AGFsaWNlAGFsaWNlcHc="),
        R("235 2.7.0 Authentication succeeded"),
        C("MAIL FROM:<>"),
        R("250 2.1.0 Sender OK"),
        C("RCPT TO:<alice@localhost>"),
        R("250 2.1.5 Recipient OK"),
        C("DATA"),
        R("354 Go ahead"),
        D("."),
        R("250 2.0.0 Message accepted"),
        C("HELP"),
        R("214-2.0.0 Commands:\n214 2.0.0 EHLO HELO MAIL RCPT DATA"),
        C("QUIT"),
        R("221 2.0.0 Bye"),
    ]);
    assert_eq!(v, vec![]);
}

#[test]
fn commands_pipelined_behind_starttls_are_dropped() {
    // Postfix drops the plaintext RSET sent in the same write as STARTTLS; the next reply
    // answers the DATA sent under TLS (matched to RSET, QUIT's 221 would answer DATA).
    let v = run(&[
        R("220 ok"),
        C("STARTTLS"),
        C("RSET"),
        R("220 2.0.0 Ready to start TLS"),
        C("DATA"),
        R("503 5.5.1 Error: need RCPT command"),
        C("QUIT"),
        R("221 2.0.0 Bye"),
    ]);
    assert_eq!(v, vec![]);
}

#[test]
fn bad_reply_syntax() {
    let v = run(&[R("220 ok"), C("NOOP"), R("25O ok")]);
    assert_eq!(ids(&v), ["smtp.reply.syntax"]);
    let v = run(&[R("220 ok"), C("NOOP"), R("250-a\n250xb")]);
    assert_eq!(ids(&v), ["smtp.reply.syntax"]);
    let v = run(&[R("220 ok"), C("NOOP"), R("650 ok")]);
    assert_eq!(ids(&v), ["smtp.reply.syntax"]);
}

#[test]
fn mixed_codes_in_multiline_reply() {
    let v = run(&[R("220 ok"), C("NOOP"), R("250-a\n251 b")]);
    assert_eq!(ids(&v), ["smtp.reply.same-code"]);
}

#[test]
fn bare_lf() {
    let mut c = SmtpChecks::new();
    c.session_opened(S);
    let v = c.server_reply(S, &reply_with("220 ok", true));
    assert_eq!(ids(&v), ["smtp.reply.crlf"]);
}

#[test]
fn bad_greeting() {
    assert_eq!(ids(&run(&[R("250 hello")])), ["smtp.greeting"]);
    assert_eq!(run(&[R("554 no service")]), vec![]);
}

#[test]
fn rcpt_without_mail() {
    let v = run(&[
        R("220 ok"),
        C("EHLO c"),
        R("250 ok"),
        C("RCPT TO:<a@b>"),
        R("250 ok"),
    ]);
    assert_eq!(ids(&v), ["smtp.sequence.rcpt-without-mail"]);
    // EHLO ends a transaction: RCPT after it needs a new MAIL.
    let v = run(&[
        R("220 ok"),
        C("MAIL FROM:<a@b>"),
        R("250 ok"),
        C("EHLO c"),
        R("250 ok"),
        C("RCPT TO:<a@b>"),
        R("250 ok"),
    ]);
    assert_eq!(ids(&v), ["smtp.sequence.rcpt-without-mail"]);
}

#[test]
fn data_without_rcpt() {
    let v = run(&[
        R("220 ok"),
        C("MAIL FROM:<a@b>"),
        R("250 ok"),
        C("RCPT TO:<x@b>"),
        R("550 no"),
        C("DATA"),
        R("354 go"),
    ]);
    assert_eq!(ids(&v), ["smtp.sequence.data-without-rcpt"]);
}

#[test]
fn nested_mail() {
    let v = run(&[
        R("220 ok"),
        C("MAIL FROM:<a@b>"),
        R("250 ok"),
        C("MAIL FROM:<a@b>"),
        R("250 ok"),
    ]);
    assert_eq!(ids(&v), ["smtp.sequence.nested-mail"]);
    // After RSET a new MAIL is fine.
    let v = run(&[
        R("220 ok"),
        C("MAIL FROM:<a@b>"),
        R("250 ok"),
        C("RSET"),
        R("250 ok"),
        C("MAIL FROM:<a@b>"),
        R("250 ok"),
    ]);
    assert_eq!(v, vec![]);
}

#[test]
fn data_reply() {
    let v = run(&[
        R("220 ok"),
        C("MAIL FROM:<a@b>"),
        R("250 ok"),
        C("RCPT TO:<a@b>"),
        R("250 ok"),
        C("DATA"),
        R("250 ok"),
    ]);
    assert_eq!(ids(&v), ["smtp.data.reply"]);
}

#[test]
fn data_end_reply() {
    let v = run(&[
        R("220 ok"),
        C("MAIL FROM:<a@b>"),
        R("250 ok"),
        C("RCPT TO:<a@b>"),
        R("250 ok"),
        C("DATA"),
        R("354 go"),
        D("hello"),
        D("."),
        R("354 again"),
    ]);
    assert_eq!(ids(&v), ["smtp.data.end-reply"]);
}

#[test]
fn quit_reply() {
    let v = run(&[R("220 ok"), C("QUIT"), R("250 bye")]);
    assert_eq!(ids(&v), ["smtp.quit.reply"]);
}

#[test]
fn ehlo_keyword() {
    let v = run(&[R("220 ok"), C("EHLO c"), R("250-h\n250-AUTH=PLAIN\n250 -X")]);
    assert_eq!(ids(&v), ["smtp.ehlo.keyword", "smtp.ehlo.keyword"]);
}

#[test]
fn starttls_readvertised() {
    let v = run(&[
        R("220 ok"),
        C("EHLO c"),
        R("250-h\n250 STARTTLS"),
        C("STARTTLS"),
        R("220 go"),
        C("EHLO c"),
        R("250-h\n250 STARTTLS"),
    ]);
    assert_eq!(ids(&v), ["smtp.starttls.readvertised"]);
}

#[test]
fn enhanced_codes() {
    let v = run(&[
        R("220 ok"),
        C("EHLO c"),
        R("250-h\n250 ENHANCEDSTATUSCODES"),
        C("MAIL FROM:<a@b>"),
        R("250 Ok"),
        C("RCPT TO:<a@b>"),
        R("550 2.1.1 wrong class"),
        C("NOOP"),
        R("250 2.0.0 Ok"),
    ]);
    assert_eq!(ids(&v), ["smtp.enhanced.code", "smtp.enhanced.code"]);
    // Voided by STARTTLS until the next EHLO.
    let v = run(&[
        R("220 ok"),
        C("EHLO c"),
        R("250-h\n250 ENHANCEDSTATUSCODES"),
        C("STARTTLS"),
        R("220 2.0.0 go"),
        C("NOOP"),
        R("250 Ok"),
    ]);
    assert_eq!(v, vec![]);
}

#[test]
fn garbage_never_panics() {
    let mut c = SmtpChecks::new();
    for bytes in [
        &b""[..],
        b"\n",
        b"\r\n",
        b"\xff\xfe",
        b"BDAT 99999999999999999999\r\n",
    ] {
        c.client_line("x", bytes, false);
        c.client_line("x", bytes, true);
        let r = LineReply {
            raw: bytes.to_vec(),
            lines: vec![bytes.to_vec()],
            line_ending: LineEnding::Crlf,
            kind: ReplyKind::Malformed,
            code: 0,
        };
        c.server_reply("x", &r);
        let empty = LineReply {
            raw: Vec::new(),
            lines: Vec::new(),
            line_ending: LineEnding::Crlf,
            kind: ReplyKind::Malformed,
            code: 0,
        };
        c.server_reply("x", &empty);
    }
    c.session_closed("x");
    c.session_closed("never-opened");
}

#[test]
fn every_rule_is_documented() {
    let doc = include_str!("../../../docs/checks.md");
    for rule in ALL {
        assert!(
            doc.contains(&format!("`{}`", rule.id)),
            "docs/checks.md misses {}",
            rule.id
        );
    }
}

/// The bundled reference server, driven over loopback, comes out clean: plain and under TLS,
/// pipelined, with sequence errors the server rightly refuses.
#[tokio::test]
async fn reference_server_session_is_clean() {
    use crate::net::{Stream, TlsClient};
    use crate::proto::line::LineConnection;
    use crate::target::TlsOptions;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(10);
    let running = reference_server::start(reference_server::Config::default())
        .await
        .expect("reference server starts");
    let addr = running.smtp.expect("SMTP listener");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut conn = LineConnection::smtp(Stream::Plain(tcp), WAIT);
    let tls = TlsClient::new(&TlsOptions {
        ca_file: None,
        extra_roots: Vec::new(),
        insecure: true,
    })
    .expect("TLS client");
    let mut checks = SmtpChecks::new();
    checks.session_opened(S);
    let mut seen = Vec::new();
    let mut codes = Vec::new();

    let greeting = conn.read_reply(WAIT).await.expect("greeting");
    seen.extend(checks.server_reply(S, &greeting));
    // Each batch is sent at once (pipelined), then its replies are read in order; content
    // lines are marked `in_data`.
    let batches: &[&[(&str, bool)]] = &[
        &[("EHLO client.test", false)],
        &[("RCPT TO:<alice@example.test>", false)],
        &[("DATA", false)],
        &[("STARTTLS", false)],
        &[("EHLO client.test", false)],
        &[("AUTH PLAIN AGFsaWNlAGFsaWNlcHc=", false)],
        &[
            ("MAIL FROM:<s@elsewhere.test>", false),
            ("RCPT TO:<nobody@example.test>", false),
            ("RCPT TO:<alice@example.test>", false),
            ("DATA", false),
        ],
        &[("Subject: t", true), ("", true), ("..x", true), (".", true)],
        &[("MAIL FROM:<s@elsewhere.test>", false)],
        &[("MAIL FROM:<s@elsewhere.test>", false)],
        &[("RSET", false), ("NOOP", false), ("HELP", false)],
        &[("HELO client.test", false), ("NOOP", false)],
        &[("QUIT", false)],
    ];
    for batch in batches {
        for (line, in_data) in *batch {
            let bytes = format!("{line}\r\n");
            seen.extend(checks.client_line(S, bytes.as_bytes(), *in_data));
            conn.send(bytes.as_bytes()).await.expect("send");
        }
        // Content lines get one reply, after the final ".".
        let replies = if batch[0].1 { 1 } else { batch.len() };
        for _ in 0..replies {
            let r = conn.read_reply(WAIT).await.expect("reply");
            codes.push(r.code);
            seen.extend(checks.server_reply(S, &r));
        }
        if batch[0].0 == "STARTTLS" {
            conn.starttls(&tls, "localhost").await.expect("TLS");
        }
    }
    seen.extend(checks.session_closed(S));
    // The exchange went as planned: sequence errors refused, the message accepted.
    assert_eq!(
        codes,
        [
            250, 503, 503, 220, 250, 235, 250, 550, 250, 354, 250, 250, 503, 250, 250, 214, 250,
            250, 221
        ]
    );
    assert_eq!(seen, vec![]);
    running.shutdown().await;
}
