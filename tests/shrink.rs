//! `mailtape shrink`: a fake IMAP server with one planted bug deep inside a long recording
//! (it reports `\Flagged` stored on message 3 but forgets it, so a later FETCH breaks
//! imap.flags.persist); the shrinker must cut the recording to a handful of commands that
//! still break that rule. A recording that does not fail is refused with exit status 2.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use support::fake_imap::{self, Cmd, Reply};

const UID_BASE: u32 = 100;
const MESSAGES: usize = 5;

/// What one connection of the fake (or the correct server the recording came from) knows.
#[derive(Default, Clone)]
struct Mailbox {
    logged_in: bool,
    selected: bool,
    flags: [BTreeSet<String>; MESSAGES],
}

fn flag_list(flags: &BTreeSet<String>) -> String {
    flags.iter().cloned().collect::<Vec<_>>().join(" ")
}

/// The answer of the server to one command; `buggy` plants the bug.
fn answer(m: &mut Mailbox, tag: &str, verb: &str, args: &str, buggy: bool) -> String {
    let msg = |args: &str| -> Option<usize> {
        let n: usize = args.split(' ').next()?.parse().ok()?;
        (1..=MESSAGES).contains(&n).then_some(n)
    };
    match verb {
        "LOGIN" => {
            m.logged_in = true;
            format!("{tag} OK logged in\r\n")
        }
        "SELECT" if !m.logged_in => format!("{tag} NO log in first\r\n"),
        "SELECT" => {
            m.selected = true;
            format!(
                "* {MESSAGES} EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Flagged \\Deleted)\r\n* OK [PERMANENTFLAGS (\\Seen \\Flagged \\Deleted)] ok\r\n* OK [UIDVALIDITY 42] ok\r\n* OK [UIDNEXT {}] ok\r\n{tag} OK [READ-WRITE] done\r\n",
                UID_BASE + MESSAGES as u32 + 1
            )
        }
        "FETCH" | "STORE" if !m.selected => format!("{tag} BAD no mailbox selected\r\n"),
        "FETCH" => match msg(args) {
            Some(n) => format!(
                "* {n} FETCH (UID {} FLAGS ({}))\r\n{tag} OK done\r\n",
                UID_BASE + n as u32,
                flag_list(&m.flags[n - 1])
            ),
            None => format!("{tag} BAD no such message\r\n"),
        },
        "STORE" => {
            let Some(n) = msg(args) else {
                return format!("{tag} BAD no such message\r\n");
            };
            let mut words = args.splitn(3, ' ').skip(1);
            let op = words.next().unwrap_or_default().to_ascii_uppercase();
            let flag = words
                .next()
                .unwrap_or_default()
                .trim_matches(|c| c == '(' || c == ')')
                .to_string();
            let mut reported = m.flags[n - 1].clone();
            match op.as_str() {
                "+FLAGS" => {
                    reported.insert(flag.clone());
                }
                "-FLAGS" => {
                    reported.remove(&flag);
                }
                _ => return format!("{tag} BAD unknown store\r\n"),
            }
            // The planted bug: \Flagged on message 3 is reported stored but forgotten.
            let forget = buggy && n == 3 && flag == "\\Flagged";
            if !forget {
                m.flags[n - 1] = reported.clone();
            }
            format!(
                "* {n} FETCH (UID {} FLAGS ({}))\r\n{tag} OK done\r\n",
                UID_BASE + n as u32,
                flag_list(&reported)
            )
        }
        "LOGOUT" => format!("* BYE bye\r\n{tag} OK done\r\n"),
        _ => format!("{tag} OK done\r\n"),
    }
}

/// A long recording from the correct server: login, select, 40 commands of NOOP, CHECK,
/// FETCH and STORE on messages 1, 2, 4, 5; the STORE of \Flagged on message 3 at command 31
/// and its FETCH at command 42; then logout. `planted` false leaves both out.
fn recording(planted: bool) -> (String, usize) {
    let mut m = Mailbox::default();
    let mut script = String::from("S1: * OK fake ready\n");
    let mut commands = 0;
    let mut add = |m: &mut Mailbox, script: &mut String, text: &str| {
        commands += 1;
        let tag = format!("a{commands}");
        let mut parts = text.splitn(2, ' ');
        let verb = parts.next().unwrap_or_default();
        let args = parts.next().unwrap_or_default();
        let shown = if verb == "LOGIN" {
            "LOGIN {user} {password}"
        } else {
            text
        };
        script.push_str(&format!("C1: {tag} {shown}\n"));
        for line in answer(m, &tag, verb, args, false).lines() {
            script.push_str(&format!("S1: {line}\n"));
        }
    };
    add(&mut m, &mut script, "LOGIN alice alicepw");
    add(&mut m, &mut script, "SELECT INBOX");
    let others = [1, 2, 4, 5];
    for i in 0..40 {
        let k = others[i % others.len()];
        let text = match i {
            28 if planted => "STORE 3 +FLAGS (\\Flagged)".to_string(),
            39 if planted => "FETCH 3 (UID FLAGS)".to_string(),
            _ => match i % 5 {
                0 => "NOOP".to_string(),
                1 => format!("FETCH {k} (UID FLAGS)"),
                2 => format!("STORE {k} +FLAGS (\\Seen)"),
                3 => "CHECK".to_string(),
                _ => format!("STORE {k} -FLAGS (\\Seen)"),
            },
        };
        add(&mut m, &mut script, &text);
    }
    add(&mut m, &mut script, "LOGOUT");
    let file = format!(
        "Scenario(\n    id: \"recorded-long\",\n    title: \"a long recording\",\n    spec: [\"recorded\"],\n    protocol: \"imap\",\n    sessions: {{\n        \"1\": (user: \"alice\", state: \"not-authenticated\"),\n    }},\n    script: r#\"\n{script}\"#,\n)\n"
    );
    (file, commands)
}

async fn buggy_fake() -> fake_imap::Fake {
    let state: Arc<Mutex<HashMap<usize, Mailbox>>> = Arc::default();
    fake_imap::start(Arc::new(move |c: &Cmd<'_>| {
        let mut all = state.lock().unwrap_or_else(|p| p.into_inner());
        let m = all.entry(c.conn).or_default();
        Reply::Bytes(answer(m, c.tag, c.verb, c.args, true).into_bytes())
    }))
    .await
}

fn mailtape(args: Vec<String>) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailtape"))
        .args(&args)
        .output()
        .expect("run mailtape");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn mailtape_async(args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || mailtape(args))
        .await
        .expect("join")
}

/// Commands (tagged client lines) of a recording.
fn commands(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("C1: "))
        .filter(|l| l.split(' ').count() >= 2)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_bug_deep_in_a_long_recording_shrinks_to_a_handful_of_commands() {
    let fake = buggy_fake().await;
    let target = format!("imap://alice:alicepw@{}", fake.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, count) = recording(true);
    assert!(count >= 42, "{count}");
    let file = dir.path().join("long.ron");
    std::fs::write(&file, &text).expect("write");
    let file_arg = file.display().to_string();

    // The whole recording fails against the fake, with the planted rule.
    let (code, out) = mailtape_async(vec![
        "replay".into(),
        file_arg.clone(),
        "--target".into(),
        target.clone(),
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("imap.flags.persist"), "{out}");

    let (code, out) = mailtape_async(vec![
        "shrink".into(),
        file_arg.clone(),
        "--target".into(),
        target.clone(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{count} commands -> ")), "{out}");
    assert!(out.contains("it violates imap.flags.persist"), "{out}");
    let min = dir.path().join("long.min.ron");
    let shrunk =
        std::fs::read_to_string(&min).expect("the shrunk recording is written beside the input");
    let kept = commands(&shrunk);
    assert!(kept.len() <= 6, "{kept:#?}");
    // What the bug needs is kept: login, select, the STORE and the FETCH that shows it.
    for needed in ["LOGIN", "SELECT", "STORE 3 +FLAGS", "FETCH 3"] {
        assert!(
            kept.iter().any(|c| c.contains(needed)),
            "{needed} missing: {kept:#?}"
        );
    }
    // The summary line counts what is in the file.
    assert!(
        out.contains(&format!("-> {} commands in ", kept.len())),
        "{out}"
    );
    // It still loads, and still fails the same way.
    mailtape::script::parse_str(Path::new("min.ron"), &shrunk).unwrap_or_else(|e| panic!("{e}"));
    let (code, out) = mailtape_async(vec![
        "replay".into(),
        min.display().to_string(),
        "--target".into(),
        target.clone(),
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("imap.flags.persist"), "{out}");

    // With --rule and -o the same.
    let out_file = dir.path().join("by-rule.ron");
    let (code, out) = mailtape_async(vec![
        "shrink".into(),
        file_arg,
        "--target".into(),
        target,
        "--rule".into(),
        "imap.flags.persist".into(),
        "-o".into(),
        out_file.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let by_rule = std::fs::read_to_string(&out_file).expect("written to -o");
    assert!(commands(&by_rule).len() <= 6, "{by_rule}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_does_not_fail_is_refused() {
    let fake = buggy_fake().await;
    let target = format!("imap://alice:alicepw@{}", fake.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, _) = recording(false);
    let file = dir.path().join("fine.ron");
    std::fs::write(&file, &text).expect("write");
    let (code, out) = mailtape_async(vec![
        "shrink".into(),
        file.display().to_string(),
        "--target".into(),
        target.clone(),
    ])
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("does not fail against") && out.contains("nothing to shrink"),
        "{out}"
    );
    assert!(!dir.path().join("fine.min.ron").exists());

    // A failing recording, but not with the rule asked for.
    let (text, _) = recording(true);
    let file = dir.path().join("long.ron");
    std::fs::write(&file, &text).expect("write");
    let (code, out) = mailtape_async(vec![
        "shrink".into(),
        file.display().to_string(),
        "--target".into(),
        target,
        "--rule".into(),
        "imap.tag.unknown".into(),
    ])
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("with a violation of imap.tag.unknown"),
        "{out}"
    );
}

/// Without --target each replay gets a fresh bundled server, so a recording that creates and
/// fills a mailbox shrinks the same way every time: here one recorded flag the server never
/// set (a difference, no violation) leaves the commands that make message 3 and fetch it.
#[test]
fn a_difference_shrinks_against_fresh_reference_servers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("transcripts/imap/python-imaplib-reference.ron"),
    )
    .expect("committed recording");
    let planted = original.replace(
        "S1: * 3 FETCH (UID 3 FLAGS (\\Recent))",
        "S1: * 3 FETCH (UID 3 FLAGS (\\Recent \\Answered))",
    );
    assert_ne!(planted, original);
    let file = dir.path().join("differs.ron");
    std::fs::write(&file, &planted).expect("write");
    let (code, out) = mailtape(vec!["shrink".into(), file.display().to_string()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("18 commands -> ") && out.contains("differs from the recording at line 66"),
        "{out}"
    );
    let shrunk = std::fs::read_to_string(dir.path().join("differs.min.ron")).expect("written");
    let kept = commands(&shrunk);
    assert!(
        kept.len() < 18 && kept.iter().any(|c| c.contains("FETCH 1:* (UID FLAGS)")),
        "{kept:#?}"
    );
    assert!(
        !kept
            .iter()
            .any(|c| c.contains("LOGOUT") || c.contains("EXPUNGE")),
        "{kept:#?}"
    );
    // What the FETCH needs stays: without LOGIN or SELECT it would differ at the same line
    // with a BAD instead of the flags, which is not the same failure.
    for needed in ["LOGIN", "SELECT", "APPEND"] {
        assert!(kept.iter().any(|c| c.contains(needed)), "{kept:#?}");
    }
    let min = dir.path().join("differs.min.ron").display().to_string();
    let (code, out) = mailtape(vec!["replay".into(), min]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("-S1: * 3 FETCH (FLAGS (\\Answered \\Recent) UID <uid#3>)")
            && out.contains("+S1: * 3 FETCH (FLAGS (\\Recent) UID <uid#3>)"),
        "{out}"
    );
}

/// A recording of three sessions (IMAP, SMTP, POP3) with one recorded POP3 answer the server
/// never gives: the sessions that have nothing to do with it go whole.
#[test]
fn sessions_that_do_not_matter_go_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("transcripts/cross/starttls-and-sasl.ron"),
    )
    .expect("committed recording");
    let planted = original.replace("S3: +OK logged in", "S3: -ERR [AUTH] no");
    assert_ne!(planted, original);
    let file = dir.path().join("three.ron");
    std::fs::write(&file, &planted).expect("write");
    let (code, out) = mailtape(vec!["shrink".into(), file.display().to_string()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 session(s)"), "{out}");
    let shrunk = std::fs::read_to_string(dir.path().join("three.min.ron")).expect("written");
    assert!(
        !shrunk.contains("\nC1:") && !shrunk.contains("\nC2:"),
        "{shrunk}"
    );
    assert!(
        shrunk.contains("C3: AUTH PLAIN") && shrunk.contains("S3: -ERR [AUTH] no"),
        "{shrunk}"
    );
}

/// Ctrl-C (SIGINT) in the middle: the replay in progress ends, and the smallest recording
/// that failed so far is written, marked interrupted, and still fails the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_shrink_writes_the_smallest_so_far() {
    // The same buggy server, slowed down so the shrink is still going when SIGINT comes.
    let state: Arc<Mutex<HashMap<usize, Mailbox>>> = Arc::default();
    let fake = fake_imap::start(Arc::new(move |c: &Cmd<'_>| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut all = state.lock().unwrap_or_else(|p| p.into_inner());
        let m = all.entry(c.conn).or_default();
        Reply::Bytes(answer(m, c.tag, c.verb, c.args, true).into_bytes())
    }))
    .await;
    let target = format!("imap://alice:alicepw@{}", fake.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let (text, count) = recording(true);
    let file = dir.path().join("long.ron");
    std::fs::write(&file, &text).expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_mailtape"))
        .args(["shrink", &file.display().to_string(), "--target", &target])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mailtape shrink");
    let pid = child.id().to_string();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let signalled = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(signalled.success(), "the shrink ended before SIGINT came");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("the shrink stops soon after SIGINT")
    .expect("join")
    .expect("output");
    let text_out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text_out}");
    assert!(text_out.contains("interrupted"), "{text_out}");
    let min = std::fs::read_to_string(dir.path().join("long.min.ron")).expect("written");
    assert!(min.starts_with("// Shrunk by mailtape shrink"), "{min}");
    assert!(min.contains("interrupted"), "{min}");
    assert!(commands(&min).len() <= count);
    let (code, replayed) = mailtape_async(vec![
        "replay".into(),
        dir.path().join("long.min.ron").display().to_string(),
        "--target".into(),
        target,
    ])
    .await;
    assert_eq!(code, 1, "{replayed}");
    assert!(replayed.contains("imap.flags.persist"), "{replayed}");
}
