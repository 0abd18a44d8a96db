//! `mailtape record`: real clients (Python imaplib, poplib, smtplib) through the recording
//! proxy to the in-process reference server, plain, STARTTLS and implicit TLS; the files
//! load with the scenario loader; redaction; several connections; byte-exact relay proven
//! with a fake upstream; bad input (unreachable, silent upstream, a huge literal).

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mailtape::record::{Options, Recorder, Route, Summary};
use mailtape::script::{Protocol, Scenario, parse_str};
use mailtape::target::{Endpoint, Security, Timeouts, TlsOptions};
use reference_server::{Running, TlsSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bounds a client program or a wait that should take well under a second.
const WAIT: Duration = Duration::from_secs(60);

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn endpoint(protocol: Protocol, security: Security, addr: SocketAddr) -> Endpoint {
    Endpoint {
        protocol,
        security,
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

struct Proxy {
    addr: SocketAddr,
    output: PathBuf,
    cert_out: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Summary>,
    _dir: tempfile::TempDir,
}

struct Setup {
    upstream: Endpoint,
    trust: Vec<rustls_pki_types::CertificateDer<'static>>,
    keep_secrets: bool,
    capture_uidvalidity: bool,
    per_connection: bool,
    connections: Option<usize>,
    read: Duration,
}

impl Setup {
    fn new(upstream: Endpoint) -> Setup {
        Setup {
            upstream,
            trust: Vec::new(),
            keep_secrets: false,
            capture_uidvalidity: false,
            per_connection: false,
            connections: Some(1),
            read: Duration::from_secs(20),
        }
    }

    async fn start(self) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("rec.ron");
        let cert_out = dir.path().join("proxy-ca.pem");
        let options = Options {
            routes: vec![Route {
                listen: "127.0.0.1:0".parse().unwrap(),
                upstream: self.upstream,
            }],
            output: output.clone(),
            per_connection: self.per_connection,
            keep_secrets: self.keep_secrets,
            capture_uidvalidity: self.capture_uidvalidity,
            connections: self.connections,
            cert: TlsSource::Generate,
            cert_out: Some(cert_out.clone()),
            tls: TlsOptions {
                ca_file: None,
                extra_roots: self.trust,
                insecure: false,
            },
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                tls: Duration::from_secs(5),
                read: self.read,
            },
        };
        let recorder = Recorder::bind(options).await.unwrap();
        let addr = recorder.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            recorder
                .run(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap()
        });
        Proxy {
            addr,
            output,
            cert_out,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }
}

impl Proxy {
    /// Waits for the proxy to stop by itself (`--connections`), bounded.
    async fn finished(mut self) -> (Summary, Self) {
        let summary = tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("proxy did not stop after its connections")
            .unwrap();
        (summary, self)
    }

    /// Stops it as Ctrl-C would.
    async fn stop(mut self) -> (Summary, Self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.finished().await
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap()
    }

    fn port(&self) -> String {
        self.addr.port().to_string()
    }
}

fn load(path: &Path) -> (Scenario, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let sc = parse_str(path, &text).unwrap_or_else(|e| panic!("{e}\n--- file:\n{text}"));
    (sc, text)
}

async fn reference() -> Running {
    reference_server::start(reference_server::Config::default())
        .await
        .unwrap()
}

/// Runs a Python program with arguments, bounded; `None` when python3 is missing.
async fn python(program: &str, args: Vec<String>) -> Option<String> {
    let program = program.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = support::child::spawn(
            Command::new("python3")
                .arg("-c")
                .arg(&program)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        let status = support::child::wait_bounded(&mut child, "python3", WAIT);
        let mut out = String::new();
        let mut err = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(status.success(), "python failed: {status}\n{out}\n{err}");
        Some(out)
    })
    .await
    .unwrap()
}

const IMAPLIB: &str = r#"
import imaplib, ssl, sys
mode, port, ca, box = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
if mode == "imaps":
    c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
else:
    c = imaplib.IMAP4("127.0.0.1", port)
    if mode == "starttls":
        c.starttls(ssl_context=ctx)
c.capability()
c.login("alice", "alicepw")
c.create(box)
msg = b"Subject: recorded\r\n\r\n.a line with a dot\r\nbody\r\n"
c.append(box, "(\\Seen)", None, msg)
c.select(box)
typ, data = c.fetch("1", "(FLAGS BODY.PEEK[])")
assert data[0][1] == msg, data
c.close()
c.delete(box)
c.logout()
print("ok")
"#;

async fn imaplib_session(mode: &str, security: Security) {
    let server = reference().await;
    let addr = match security {
        Security::Implicit => server.imaps.unwrap(),
        _ => server.imap.unwrap(),
    };
    let mut setup = Setup::new(endpoint(Protocol::Imap, security, addr));
    setup.trust = vec![server.certificate.clone()];
    let proxy = setup.start().await;
    let args = vec![
        mode.to_string(),
        proxy.port(),
        proxy.cert_out.display().to_string(),
        unique("rec"),
    ];
    if python(IMAPLIB, args).await.is_none() {
        eprintln!("SKIP: python3 is not installed");
        return;
    }
    let (summary, proxy) = proxy.finished().await;
    assert_eq!(summary.sessions, 1);
    let (sc, text) = load(&proxy.output);
    assert_eq!(sc.sessions["1"].user.as_deref(), Some("alice"), "{text}");
    assert!(text.contains(" LOGIN {user} {password}\n"), "{text}");
    assert!(!text.contains("alicepw"), "{text}");
    // The APPEND's synchronizing literal: announcement, continuation, content, the end.
    assert!(text.contains(" APPEND "), "{text}");
    assert!(text.contains("S1: + "), "{text}");
    assert!(text.contains("C1: .a line with a dot\n"), "{text}");
    // The FETCH response's literal, both ways.
    assert!(text.contains("S1: .a line with a dot\n"), "{text}");
    if mode == "starttls" {
        assert!(text.contains(" STARTTLS\n"), "{text}");
        // The upstream leg is TLS too: after the upgrade the reference server no longer
        // offers STARTTLS (RFC 3501 6.2.1).
        let caps: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("S1: * CAPABILITY"))
            .collect();
        assert!(caps.len() >= 2, "{text}");
        assert!(caps[0].contains("STARTTLS"), "{text}");
        assert!(!caps[caps.len() - 1].contains("STARTTLS"), "{text}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_plain_through_the_proxy() {
    imaplib_session("plain", Security::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_starttls_through_the_proxy() {
    imaplib_session("starttls", Security::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_implicit_tls_through_the_proxy() {
    imaplib_session("imaps", Security::Implicit).await;
}

const SMTPLIB: &str = r#"
import smtplib, ssl, sys
port, ca, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = smtplib.SMTP("127.0.0.1", port)
s.ehlo("client.example.test")
s.starttls(context=ssl.create_default_context(cafile=ca))
s.ehlo("client.example.test")
s.user, s.password = "alice", "alicepw"
s.auth("LOGIN", s.auth_login, initial_response_ok=False)
msg = "Subject: " + subject + "\r\n\r\n.starts with a dot\r\nlast\r\n"
s.sendmail("alice@example.test", ["alice@example.test"], msg)
s.quit()
print("ok")
"#;

const POPLIB: &str = r#"
import poplib, ssl, sys
port, ca, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3]
p = poplib.POP3("127.0.0.1", port)
p.capa()
p.stls(context=ssl.create_default_context(cafile=ca))
p.user("alice")
p.pass_("alicepw")
n, _ = p.stat()
p.uidl()
for i in range(1, n + 1):
    resp, lines, _ = p.retr(i)
    if ("Subject: " + subject).encode() in lines:
        assert b"..starts with a dot" not in lines
        assert b".starts with a dot" in lines, lines
        print("found")
p.quit()
"#;

/// smtplib with STARTTLS and AUTH LOGIN delivers a message with a line starting with a dot,
/// then poplib with STLS retrieves it: both recorded, both files load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_and_poplib_through_the_proxy() {
    let server = reference().await;
    let subject = unique("recorded-smtp");
    let mut setup = Setup::new(endpoint(
        Protocol::Smtp,
        Security::Plain,
        server.submission.unwrap(),
    ));
    setup.trust = vec![server.certificate.clone()];
    let smtp = setup.start().await;
    let args = vec![
        smtp.port(),
        smtp.cert_out.display().to_string(),
        subject.clone(),
    ];
    if python(SMTPLIB, args).await.is_none() {
        eprintln!("SKIP: python3 is not installed");
        return;
    }
    let (_, smtp) = smtp.finished().await;
    let (sc, text) = load(&smtp.output);
    assert_eq!(sc.protocol, Protocol::Smtp);
    assert_eq!(sc.sessions["1"].user.as_deref(), Some("alice"), "{text}");
    for want in [
        "C1: STARTTLS\n",
        "C1: AUTH LOGIN\n",
        "C1: {user_b64}\n",
        "C1: {password_b64}\n",
        "S1: 354",
        "C1: .starts with a dot\n",
        "C1: .\n",
        "S1: 250-",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }

    let mut setup = Setup::new(endpoint(
        Protocol::Pop3,
        Security::Plain,
        server.pop3.unwrap(),
    ));
    setup.trust = vec![server.certificate.clone()];
    let pop = setup.start().await;
    let args = vec![pop.port(), pop.cert_out.display().to_string(), subject];
    let out = python(POPLIB, args).await.unwrap();
    assert!(out.contains("found"), "{out}");
    let (_, pop) = pop.finished().await;
    let (sc, text) = load(&pop.output);
    assert_eq!(sc.protocol, Protocol::Pop3);
    assert_eq!(sc.sessions["1"].user.as_deref(), Some("alice"), "{text}");
    for want in [
        "C1: STLS\n",
        "C1: USER {user}\n",
        "C1: PASS {password}\n",
        "S1: .starts with a dot\n",
        "S1: .\n",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert!(!text.contains("alicepw"), "{text}");
    server.shutdown().await;
}

/// Reads from `s` until `want` has arrived (bounded).
async fn read_until(s: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    while !got.windows(want.len()).any(|w| w == want) {
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .expect("timed out reading")
            .unwrap();
        assert!(
            n > 0,
            "closed early; got {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Two connections open at once land in one file as sessions 1 and 2, their lines in the
/// order they crossed the proxy.
#[tokio::test]
async fn concurrent_connections_share_one_file_in_order() {
    let server = reference().await;
    let mut setup = Setup::new(endpoint(
        Protocol::Imap,
        Security::Plain,
        server.imap.unwrap(),
    ));
    setup.connections = Some(2);
    let proxy = setup.start().await;
    let mut a = TcpStream::connect(proxy.addr).await.unwrap();
    read_until(&mut a, b"\r\n").await;
    let mut b = TcpStream::connect(proxy.addr).await.unwrap();
    read_until(&mut b, b"\r\n").await;
    a.write_all(b"a1 LOGIN alice alicepw\r\n").await.unwrap();
    read_until(&mut a, b"a1 OK").await;
    b.write_all(b"b1 LOGIN bob bobpw\r\n").await.unwrap();
    read_until(&mut b, b"b1 OK").await;
    a.write_all(b"a2 LOGOUT\r\n").await.unwrap();
    read_until(&mut a, b"a2 OK").await;
    drop(a);
    b.write_all(b"b2 LOGOUT\r\n").await.unwrap();
    read_until(&mut b, b"b2 OK").await;
    drop(b);
    let (summary, proxy) = proxy.finished().await;
    assert_eq!(summary.sessions, 2);
    let (sc, text) = load(&proxy.output);
    assert_eq!(sc.sessions["1"].user.as_deref(), Some("alice"));
    assert_eq!(sc.sessions["2"].user.as_deref(), Some("bob"));
    let order: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("C1:")
                || l.starts_with("C2:")
                || l.starts_with("S1:")
                || l.starts_with("S2:")
        })
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "S1", "S2", "C1", "S1", "C2", "S2", "C1", "S1", "S1", "C2", "S2", "S2"
        ],
        "{text}"
    );
    server.shutdown().await;
}

/// `--per-connection`: one file per connection, each loading on its own; `--keep-secrets`
/// writes the credentials as sent.
#[tokio::test]
async fn per_connection_files_and_keep_secrets() {
    let server = reference().await;
    let mut setup = Setup::new(endpoint(
        Protocol::Pop3,
        Security::Plain,
        server.pop3.unwrap(),
    ));
    setup.connections = Some(2);
    setup.per_connection = true;
    setup.keep_secrets = true;
    let proxy = setup.start().await;
    for user in ["alice", "bob"] {
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        read_until(&mut c, b"\r\n").await;
        c.write_all(format!("USER {user}\r\nPASS {user}pw\r\nSTAT\r\nQUIT\r\n").as_bytes())
            .await
            .unwrap();
        read_until(&mut c, b"+OK mailtape").await;
    }
    let (summary, proxy) = proxy.finished().await;
    assert_eq!(summary.files.len(), 2);
    for (n, user) in [(1, "alice"), (2, "bob")] {
        let path = mailtape::record::per_connection_path(&proxy.output, n);
        let (sc, text) = load(&path);
        assert_eq!(sc.sessions["1"].user.as_deref(), Some(user));
        assert!(sc.id.ends_with(&format!("-{n}")), "{}", sc.id);
        assert!(text.contains(&format!("C1: PASS {user}pw\n")), "{text}");
    }
    assert!(!proxy.output.exists());
    server.shutdown().await;
}

/// What the client sends arrives upstream byte for byte and the other way round: odd
/// spacing, lowercase, a pipelined burst, a LITERAL+ literal, a bare LF, junk bytes.
#[tokio::test]
async fn relay_is_byte_exact_both_ways() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let client_bytes: &[u8] = b"a1  noop\r\na2 login {5+}\r\nalice {2+}\r\npw\r\na3 select \"INBOX\"\nJUNK \x00\xff\xfe\r\na4 LOGOUT\r\n";
    let server_bytes: &[u8] = b"* OK fake ready\r\na1 OK noop done\r\n* 1 FETCH (BODY[] {3}\r\nx\r\n)\r\na2 ok  logged in\r\n\xff\xfe garbage\r\n* BYE\r\na4 OK bye\r\n";
    let fake = tokio::spawn(async move {
        // The first connection is the proxy's reachability probe.
        drop(listener.accept().await.unwrap());
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(&server_bytes[..17]).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while got.len() < client_bytes.len() {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(&server_bytes[17..]).await.unwrap();
        s.shutdown().await.unwrap();
        got
    });
    let proxy = Setup::new(endpoint(Protocol::Imap, Security::Plain, up_addr))
        .start()
        .await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    read_until(&mut c, b"ready\r\n").await;
    // In small pieces, so framing cannot rely on chunk boundaries.
    for piece in client_bytes.chunks(7) {
        c.write_all(piece).await.unwrap();
    }
    let mut back = b"* OK fake ready\r\n".to_vec();
    c.read_to_end(&mut back).await.unwrap();
    let upstream_got = fake.await.unwrap();
    assert_eq!(upstream_got, client_bytes);
    assert_eq!(back, server_bytes);
    let (_, proxy) = proxy.finished().await;
    let (_, text) = load(&proxy.output);
    assert!(text.contains("C1: a1  noop\n"), "{text}");
    assert!(text.contains("C1: a2 login {user} {password}\n"), "{text}");
    assert!(text.contains("bare LF"), "{text}");
    assert!(text.contains("S1: a2 ok  logged in\n"), "{text}");
    assert!(
        text.contains("# mailtape record: session 1: client message not written"),
        "{text}"
    );
    assert!(
        text.contains("# mailtape record: session 1: server message not written"),
        "{text}"
    );
}

/// A literal far over the recording cap is forwarded whole and streamed; the file says it
/// was cut and still loads.
#[tokio::test]
async fn huge_literal_is_forwarded_but_not_kept() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let size = 3 * 1024 * 1024 + 17;
    let fake = tokio::spawn(async move {
        // The first connection is the proxy's reachability probe.
        drop(listener.accept().await.unwrap());
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"* OK fake\r\n").await.unwrap();
        let mut total = 0usize;
        let mut buf = vec![0u8; 65536];
        let mut tail = Vec::new();
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            total += n;
            tail.extend_from_slice(&buf[..n]);
            let keep = tail.len().saturating_sub(64);
            tail.drain(..keep);
            if tail.ends_with(b")\r\n") {
                break;
            }
        }
        s.write_all(b"a1 OK appended\r\n").await.unwrap();
        let _ = s.read(&mut buf).await;
        total
    });
    let proxy = Setup::new(endpoint(Protocol::Imap, Security::Plain, up_addr))
        .start()
        .await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    read_until(&mut c, b"\r\n").await;
    let head = format!("a1 APPEND INBOX ({size}+}}\r\n").replace('(', "{");
    let mut line = vec![b'x'; 998];
    line.extend_from_slice(b"\r\n");
    c.write_all(head.as_bytes()).await.unwrap();
    let mut sent = 0;
    while sent < size {
        let n = (size - sent).min(line.len());
        c.write_all(&line[..n]).await.unwrap();
        sent += n;
    }
    c.write_all(b")\r\n").await.unwrap();
    read_until(&mut c, b"a1 OK").await;
    drop(c);
    let total = fake.await.unwrap();
    assert_eq!(total, head.len() + size + 3);
    let (_, proxy) = proxy.finished().await;
    let (_, text) = load(&proxy.output);
    assert!(text.contains("larger than 1048576 bytes"), "{text}");
    assert!(
        text.len() < 10_000,
        "the file kept the literal: {} bytes",
        text.len()
    );
}

/// An upstream that accepts and never speaks: the client is disconnected after the read
/// timeout and the recording says why.
#[tokio::test]
async fn silent_upstream_disconnects_the_client_with_a_note() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        drop(listener.accept().await.unwrap());
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(WAIT).await;
        drop(s);
    });
    let mut setup = Setup::new(endpoint(Protocol::Imap, Security::Plain, up_addr));
    setup.read = Duration::from_millis(300);
    let proxy = setup.start().await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(WAIT, c.read_to_end(&mut buf))
        .await
        .expect("client not disconnected")
        .unwrap();
    assert_eq!(n, 0);
    let (_, proxy) = proxy.finished().await;
    let text = proxy.text();
    assert!(
        text.contains("the upstream sent nothing for 300ms"),
        "{text}"
    );
    hold.abort();
}

/// A client that sends LOGOUT and closes at once still gets the server's answer into the
/// recording; an upstream that keeps the connection open after that is waited for only
/// briefly.
#[tokio::test]
async fn answers_after_the_client_closed_are_recorded() {
    for upstream_closes in [true, false] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = listener.local_addr().unwrap();
        let fake = tokio::spawn(async move {
            drop(listener.accept().await.unwrap());
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"* OK fake ready\r\n").await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while !got.ends_with(b"a1 LOGOUT\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "the proxy closed before relaying LOGOUT");
                got.extend_from_slice(&buf[..n]);
            }
            // Answer only after the client is surely gone.
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.write_all(b"* BYE see you\r\na1 OK logged out\r\n")
                .await
                .unwrap();
            if upstream_closes {
                drop(s);
            } else {
                tokio::time::sleep(WAIT).await;
            }
        });
        let mut setup = Setup::new(endpoint(Protocol::Imap, Security::Plain, up_addr));
        setup.read = Duration::from_millis(800);
        let proxy = setup.start().await;
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        read_until(&mut c, b"ready\r\n").await;
        c.write_all(b"a1 LOGOUT\r\n").await.unwrap();
        drop(c);
        let started = Instant::now();
        let (_, proxy) = proxy.finished().await;
        let waited = started.elapsed();
        let text = proxy.text();
        assert!(text.contains("C1: a1 LOGOUT\n"), "{text}");
        assert!(text.contains("S1: * BYE see you\n"), "{text}");
        assert!(text.contains("S1: a1 OK logged out\n"), "{text}");
        assert!(!text.contains("failed"), "{text}");
        // Bounded by the read timeout (800 ms) whether or not the upstream closes.
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        fake.abort();
    }
}

#[tokio::test]
async fn unreachable_upstream_is_named() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ep = endpoint(
        Protocol::Imap,
        Security::Plain,
        format!("127.0.0.1:{port}").parse().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        routes: vec![Route {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: ep,
        }],
        output: dir.path().join("x.ron"),
        per_connection: false,
        keep_secrets: false,
        capture_uidvalidity: false,
        connections: Some(1),
        cert: TlsSource::Generate,
        cert_out: None,
        tls: TlsOptions::default(),
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            tls: Duration::from_secs(5),
            read: Duration::from_secs(5),
        },
    };
    let mut missing_dir = options.clone();
    missing_dir.output = dir.path().join("no-such-dir").join("x.ron");
    let Err(e) = Recorder::bind(options).await else {
        panic!("bind should fail");
    };
    let msg = e.to_string();
    assert!(msg.contains(&format!("imap://127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("not reachable"), "{msg}");
    let Err(e) = Recorder::bind(missing_dir).await else {
        panic!("bind should fail");
    };
    let msg = e.to_string();
    assert!(
        msg.contains("no-such-dir") && msg.contains("does not exist"),
        "{msg}"
    );
}

/// `--listen` and `--upstream` pair in order: unequal counts are a usage error naming both
/// counts, before anything listens; the library refuses an empty list of routes.
#[tokio::test]
async fn unpaired_listen_and_upstream_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mailtape"))
        .arg("record")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "smtp://127.0.0.1:9",
        ])
        .args(["--listen", "127.0.0.1:0", "-o"])
        .arg(dir.path().join("x.ron"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--listen and --upstream come in pairs")
            && stderr.contains("got 2 --listen and 1 --upstream"),
        "{stderr}"
    );
    let options = Options {
        routes: Vec::new(),
        output: dir.path().join("x.ron"),
        per_connection: false,
        keep_secrets: false,
        capture_uidvalidity: false,
        connections: Some(1),
        cert: TlsSource::Generate,
        cert_out: None,
        tls: TlsOptions::default(),
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            tls: Duration::from_secs(5),
            read: Duration::from_secs(5),
        },
    };
    let Err(e) = Recorder::bind(options).await else {
        panic!("bind should fail");
    };
    assert!(e.to_string().contains("nothing to record"), "{e}");
}

/// Ctrl-C (here: the stop future) finishes the file with the open session noted.
#[tokio::test]
async fn stopping_finishes_the_file_with_open_sessions_noted() {
    let server = reference().await;
    let mut setup = Setup::new(endpoint(
        Protocol::Imap,
        Security::Plain,
        server.imap.unwrap(),
    ));
    setup.connections = None;
    let proxy = setup.start().await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    read_until(&mut c, b"\r\n").await;
    c.write_all(b"a1 CAPABILITY\r\n").await.unwrap();
    read_until(&mut c, b"a1 OK").await;
    let (summary, proxy) = proxy.stop().await;
    assert_eq!(summary.sessions, 1);
    let (_, text) = load(&proxy.output);
    assert!(text.contains("C1: a1 CAPABILITY\n"), "{text}");
    assert!(
        text.contains("the proxy stopped while this connection was open"),
        "{text}"
    );
    server.shutdown().await;
}

/// A recorded plain session (CAPABILITY, LOGIN, SELECT, FETCH, LOGOUT) replayed with
/// `mailtape run` against a fresh reference server passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_session_runs_against_a_fresh_reference_server() {
    let server = reference().await;
    let mut setup = Setup::new(endpoint(
        Protocol::Imap,
        Security::Plain,
        server.imap.unwrap(),
    ));
    // UIDVALIDITY differs between two server instances (RFC 3501 2.3.1.1 lets it be
    // anything unique): without the captures, `run` would compare the recorded number.
    setup.capture_uidvalidity = true;
    let proxy = setup.start().await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    read_until(&mut c, b"\r\n").await;
    for (cmd, done) in [
        ("a1 CAPABILITY\r\n", "a1 OK"),
        ("a2 LOGIN alice alicepw\r\n", "a2 OK"),
        (
            "a3 APPEND INBOX {24+}\r\nSubject: replayed\r\n\r\nx\r\n\r\n",
            "a3 OK",
        ),
        ("a3b SELECT INBOX\r\n", "a3b OK"),
        ("a4 FETCH 1:* (FLAGS)\r\n", "a4 OK"),
        ("a5 LOGOUT\r\n", "a5 OK"),
    ] {
        c.write_all(cmd.as_bytes()).await.unwrap();
        read_until(&mut c, done.as_bytes()).await;
    }
    drop(c);
    let (_, proxy) = proxy.finished().await;
    server.shutdown().await;
    let text = proxy.text();
    assert!(text.contains("[UIDVALIDITY {uidvalidity}]"), "{text}");
    assert!(text.contains("[APPENDUID {uidvalidity} 1]"), "{text}");
    let out = tokio::task::spawn_blocking({
        let file = proxy.output.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_mailtape"))
                .arg("run")
                .arg("--no-snapshots")
                .arg(&file)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.text()
    );
}

/// The CI Dovecot, plain and STARTTLS (trusting MAILTAPE_DOVECOT_CA upstream): the files
/// load, hold the expected lines, and (UIDVALIDITY captured) run against that Dovecot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_against_dovecot() {
    let (Ok(url), Ok(ca)) = (
        std::env::var("MAILTAPE_DOVECOT_IMAP"),
        std::env::var("MAILTAPE_DOVECOT_CA"),
    ) else {
        eprintln!("SKIP: MAILTAPE_DOVECOT_IMAP / MAILTAPE_DOVECOT_CA not set");
        return;
    };
    let (upstream, _) = mailtape::target::parse_endpoint(&url).unwrap();
    for mode in ["plain", "starttls"] {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("dovecot.ron");
        let cert_out = dir.path().join("proxy.pem");
        let options = Options {
            routes: vec![Route {
                listen: "127.0.0.1:0".parse().unwrap(),
                upstream: upstream.clone(),
            }],
            output: output.clone(),
            per_connection: false,
            keep_secrets: false,
            capture_uidvalidity: true,
            connections: Some(1),
            cert: TlsSource::Generate,
            cert_out: Some(cert_out.clone()),
            tls: TlsOptions {
                ca_file: Some(PathBuf::from(&ca)),
                extra_roots: Vec::new(),
                insecure: false,
            },
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                tls: Duration::from_secs(5),
                read: Duration::from_secs(30),
            },
        };
        let recorder = Recorder::bind(options).await.unwrap();
        let port = recorder.local_addr().unwrap().port().to_string();
        let task = tokio::spawn(recorder.run(std::future::pending()));
        let args = vec![
            mode.to_string(),
            port,
            cert_out.display().to_string(),
            unique("rec-dovecot"),
        ];
        if python(IMAPLIB, args).await.is_none() {
            eprintln!("SKIP: python3 is not installed");
            return;
        }
        tokio::time::timeout(WAIT, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let (sc, text) = load(&output);
        assert_eq!(sc.sessions["1"].user.as_deref(), Some("alice"), "{text}");
        assert!(text.contains("Dovecot"), "{text}");
        assert!(text.contains(" LOGIN {user} {password}\n"), "{text}");
        assert!(text.contains("C1: .a line with a dot\n"), "{text}");
        if mode == "starttls" {
            assert!(text.contains(" STARTTLS\n"), "{text}");
        }
        // The recording runs against the same Dovecot (the mailbox it created is gone again).
        let file = output.clone();
        let (url, ca) = (url.clone(), ca.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_mailtape"))
                .arg("run")
                .arg("--no-snapshots")
                .arg(&file)
                .args(["--target", &url, "--ca-file", &ca])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}\n{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// AUTHENTICATE PLAIN (continuation) and LOGIN recorded as `{auth_plain}`, `{user_b64}`,
/// `{password_b64}`; the file runs against a fresh reference server, so the variables are
/// filled from the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_authenticate_is_redacted_and_runs() {
    let server = reference().await;
    let mut setup = Setup::new(endpoint(
        Protocol::Imap,
        Security::Plain,
        server.imap.unwrap(),
    ));
    setup.connections = Some(2);
    let proxy = setup.start().await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    read_until(&mut c, b"\r\n").await;
    c.write_all(b"p1 AUTHENTICATE PLAIN\r\n").await.unwrap();
    read_until(&mut c, b"+").await;
    c.write_all(b"AGFsaWNlAGFsaWNlcHc=\r\n").await.unwrap();
    read_until(&mut c, b"p1 OK").await;
    c.write_all(b"p2 LOGOUT\r\n").await.unwrap();
    read_until(&mut c, b"p2 OK").await;
    drop(c);
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    read_until(&mut c, b"\r\n").await;
    c.write_all(b"l1 AUTHENTICATE LOGIN\r\n").await.unwrap();
    read_until(&mut c, b"\r\n").await;
    c.write_all(b"Ym9i\r\n").await.unwrap();
    read_until(&mut c, b"\r\n").await;
    c.write_all(b"Ym9icHc=\r\n").await.unwrap();
    read_until(&mut c, b"l1 OK").await;
    c.write_all(b"l2 LOGOUT\r\n").await.unwrap();
    read_until(&mut c, b"l2 OK").await;
    drop(c);
    let (_, proxy) = proxy.finished().await;
    server.shutdown().await;
    let (sc, text) = load(&proxy.output);
    assert_eq!(sc.sessions["1"].user.as_deref(), Some("alice"), "{text}");
    assert_eq!(sc.sessions["2"].user.as_deref(), Some("bob"), "{text}");
    for want in [
        "C1: {auth_plain}\n",
        "C2: {user_b64}\n",
        "C2: {password_b64}\n",
    ] {
        assert!(text.contains(want), "missing {want:?}\n{text}");
    }
    assert!(!text.contains("Ym9icHc="), "{text}");
    let file = proxy.output.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mailtape"))
            .arg("run")
            .arg("--no-snapshots")
            .arg(&file)
            .arg("--account")
            .arg("bob:bobpw")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills the child by its pid when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary: prints where it listens, records, stops after `--connections`, prints the
/// summary line; no spinner when stderr is not a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_command_end_to_end() {
    use std::io::BufRead;
    let server = reference().await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("cli.ron");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_mailtape"))
            .arg("record")
            .args(["--listen", "127.0.0.1:0", "--connections", "1", "-o"])
            .arg(&output)
            .arg("--upstream")
            .arg(format!("pop3://127.0.0.1:{}", server.pop3.unwrap().port()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(WAIT).unwrap();
    let addr: SocketAddr = first
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .parse()
        .unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    read_until(&mut c, b"\r\n").await;
    c.write_all(b"CAPA\r\nQUIT\r\n").await.unwrap();
    read_until(&mut c, b"signing off").await;
    drop(c);
    let summary = loop {
        let line = rx.recv_timeout(WAIT).unwrap();
        if line.starts_with("recorded ") {
            break line;
        }
    };
    assert!(
        summary.starts_with("recorded 1 session, ") && summary.ends_with("cli.ron"),
        "{summary}"
    );
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < WAIT, "mailtape record did not exit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(status.success());
    let (sc, text) = load(&output);
    assert_eq!(sc.protocol, Protocol::Pop3);
    assert!(text.contains("C1: CAPA\nC1: QUIT\nS1: +OK"), "{text}");
    assert!(text.contains("S1: STLS\nS1: .\n"), "{text}");
    server.shutdown().await;
}

/// The upstream goes away after the start check: the client is disconnected and the session
/// says which upstream could not be reached.
#[tokio::test]
async fn upstream_gone_later_is_noted_in_the_session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let probe = tokio::spawn(async move {
        drop(listener.accept().await.unwrap());
        // The listener is dropped here: later connections are refused.
    });
    let proxy = Setup::new(endpoint(Protocol::Pop3, Security::Plain, up_addr))
        .start()
        .await;
    probe.await.unwrap();
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, c.read_to_end(&mut buf))
        .await
        .expect("client not disconnected")
        .unwrap();
    assert!(buf.is_empty());
    let (_, proxy) = proxy.finished().await;
    let text = proxy.text();
    assert!(
        text.contains(&format!(
            "upstream pop3://{up_addr}: cannot connect to {up_addr}"
        )),
        "{text}"
    );
}

/// SIGTERM (sent to the proxy's pid) stops it; the file is complete and the summary printed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_proxy_and_finishes_the_file() {
    use std::io::BufRead;
    let server = reference().await;
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("term.ron");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_mailtape"))
            .arg("record")
            .args(["--listen", "127.0.0.1:0", "-o"])
            .arg(&output)
            .arg("--upstream")
            .arg(format!("smtp://127.0.0.1:{}", server.smtp.unwrap().port()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(WAIT).unwrap();
    let addr: SocketAddr = first
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    read_until(&mut c, b"\r\n").await;
    c.write_all(b"EHLO me.example.test\r\n").await.unwrap();
    read_until(&mut c, b"250 ").await;
    // Still open when the signal comes.
    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let summary = loop {
        let line = rx.recv_timeout(WAIT).unwrap();
        if line.starts_with("recorded ") {
            break line;
        }
    };
    assert!(summary.starts_with("recorded 1 session, "), "{summary}");
    let (sc, text) = load(&output);
    assert_eq!(sc.protocol, Protocol::Smtp);
    assert!(
        text.contains("C1: EHLO me.example.test\nS1: 250-"),
        "{text}"
    );
    assert!(
        text.contains("the proxy stopped while this connection was open"),
        "{text}"
    );
    drop(c);
    server.shutdown().await;
}

/// Bytes the upstream sends after accepting STARTTLS and before the handshake are not passed
/// on (RFC 3501 6.2.1: they could be injected); the rest of the session runs over TLS on both
/// legs and is recorded.
#[tokio::test]
async fn bytes_after_the_starttls_ok_are_dropped() {
    use mailtape::net::{Stream, TlsClient};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let setup = reference_server::tls::build(&TlsSource::Generate).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(setup.config.clone());
    let fake = tokio::spawn(async move {
        drop(listener.accept().await.unwrap());
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"* OK fake\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"a1 STARTTLS\r\n");
        s.write_all(b"a1 OK begin\r\n* 99 EXISTS\r\n")
            .await
            .unwrap();
        let mut tls = acceptor.accept(s).await.unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n") {
            let n = tls.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"a2 NOOP\r\n");
        tls.write_all(b"a2 OK over TLS\r\n").await.unwrap();
        tls.flush().await.unwrap();
        let _ = tls.read(&mut buf).await;
    });
    let mut cfg = Setup::new(endpoint(Protocol::Imap, Security::Plain, up_addr));
    cfg.trust = vec![setup.certificate.clone()];
    let proxy = cfg.start().await;
    let mut c = TcpStream::connect(proxy.addr).await.unwrap();
    read_until(&mut c, b"\r\n").await;
    c.write_all(b"a1 STARTTLS\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte up to the end of the OK line, so no TLS bytes are consumed here.
    while !seen.ends_with(b"\r\n") {
        let n = c.read(&mut byte).await.unwrap();
        assert!(n > 0);
        seen.push(byte[0]);
    }
    assert_eq!(seen, b"a1 OK begin\r\n");
    let client_tls = TlsClient::new(&TlsOptions {
        ca_file: Some(proxy.cert_out.clone()),
        extra_roots: Vec::new(),
        insecure: false,
    })
    .unwrap();
    let mut tls = Stream::Plain(c)
        .upgrade(&client_tls, "127.0.0.1", Duration::from_secs(5))
        .await
        .unwrap();
    tls.write_all(b"a2 NOOP\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"\r\n") {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    // The injected `* 99 EXISTS` never reached the client.
    assert_eq!(got, b"a2 OK over TLS\r\n");
    drop(tls);
    fake.await.unwrap();
    let (_, proxy) = proxy.finished().await;
    let (_, text) = load(&proxy.output);
    assert!(
        text.contains("C1: a1 STARTTLS\nS1: a1 OK begin\n"),
        "{text}"
    );
    assert!(
        text.contains("sent 13 bytes after accepting STARTTLS"),
        "{text}"
    );
    assert!(!text.contains("99 EXISTS"), "{text}");
    assert!(text.contains("C1: a2 NOOP\nS1: a2 OK over TLS\n"), "{text}");
}

/// `--cert/--key`: the proxy shows the given certificate to clients (implicit TLS here), and
/// `--cert-out` writes that one.
#[tokio::test]
async fn given_certificate_is_shown_to_clients() {
    use mailtape::net::{Stream, TlsClient};
    let server = reference().await;
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let cert_out = dir.path().join("out.pem");
    let options = Options {
        routes: vec![Route {
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: endpoint(Protocol::Imap, Security::Implicit, server.imaps.unwrap()),
        }],
        output: dir.path().join("tls.ron"),
        per_connection: false,
        keep_secrets: false,
        capture_uidvalidity: false,
        connections: Some(1),
        cert: TlsSource::Files {
            cert: cert.clone(),
            key,
        },
        cert_out: Some(cert_out.clone()),
        tls: TlsOptions {
            ca_file: None,
            extra_roots: vec![server.certificate.clone()],
            insecure: false,
        },
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            tls: Duration::from_secs(5),
            read: Duration::from_secs(20),
        },
    };
    let recorder = Recorder::bind(options).await.unwrap();
    let addr = recorder.local_addr().unwrap();
    let task = tokio::spawn(recorder.run(std::future::pending()));
    let written = std::fs::read_to_string(&cert_out).unwrap();
    assert_eq!(written.trim(), ck.cert.pem().trim());
    // Trusting only the given certificate.
    let client = TlsClient::new(&TlsOptions {
        ca_file: Some(cert),
        extra_roots: Vec::new(),
        insecure: false,
    })
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = Stream::Plain(tcp)
        .upgrade(&client, "127.0.0.1", Duration::from_secs(5))
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"* OK"));
    tls.write_all(b"a1 LOGOUT\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut rest)).await;
    drop(tls);
    let summary = tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.sessions, 1);
    server.shutdown().await;
}
