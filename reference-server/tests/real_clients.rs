//! Real, independently written clients against the reference server: Python's standard
//! `imaplib` and `poplib`, and curl's IMAP and POP3 support, each run as a child process
//! with a bounded run time, in plain, STARTTLS/STLS and implicit-TLS mode, trusting
//! `Running::certificate` from a PEM file. What they fetch is compared byte for byte with
//! what was appended. A test is skipped (with a `SKIP:` line on stderr) only when the
//! client program is not installed.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reference_server::Running;

/// How long one client process may run: every session here takes well under a second, so
/// this only bounds a hang (e.g. a server that never answers) on a slow, loaded machine.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a running child is polled for exit.
const POLL: Duration = Duration::from_millis(10);

/// What a finished client process left behind.
struct Ran {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Ran {
    fn describe(&self) -> String {
        format!(
            "status {}\nstdout: {}\nstderr: {}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }
}

/// Reads a child's pipe to its end on a thread of its own, so a chatty child never blocks
/// on a full pipe while it is being polled.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut out);
        }
        out
    })
}

/// Kills the child by its pid when the bound is exceeded, then fails the test.
fn wait_bounded(mut child: Child, program: &str) -> Ran {
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            Ok(None) => {
                // Child::kill sends SIGKILL to this child's pid only.
                let _ = child.kill();
                let _ = child.wait();
                let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
                panic!(
                    "{program} (pid {}) still running after {CLIENT_TIMEOUT:?}; killed\nstderr: {stderr}",
                    child.id()
                );
            }
            Err(e) => panic!("waiting for {program}: {e}"),
        }
    };
    Ran {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
    }
}

/// Runs `program args` off the async runtime (the server keeps serving on it); `None` when
/// the program is not installed.
async fn run(program: &'static str, args: Vec<String>) -> Option<Ran> {
    tokio::task::spawn_blocking(move || {
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match child {
            Ok(child) => Some(wait_bounded(child, program)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("cannot start {program}: {e}"),
        }
    })
    .await
    .expect("client thread")
}

/// The server certificate as a PEM file; removed when dropped.
struct CaFile(PathBuf);

impl CaFile {
    fn write(running: &Running) -> Self {
        // Unique per process and per test, so parallel tests never share a file.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "mailtape-real-clients-{}-{}.pem",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let b64 = base64::engine::general_purpose::STANDARD.encode(running.certificate.as_ref());
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        std::fs::write(&path, pem).expect("write CA file");
        CaFile(path)
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn port(addr: Option<std::net::SocketAddr>) -> String {
    addr.expect("listener bound").port().to_string()
}

// --- Python imaplib ------------------------------------------------------------------------

/// One imaplib session pair: append with flags, fetch body and flags, add \Flagged, log out,
/// reconnect and find body and flags as left. argv: mode (plain|ssl|starttls), port, CA file.
const IMAPLIB: &str = r#"
import imaplib, ssl, sys
mode, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
msg = (b"From: Py <py@example.test>\r\nTo: alice@example.test\r\nSubject: imaplib " + mode.encode()
       + b"\r\nMessage-ID: <imaplib-" + mode.encode() + b"@example.test>\r\n\r\nfirst line\r\n\r\nlast line\r\n")

def connect():
    if mode == "plain":
        m = imaplib.IMAP4("127.0.0.1", port)
    elif mode == "ssl":
        m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
    else:
        m = imaplib.IMAP4("127.0.0.1", port)
        assert "STARTTLS" in m.capabilities, m.capabilities
        typ, data = m.starttls(ssl_context=ctx)
        assert typ == "OK", (typ, data)
    typ, data = m.login("alice", "alicepw")
    assert typ == "OK", (typ, data)
    return m

def flags_of(data):
    meta = b" ".join(part[0] if isinstance(part, tuple) else part for part in data if part)
    return set(imaplib.ParseFlags(meta))

if mode == "ssl":
    # The same server is refused without the CA: the certificate really is checked.
    try:
        imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ssl.create_default_context())
        raise SystemExit("untrusted certificate accepted")
    except ssl.SSLCertVerificationError:
        pass

m = connect()
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"0", (typ, data)
typ, data = m.append("INBOX", r"(\Draft $Label1)", None, msg)
assert typ == "OK", (typ, data)
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"1", (typ, data)
typ, data = m.fetch("1", "(BODY[] FLAGS)")
assert typ == "OK", (typ, data)
bodies = [part[1] for part in data if isinstance(part, tuple)]
assert bodies == [msg], data
# FETCH BODY[] sets \Seen (RFC 3501 6.4.5) beside the flags given to APPEND.
assert flags_of(data) >= {b"\\Draft", b"$Label1"}, data
typ, data = m.store("1", "+FLAGS", r"(\Flagged)")
assert typ == "OK" and b"\\Flagged" in flags_of(data), (typ, data)
assert m.logout()[0] == "BYE"

m = connect()
typ, data = m.select("INBOX", readonly=True)
assert typ == "OK" and data[0] == b"1", (typ, data)
typ, data = m.fetch("1", "(FLAGS)")
assert flags_of(data) == {b"\\Draft", b"$Label1", b"\\Seen", b"\\Flagged"}, data
typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
assert [part[1] for part in data if isinstance(part, tuple)] == [msg], data
assert m.logout()[0] == "BYE"
print("imaplib " + mode + " ok")
"#;

async fn imaplib(mode: &str) {
    let running = common::server().await;
    let ca = CaFile::write(&running);
    let port = if mode == "ssl" {
        port(running.imaps)
    } else {
        port(running.imap)
    };
    let args = vec!["-c".into(), IMAPLIB.into(), mode.into(), port, ca.arg()];
    let Some(ran) = run("python3", args).await else {
        eprintln!("SKIP: python3 is not installed");
        return;
    };
    assert!(
        ran.status.success()
            && ran
                .stdout
                .ends_with(format!("imaplib {mode} ok\n").as_bytes()),
        "{}",
        ran.describe()
    );
    running.shutdown().await;
}

#[tokio::test]
async fn imaplib_plain_flags_survive_reconnect() {
    imaplib("plain").await;
}

#[tokio::test]
async fn imaplib_implicit_tls_with_cafile() {
    imaplib("ssl").await;
}

#[tokio::test]
async fn imaplib_starttls_with_cafile() {
    imaplib("starttls").await;
}

// --- Python poplib -------------------------------------------------------------------------

/// Messages appended over IMAP read back over POP3; UIDL is stable across sessions; DELE +
/// QUIT removes the message for IMAP too. argv: mode (plain|ssl|stls), IMAP port, POP3 port
/// (the POP3S port in ssl mode), CA file.
const POPLIB: &str = r#"
import imaplib, poplib, ssl, sys
mode, imap_port, pop_port, cafile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=cafile)
msgs = [
    b"From: a@example.test\r\nSubject: pop one\r\n\r\nfirst\r\n.a line starting with a dot\r\n.\r\nend\r\n",
    b"From: b@example.test\r\nSubject: pop two\r\n\r\nsecond message\r\n",
]

im = imaplib.IMAP4("127.0.0.1", imap_port)
assert im.login("alice", "alicepw")[0] == "OK"
for body in msgs:
    typ, data = im.append("INBOX", None, None, body)
    assert typ == "OK", (typ, data)
assert im.logout()[0] == "BYE"

def connect():
    if mode == "ssl":
        p = poplib.POP3_SSL("127.0.0.1", pop_port, context=ctx)
    else:
        p = poplib.POP3("127.0.0.1", pop_port)
        if mode == "stls":
            assert "STLS" in p.capa(), p.capa()
            assert p.stls(context=ctx).startswith(b"+OK")
    assert p.user("alice").startswith(b"+OK")
    assert p.pass_("alicepw").startswith(b"+OK")
    return p

p = connect()
assert p.stat() == (2, sum(len(b) for b in msgs)), p.stat()
resp, listing, _ = p.list()
assert listing == [b"%d %d" % (i, len(b)) for i, b in enumerate(msgs, 1)], listing
for i, body in enumerate(msgs, 1):
    resp, lines, octets = p.retr(i)
    # poplib removes the dot-stuffing and the line ends; put the line ends back.
    assert b"\r\n".join(lines) + b"\r\n" == body, (i, lines)
resp, uidls, _ = p.uidl()
assert len(uidls) == 2 and len(set(u.split()[1] for u in uidls)) == 2, uidls
assert p.quit().startswith(b"+OK")

p = connect()
again = p.uidl()[1]
assert again == uidls, (uidls, again)
assert p.dele(1).startswith(b"+OK")
assert p.quit().startswith(b"+OK")

p = connect()
assert p.stat() == (1, len(msgs[1])), p.stat()
assert p.uidl()[1] == [b"1 " + uidls[1].split()[1]]
assert p.quit().startswith(b"+OK")

im = imaplib.IMAP4("127.0.0.1", imap_port)
assert im.login("alice", "alicepw")[0] == "OK"
typ, data = im.select("INBOX", readonly=True)
assert typ == "OK" and data[0] == b"1", (typ, data)
typ, data = im.fetch("1", "(BODY.PEEK[])")
assert [part[1] for part in data if isinstance(part, tuple)] == [msgs[1]], data
assert im.logout()[0] == "BYE"
print("poplib " + mode + " ok")
"#;

async fn poplib(mode: &str) {
    let running = common::server().await;
    let ca = CaFile::write(&running);
    let pop = if mode == "ssl" {
        port(running.pop3s)
    } else {
        port(running.pop3)
    };
    let args = vec![
        "-c".into(),
        POPLIB.into(),
        mode.into(),
        port(running.imap),
        pop,
        ca.arg(),
    ];
    let Some(ran) = run("python3", args).await else {
        eprintln!("SKIP: python3 is not installed");
        return;
    };
    assert!(
        ran.status.success()
            && ran
                .stdout
                .ends_with(format!("poplib {mode} ok\n").as_bytes()),
        "{}",
        ran.describe()
    );
    running.shutdown().await;
}

#[tokio::test]
async fn poplib_plain_retr_uidl_dele() {
    poplib("plain").await;
}

#[tokio::test]
async fn poplib_implicit_tls_with_cafile() {
    poplib("ssl").await;
}

#[tokio::test]
async fn poplib_stls_with_cafile() {
    poplib("stls").await;
}

// --- curl ----------------------------------------------------------------------------------

const CURL_MSG_1: &[u8] =
    b"From: curl@example.test\r\nSubject: curl one\r\n\r\nfetched by curl\r\n.dot line\r\n";
const CURL_MSG_2: &[u8] = b"From: curl@example.test\r\nSubject: curl two\r\n\r\nsecond\r\n";

/// Appends the two curl messages to alice's INBOX (UIDs 1 and 2) with the raw test client.
async fn seed_for_curl(running: &Running) {
    let mut c = common::Client::login(running, "alice").await;
    for (i, msg) in [CURL_MSG_1, CURL_MSG_2].into_iter().enumerate() {
        let tag = format!("s{i}");
        // LITERAL+ (advertised by the server): no continuation round trip.
        c.send(format!("{tag} APPEND INBOX {{{}+}}\r\n", msg.len()).as_bytes())
            .await;
        c.send(msg).await;
        c.send(b"\r\n").await;
        let r = c.until_tag(&tag).await;
        assert!(
            common::tagged(&r).starts_with(&format!("{tag} OK")),
            "{r:?}"
        );
    }
    let r = c.cmd("z LOGOUT").await;
    assert!(common::tagged(&r).starts_with("z OK"), "{r:?}");
}

/// Runs curl with a bounded transfer time; `None` when curl is not installed.
async fn curl(extra: &[&str], url: String) -> Option<Ran> {
    let mut args: Vec<String> = ["-sS", "--max-time", "20", "-u", "alice:alicepw"]
        .into_iter()
        .chain(extra.iter().copied())
        .map(String::from)
        .collect();
    args.push(url);
    run("curl", args).await
}

/// Runs curl and returns its output, failing the test on a non-zero exit.
async fn curl_ok(extra: &[&str], url: String) -> Option<Vec<u8>> {
    let ran = curl(extra, url.clone()).await?;
    assert!(ran.status.success(), "curl {url}: {}", ran.describe());
    Some(ran.stdout)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn curl_imap_list_search_and_fetch() {
    let running = common::server().await;
    seed_for_curl(&running).await;
    let base = format!("imap://127.0.0.1:{}", port(running.imap));
    let Some(root) = curl_ok(&[], format!("{base}/")).await else {
        eprintln!("SKIP: curl is not installed");
        return;
    };
    // `imap://host/` lists every mailbox (LIST "" *).
    assert!(text(&root).contains("INBOX"), "{}", text(&root));
    // `imap://host/INBOX` lists that mailbox (LIST "INBOX" *).
    let listed = curl_ok(&[], format!("{base}/INBOX"))
        .await
        .unwrap_or_default();
    assert!(
        text(&listed).starts_with("* LIST ") && text(&listed).contains("INBOX"),
        "{}",
        text(&listed)
    );
    let found = curl_ok(&[], format!("{base}/INBOX?SUBJECT%20%22curl%20two%22"))
        .await
        .unwrap_or_default();
    assert_eq!(text(&found).trim_end(), "* SEARCH 2");
    for (uid, msg) in [(1, CURL_MSG_1), (2, CURL_MSG_2)] {
        let got = curl_ok(&[], format!("{base}/INBOX;UID={uid}"))
            .await
            .unwrap_or_default();
        assert_eq!(text(&got), text(msg), "UID {uid}");
    }
    running.shutdown().await;
}

#[tokio::test]
async fn curl_imap_over_tls() {
    let running = common::server().await;
    seed_for_curl(&running).await;
    let ca = CaFile::write(&running);
    let cacert = ca.arg();
    let plain = format!("imap://127.0.0.1:{}/INBOX;UID=1", port(running.imap));
    let Some(got) = curl_ok(&["--ssl-reqd", "--cacert", &cacert], plain).await else {
        eprintln!("SKIP: curl is not installed");
        return;
    };
    assert_eq!(text(&got), text(CURL_MSG_1), "STARTTLS");
    let implicit = format!("imaps://127.0.0.1:{}/INBOX;UID=2", port(running.imaps));
    let got = curl_ok(&["--cacert", &cacert], implicit.clone())
        .await
        .unwrap_or_default();
    assert_eq!(text(&got), text(CURL_MSG_2), "imaps");
    // Without the CA curl refuses the self-signed certificate (exit 60: peer not verified).
    let refused = curl(&[], implicit).await.expect("curl ran before");
    assert_eq!(refused.status.code(), Some(60), "{}", refused.describe());
    running.shutdown().await;
}

#[tokio::test]
async fn curl_pop3_list_and_retr() {
    let running = common::server().await;
    seed_for_curl(&running).await;
    let base = format!("pop3://127.0.0.1:{}", port(running.pop3));
    let Some(listing) = curl_ok(&[], format!("{base}/")).await else {
        eprintln!("SKIP: curl is not installed");
        return;
    };
    let want = format!("1 {}\r\n2 {}\r\n", CURL_MSG_1.len(), CURL_MSG_2.len());
    assert_eq!(text(&listing), want);
    for (n, msg) in [(1, CURL_MSG_1), (2, CURL_MSG_2)] {
        let got = curl_ok(&[], format!("{base}/{n}"))
            .await
            .unwrap_or_default();
        assert_eq!(text(&got), text(msg), "RETR {n}");
    }
    running.shutdown().await;
}

#[tokio::test]
async fn curl_pop3_over_tls() {
    let running = common::server().await;
    seed_for_curl(&running).await;
    let ca = CaFile::write(&running);
    let cacert = ca.arg();
    let plain = format!("pop3://127.0.0.1:{}/1", port(running.pop3));
    let Some(got) = curl_ok(&["--ssl-reqd", "--cacert", &cacert], plain).await else {
        eprintln!("SKIP: curl is not installed");
        return;
    };
    assert_eq!(text(&got), text(CURL_MSG_1), "STLS");
    let implicit = format!("pop3s://127.0.0.1:{}", port(running.pop3s));
    let listing = curl_ok(&["--cacert", &cacert], format!("{implicit}/"))
        .await
        .unwrap_or_default();
    let want = format!("1 {}\r\n2 {}\r\n", CURL_MSG_1.len(), CURL_MSG_2.len());
    assert_eq!(text(&listing), want, "pop3s LIST");
    let got = curl_ok(&["--cacert", &cacert], format!("{implicit}/2"))
        .await
        .unwrap_or_default();
    assert_eq!(text(&got), text(CURL_MSG_2), "pop3s RETR");
    let refused = curl(&[], format!("{implicit}/2"))
        .await
        .expect("curl ran before");
    assert_eq!(refused.status.code(), Some(60), "{}", refused.describe());
    running.shutdown().await;
}
