//! POP3 over loopback: full sessions, sizes, dot-stuffing, DELE/RSET/QUIT and what IMAP sees
//! of it, UIDL stability, the maildrop lock, STLS and pop3s, AUTH PLAIN, bad input, and
//! Python's poplib as a third-party client. Replies are framed with the shared codec's
//! `ReplyFramer`; the wire bytes are also checked directly where the format is the point.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Client, WAIT, has, server, tagged};
use mailtape_proto::pop3::{
    Expect, FrameError, Framed, Reply, ReplyFramer, ReplyStatus, RespCode, parse_command,
};
use reference_server::{Config, Limits, Running};
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Cap on one reply in these tests: well above the largest message they send.
const MAX_REPLY: usize = 4 * 1024 * 1024;

struct Pop<S> {
    stream: S,
    framer: ReplyFramer,
}

impl Pop<TcpStream> {
    async fn connect(running: &Running) -> Self {
        let tcp = TcpStream::connect(running.pop3.expect("pop3 port"))
            .await
            .expect("connect");
        let mut p = Pop::new(tcp);
        let greeting = p.reply(Expect::SingleLine).await;
        assert_eq!(greeting.status, ReplyStatus::Ok, "{greeting:?}");
        p
    }

    async fn login(running: &Running, user: &str) -> Self {
        let mut p = Self::connect(running).await;
        p.ok(&format!("USER {user}")).await;
        let r = p.ok(&format!("PASS {user}pw")).await;
        assert!(r.text.contains("maildrop"), "{r:?}");
        p
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pop<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            framer: ReplyFramer::new(MAX_REPLY),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads the next reply, expected to have `shape`.
    async fn reply(&mut self, shape: Expect) -> Reply {
        self.framer.expect(shape);
        self.next().await
    }

    /// Reads the next reply for shapes already queued.
    async fn next(&mut self) -> Reply {
        let fut = async {
            loop {
                match self.framer.next_reply() {
                    Ok(Framed::Reply(r)) => return r,
                    Ok(Framed::Incomplete) => {}
                    Err(e) => panic!("framing: {e}"),
                }
                let mut chunk = [0u8; 16 * 1024];
                let n = self.stream.read(&mut chunk).await.expect("read");
                assert!(
                    n > 0,
                    "EOF; pending {:?}",
                    String::from_utf8_lossy(self.framer.pending())
                );
                self.framer.feed(&chunk[..n]);
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("reply within timeout")
    }

    /// Sends a command line and reads its reply; the shape comes from the codec when the line
    /// parses, else a single line is expected.
    async fn cmd(&mut self, line: &str) -> Reply {
        let shape = parse_command(line.as_bytes()).map_or(Expect::SingleLine, |c| c.expect());
        self.send(format!("{line}\r\n").as_bytes()).await;
        let r = self.reply(shape).await;
        assert!(!r.bare_lf(), "bare LF from the server: {r:?}");
        assert!(r.unstuffed_dots.is_empty(), "missed dot-stuffing: {r:?}");
        r
    }

    async fn ok(&mut self, line: &str) -> Reply {
        let r = self.cmd(line).await;
        assert_eq!(r.status, ReplyStatus::Ok, "{line}: {r:?}");
        r
    }

    async fn err(&mut self, line: &str) -> Reply {
        let r = self.cmd(line).await;
        assert_eq!(r.status, ReplyStatus::Err, "{line}: {r:?}");
        r
    }

    /// Waits for the server to close the connection (after any bytes still unread).
    async fn expect_eof(&mut self) {
        let fut = async {
            let mut chunk = [0u8; 1024];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.framer.feed(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(WAIT, fut)
            .await
            .expect("server closes the connection");
    }

    async fn quit(mut self) {
        let r = self.ok("QUIT").await;
        assert!(r.text.contains("signing off"), "{r:?}");
        self.expect_eof().await;
    }
}

/// The body lines of a multi-line reply as text.
fn lines(r: &Reply) -> Vec<String> {
    r.lines
        .as_ref()
        .expect("multi-line reply")
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// `n size` pairs of a LIST or `n uid` pairs of a UIDL listing.
fn pairs(r: &Reply) -> Vec<(u32, String)> {
    lines(r)
        .iter()
        .map(|l| {
            let (n, v) = l.split_once(' ').expect("two fields");
            (n.parse().expect("number"), v.to_string())
        })
        .collect()
}

/// Appends a message to `user`'s INBOX over IMAP.
async fn append(running: &Running, user: &str, msg: &[u8]) {
    let mut c = Client::login(running, user).await;
    c.send(format!("a APPEND INBOX {{{}+}}\r\n", msg.len()).as_bytes())
        .await;
    c.send(msg).await;
    c.send(b"\r\n").await;
    let r = c.until_tag("a").await;
    assert!(tagged(&r).starts_with("a OK"), "{r:?}");
    c.cmd("z LOGOUT").await;
}

async fn server_with(limits: Limits) -> Running {
    reference_server::start(Config {
        limits,
        ..Config::default()
    })
    .await
    .expect("server starts")
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

const MSG1: &[u8] = b"From: a@example.test\r\nSubject: one\r\n\r\nfirst body\r\n";
const MSG2: &[u8] = b"From: b@example.test\r\nSubject: two\r\n\r\nsecond\r\nbody\r\n";

#[tokio::test]
async fn full_session_with_sizes_that_agree() {
    let running = server().await;
    append(&running, "alice", MSG1).await;
    append(&running, "alice", MSG2).await;
    // Bare LF in the store: POP3 sends CRLF lines and counts them that way.
    let bare = b"Subject: bare\n\nline one\nline two";
    append(&running, "alice", bare).await;
    let big: Vec<u8> = (0..5000)
        .flat_map(|i| format!("line {i} of a long message\r\n").into_bytes())
        .collect();
    let mut big_msg = b"Subject: big\r\n\r\n".to_vec();
    big_msg.extend_from_slice(&big);
    append(&running, "alice", &big_msg).await;

    let mut p = Pop::connect(&running).await;
    let capa = p.ok("CAPA").await;
    let caps = lines(&capa);
    for want in [
        "TOP",
        "UIDL",
        "USER",
        "SASL PLAIN",
        "RESP-CODES",
        "PIPELINING",
        "STLS",
    ] {
        assert!(caps.iter().any(|c| c == want), "{want} missing: {caps:?}");
    }
    p.ok("USER alice").await;
    p.ok("PASS alicepw").await;
    // After login STLS is no longer offered (RFC 2595 8: AUTHORIZATION state only).
    let caps = lines(&p.ok("CAPA").await);
    assert!(!caps.iter().any(|c| c == "STLS"), "{caps:?}");
    assert!(caps.iter().any(|c| c == "UIDL"), "{caps:?}");

    let stat = p.ok("STAT").await;
    let (count, total) = stat.text.split_once(' ').expect("STAT n m");
    assert_eq!(count, "4");
    let list = p.ok("LIST").await;
    let sizes = pairs(&list);
    assert_eq!(sizes.len(), 4);
    let mut sum = 0;
    for (n, size) in &sizes {
        let size: usize = size.parse().expect("size");
        sum += size;
        let single = p.ok(&format!("LIST {n}")).await;
        assert_eq!(single.text, format!("{n} {size}"));
        let retr = p.ok(&format!("RETR {n}")).await;
        assert_eq!(retr.body_octets(), size, "RETR {n}");
        assert!(!retr.raw.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    }
    assert_eq!(total, sum.to_string());
    // The bare-LF message grows by a CR per LF (3) and a final CRLF (2).
    assert_eq!(
        sum,
        MSG1.len() + MSG2.len() + bare.len() + 5 + big_msg.len()
    );
    // RETR delivers the stored message, with CRLF line ends.
    let retr = p.ok("RETR 2").await;
    let mut body = Vec::new();
    for l in retr.lines.iter().flatten() {
        body.extend_from_slice(l);
        body.extend_from_slice(b"\r\n");
    }
    assert_eq!(body, MSG2);
    assert_eq!(
        retr.raw,
        [
            format!("+OK {} octets\r\n", MSG2.len()).as_bytes(),
            MSG2,
            b".\r\n"
        ]
        .concat()
    );
    let retr = p.ok("RETR 3").await;
    assert_eq!(
        lines(&retr),
        vec!["Subject: bare", "", "line one", "line two"]
    );
    p.ok("NOOP").await;
    p.quit().await;
    running.shutdown().await;
}

#[tokio::test]
async fn dot_stuffing_and_top() {
    let running = server().await;
    let msg = b"Subject: dots\r\n\r\n.\r\n..\r\n.hidden\r\nplain\r\n. \r\nlast\r\n";
    append(&running, "alice", msg).await;
    let mut p = Pop::login(&running, "alice").await;
    let retr = p.ok("RETR 1").await;
    // On the wire every line starting with "." carries one more.
    let wire = String::from_utf8_lossy(&retr.raw).into_owned();
    assert!(
        wire.ends_with("\r\n\r\n..\r\n...\r\n..hidden\r\nplain\r\n.. \r\nlast\r\n.\r\n"),
        "{wire:?}"
    );
    assert_eq!(
        lines(&retr),
        vec![
            "Subject: dots",
            "",
            ".",
            "..",
            ".hidden",
            "plain",
            ". ",
            "last"
        ]
    );
    let top = p.ok("TOP 1 0").await;
    assert_eq!(lines(&top), vec!["Subject: dots", ""]);
    let top = p.ok("TOP 1 3").await;
    assert_eq!(lines(&top), vec!["Subject: dots", "", ".", "..", ".hidden"]);
    let top = p.ok("TOP 1 100").await;
    assert_eq!(top.lines, retr.lines);
    p.err("TOP 2 1").await;
    p.quit().await;
    running.shutdown().await;
}

#[tokio::test]
async fn dele_then_rset_keeps_everything() {
    let running = server().await;
    append(&running, "alice", MSG1).await;
    append(&running, "alice", MSG2).await;
    let mut p = Pop::login(&running, "alice").await;
    let before = p.ok("STAT").await.text;
    p.ok("DELE 1").await;
    assert_eq!(p.ok("STAT").await.text, format!("1 {}", MSG2.len()));
    p.err("LIST 1").await;
    p.err("RETR 1").await;
    p.err("TOP 1 0").await;
    p.err("UIDL 1").await;
    p.err("DELE 1").await;
    p.err("DELE 3").await;
    p.err("RETR 0").await;
    assert_eq!(pairs(&p.ok("LIST").await).len(), 1);
    assert_eq!(pairs(&p.ok("UIDL").await)[0].0, 2);
    p.ok("RSET").await;
    assert_eq!(p.ok("STAT").await.text, before);
    p.quit().await;
    let mut p = Pop::login(&running, "alice").await;
    assert_eq!(p.ok("STAT").await.text, before);
    p.quit().await;
    running.shutdown().await;
}

#[tokio::test]
async fn dele_quit_removes_the_message_for_pop3_and_imap() {
    let running = server().await;
    append(&running, "alice", MSG1).await;
    append(&running, "alice", MSG2).await;
    let mut imap = Client::login(&running, "alice").await;
    let r = imap.cmd("s SELECT INBOX").await;
    assert!(has(&r, "* 2 EXISTS"), "{r:?}");

    // A disconnect without QUIT deletes nothing (RFC 1939 6).
    let mut p = Pop::login(&running, "alice").await;
    p.ok("DELE 1").await;
    drop(p);
    let mut p = loop_login(&running, "alice").await;
    assert_eq!(
        p.ok("STAT").await.text,
        format!("2 {}", MSG1.len() + MSG2.len())
    );
    p.ok("DELE 1").await;
    // Until QUIT the message is still in the store.
    let r = imap.cmd("n1 NOOP").await;
    assert!(!has(&r, "EXPUNGE"), "{r:?}");
    let r = p.ok("QUIT").await;
    assert!(r.text.contains("1 messages left"), "{r:?}");
    p.expect_eof().await;

    let mut p = Pop::login(&running, "alice").await;
    assert_eq!(p.ok("STAT").await.text, format!("1 {}", MSG2.len()));
    let retr = p.ok("RETR 1").await;
    assert!(lines(&retr).contains(&"Subject: two".to_string()));
    p.quit().await;

    let r = imap.cmd("n2 NOOP").await;
    assert!(has(&r, "* 1 EXPUNGE"), "{r:?}");
    let r = imap
        .cmd("f FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    assert!(has(&r, "Subject: two"), "{r:?}");
    assert!(!has(&r, "Subject: one"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn imap_idle_hears_the_pop3_update() {
    let running = server().await;
    append(&running, "alice", MSG1).await;
    append(&running, "alice", MSG2).await;
    let mut imap = Client::login(&running, "alice").await;
    imap.cmd("s SELECT INBOX").await;
    imap.send(b"i IDLE\r\n").await;
    let l = imap.line().await;
    assert!(l.starts_with('+'), "{l}");
    let mut p = Pop::login(&running, "alice").await;
    p.ok("DELE 2").await;
    p.quit().await;
    // Pushed while idling: the store's change notification reached the IMAP session.
    let l = imap.line().await;
    assert_eq!(l, "* 2 EXPUNGE");
    imap.send(b"DONE\r\n").await;
    let r = imap.until_tag("i").await;
    assert!(tagged(&r).starts_with("i OK"), "{r:?}");
    running.shutdown().await;
}

/// Logs in, retrying while a just-dropped session still holds the lock (the server notices the
/// disconnect asynchronously).
async fn loop_login(running: &Running, user: &str) -> Pop<TcpStream> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut p = Pop::connect(running).await;
        p.ok(&format!("USER {user}")).await;
        let r = p.cmd(&format!("PASS {user}pw")).await;
        if r.status == ReplyStatus::Ok {
            return p;
        }
        assert_eq!(r.code, Some(RespCode::IN_USE), "{r:?}");
        assert!(tokio::time::Instant::now() < deadline, "lock not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn uidl_is_stable_across_sessions() {
    let running = server().await;
    for m in [MSG1, MSG2, MSG1] {
        append(&running, "alice", m).await;
    }
    let mut p = Pop::login(&running, "alice").await;
    let first = pairs(&p.ok("UIDL").await);
    assert_eq!(first.len(), 3);
    let ids: std::collections::HashSet<_> = first.iter().map(|(_, u)| u.clone()).collect();
    assert_eq!(ids.len(), 3, "unique: {first:?}");
    for (_, uid) in &first {
        assert!(
            (1..=70).contains(&uid.len()) && uid.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "RFC 1939 7 unique-id: {uid}"
        );
    }
    assert_eq!(p.ok("UIDL 2").await.text, format!("2 {}", first[1].1));
    p.ok("DELE 1").await;
    p.quit().await;

    let mut p = Pop::login(&running, "alice").await;
    let second = pairs(&p.ok("UIDL").await);
    // The survivors keep their ids under their new numbers.
    assert_eq!(
        second,
        vec![(1, first[1].1.clone()), (2, first[2].1.clone())]
    );
    p.quit().await;
    running.shutdown().await;
}

#[tokio::test]
async fn maildrop_lock_and_snapshot() {
    let running = server().await;
    append(&running, "alice", MSG1).await;
    let mut a = Pop::login(&running, "alice").await;

    let mut b = Pop::connect(&running).await;
    b.ok("USER alice@example.test").await;
    let r = b.err("PASS alicepw").await;
    assert_eq!(r.code, Some(RespCode::IN_USE), "{r:?}");
    assert!(r.raw.starts_with(b"-ERR [IN-USE] "), "{r:?}");
    // Still in AUTHORIZATION: TRANSACTION commands are refused, another user can log in.
    b.err("STAT").await;
    b.ok("USER bob").await;
    b.ok("PASS bobpw").await;
    b.quit().await;

    // New mail during a session is not in its snapshot.
    append(&running, "alice", MSG2).await;
    assert_eq!(a.ok("STAT").await.text, format!("1 {}", MSG1.len()));
    a.err("RETR 2").await;
    a.quit().await;

    let mut a = Pop::login(&running, "alice").await;
    assert_eq!(
        a.ok("STAT").await.text,
        format!("2 {}", MSG1.len() + MSG2.len())
    );
    a.quit().await;
    running.shutdown().await;
}

#[tokio::test]
async fn stls_upgrades_without_a_new_greeting() {
    let running = server().await;
    append(&running, "alice", MSG1).await;
    let mut p = Pop::connect(&running).await;
    p.ok("USER alice").await;
    let r = p.ok("STLS").await;
    assert_eq!(r.raw.first(), Some(&b'+'));
    let name = ServerName::try_from("localhost").expect("name");
    let tls = connector(&running)
        .connect(name, p.stream)
        .await
        .expect("handshake");
    let mut p = Pop::new(tls);
    // No greeting after the handshake: the first reply answers our CAPA.
    let caps = lines(&p.ok("CAPA").await);
    assert!(!caps.iter().any(|c| c == "STLS"), "{caps:?}");
    p.err("STLS").await;
    // The USER sent before STLS was forgotten.
    p.err("PASS alicepw").await;
    p.ok("USER alice").await;
    p.ok("PASS alicepw").await;
    assert_eq!(p.ok("STAT").await.text, format!("1 {}", MSG1.len()));
    p.quit().await;
    running.shutdown().await;
}

#[tokio::test]
async fn plaintext_pipelined_after_stls_is_dropped() {
    let running = server().await;
    let mut p = Pop::connect(&running).await;
    // An attacker's injected command rides behind STLS in the same packet.
    p.send(b"STLS\r\nUSER alice\r\n").await;
    let r = p.reply(Expect::SingleLine).await;
    assert_eq!(r.status, ReplyStatus::Ok);
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let tls = connector(&running)
        .connect(name, p.stream)
        .await
        .expect("handshake");
    let mut p = Pop::new(tls);
    let r = p.err("PASS alicepw").await;
    assert!(r.text.contains("USER first"), "{r:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn pop3s_port() {
    let running = server().await;
    let tcp = TcpStream::connect(running.pop3s.expect("pop3s"))
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = connector(&running)
        .connect(name, tcp)
        .await
        .expect("handshake");
    let mut p = Pop::new(tls);
    let greeting = p.reply(Expect::SingleLine).await;
    assert_eq!(greeting.status, ReplyStatus::Ok, "{greeting:?}");
    let caps = lines(&p.ok("CAPA").await);
    assert!(!caps.iter().any(|c| c == "STLS"), "{caps:?}");
    p.err("STLS").await;
    p.ok("USER bob").await;
    p.ok("PASS bobpw").await;
    assert_eq!(p.ok("STAT").await.text, "0 0");
    p.quit().await;
    running.shutdown().await;
}

#[tokio::test]
async fn auth_plain() {
    let running = server().await;
    let mut p = Pop::connect(&running).await;
    let mechs = p.ok("AUTH").await;
    assert_eq!(lines(&mechs), vec!["PLAIN"]);
    p.err("AUTH CRAM-MD5").await;
    // Wrong password: [AUTH] (RFC 3206).
    let r = p.err("AUTH PLAIN AGFsaWNlAHdyb25n").await; // \0alice\0wrong
    assert_eq!(r.code, Some(RespCode::AUTH), "{r:?}");
    p.err("AUTH PLAIN !!!notbase64").await;
    // authzid different from authcid: \0-separated "bob", "alice", "alicepw".
    p.err("AUTH PLAIN Ym9iAGFsaWNlAGFsaWNlcHc=").await;
    // Cancelled exchange.
    let r = p.cmd("AUTH PLAIN").await;
    assert_eq!(r.status, ReplyStatus::Continuation, "{r:?}");
    assert_eq!(r.raw, b"+ \r\n");
    p.send(b"*\r\n").await;
    assert_eq!(p.reply(Expect::Sasl).await.status, ReplyStatus::Err);
    // Continuation then the response, with the domain in the login name:
    // "\0alice@example.test\0alicepw".
    let r = p.cmd("auth plain").await;
    assert_eq!(r.status, ReplyStatus::Continuation, "{r:?}");
    p.send(b"AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZXB3\r\n").await;
    let r = p.reply(Expect::Sasl).await;
    assert_eq!(r.status, ReplyStatus::Ok, "{r:?}");
    p.ok("STAT").await;
    p.err("AUTH PLAIN AGFsaWNlAGFsaWNlcHc=").await;
    p.quit().await;

    // Initial response (RFC 5034 4).
    let mut p = Pop::connect(&running).await;
    p.ok("AUTH PLAIN AGJvYgBib2Jwdw==").await; // \0bob\0bobpw
    p.ok("STAT").await;
    p.quit().await;
    running.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_err_and_the_session_goes_on() {
    let running = server().await;
    let mut p = Pop::connect(&running).await;
    // Nine client mistakes in all: one below the limit.
    p.err("STAT").await;
    p.err("PASS alicepw").await;
    let r = p.err("FROB").await;
    assert!(r.text.contains("Unknown command"), "{r:?}");
    let r = p.err("FROBNICATE").await;
    assert!(r.text.contains("Syntax"), "{r:?}");
    p.send(b"\x00\xff\xfe\r\n").await;
    assert_eq!(p.reply(Expect::SingleLine).await.status, ReplyStatus::Err);
    // Exactly 255 octets with CRLF is accepted (RFC 2449 4); one more is not.
    let name = "a".repeat(255 - "USER \r\n".len());
    p.ok(&format!("USER {name}")).await;
    let r = p.err(&format!("USER {name}a")).await;
    assert!(r.text.contains("too long"), "{r:?}");
    p.ok("USER alice").await;
    p.ok("PASS alicepw").await;
    p.err("RETR x").await;
    p.err("LIST  1").await;
    p.err("USER alice").await;
    p.ok("NOOP").await;
    p.quit().await;
    running.shutdown().await;
}

#[tokio::test]
async fn bare_lf_commands_and_pipelining() {
    let running = server().await;
    append(&running, "alice", MSG1).await;
    let mut p = Pop::connect(&running).await;
    p.send(b"USER alice\nPASS alicepw\r\nSTAT\r\nLIST\r\nRETR 1\r\nUIDL 1\r\nQUIT\r\n")
        .await;
    for shape in [
        Expect::SingleLine,
        Expect::SingleLine,
        Expect::SingleLine,
        Expect::MultiLine,
        Expect::MultiLine,
        Expect::SingleLine,
        Expect::SingleLine,
    ] {
        p.framer.expect(shape);
    }
    let mut replies = Vec::new();
    for _ in 0..7 {
        replies.push(p.next().await);
    }
    assert!(
        replies.iter().all(|r| r.status == ReplyStatus::Ok),
        "{replies:?}"
    );
    assert_eq!(replies[2].text, format!("1 {}", MSG1.len()));
    assert_eq!(replies[4].body_octets(), MSG1.len());
    p.expect_eof().await;
    running.shutdown().await;
}

#[tokio::test]
async fn too_many_bad_commands_close_the_session() {
    let running = server().await;
    let mut p = Pop::connect(&running).await;
    for _ in 0..9 {
        p.err("XYZZY").await;
    }
    let r = p.err("XYZZY").await;
    assert!(r.text.contains("closing"), "{r:?}");
    p.expect_eof().await;
    running.shutdown().await;
}

#[tokio::test]
async fn endless_line_is_refused_with_bounded_memory() {
    let running = server().await;
    let mut p = Pop::connect(&running).await;
    let junk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        p.send(&junk).await;
    }
    p.send(b"\r\n").await;
    let r = p.reply(Expect::SingleLine).await;
    assert!(r.text.contains("too long"), "{r:?}");
    p.ok("CAPA").await;
    running.shutdown().await;
}

#[tokio::test]
async fn idle_session_is_logged_out() {
    let running = server_with(Limits {
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut p = Pop::login(&running, "alice").await;
    let r = p.next().await;
    assert_eq!(r.status, ReplyStatus::Err);
    assert!(r.unsolicited && r.text.contains("idle"), "{r:?}");
    p.expect_eof().await;
    // The lock went with the session.
    let p = Pop::login(&running, "alice").await;
    p.quit().await;
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_the_client() {
    let running = server().await;
    let mut p = Pop::login(&running, "alice").await;
    let stop = tokio::spawn(running.shutdown());
    let r = p.next().await;
    assert_eq!(r.status, ReplyStatus::Err);
    assert_eq!(r.code, Some(RespCode::SYS_TEMP), "{r:?}");
    p.expect_eof().await;
    tokio::time::timeout(WAIT, stop)
        .await
        .expect("shutdown completes")
        .expect("join");
}

#[tokio::test]
async fn framer_cap_guards_against_a_runaway_reply() {
    // The codec's cap, checked against the real server: a RETR larger than the cap fails to
    // frame instead of growing without bound.
    let running = server().await;
    let big: Vec<u8> = b"Subject: x\r\n\r\n"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'y', 10_000))
        .collect();
    append(&running, "alice", &big).await;
    let mut p = Pop::login(&running, "alice").await;
    p.framer = ReplyFramer::new(1024);
    p.send(b"RETR 1\r\n").await;
    p.framer.expect(Expect::MultiLine);
    let mut chunk = [0u8; 4096];
    let err = loop {
        match p.framer.next_reply() {
            Err(e) => break e,
            Ok(Framed::Incomplete) => {}
            Ok(Framed::Reply(r)) => panic!("framed over the cap: {r:?}"),
        }
        let n = tokio::time::timeout(WAIT, p.stream.read(&mut chunk))
            .await
            .expect("read in time")
            .expect("read");
        assert!(n > 0);
        p.framer.feed(&chunk[..n]);
    };
    assert_eq!(err, FrameError::TooLarge { limit: 1024 });
    running.shutdown().await;
}

const POPLIB: &str = r#"
import poplib, ssl, sys
port, sport, cert_hex = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cadata=bytes.fromhex(cert_hex))
p = poplib.POP3("127.0.0.1", port)
caps = p.capa()
assert "STLS" in caps and "UIDL" in caps, caps
p.stls(context=ctx)
assert "STLS" not in p.capa()
p.user("alice@example.test")
p.pass_("alicepw")
count, size = p.stat()
assert count == 2, (count, size)
resp, listing, octets = p.list()
sizes = {int(n): int(s) for n, s in (l.split() for l in listing)}
assert sum(sizes.values()) == size, (sizes, size)
resp, lines, octets = p.retr(2)
assert b".starts with a dot" in lines, lines
assert octets == sizes[2], (octets, sizes)
resp, lines, octets = p.top(1, 0)
assert lines[-1] == b"" and any(l.startswith(b"Subject:") for l in lines), lines
resp, uids, octets = p.uidl()
assert len(uids) == 2, uids
p.dele(1)
assert p.stat()[0] == 1
p.rset()
assert p.stat()[0] == 2
p.dele(1)
p.quit()
s = poplib.POP3_SSL("127.0.0.1", sport, context=ctx)
s.user("alice")
s.pass_("alicepw")
assert s.stat()[0] == 1
resp, lines, octets = s.retr(1)
assert b".starts with a dot" in lines, lines
s.quit()
print("poplib ok")
"#;

#[tokio::test]
async fn python_poplib_session() {
    let running = server().await;
    append(&running, "alice", MSG1).await;
    append(
        &running,
        "alice",
        b"Subject: dotted\r\n\r\n.starts with a dot\r\n.\r\nend\r\n",
    )
    .await;
    let port = running.pop3.expect("pop3").port().to_string();
    let sport = running.pop3s.expect("pop3s").port().to_string();
    let cert_hex: String = running
        .certificate
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", POPLIB, &port, &sport, &cert_hex])
            .output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("poplib ok"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    running.shutdown().await;
}
