//! `mailtape replay`: recordings replayed against the reference server (clean, with captured
//! UIDVALIDITY and UIDs), against fakes that answer differently or not at all, and the
//! committed Dovecot recording against the reference server (tests/record_replay.rs records
//! fresh ones through `mailtape record` where the CI Dovecot runs).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use mailtape::engine::{RunOptions, TargetRun};
use mailtape::target::Timeouts;
use support::fake_imap::{self, Cmd, Reply};
use support::fake_lines;

/// The binary's exit code and stdout (stderr is appended to failures' messages).
fn mailtape(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailtape"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run mailtape");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{stdout}{}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!("[stderr]\n{stderr}")
            }
        ),
    )
}

/// The same, from an async test whose runtime serves a fake server meanwhile.
async fn mailtape_async(args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mailtape(&args)
    })
    .await
    .expect("join")
}

fn recording(script: &str, sessions: &str) -> String {
    format!(
        "Scenario(\n    id: \"recorded-test\",\n    title: \"recorded by hand\",\n    spec: [\"recorded\"],\n    protocol: \"imap\",\n    sessions: {{\n{sessions}\n    }},\n    script: r#\"\n{script}\n\"#,\n)\n"
    )
}

const ONE_SESSION: &str = r#"        "1": (user: "alice", state: "not-authenticated"),"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write recording");
    path
}

/// A value of a committed recording: what follows the first line start `prefix`, up to `end`
/// (the files are re-recorded now and then; transcripts/README.md).
fn recorded_value(file: &str, prefix: &str, end: char) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .expect("committed recording");
    let at = text
        .find(&format!("\n{prefix}"))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {file}"));
    let rest = &text[at + 1 + prefix.len()..];
    rest[..rest.find(end).unwrap_or(rest.len())].to_string()
}

#[test]
fn a_recording_replays_clean_against_a_fresh_reference_server() {
    let (code, out) = mailtape(&["replay", "transcripts/imap/python-imaplib-reference.ron"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("same as recorded") && out.ends_with("PASS\n"),
        "{out}"
    );
    // The fresh server has another UIDVALIDITY: captured, not a difference.
    let recorded = recorded_value(
        "transcripts/imap/python-imaplib-reference.ron",
        "S1: * OK [UIDVALIDITY ",
        ']',
    );
    let line = out
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with(&format!("uidvalidity {recorded} -> "))
        })
        .unwrap_or_else(|| panic!("no uidvalidity {recorded} capture: {out}"));
    assert!(!line.ends_with(&format!("-> {recorded}")), "{line}");
}

#[test]
fn interleaved_sessions_replay_step_by_step() {
    // Session 1 IDLEs; its EXISTS and RECENT are recorded after session 2's APPEND.
    let (code, out) = mailtape(&["replay", "transcripts/imap/two-sessions-idle.ron"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("same as recorded").count(), 2, "{out}");
}

/// curl's sessions over all three protocols: the message the reference server delivered then
/// carries another queue id and time in its Received header than when it was recorded, which
/// must not count (trace headers are normalized in IMAP literals as in POP3 RETR).
#[test]
fn a_curl_recording_over_three_protocols_replays_clean() {
    let file = "transcripts/cross/curl-reference.ron";
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .expect("committed recording");
    assert!(
        text.contains("\nS2: Received: from client.example.test"),
        "{text}"
    );
    let (code, out) = mailtape(&["replay", file]);
    assert_eq!(code, 0, "{out}");
    for (n, protocol) in [(1, "smtp"), (2, "imap"), (3, "pop3"), (4, "pop3")] {
        assert!(
            out.contains(&format!("session {n} ({protocol}): ")),
            "{out}"
        );
    }
    assert_eq!(out.matches("same as recorded").count(), 4, "{out}");
}

#[test]
fn pop3_and_smtp_recordings_replay_against_the_reference_server() {
    let (code, out) = mailtape(&["replay", "transcripts/cross/python-smtp-pop3-reference.ron"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("session 1 (smtp)") && out.contains("session 2 (pop3)"),
        "{out}"
    );
    let uidl = recorded_value(
        "transcripts/cross/python-smtp-pop3-reference.ron",
        "C2: UIDL\nS2: +OK Unique-id listing follows\nS2: 1 ",
        '\n',
    );
    assert!(out.contains(&format!("uidl {uidl} -> ")), "{out}");
    // JSON says the same.
    let (code, json) = mailtape(&[
        "replay",
        "transcripts/cross/python-smtp-pop3-reference.ron",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{json}");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(doc["passed"], true);
    assert_eq!(doc["sessions"].as_array().map(Vec::len), Some(2));
    // The POP3 side as compared: the numbers that answer are kept, the text is not.
    let pop3 = doc["sessions"][1]["live"].as_str().unwrap_or_default();
    assert!(
        pop3.contains("S2: +OK <size#1> ") || pop3.contains("S2: +OK 1 <size#1>"),
        "{pop3}"
    );
    assert!(pop3.contains("C2: PASS <password>"), "{pop3}");
    assert!(pop3.contains("    | Received: <trace>"), "{pop3}");
}

/// STARTTLS lines in a recording upgrade the connection (IMAP, SMTP, POP3), and the SASL
/// variables fill in the account: {auth_plain}, and {user_b64}/{password_b64} for AUTH LOGIN.
#[test]
fn starttls_and_sasl_lines_replay_against_the_reference_server() {
    let (code, out) = mailtape(&["replay", "transcripts/cross/starttls-and-sasl.ron"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("same as recorded").count(), 3, "{out}");
    // A target without the recording's SMTP and POP3 endpoints is a usage error, before
    // anything is sent.
    let (code, out) = mailtape(&[
        "replay",
        "transcripts/cross/starttls-and-sasl.ron",
        "--target",
        "imap://alice:wrong@127.0.0.1:9",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no smtp endpoint"), "{out}");
}

/// The recorded server had UIDs from 4827 and UIDVALIDITY 1733; a fresh reference server
/// starts at UID 1. The pairs are learnt from SELECT and APPENDUID, later client lines get
/// the live UIDs, and the comparison passes.
const OTHER_UIDS: &str = r#"S1: * OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR UIDPLUS MOVE IDLE ENABLE NAMESPACE ID UNSELECT AUTH=PLAIN AUTH=LOGIN STARTTLS] ready
C1: a1 LOGIN {user} {password}
S1: a1 OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR UIDPLUS MOVE IDLE ENABLE NAMESPACE ID UNSELECT] LOGIN completed
C1: a2 CREATE replay-other-uids
S1: a2 OK CREATE completed
C1: a3 SELECT replay-other-uids
S1: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft)
S1: * OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)] Flags permitted
S1: * 0 EXISTS
S1: * 0 RECENT
S1: * OK [UIDVALIDITY 1733] UIDs valid
S1: * OK [UIDNEXT 4827] Predicted next UID
S1: a3 OK [READ-WRITE] SELECT completed
C1: a4 APPEND replay-other-uids {14}
S1: + Ready for literal data
C1: Subject: x
C1:
C1:
S1: * 1 EXISTS
S1: * 1 RECENT
S1: a4 OK [APPENDUID 1733 4827] APPEND completed
C1: a5 UID FETCH 4827 (FLAGS)
S1: * 1 FETCH (UID 4827 FLAGS (\Recent))
S1: a5 OK FETCH completed
C1: a6 UID STORE 4827 +FLAGS (\Seen)
S1: * 1 FETCH (FLAGS (\Seen \Recent) UID 4827)
S1: a6 OK STORE completed
C1: a7 CLOSE
S1: a7 OK CLOSE completed
C1: a8 DELETE replay-other-uids
S1: a8 OK DELETE completed
C1: a9 LOGOUT
S1: * BYE Logging out
S1: a9 OK LOGOUT completed"#;

#[tokio::test]
async fn recorded_uids_are_mapped_to_the_live_ones() {
    let text = recording(OTHER_UIDS, ONE_SESSION);
    let scenario = mailtape::script::parse_str(Path::new("other-uids.ron"), &text)
        .unwrap_or_else(|e| panic!("{e}"));
    let (target, server) = mailtape::cli::reference_target(Timeouts::default())
        .await
        .expect("reference server");
    let run = TargetRun::new(target, RunOptions::default()).expect("target");
    let raw = run.replay(&scenario).await;
    let sent: Vec<String> = raw
        .outcome
        .transcript
        .entries
        .iter()
        .filter(|e| e.direction == mailtape::report::Direction::Client)
        .map(|e| String::from_utf8_lossy(&e.bytes).into_owned())
        .collect();
    assert!(
        sent.contains(&"a5 UID FETCH 1 (FLAGS)\r\n".to_string()),
        "{sent:?}"
    );
    assert!(
        sent.contains(&"a6 UID STORE 1 +FLAGS (\\Seen)\r\n".to_string()),
        "{sent:?}"
    );
    let report = mailtape::replay::compare(raw, "reference", false);
    server.shutdown().await;
    assert!(!report.failed(), "{:#?}", report.sessions);
    let live = &report.sessions[0].live;
    assert!(live.contains("C1: a5 UID FETCH <uid#1> (FLAGS)"), "{live}");
    assert!(
        live.contains("S1: a4 OK [APPENDUID <uidvalidity> <uid#1>]"),
        "{live}"
    );
    let pairs: Vec<(String, String)> = report
        .captures
        .iter()
        .map(|p| (p.recorded.clone(), p.live.clone()))
        .collect();
    assert!(pairs.contains(&("4827".into(), "1".into())), "{pairs:?}");
}

/// A fake that answers like the recording except for one command.
fn fake_behaviour(c: &Cmd<'_>) -> Reply {
    let t = c.tag;
    let text = match (c.verb, c.args) {
        ("LOGIN", _) => format!("{t} OK logged in\r\n"),
        ("SELECT", _) => format!(
            "* 2 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 42] ok\r\n* OK [UIDNEXT 10] ok\r\n{t} OK [READ-WRITE] done\r\n"
        ),
        // The planted difference: the flags of message 2 are not what was recorded.
        ("FETCH", a) if a.starts_with('2') => {
            format!("* 2 FETCH (UID 8 FLAGS (\\Deleted))\r\n{t} OK done\r\n")
        }
        ("FETCH", _) => format!("* 1 FETCH (UID 7 FLAGS (\\Seen))\r\n{t} OK done\r\n"),
        // A server that stops answering.
        ("NOOP", "HANG") => String::new(),
        _ => return Reply::Default,
    };
    Reply::Bytes(text.into_bytes())
}

const AGAINST_FAKE: &str = r#"S1: * OK fake ready
C1: a1 LOGIN {user} {password}
S1: a1 OK logged in
C1: a2 SELECT INBOX
S1: * 2 EXISTS
S1: * 0 RECENT
S1: * OK [UIDVALIDITY 1700] ok
S1: * OK [UIDNEXT 300] ok
S1: a2 OK [READ-WRITE] done
C1: a3 FETCH 1 (UID FLAGS)
S1: * 1 FETCH (UID 200 FLAGS (\Seen))
S1: a3 OK done
C1: a4 FETCH 2 (UID FLAGS)
S1: * 2 FETCH (UID 201 FLAGS (\Seen \Flagged))
S1: a4 OK done
C1: a5 LOGOUT
S1: * BYE bye
S1: a5 OK done"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_differently_gets_a_readable_diff() {
    let fake = fake_imap::start(Arc::new(fake_behaviour)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "differs.ron",
        &recording(AGAINST_FAKE, ONE_SESSION),
    );
    let (code, out) = mailtape_async(vec![
        "replay".into(),
        file.display().to_string(),
        "--target".into(),
        format!("fake=imap://alice:alicepw@{}", fake.addr),
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    let dir_text = dir.path().display().to_string();
    insta::with_settings!({filters => vec![(dir_text.as_str(), "[DIR]")]}, {
        insta::assert_snapshot!(out);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_is_a_timeout_naming_the_line() {
    let fake = fake_imap::start(Arc::new(fake_behaviour)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "S1: * OK fake ready\nC1: a1 LOGIN {user} {password}\nS1: a1 OK\nC1: a2 NOOP HANG\nS1: a2 OK\nC1: a3 LOGOUT\nS1: * BYE\nS1: a3 OK";
    let file = write(dir.path(), "hangs.ron", &recording(script, ONE_SESSION));
    let (code, out) = mailtape_async(vec![
        "replay".into(),
        file.display().to_string(),
        "--target".into(),
        format!("imap://alice:alicepw@{}", fake.addr),
        "--read-timeout".into(),
        "0.5".into(),
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    // The recording's `S1: a2 OK` is line 14 of the file.
    let at = format!("{}:14:5: ", file.display());
    let line = out
        .lines()
        .find(|l| l.contains(&at))
        .unwrap_or_else(|| panic!("no problem naming line 14: {out}"));
    assert!(line.contains("timed out") && line.contains("a2"), "{line}");
}

#[test]
fn bad_input_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out) = mailtape(&["replay", "no/such/file.ron"]);
    assert_eq!(code, 2, "{out}");
    let broken = write(
        dir.path(),
        "broken.ron",
        &recording("S1: * OK\nC1: a1 FETCH {uid}", ONE_SESSION),
    );
    let (code, out) = mailtape(&["replay", &broken.display().to_string()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("broken.ron:11:") && out.contains("unknown variable"),
        "{out}"
    );
    let carol = r#"        "1": (user: "carol", state: "not-authenticated"),"#;
    let stranger = write(
        dir.path(),
        "carol.ron",
        &recording("S1: * OK\nC1: a1 LOGIN {user} {password}\nS1: a1 OK", carol),
    );
    let (code, out) = mailtape(&["replay", &stranger.display().to_string()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--account carol:PASSWORD"), "{out}");
    // Credentials and a target without accounts: said before anything is sent.
    let nobody = r#"        "1": (state: "not-authenticated"),"#;
    let file = write(
        dir.path(),
        "nobody.ron",
        &recording(
            "S1: * OK\nC1: a1 LOGIN {user} {password}\nS1: a1 OK",
            nobody,
        ),
    );
    let (code, out) = mailtape(&[
        "replay",
        &file.display().to_string(),
        "--target",
        "imap://127.0.0.1:9",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("sends credentials") && out.contains("has no account"),
        "{out}"
    );
}

/// The committed Dovecot recording against the reference server: the differences are real
/// (docs/replay.md explains each), and nothing else differs.
#[test]
fn a_dovecot_recording_against_the_reference_server_shows_the_real_differences() {
    let (code, out) = mailtape(&["replay", "transcripts/imap/python-imaplib-dovecot.ron"]);
    assert_eq!(code, 1, "{out}");
    let changed: Vec<&str> = out
        .lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .collect();
    let is_known =
        |l: &&str| l.contains("CAPABILITY") || l.contains(" OK [CLIENTBUG]") || l.ends_with(" OK");
    assert!(
        changed.iter().all(is_known),
        "unexplained differences: {changed:#?}\n{out}"
    );
    // Both servers report the new RECENT count after the EXPUNGE of a \Recent message.
    assert!(!changed.iter().any(|l| l.contains("RECENT")), "{out}");
    assert!(changed.iter().any(|l| l.contains("[CLIENTBUG]")), "{out}");
    assert!(
        out.contains("0 failing violation(s), 0 problem(s)"),
        "{out}"
    );
}

/// An SMTP server that refuses the recipient the recording's server accepted: the diff keeps
/// the codes and drops the text, so it reads as the change of meaning it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_refuses_the_recipient_gets_a_diff_of_codes() {
    let fake = fake_lines::start(
        b"220 fake.example ESMTP ready\r\n",
        Arc::new(|l: &fake_lines::Line<'_>| {
            let verb = l
                .text
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" => b"250-fake.example\r\n250 PIPELINING\r\n".to_vec(),
                "MAIL" => b"250 2.1.0 Sender ok\r\n".to_vec(),
                "RCPT" => b"550 5.1.1 No such user here\r\n".to_vec(),
                "QUIT" => b"221 2.0.0 bye\r\n".to_vec(),
                _ => b"250 2.0.0 ok\r\n".to_vec(),
            }
        }),
    )
    .await;
    let script = "S1: 220 mx.example.test ESMTP Postfix\nC1: EHLO client.example.test\nS1: 250-mx.example.test\nS1: 250 PIPELINING\nC1: MAIL FROM:<bob@example.test>\nS1: 250 2.1.0 Ok\nC1: RCPT TO:<alice@example.test>\nS1: 250 2.1.5 Ok\nC1: QUIT\nS1: 221 2.0.0 Bye";
    let smtp_session = r#"        "1": (state: "not-authenticated", protocol: "smtp"),"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "smtp.ron", &recording(script, smtp_session));
    let (code, out) = mailtape_async(vec![
        "replay".into(),
        file.display().to_string(),
        "--target".into(),
        format!("smtp://{}", fake.addr),
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("-S1: 250 2.1.5\n+S1: 550 5.1.1\n"), "{out}");
    assert!(
        out.contains(&format!("first at {}:17:5", file.display())),
        "{out}"
    );
    // Nothing else differs: greeting text, host names and the "Ok" texts do not count.
    assert_eq!(out.matches("\n-S1").count(), 1, "{out}");
}

/// Captures in a recording (`mailtape record --capture-uidvalidity` writes
/// `[UIDVALIDITY {uidvalidity}]`) are bound as in a run, later client lines use them, and
/// each is compared as the value it bound.
#[test]
fn captures_written_in_a_recording_are_bound_and_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "captures.ron",
        &recording(CAPTURED, ONE_SESSION),
    );
    let (code, out) = mailtape(&["replay", &file.display().to_string()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("same as recorded"), "{out}");
}

const CAPTURED: &str = r#"S1: * OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR UIDPLUS MOVE IDLE ENABLE NAMESPACE ID UNSELECT AUTH=PLAIN AUTH=LOGIN STARTTLS] ready
C1: a1 LOGIN {user} {password}
S1: a1 OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR UIDPLUS MOVE IDLE ENABLE NAMESPACE ID UNSELECT] LOGIN completed
C1: a2 CREATE replay-captures
S1: a2 OK CREATE completed
C1: a3 SELECT replay-captures
S1: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft)
S1: * OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)] Flags permitted
S1: * 0 EXISTS
S1: * 0 RECENT
S1: * OK [UIDVALIDITY {uidvalidity}] UIDs valid
S1: * OK [UIDNEXT {next}] Predicted next UID
S1: a3 OK [READ-WRITE] SELECT completed
C1: a4 APPEND replay-captures {14}
S1: + Ready for literal data
C1: Subject: x
C1:
C1:
S1: * 1 EXISTS
S1: * 1 RECENT
S1: a4 OK [APPENDUID {uidvalidity} {next}] APPEND completed
C1: a5 UID FETCH {next} (FLAGS)
S1: * 1 FETCH (UID {next} FLAGS (\Recent))
S1: a5 OK FETCH completed
C1: a7 CLOSE
S1: a7 OK CLOSE completed
C1: a8 DELETE replay-captures
S1: a8 OK DELETE completed
C1: a9 LOGOUT
S1: * BYE Logging out
S1: a9 OK LOGOUT completed"#;
