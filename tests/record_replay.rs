//! The whole workflow: Python imaplib recorded through `mailtape record` (plain and
//! STARTTLS), then `mailtape replay` of that file against a fresh reference server and, where
//! the CI Dovecot runs, recordings made against Dovecot replayed against Dovecot (clean)
//! and against the reference server (only the differences docs/replay.md explains); and
//! smtplib then poplib through one `mailtape record` with two --listen/--upstream pairs; and
//! curl over SMTP, IMAP and POP3 through three pairs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailtape::record::{Options, Recorder, Route};
use mailtape::script::Protocol;
use mailtape::target::{Endpoint, Security, Timeouts, TlsOptions};
use reference_server::TlsSource;

/// Bounds a client program; the recording itself ends when its one connection does.
const WAIT: Duration = Duration::from_secs(60);

const IMAPLIB: &str = r#"
import imaplib, ssl, sys
mode, port, ca, box = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = imaplib.IMAP4("127.0.0.1", port)
if mode == "starttls":
    c.starttls(ssl_context=ssl.create_default_context(cafile=ca))
c.login("alice", "alicepw")
c.create(box)
c.select(box)
for n in (1, 2):
    c.append(box, None, None, b"Subject: workflow %d\r\n\r\nbody\r\n" % n)
c.uid("SEARCH", None, "ALL")
c.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
c.fetch("1:*", "(UID FLAGS)")
c.close()
c.delete(box)
c.logout()
"#;

/// The plain client script the committed recordings were made with (transcripts/README.md).
const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/transcripts/clients.py");

/// Runs python3 with a program, killed (by its pid) after [`WAIT`]; `false` when there is no
/// python3.
fn python(program: &str, args: &[String]) -> bool {
    let mut all = vec!["-c".to_string(), program.to_string()];
    all.extend_from_slice(args);
    python3(&all)
}

/// Runs a Python script file with arguments, as [`python`].
fn python_file(script: &str, args: &[String]) -> bool {
    let mut all = vec![script.to_string()];
    all.extend_from_slice(args);
    python3(&all)
}

fn python3(args: &[String]) -> bool {
    let Some(mut child) = support::child::spawn(
        Command::new("python3")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    ) else {
        return false;
    };
    let status = support::child::wait_bounded(&mut child, "python3", WAIT);
    assert!(status.success(), "the Python client failed: {status}");
    true
}

/// Records one imaplib session against `upstream`; the file. `mode` plain or starttls: the
/// program above; `clients`: `transcripts/clients.py imap`, the session the committed
/// recordings hold (EXPUNGE, STATUS of the selected mailbox).
async fn record(
    dir: &Path,
    upstream: Endpoint,
    tls: TlsOptions,
    mode: &str,
    mailbox: &str,
) -> Option<PathBuf> {
    let output = dir.join(format!("{mode}.ron"));
    let cert_out = dir.join(format!("{mode}-proxy.pem"));
    let recorder = Recorder::bind(Options {
        routes: vec![Route {
            listen: "127.0.0.1:0".parse().expect("addr"),
            upstream,
        }],
        output: output.clone(),
        per_connection: false,
        keep_secrets: false,
        capture_uidvalidity: false,
        connections: Some(1),
        cert: TlsSource::Generate,
        cert_out: Some(cert_out.clone()),
        tls,
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            tls: Duration::from_secs(5),
            read: Duration::from_secs(30),
        },
    })
    .await
    .expect("the proxy binds");
    let port = recorder.local_addr().expect("local address").port();
    let task = tokio::spawn(recorder.run(std::future::pending()));
    let (file, args) = if mode == "clients" {
        (
            Some(CLIENTS),
            vec!["imap".to_string(), port.to_string(), mailbox.to_string()],
        )
    } else {
        (
            None,
            vec![
                mode.to_string(),
                port.to_string(),
                cert_out.display().to_string(),
                mailbox.to_string(),
            ],
        )
    };
    let ran = tokio::task::spawn_blocking(move || match file {
        Some(script) => python_file(script, &args),
        None => python(IMAPLIB, &args),
    })
    .await
    .expect("join");
    if !ran {
        task.abort();
        return None;
    }
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the proxy stops after its one connection")
        .expect("join")
        .expect("the recording is written");
    Some(output)
}

fn mailtape(args: Vec<String>) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailtape"))
        .args(&args)
        .output()
        .expect("run mailtape");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn mailtape_async(args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || mailtape(args))
        .await
        .expect("join")
}

/// The changed lines of a replay's diffs.
fn changed(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_recorded_through_the_proxy_replays_against_a_fresh_reference_server() {
    let server = reference_server::start(reference_server::Config::default())
        .await
        .expect("reference server");
    let addr = server.imap.expect("imap listener");
    let upstream = Endpoint {
        protocol: Protocol::Imap,
        security: Security::Plain,
        host: addr.ip().to_string(),
        port: addr.port(),
    };
    let tls = TlsOptions {
        ca_file: None,
        extra_roots: vec![server.certificate.clone()],
        insecure: false,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for mode in ["plain", "starttls"] {
        let mailbox = format!("workflow-{mode}-{}", std::process::id());
        let Some(file) = record(dir.path(), upstream.clone(), tls.clone(), mode, &mailbox).await
        else {
            println!("SKIP: python3 is not installed");
            return;
        };
        let text = std::fs::read_to_string(&file).expect("recording");
        assert!(text.contains(" LOGIN {user} {password}"), "{text}");
        // Another, fresh server (its UIDVALIDITY comes from the clock: the same second may
        // give the same value, so the captures are not asserted here).
        let (code, out) = mailtape_async(vec!["replay".into(), file.display().to_string()]).await;
        assert_eq!(code, 0, "{mode}: {out}\n{text}");
        assert!(out.contains("same as recorded"), "{out}");
        if mode == "starttls" {
            assert!(text.contains(" STARTTLS\n"), "{text}");
        }
    }
    server.shutdown().await;
}

/// The recording made against Dovecot replays clean there, and against the reference server
/// differs only where docs/replay.md says why: capabilities and Dovecot's `[CLIENTBUG]` for
/// STATUS of the selected mailbox, which must show in the session of transcripts/clients.py.
/// (Both servers send `* n RECENT` after an EXPUNGE of a \Recent message: no difference.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaplib_recorded_against_dovecot_replays_against_both_servers() {
    let (Ok(url), Ok(ca)) = (
        std::env::var("MAILTAPE_DOVECOT_IMAP"),
        std::env::var("MAILTAPE_DOVECOT_CA"),
    ) else {
        println!(
            "SKIP: MAILTAPE_DOVECOT_IMAP / MAILTAPE_DOVECOT_CA not set (bash ci/dovecot.sh env)"
        );
        return;
    };
    let (upstream, _) = mailtape::target::parse_endpoint(&url).expect("dovecot url");
    let tls = TlsOptions {
        ca_file: Some(PathBuf::from(&ca)),
        extra_roots: Vec::new(),
        insecure: false,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for mode in ["plain", "starttls", "clients"] {
        let mailbox = format!(
            "workflow-{mode}-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let Some(file) = record(dir.path(), upstream.clone(), tls.clone(), mode, &mailbox).await
        else {
            println!("SKIP: python3 is not installed");
            return;
        };
        let file = file.display().to_string();
        let (code, out) = mailtape_async(vec![
            "replay".into(),
            file.clone(),
            "--target".into(),
            url.clone(),
            "--ca-file".into(),
            ca.clone(),
        ])
        .await;
        assert_eq!(code, 0, "{mode} against Dovecot: {out}");
        let (code, out) = mailtape_async(vec!["replay".into(), file]).await;
        assert_eq!(code, 1, "{mode} against the reference server: {out}");
        let changed = changed(&out);
        let unexplained: Vec<&String> = changed
            .iter()
            .filter(|l| {
                !(l.contains("CAPABILITY") || l.contains(" OK [CLIENTBUG]") || l.ends_with(" OK"))
            })
            .collect();
        assert!(unexplained.is_empty(), "{mode}: {unexplained:#?}\n{out}");
        if mode == "clients" {
            // STATUS of the selected mailbox: Dovecot's hint.
            assert!(
                changed.iter().any(|l| l.contains(" OK [CLIENTBUG]")),
                "{out}"
            );
        }
        assert!(
            out.contains("0 failing violation(s), 0 problem(s)"),
            "{out}"
        );
    }
}

/// Kills (by its own handle) a `mailtape record` the test started, if it is still running.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address in a `mailtape record: listening on ADDR, forwarding to URL` line.
fn listening(line: &str) -> std::net::SocketAddr {
    line.split("listening on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// Two `--listen`/`--upstream` pairs in one `mailtape record` (the binary): smtplib then
/// poplib (transcripts/clients.py) through them land in one file, session 1 SMTP and session
/// 2 POP3 in accept order, which loads and replays clean against a fresh reference server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_and_pop3_pairs_record_into_one_file_that_replays_clean() {
    use std::io::BufRead;
    let server = reference_server::start(reference_server::Config::default())
        .await
        .expect("reference server");
    let smtp = server.smtp.expect("smtp listener");
    let pop3 = server.pop3.expect("pop3 listener");
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("mail.ron");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_mailtape"))
            .arg("record")
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("smtp://{smtp}"))
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("pop3://{pop3}"))
            .args(["--connections", "2", "-o"])
            .arg(&output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mailtape record"),
    );
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.0.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(WAIT).expect("first listening line");
    let second = rx.recv_timeout(WAIT).expect("second listening line");
    assert!(
        first.ends_with(&format!("forwarding to smtp://{smtp}")),
        "{first}"
    );
    assert!(
        second.ends_with(&format!("forwarding to pop3://{pop3}")),
        "{second}"
    );
    let args = vec![
        "smtp-pop3".to_string(),
        listening(&first).port().to_string(),
        listening(&second).port().to_string(),
    ];
    let ran = tokio::task::spawn_blocking(move || python_file(CLIENTS, &args))
        .await
        .expect("join");
    if !ran {
        println!("SKIP: python3 is not installed");
        return;
    }
    let summary = loop {
        let line = rx.recv_timeout(WAIT).expect("the summary line");
        if line.starts_with("recorded ") {
            break line;
        }
    };
    assert!(summary.starts_with("recorded 2 sessions, "), "{summary}");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(started.elapsed() < WAIT, "mailtape record did not exit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(status.success(), "{status}");

    let text = std::fs::read_to_string(&output).expect("recording");
    let sc = mailtape::script::parse_str(&output, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(sc.protocol, Protocol::Smtp, "{text}");
    assert_eq!(sc.sessions["1"].protocol, Protocol::Smtp, "{text}");
    assert_eq!(sc.sessions["2"].protocol, Protocol::Pop3, "{text}");
    assert_eq!(sc.sessions["2"].user.as_deref(), Some("alice"), "{text}");
    assert!(
        text.starts_with(&format!(
            "// Recorded by mailtape record: upstreams smtp://{smtp} and pop3://{pop3}, "
        )),
        "{text}"
    );
    // All of the SMTP session comes before the POP3 one: the client ran them in turn.
    let last_smtp = text.rfind("\nS1: ").expect("SMTP lines");
    let first_pop3 = text.find("\nS2: +OK").expect("POP3 greeting");
    assert!(last_smtp < first_pop3, "{text}");
    for want in [
        "S1: 354",
        "C1: Subject: replay pop3\n",
        "C2: USER {user}\n",
        "C2: RETR 1\n",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }

    let (code, out) = mailtape_async(vec!["replay".into(), output.display().to_string()]).await;
    assert_eq!(code, 0, "{out}\n{text}");
    assert!(
        out.contains("session 1 (smtp)") && out.contains("session 2 (pop3)"),
        "{out}"
    );
    assert_eq!(out.matches("same as recorded").count(), 2, "{out}");
    server.shutdown().await;
}

/// Runs curl with arguments, killed (by its own handle) after [`WAIT`]; its stdout, or `None`
/// when curl is not installed.
fn curl(args: &[String]) -> Option<String> {
    let mut child = support::child::spawn(
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "30"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )?;
    support::child::wait_bounded(&mut child, "curl", WAIT);
    let out = child.wait_with_output().expect("curl output");
    assert!(out.status.success(), "curl {args:?} failed: {}", out.status);
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// curl, another real client: one message over SMTP (with a line starting with a dot), read
/// back over IMAP (`AUTHENTICATE PLAIN` with an initial response) and POP3 (`AUTH PLAIN`),
/// all through one `mailtape record` with three pairs. The file replays clean against a fresh
/// reference server: the trace headers the server added (queue id, time) do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_smtp_imap_and_pop3_records_and_replays_clean() {
    curl_session(false).await;
}

/// The same with `--ssl-reqd`: curl upgrades every session with STARTTLS/STLS (trusting the
/// proxy's certificate), the SMTP one on the submission port with AUTH; the proxy upgrades
/// its upstream legs too, and the recording replays clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_starttls_on_every_protocol_records_and_replays_clean() {
    curl_session(true).await;
}

async fn curl_session(starttls: bool) {
    let server = reference_server::start(reference_server::Config::default())
        .await
        .expect("reference server");
    let smtp = match starttls {
        true => server.submission.expect("submission listener"),
        false => server.smtp.expect("smtp listener"),
    };
    let upstreams = [
        (Protocol::Smtp, smtp),
        (Protocol::Imap, server.imap.expect("imap listener")),
        (Protocol::Pop3, server.pop3.expect("pop3 listener")),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("curl.ron");
    let proxy_ca = dir.path().join("proxy-ca.pem");
    let recorder = Recorder::bind(Options {
        routes: upstreams
            .iter()
            .map(|&(protocol, addr)| Route {
                listen: "127.0.0.1:0".parse().expect("addr"),
                upstream: Endpoint {
                    protocol,
                    security: Security::Plain,
                    host: "127.0.0.1".into(),
                    port: addr.port(),
                },
            })
            .collect(),
        output: output.clone(),
        per_connection: false,
        keep_secrets: false,
        capture_uidvalidity: false,
        connections: Some(4),
        cert: TlsSource::Generate,
        cert_out: Some(proxy_ca.clone()),
        tls: TlsOptions {
            ca_file: None,
            extra_roots: vec![server.certificate.clone()],
            insecure: false,
        },
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            tls: Duration::from_secs(5),
            read: Duration::from_secs(30),
        },
    })
    .await
    .expect("the proxy binds");
    let ports: Vec<u16> = recorder
        .local_addrs()
        .expect("local addresses")
        .iter()
        .map(|a| a.port())
        .collect();
    let task = tokio::spawn(recorder.run(std::future::pending()));
    let message = dir.path().join("message.eml");
    std::fs::write(
        &message,
        "From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\nSubject: via curl\r\n\r\n.a line with a dot\r\nbody\r\n",
    )
    .expect("message file");
    // With STARTTLS every curl upgrades (trusting the proxy); the submission port wants AUTH.
    let mut common: Vec<String> = Vec::new();
    let mut smtp_auth: Vec<String> = Vec::new();
    if starttls {
        common = vec![
            "--ssl-reqd".into(),
            "--cacert".into(),
            proxy_ca.display().to_string(),
        ];
        smtp_auth = vec!["-u".into(), "bob:bobpw".into()];
    }
    let with = |rest: Vec<String>| [common.clone(), rest].concat();
    let user = || vec!["-u".to_string(), "alice:alicepw".to_string()];
    let runs: Vec<Vec<String>> = vec![
        with(
            [
                smtp_auth,
                vec![
                    format!("smtp://127.0.0.1:{}/client.example.test", ports[0]),
                    "--mail-from".into(),
                    "bob@example.test".into(),
                    "--mail-rcpt".into(),
                    "alice@example.test".into(),
                    "--upload-file".into(),
                    message.display().to_string(),
                ],
            ]
            .concat(),
        ),
        with(
            [
                user(),
                vec![format!("imap://127.0.0.1:{}/INBOX;UID=1", ports[1])],
            ]
            .concat(),
        ),
        with([user(), vec![format!("pop3://127.0.0.1:{}/", ports[2])]].concat()),
        with([user(), vec![format!("pop3://127.0.0.1:{}/1", ports[2])]].concat()),
    ];
    let outputs = tokio::task::spawn_blocking(move || {
        runs.iter()
            .map(|args| curl(args))
            .collect::<Option<Vec<String>>>()
    })
    .await
    .expect("join");
    let Some(outputs) = outputs else {
        println!("SKIP: curl is not installed");
        task.abort();
        return;
    };
    assert!(outputs[1].contains("Subject: via curl"), "{outputs:?}");
    assert!(outputs[2].starts_with("1 "), "{outputs:?}");
    assert!(
        outputs[3].contains("\r\n.a line with a dot\r\n"),
        "{outputs:?}"
    );
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the proxy stops after its four connections")
        .expect("join")
        .expect("the recording is written");
    server.shutdown().await;

    let text = std::fs::read_to_string(&output).expect("recording");
    let mut wanted = vec![
        "C1: EHLO client.example.test\n",
        "C1: .a line with a dot\n",
        " AUTHENTICATE PLAIN {auth_plain}\n",
        "C3: AUTH PLAIN\n",
        "C4: RETR 1\n",
    ];
    if starttls {
        wanted.extend([
            "C1: STARTTLS\n",
            "C1: AUTH PLAIN\n",
            "C1: {auth_plain}\n",
            "C3: STLS\n",
        ]);
    }
    for want in wanted {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert!(
        !text.contains("alicepw") && !text.contains("bobpw"),
        "{text}"
    );
    let (code, out) = mailtape_async(vec!["replay".into(), output.display().to_string()]).await;
    assert_eq!(code, 0, "{out}\n{text}");
    assert_eq!(out.matches("same as recorded").count(), 4, "{out}");
}
