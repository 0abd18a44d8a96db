//! SMTP: the port-25 and submission listeners over raw sockets (greeting, EHLO, transactions,
//! sequencing, limits, AUTH, STARTTLS, PIPELINING), delivery checked through IMAP on the same
//! server, and Python's smtplib as a third-party client.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reference_server::{Config, Running, SmtpLimits};
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(5);

async fn server_with(limits: SmtpLimits) -> Running {
    reference_server::start(Config {
        smtp_limits: limits,
        ..Config::default()
    })
    .await
    .expect("server starts")
}

/// A raw SMTP client: sends bytes, reads whole (multi-line) replies.
struct Smtp<S> {
    stream: S,
    buf: Vec<u8>,
}

impl Smtp<TcpStream> {
    /// Connects and checks the greeting.
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut c = Smtp {
            stream,
            buf: Vec::new(),
        };
        let greeting = c.reply().await;
        assert_eq!(greeting.len(), 1, "{greeting:?}");
        assert!(
            greeting[0].starts_with("220 example.test ESMTP "),
            "{greeting:?}"
        );
        c
    }

    async fn smtp(running: &Running) -> Self {
        Self::connect(running.smtp.expect("smtp port")).await
    }

    /// Connects and says EHLO.
    async fn ehlo(addr: SocketAddr) -> Self {
        let mut c = Self::connect(addr).await;
        let r = c.cmd("EHLO client.test").await;
        assert!(r.last().expect("reply").starts_with("250 "), "{r:?}");
        c
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Smtp<S> {
    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// One line without CRLF, or `<EOF>` when the server closed.
    async fn line(&mut self) -> String {
        let fut = async {
            loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                    return String::from_utf8_lossy(&line[..pos]).into_owned();
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    let rest: Vec<u8> = self.buf.drain(..).collect();
                    return format!("<EOF>{}", String::from_utf8_lossy(&rest));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("line within timeout")
    }

    /// One reply: lines up to the one with a space after the code. Each line must have the
    /// RFC 5321 reply-line shape `NNN-text` / `NNN text` with the same code.
    async fn reply(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            if line.starts_with("<EOF>") {
                lines.push(line);
                return lines;
            }
            let bytes = line.as_bytes();
            assert!(
                bytes.len() >= 4
                    && bytes[..3].iter().all(u8::is_ascii_digit)
                    && (bytes[3] == b' ' || bytes[3] == b'-'),
                "malformed reply line {line:?}"
            );
            if let Some(first) = lines.first() {
                let first: &String = first;
                assert_eq!(first[..3], line[..3], "code changed inside a reply");
            }
            let last = bytes[3] == b' ';
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// Sends a command line and returns its reply.
    async fn cmd(&mut self, line: &str) -> Vec<String> {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Sends a command and returns the single reply line.
    async fn one(&mut self, line: &str) -> String {
        let r = self.cmd(line).await;
        assert_eq!(r.len(), 1, "{r:?}");
        r.into_iter().next().expect("one line")
    }
}

fn connector(running: &Running) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(running.certificate.clone())
        .expect("add certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

fn b64(s: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Logs in over IMAP and returns the raw BODY[] of every INBOX message.
async fn inbox(running: &Running, user: &str) -> Vec<String> {
    let mut c = common::Client::login(running, user).await;
    let r = c.cmd("s SELECT INBOX").await;
    assert!(common::tagged(&r).starts_with("s OK"), "{r:?}");
    if common::has(&r, "* 0 EXISTS") {
        return Vec::new();
    }
    let r = c.cmd("f FETCH 1:* (BODY.PEEK[])").await;
    assert!(common::tagged(&r).starts_with("f OK"), "{r:?}");
    r.iter()
        .filter(|l| l.starts_with("* ") && l.contains(" FETCH "))
        .cloned()
        .collect()
}

/// Runs one transaction and asserts every reply.
async fn send_mail<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Smtp<S>,
    from: &str,
    to: &[&str],
    body: &str,
) {
    let r = c.one(&format!("MAIL FROM:<{from}>")).await;
    assert!(r.starts_with("250 2.1.0 "), "{r}");
    for rcpt in to {
        let r = c.one(&format!("RCPT TO:<{rcpt}>")).await;
        assert!(r.starts_with("250 2.1.5 "), "{r}");
    }
    let r = c.one("DATA").await;
    assert!(r.starts_with("354 "), "{r}");
    c.send(body.as_bytes()).await;
    c.send(b".\r\n").await;
    let r = c.reply().await;
    assert!(r[0].starts_with("250 2.0.0 "), "{r:?}");
}

#[tokio::test]
async fn ehlo_announces_the_extensions() {
    let running = server_with(SmtpLimits::default()).await;
    for addr in [running.smtp, running.submission] {
        let mut c = Smtp::connect(addr.expect("port")).await;
        let r = c.cmd("EHLO client.test").await;
        assert!(r[0].starts_with("250-example.test"), "{r:?}");
        let keywords: Vec<&str> = r[1..].iter().map(|l| &l[4..]).collect();
        for expected in [
            "PIPELINING",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "STARTTLS",
            "AUTH PLAIN LOGIN",
        ] {
            assert!(keywords.contains(&expected), "{expected} missing: {r:?}");
        }
        let size = format!("SIZE {}", SmtpLimits::default().max_message_size);
        assert!(keywords.contains(&size.as_str()), "{r:?}");
        // smtp-proto's client-side parser reads the same reply.
        let raw: String = r.iter().map(|l| format!("{l}\r\n")).collect();
        let parsed =
            smtp_proto::EhloResponse::parse(&mut raw.as_bytes().iter()).expect("EHLO reply parses");
        assert_eq!(parsed.hostname, "example.test");
        assert!(parsed.has_capability(smtp_proto::EXT_START_TLS));
        assert!(parsed.has_capability(smtp_proto::EXT_PIPELINING));
        assert_eq!(
            parsed.auth(),
            smtp_proto::AUTH_PLAIN | smtp_proto::AUTH_LOGIN
        );
        assert_eq!(parsed.size, SmtpLimits::default().max_message_size);
        let bye = c.one("QUIT").await;
        assert!(bye.starts_with("221 2.0.0 "), "{bye}");
        assert_eq!(c.line().await, "<EOF>");
    }
    running.shutdown().await;
}

#[tokio::test]
async fn helo_works_without_enhanced_codes() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::smtp(&running).await;
    let r = c.one("HELO old.client.test").await;
    assert_eq!(r, "250 example.test Hello");
    let r = c.one("MAIL FROM:<x@remote.test>").await;
    assert!(r.starts_with("250 Sender"), "{r}");
    let r = c.one("RCPT TO:<bob@example.test>").await;
    assert!(r.starts_with("250 Recipient"), "{r}");
    let r = c.one("DATA").await;
    assert!(r.starts_with("354 "), "{r}");
    c.send(b"Subject: helo\r\n\r\nold style\r\n.\r\n").await;
    let r = c.one("NOOP").await;
    // The DATA reply came first; NOOP's is next.
    assert!(r.starts_with("250 Message accepted"), "{r}");
    assert_eq!(c.reply().await, vec!["250 OK".to_string()]);
    let mail = inbox(&running, "bob").await;
    assert!(mail[0].contains("with SMTP id"), "{mail:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn delivered_mail_is_fetched_over_imap_and_idle_sees_it() {
    let running = server_with(SmtpLimits::default()).await;
    // An IMAP session idling in alice's INBOX before the mail arrives.
    let mut idle = common::Client::login(&running, "alice").await;
    let r = idle.cmd("s SELECT INBOX").await;
    assert!(common::has(&r, "* 0 EXISTS"), "{r:?}");
    idle.send(b"i IDLE\r\n").await;
    assert!(idle.line().await.starts_with("+ "));

    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    let body = "From: carol@remote.test\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\nHi Alice,\r\nsee you.\r\n";
    send_mail(&mut c, "carol@remote.test", &["alice@example.test"], body).await;

    assert_eq!(idle.line().await, "* 1 EXISTS");
    assert_eq!(idle.line().await, "* 1 RECENT");
    idle.send(b"DONE\r\n").await;
    let r = idle.until_tag("i").await;
    assert!(common::tagged(&r).contains("OK"), "{r:?}");

    let mail = inbox(&running, "alice").await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    let m = &mail[0];
    assert!(m.contains("\r\nReturn-Path: <carol@remote.test>\r\nReceived: from client.test ([127.0.0.1])\r\n\tby example.test (mailtape reference server) with ESMTP id "), "{m}");
    assert!(m.contains("\r\n\tfor <alice@example.test>; "), "{m}");
    assert!(m.ends_with(&format!("{body})")), "{m}");
    // Bob got nothing.
    assert!(inbox(&running, "bob").await.is_empty());
    running.shutdown().await;
}

#[tokio::test]
async fn dot_stuffed_lines_arrive_intact() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    // On the wire: "..leading dot", "...", "." in the middle of a line.
    let wire = "Subject: dots\r\n\r\n..leading dot\r\n...\r\nmid . dot\r\n.\r\n";
    assert!(c.one("MAIL FROM:<>").await.starts_with("250 "));
    assert!(
        c.one("RCPT TO:<bob@example.test>")
            .await
            .starts_with("250 ")
    );
    assert!(c.one("DATA").await.starts_with("354 "));
    c.send(wire.as_bytes()).await;
    let r = c.reply().await;
    assert!(r[0].starts_with("250 2.0.0 "), "{r:?}");
    let mail = inbox(&running, "bob").await;
    assert!(
        mail[0].ends_with("Subject: dots\r\n\r\n.leading dot\r\n..\r\nmid . dot\r\n)"),
        "{mail:?}"
    );
    assert!(mail[0].contains("Return-Path: <>\r\n"), "{mail:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn empty_message_is_accepted() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    assert!(c.one("MAIL FROM:<a@b.test>").await.starts_with("250 "));
    assert!(
        c.one("RCPT TO:<bob@example.test>")
            .await
            .starts_with("250 ")
    );
    assert!(c.one("DATA").await.starts_with("354 "));
    c.send(b".\r\n").await;
    assert!(c.reply().await[0].starts_with("250 2.0.0 "));
    let mail = inbox(&running, "bob").await;
    // Only the trace fields.
    assert!(mail[0].contains("Return-Path: <a@b.test>"), "{mail:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn every_sequencing_error_gets_503() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::smtp(&running).await;
    // Before EHLO: no enhanced codes yet.
    assert_eq!(
        c.one("MAIL FROM:<a@b.test>").await,
        "503 Send EHLO or HELO first"
    );
    assert_eq!(c.one("AUTH PLAIN").await, "503 Send EHLO first");
    assert_eq!(c.one("STARTTLS").await, "503 Send EHLO first");
    assert!(c.cmd("EHLO client.test").await.len() > 1);
    assert_eq!(
        c.one("RCPT TO:<alice@example.test>").await,
        "503 5.5.1 Need MAIL before RCPT"
    );
    assert_eq!(c.one("DATA").await, "503 5.5.1 Need MAIL command");
    assert!(c.one("MAIL FROM:<a@b.test>").await.starts_with("250 2.1.0"));
    assert_eq!(
        c.one("MAIL FROM:<a@b.test>").await,
        "503 5.5.1 Nested MAIL command"
    );
    assert_eq!(
        c.one("DATA").await,
        "503 5.5.1 Need RCPT command (no valid recipients)"
    );
    // A refused recipient does not count as one.
    assert!(
        c.one("RCPT TO:<nobody@example.test>")
            .await
            .starts_with("550 5.1.1")
    );
    assert!(c.one("DATA").await.starts_with("503 5.5.1"));
    // RSET ends the transaction; EHLO does too.
    assert_eq!(c.one("RSET").await, "250 2.0.0 Reset OK");
    assert!(
        c.one("RCPT TO:<alice@example.test>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(c.one("MAIL FROM:<a@b.test>").await.starts_with("250 "));
    assert!(c.cmd("EHLO again.test").await.len() > 1);
    assert!(
        c.one("RCPT TO:<alice@example.test>")
            .await
            .starts_with("503 5.5.1")
    );
    running.shutdown().await;
}

/// RSET (RFC 5321 4.1.1.5) and STARTTLS (RFC 3207 4) take no parameters: 501, and the
/// session goes on.
#[tokio::test]
async fn commands_without_parameters_refuse_them() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    assert!(c.one("RSET now").await.starts_with("501 5.5.4 "));
    assert!(c.one("STARTTLS please").await.starts_with("501 5.5.4 "));
    assert_eq!(c.one("RSET").await, "250 2.0.0 Reset OK");
    running.shutdown().await;
}

#[tokio::test]
async fn syntax_and_unknown_commands() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    assert_eq!(c.one("FROB").await, "500 5.5.1 Command unrecognized");
    assert!(c.one("MAIL FROM:a@b.test").await.starts_with("501 5.5.2 "));
    assert!(c.one("MAIL TO:<a@b.test>").await.starts_with("501 5.5.2 "));
    assert!(c.one("EHLO").await.starts_with("501 5.5.2 "));
    assert!(c.one("AUTH FOO").await.starts_with("504 5.5.4 "));
    assert!(
        c.one("MAIL FROM:<a@b.test> SIZE=x")
            .await
            .starts_with("501 5.5.4 ")
    );
    assert!(
        c.one("MAIL FROM:<a@b.test> FOO=bar")
            .await
            .starts_with("555 5.5.4 ")
    );
    assert!(
        c.one("MAIL FROM:<a@b.test> SMTPUTF8")
            .await
            .starts_with("555 5.5.4 ")
    );
    // A bare LF command line is refused (RFC 5321 2.3.8).
    c.send(b"NOOP\n").await;
    assert!(c.reply().await[0].starts_with("500 5.5.2 "));
    assert!(
        c.one("VRFY alice")
            .await
            .starts_with("252 2.1.5 Cannot VRFY user")
    );
    assert!(c.one("EXPN staff").await.starts_with("502 5.5.1 "));
    assert!(c.one("HELP").await.starts_with("214 2.0.0 "));
    assert_eq!(c.one("NOOP").await, "250 2.0.0 OK");
    // A new session: the errors above are close to the limit of 10.
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    // BDAT is refused but its chunk is consumed, so framing holds.
    c.send(b"BDAT 5 LAST\r\nhelloNOOP\r\n").await;
    assert!(c.reply().await[0].starts_with("502 5.5.1 "));
    assert_eq!(c.reply().await, vec!["250 2.0.0 OK".to_string()]);
    // Parameters that are offered work.
    assert!(
        c.one("MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME AUTH=<>")
            .await
            .starts_with("250 2.1.0 ")
    );
    assert!(
        c.one("RCPT TO:<alice@example.test> NOTIFY=NEVER")
            .await
            .starts_with("555 5.5.4 ")
    );
    running.shutdown().await;
}

#[tokio::test]
async fn recipients_local_unknown_postmaster_and_relay() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    assert!(c.one("MAIL FROM:<x@remote.test>").await.starts_with("250 "));
    assert!(
        c.one("RCPT TO:<Alice@EXAMPLE.test>")
            .await
            .starts_with("250 2.1.5 ")
    );
    assert_eq!(
        c.one("RCPT TO:<zed@example.test>").await,
        "550 5.1.1 Mailbox unavailable: no such user"
    );
    assert_eq!(
        c.one("RCPT TO:<someone@elsewhere.test>").await,
        "550 5.7.1 Relay access denied"
    );
    assert!(
        c.one("RCPT TO:<postmaster>")
            .await
            .starts_with("250 2.1.5 ")
    );
    assert!(
        c.one("RCPT TO:<PostMaster@example.test>")
            .await
            .starts_with("250 2.1.5 ")
    );
    assert_eq!(c.one("RCPT TO:<>").await, "501 5.1.3 Null forward-path");
    assert!(c.one("RCPT TO:<bob>").await.starts_with("501 5.1.3 "));
    assert!(c.one("RCPT TO:<bad@>").await.starts_with("501 5.1.3 "));
    running.shutdown().await;
}

#[tokio::test]
async fn size_limit_at_mail_and_after_data() {
    let limits = SmtpLimits {
        max_message_size: 1000,
        ..SmtpLimits::default()
    };
    let running = server_with(limits).await;
    let mut c = Smtp::smtp(&running).await;
    let r = c.cmd("EHLO client.test").await;
    assert!(r.contains(&"250-SIZE 1000".to_string()), "{r:?}");
    assert_eq!(
        c.one("MAIL FROM:<a@b.test> SIZE=1001").await,
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert!(
        c.one("MAIL FROM:<a@b.test> SIZE=1000")
            .await
            .starts_with("250 ")
    );
    assert!(
        c.one("RCPT TO:<alice@example.test>")
            .await
            .starts_with("250 ")
    );
    assert!(c.one("DATA").await.starts_with("354 "));
    let line = format!("{}\r\n", "x".repeat(98));
    c.send(line.repeat(11).as_bytes()).await;
    c.send(b".\r\n").await;
    assert_eq!(
        c.reply().await,
        vec!["552 5.3.4 Message size exceeds fixed maximum message size".to_string()]
    );
    // The session goes on, and a message within the limit is delivered.
    let body = line.repeat(10);
    send_mail(&mut c, "a@b.test", &["alice@example.test"], &body).await;
    let mail = inbox(&running, "alice").await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn long_lines_bare_lf_and_too_many_recipients() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    // A command line of 513 octets (CRLF included) is too long; 512 is fine.
    let long = format!("NOOP {}", "a".repeat(513 - 7));
    assert_eq!(c.one(&long).await, "500 5.5.2 Line too long");
    let ok = format!("NOOP {}", "a".repeat(512 - 7));
    assert_eq!(c.one(&ok).await, "250 2.0.0 OK");

    let start = async |c: &mut Smtp<TcpStream>| {
        assert!(c.one("MAIL FROM:<a@b.test>").await.starts_with("250 "));
        assert!(
            c.one("RCPT TO:<alice@example.test>")
                .await
                .starts_with("250 ")
        );
        assert!(c.one("DATA").await.starts_with("354 "));
    };
    // A text line of 1001 octets.
    start(&mut c).await;
    c.send(format!("{}\r\n.\r\n", "y".repeat(999)).as_bytes())
        .await;
    assert!(c.reply().await[0].starts_with("554 5.6.0 "));
    // Bare LF inside the message: refused, and "\n.\n" does not end the data.
    start(&mut c).await;
    c.send(b"one\ntwo\n.\nthree\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(
        r[0].starts_with("554 5.6.0 ") && r[0].contains("bare"),
        "{r:?}"
    );
    assert!(inbox(&running, "alice").await.is_empty());

    // RFC 5321 4.5.3.1.8: 100 recipients are fine, the 101st gets 452.
    assert!(c.one("MAIL FROM:<a@b.test>").await.starts_with("250 "));
    let mut batch = String::new();
    for _ in 0..101 {
        batch.push_str("RCPT TO:<bob@example.test>\r\n");
    }
    c.send(batch.as_bytes()).await;
    for _ in 0..100 {
        assert!(c.reply().await[0].starts_with("250 2.1.5 "));
    }
    assert_eq!(
        c.reply().await,
        vec!["452 4.5.3 Too many recipients".to_string()]
    );
    assert!(c.one("DATA").await.starts_with("354 "));
    c.send(b"Subject: many\r\n\r\nx\r\n.\r\n").await;
    assert!(c.reply().await[0].starts_with("250 "));
    // Bob named 100 times gets one copy.
    assert_eq!(inbox(&running, "bob").await.len(), 1);
    running.shutdown().await;
}

#[tokio::test]
async fn too_many_errors_end_the_session() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    // Junk, including NUL and invalid UTF-8, must not hurt the server.
    let junk = b"\x00\xff\xfe\r\n";
    for _ in 0..9 {
        c.send(junk).await;
        assert!(c.reply().await[0].starts_with("500 5.5."));
    }
    c.send(junk).await;
    assert!(c.reply().await[0].starts_with("500 "));
    let r = c.reply().await;
    assert!(
        r[0].starts_with("421 4.7.0 example.test Too many errors"),
        "{r:?}"
    );
    assert_eq!(c.line().await, "<EOF>");
    running.shutdown().await;
}

#[tokio::test]
async fn idle_timeout_gets_421() {
    let limits = SmtpLimits {
        idle_timeout: Duration::from_millis(1000),
        ..SmtpLimits::default()
    };
    let running = server_with(limits).await;
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    let r = c.reply().await;
    assert!(r[0].starts_with("421 4.4.2 example.test Timeout"), "{r:?}");
    assert_eq!(c.line().await, "<EOF>");
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_421() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::smtp(&running).await;
    let stop = tokio::spawn(running.shutdown());
    let r = c.reply().await;
    assert!(
        r[0].starts_with("421 example.test Service shutting down"),
        "{r:?}"
    );
    tokio::time::timeout(WAIT, stop)
        .await
        .expect("shutdown completes")
        .expect("join");
}

#[tokio::test]
async fn submission_requires_auth_plain_and_login_work() {
    let running = server_with(SmtpLimits::default()).await;
    let addr = running.submission.expect("submission");
    let mut c = Smtp::ehlo(addr).await;
    assert_eq!(
        c.one("MAIL FROM:<alice@example.test>").await,
        "530 5.7.0 Authentication required"
    );
    // Wrong password, cancel, bad base64, unknown mechanism.
    let bad = b64(b"\0alice\0wrong");
    assert_eq!(
        c.one(&format!("AUTH PLAIN {bad}")).await,
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(c.one("AUTH PLAIN").await, "334 ");
    assert_eq!(c.one("*").await, "501 5.0.0 Authentication cancelled");
    assert_eq!(c.one("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert!(c.one("!!!").await.starts_with("501 5.5.2 "));
    assert!(c.one("AUTH CRAM-MD5").await.starts_with("504 5.5.4 "));
    // PLAIN with an initial response.
    let good = b64(b"\0alice\0alicepw");
    assert_eq!(
        c.one(&format!("AUTH PLAIN {good}")).await,
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(
        c.one(&format!("AUTH PLAIN {good}")).await,
        "503 5.5.1 Already authenticated"
    );
    send_mail(
        &mut c,
        "alice@example.test",
        &["bob@example.test", "friend@elsewhere.test"],
        "Subject: from alice\r\n\r\nhi bob\r\n",
    )
    .await;
    let mail = inbox(&running, "bob").await;
    assert!(mail[0].contains(" with ESMTPA id "), "{mail:?}");

    // PLAIN without an initial response, and LOGIN, on new connections.
    let mut c = Smtp::ehlo(addr).await;
    assert_eq!(c.one("AUTH PLAIN").await, "334 ");
    assert!(
        c.one(&b64(b"bob\0bob\0bobpw"))
            .await
            .starts_with("235 2.7.0 ")
    );
    let mut c = Smtp::ehlo(addr).await;
    assert_eq!(c.one("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.one(&b64(b"bob@example.test")).await, "334 UGFzc3dvcmQ6");
    assert!(c.one(&b64(b"bobpw")).await.starts_with("235 2.7.0 "));
    assert!(
        c.one("MAIL FROM:<bob@example.test>")
            .await
            .starts_with("250 ")
    );
    assert!(
        c.one("AUTH LOGIN")
            .await
            .starts_with("503 5.5.1 Already authenticated")
    );
    // LOGIN with the user name as initial response.
    let mut c = Smtp::ehlo(addr).await;
    assert_eq!(
        c.one(&format!("AUTH LOGIN {}", b64(b"alice"))).await,
        "334 UGFzc3dvcmQ6"
    );
    assert!(c.one(&b64(b"alicepw")).await.starts_with("235 "));
    // A SASL line may exceed 512 octets, up to 12288.
    let mut c = Smtp::ehlo(addr).await;
    assert_eq!(c.one("AUTH PLAIN").await, "334 ");
    let long = b64(&[b'a'; 3000]);
    assert!(c.one(&long).await.starts_with("535 5.7.8 "));
    assert_eq!(c.one("AUTH PLAIN").await, "334 ");
    let too_long = "A".repeat(13000);
    assert!(c.one(&too_long).await.starts_with("500 5.5.6 "));
    running.shutdown().await;
}

#[tokio::test]
async fn auth_on_the_smtp_port_allows_relaying() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    assert!(
        c.one("MAIL FROM:<alice@example.test>")
            .await
            .starts_with("250 ")
    );
    assert!(
        c.one("RCPT TO:<x@elsewhere.test>")
            .await
            .starts_with("550 5.7.1 ")
    );
    assert_eq!(
        c.one("AUTH PLAIN").await,
        "503 5.5.1 AUTH not permitted during a mail transaction"
    );
    assert!(c.one("RSET").await.starts_with("250 "));
    let good = b64(b"\0alice\0alicepw");
    assert!(
        c.one(&format!("AUTH PLAIN {good}"))
            .await
            .starts_with("235 ")
    );
    assert!(
        c.one("MAIL FROM:<alice@example.test>")
            .await
            .starts_with("250 ")
    );
    assert!(
        c.one("RCPT TO:<x@elsewhere.test>")
            .await
            .starts_with("250 2.1.5 ")
    );
    running.shutdown().await;
}

#[tokio::test]
async fn starttls_resets_the_session() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    assert!(c.one("MAIL FROM:<a@b.test>").await.starts_with("250 "));
    // Plaintext pipelined after STARTTLS must be discarded (RFC 3207 4.2).
    c.send(b"STARTTLS\r\nRSET\r\n").await;
    assert_eq!(
        c.reply().await,
        vec!["220 2.0.0 Ready to start TLS".to_string()]
    );
    assert!(c.buf.is_empty());
    let name = ServerName::try_from("localhost").expect("name");
    let tls = connector(&running)
        .connect(name, c.stream)
        .await
        .expect("handshake");
    let mut c = Smtp {
        stream: tls,
        buf: Vec::new(),
    };
    // Everything is forgotten: MAIL needs a new EHLO, and the old transaction is gone.
    assert_eq!(
        c.one("MAIL FROM:<a@b.test>").await,
        "503 Send EHLO or HELO first"
    );
    let r = c.cmd("EHLO client.test").await;
    assert!(!r.iter().any(|l| l.contains("STARTTLS")), "{r:?}");
    assert!(r.iter().any(|l| l.contains("AUTH")), "{r:?}");
    assert!(
        c.one("RCPT TO:<bob@example.test>")
            .await
            .starts_with("503 5.5.1")
    );
    assert_eq!(c.one("STARTTLS").await, "503 5.5.1 TLS already active");
    send_mail(
        &mut c,
        "a@b.test",
        &["bob@example.test"],
        "Subject: tls\r\n\r\nsecret\r\n",
    )
    .await;
    let mail = inbox(&running, "bob").await;
    assert!(mail[0].contains(" with ESMTPS id "), "{mail:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn pipelined_transaction_in_one_write() {
    let running = server_with(SmtpLimits::default()).await;
    let mut c = Smtp::smtp(&running).await;
    c.send(
        b"EHLO client.test\r\nMAIL FROM:<p@remote.test>\r\nRCPT TO:<alice@example.test>\r\n\
          RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n",
    )
    .await;
    let ehlo = c.reply().await;
    assert!(ehlo.len() > 1 && ehlo[0].starts_with("250-"), "{ehlo:?}");
    let codes = [
        "250 2.1.0 ",
        "250 2.1.5 ",
        "550 5.1.1 ",
        "250 2.1.5 ",
        "354 ",
    ];
    for code in codes {
        let r = c.reply().await;
        assert!(r[0].starts_with(code), "expected {code}: {r:?}");
    }
    // The message, its end and the next commands together.
    c.send(b"Subject: piped\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n")
        .await;
    assert!(c.reply().await[0].starts_with("250 2.0.0 Message accepted"));
    assert_eq!(c.reply().await, vec!["250 2.0.0 OK".to_string()]);
    assert!(c.reply().await[0].starts_with("221 2.0.0 "));
    assert_eq!(c.line().await, "<EOF>");
    for user in ["alice", "bob"] {
        let mail = inbox(&running, user).await;
        assert_eq!(mail.len(), 1, "{user}: {mail:?}");
        assert!(
            mail[0].contains(&format!("for <{user}@example.test>")),
            "{mail:?}"
        );
        assert!(
            mail[0].ends_with("Subject: piped\r\n\r\nbody\r\n)"),
            "{mail:?}"
        );
    }
    running.shutdown().await;
}

const PYTHON: &str = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
smtp_port, sub_port, cert_hex = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cadata=bytes.fromhex(cert_hex))

msg = EmailMessage()
msg["From"] = "py@remote.test"
msg["To"] = "alice@example.test"
msg["Subject"] = "from smtplib"
msg.set_content(".starts with a dot\nplain text\n")
with smtplib.SMTP("127.0.0.1", smtp_port) as s:
    code, _ = s.ehlo("python.test")
    assert code == 250 and s.has_extn("pipelining") and s.has_extn("size"), s.esmtp_features
    refused = s.send_message(msg)
    assert refused == {}, refused
    try:
        s.sendmail("py@remote.test", ["x@elsewhere.test"], "Subject: relay\r\n\r\nno\r\n")
        raise SystemExit("relay was accepted")
    except smtplib.SMTPRecipientsRefused as e:
        assert e.recipients["x@elsewhere.test"][0] == 550, e.recipients

with smtplib.SMTP("127.0.0.1", sub_port) as s:
    s.starttls(context=ctx)
    s.login("bob@example.test", "bobpw")
    m2 = EmailMessage()
    m2["From"] = "bob@example.test"
    m2["To"] = "alice@example.test"
    m2["Subject"] = "submitted"
    m2.set_content("via submission\n")
    assert s.send_message(m2) == {}
print("smtplib ok")
"#;

#[tokio::test]
async fn python_smtplib_sends_on_both_ports() {
    let running = server_with(SmtpLimits::default()).await;
    let smtp = running.smtp.expect("smtp").port().to_string();
    let sub = running.submission.expect("submission").port().to_string();
    let cert_hex: String = running
        .certificate
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", PYTHON, &smtp, &sub, &cert_hex])
            .output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("smtplib ok"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let mail = inbox(&running, "alice").await;
    assert_eq!(mail.len(), 2, "{mail:?}");
    assert!(mail[0].contains("Subject: from smtplib"), "{mail:?}");
    assert!(mail[0].contains("\r\n.starts with a dot\r\n"), "{mail:?}");
    assert!(mail[0].contains("Received: from python.test "), "{mail:?}");
    assert!(mail[1].contains("Subject: submitted"), "{mail:?}");
    assert!(mail[1].contains(" with ESMTPSA id "), "{mail:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn session_limit_gets_421_greeting() {
    let running = reference_server::start(Config {
        limits: reference_server::Limits {
            max_sessions: 1,
            ..reference_server::Limits::default()
        },
        ..Config::default()
    })
    .await
    .expect("server starts");
    let mut first = Smtp::smtp(&running).await;
    let tcp = TcpStream::connect(running.submission.expect("submission"))
        .await
        .expect("connect");
    let mut second = Smtp {
        stream: tcp,
        buf: Vec::new(),
    };
    let r = second.reply().await;
    assert!(r[0].starts_with("421 4.3.2 "), "{r:?}");
    assert_eq!(second.line().await, "<EOF>");
    assert_eq!(first.one("NOOP").await, "250 OK");
    running.shutdown().await;
}

/// A small deterministic generator (xorshift64*), so the junk is the same on every run.
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

#[tokio::test]
async fn random_input_never_breaks_the_server() {
    let running = server_with(SmtpLimits::default()).await;
    let words: [&[u8]; 16] = [
        b"EHLO x.test",
        b"HELO",
        b"MAIL FROM:<a@b.test>",
        b"MAIL FROM:<",
        b"RCPT TO:<alice@example.test>",
        b"RCPT TO:<\xff@\x00>",
        b"DATA",
        b"BDAT 3",
        b"AUTH PLAIN",
        b"AUTH LOGIN =",
        b"STARTTLS",
        b"RSET",
        b".",
        b"\r",
        b"\n",
        b"\xc3\x28 \x00",
    ];
    let mut junk = Junk(0x5eed_1234_abcd_0001);
    for _ in 0..20 {
        let port = if junk.below(2) == 0 {
            running.smtp
        } else {
            running.submission
        };
        let mut c = Smtp::connect(port.expect("port")).await;
        let mut input = Vec::new();
        for _ in 0..40 {
            input.extend_from_slice(words[junk.below(words.len() as u64)]);
            for _ in 0..junk.below(4) {
                input.push(junk.next() as u8);
            }
            if junk.below(3) > 0 {
                input.extend_from_slice(b"\r\n");
            }
        }
        input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        // Sent in random pieces; STARTTLS may make the server stop reading plaintext.
        let mut rest = input.as_slice();
        while !rest.is_empty() {
            let n = (junk.below(64) + 1).min(rest.len());
            if c.stream.write_all(&rest[..n]).await.is_err() {
                break;
            }
            rest = &rest[n..];
        }
        // Every reply until the end is well formed (reply() asserts the shape).
        loop {
            let r = c.reply().await;
            let last = &r[r.len() - 1];
            if last.starts_with("<EOF>") || last.starts_with("221 ") || last.starts_with("421 ") {
                break;
            }
            if last.starts_with("220 2.0.0") {
                // STARTTLS accepted: the rest of the plaintext is ignored; stop here.
                break;
            }
        }
    }
    // The server still works.
    let mut c = Smtp::ehlo(running.smtp.expect("smtp")).await;
    send_mail(
        &mut c,
        "a@b.test",
        &["bob@example.test"],
        "Subject: after\r\n\r\nok\r\n",
    )
    .await;
    running.shutdown().await;
}
