//! Misbehaving servers: each fake plants one fault, and the run must report it as the
//! right rule (or as a bounded, clearly worded error) without hanging or crashing.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailtape::engine::{RunOptions, TargetRun};
use mailtape::report::{Problem, ScenarioOutcome, Status};
use mailtape::script::Protocol;
use mailtape::target::{Account, Endpoint, Security, Target, Timeouts, TlsOptions};
use support::fake_imap::{self, Cmd, Reply};

fn target(addr: std::net::SocketAddr) -> Target {
    Target {
        name: "fake".to_string(),
        endpoints: vec![Endpoint {
            protocol: Protocol::Imap,
            security: Security::Plain,
            host: addr.ip().to_string(),
            port: addr.port(),
        }],
        accounts: vec![
            Account {
                name: "alice".into(),
                login: "alice".into(),
                password: "alicepw".into(),
            },
            Account {
                name: "bob".into(),
                login: "bob".into(),
                password: "bobpw".into(),
            },
        ],
        tls: TlsOptions::default(),
        domain: None,
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            tls: Duration::from_secs(5),
            read: Duration::from_millis(700),
        },
    }
}

const HEADER: &str = r#"id: "fake.test", title: "fake", spec: ["RFC 3501 6"],"#;

async fn run_against<F>(script: &str, sessions: &str, behaviour: F) -> ScenarioOutcome
where
    F: Fn(&Cmd<'_>) -> Reply + Send + Sync + 'static,
{
    let fake = fake_imap::start(Arc::new(behaviour)).await;
    let text = format!("Scenario({HEADER} {sessions} script: r#\"\n{script}\n\"#)");
    let scenario = match mailtape::script::parse_str(Path::new("inline.ron"), &text) {
        Ok(s) => s,
        Err(e) => panic!("test scenario does not parse: {e}"),
    };
    let run = match TargetRun::new(target(fake.addr), RunOptions::default()) {
        Ok(r) => r,
        Err(e) => panic!("target: {e}"),
    };
    run.run(&scenario).await.outcome
}

fn rules(o: &ScenarioOutcome) -> Vec<&'static str> {
    o.violations.iter().map(|v| v.rule).collect()
}

fn bytes(s: &str) -> Reply {
    Reply::Bytes(s.as_bytes().to_vec())
}

#[tokio::test]
async fn a_completion_with_the_wrong_tag_is_caught() {
    let o = run_against("C: a1 NOOP\nS: a1 OK", "", |c| match c.verb {
        "NOOP" => bytes("zz9 OK done\r\n"),
        _ => Reply::Default,
    })
    .await;
    assert_eq!(o.status, Status::Fail);
    assert!(
        rules(&o).contains(&"imap.tag.unknown"),
        "{:?}",
        o.violations
    );
    assert!(
        o.problems
            .iter()
            .any(|p| matches!(p, Problem::Timeout { .. })),
        "{:?}",
        o.problems
    );
}

#[tokio::test]
async fn a_missing_completion_is_a_bounded_timeout_naming_the_line() {
    let started = Instant::now();
    let o = run_against("C: a1 NOOP\nS: a1 OK", "", |c| match c.verb {
        "NOOP" => Reply::Bytes(Vec::new()),
        _ => Reply::Default,
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let timeout = o.problems.iter().find_map(|p| match p {
        Problem::Timeout { loc, message, .. } => Some((loc.clone(), message.clone())),
        _ => None,
    });
    let Some((Some(loc), message)) = timeout else {
        panic!("expected a timeout with a location: {:?}", o.problems)
    };
    assert_eq!(loc.line, 3, "{loc}");
    assert!(message.contains("a1"), "{message}");
}

#[tokio::test]
async fn garbage_is_a_syntax_violation_and_the_session_goes_on() {
    let o = run_against(
        "C: a1 NOOP\nS: a1 OK\nC: a2 NOOP\nS: a2 OK",
        "",
        |c| match (c.verb, c.tag) {
            ("NOOP", "a1") => Reply::Bytes(b"\x00\xff}{ garbage (((\r\na1 OK done\r\n".to_vec()),
            _ => Reply::Default,
        },
    )
    .await;
    assert!(
        rules(&o).contains(&"imap.syntax.response"),
        "{:?}",
        o.violations
    );
    assert!(
        o.problems.is_empty(),
        "the session must go on: {:?}",
        o.problems
    );
}

#[tokio::test]
async fn a_bare_lf_line_ending_is_caught() {
    let o = run_against("C: a1 NOOP\nS: a1 OK", "", |c| match c.verb {
        "NOOP" => bytes("a1 OK done\n"),
        _ => Reply::Default,
    })
    .await;
    assert!(
        rules(&o).contains(&"imap.syntax.crlf"),
        "{:?}",
        o.violations
    );
}

#[tokio::test]
async fn a_literal_longer_than_announced_breaks_the_syntax() {
    let o = run_against(
        "C: a1 FETCH 1 BODY[]\nS: a1 OK",
        r#"sessions: {"": (user: "alice", state: "selected")},"#,
        |c| match c.verb {
            "FETCH" => bytes("* 1 FETCH (BODY[] {5}\r\nhelloEXTRA)\r\na1 OK done\r\n"),
            _ => Reply::Default,
        },
    )
    .await;
    assert!(
        rules(&o).contains(&"imap.syntax.response"),
        "{:?}",
        o.violations
    );
}

#[tokio::test]
async fn a_literal_cut_off_by_a_disconnect_is_reported() {
    let o = run_against(
        "C: a1 FETCH 1 BODY[]\nS: a1 OK",
        r#"sessions: {"": (user: "alice", state: "selected")},"#,
        |c| match c.verb {
            "FETCH" => {
                Reply::BytesThenClose(b"* 1 FETCH (BODY[] {100}\r\nonly a few bytes".to_vec())
            }
            _ => Reply::Default,
        },
    )
    .await;
    assert_eq!(o.status, Status::Fail);
    let text = format!("{:?}", o.problems);
    assert!(text.contains("closed"), "{text}");
}

#[tokio::test]
async fn a_gigabyte_literal_announcement_is_refused_quickly() {
    let started = Instant::now();
    let o = run_against(
        "C: a1 FETCH 1 BODY[]\nS: a1 OK",
        r#"sessions: {"": (user: "alice", state: "selected")},"#,
        |c| match c.verb {
            "FETCH" => bytes("* 1 FETCH (BODY[] {1073741824}\r\nxxxxxxxxxxxxxxxx"),
            _ => Reply::Default,
        },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(o.status, Status::Fail);
    let text = format!("{:?}", o.problems);
    assert!(text.contains("1073741824"), "{text}");
}

#[tokio::test]
async fn uids_going_backwards_are_caught() {
    let o = run_against(
        "C: a1 UID FETCH 1:* (UID)\nS: a1 OK",
        r#"sessions: {"": (user: "alice", state: "selected")},"#,
        |c| match c.verb {
            "UID" => bytes("* 1 FETCH (UID 5)\r\n* 2 FETCH (UID 3)\r\na1 OK done\r\n"),
            _ => Reply::Default,
        },
    )
    .await;
    assert!(
        rules(&o).contains(&"imap.uid.ascending"),
        "{:?}",
        o.violations
    );
}

#[tokio::test]
async fn a_stored_flag_that_disappears_is_caught() {
    let script = "\
C1: a1 STORE 1 +FLAGS (\\Flagged)
S1: * 1 FETCH (FLAGS (\\Flagged) ...)
S1: a1 OK
C1: a2 LOGOUT
S1: a2 OK
C2: b1 FETCH 1 (FLAGS UID)
S2: b1 OK";
    let o = run_against(
        script,
        r#"sessions: {"1": (user: "alice", state: "selected"), "2": (user: "alice", state: "selected")},"#,
        |c| match (c.verb, c.conn) {
            ("STORE", _) => bytes("* 1 FETCH (FLAGS (\\Flagged) UID 7)\r\na1 OK done\r\n"),
            ("FETCH", _) => bytes("* 1 FETCH (FLAGS () UID 7)\r\nb1 OK done\r\n"),
            _ => Reply::Default,
        },
    )
    .await;
    assert!(
        rules(&o).contains(&"imap.flags.persist"),
        "{:?}",
        o.violations
    );
}

#[tokio::test]
async fn a_healthy_fake_passes() {
    let o = run_against("C: a1 NOOP\nS: a1 OK", "", |_| Reply::Default).await;
    assert_eq!(
        o.status,
        Status::Pass,
        "{:?} {:?}",
        o.problems,
        o.violations
    );
}

#[tokio::test]
async fn the_first_mismatch_stops_the_script() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let later_sent = Arc::new(AtomicBool::new(false));
    let seen = later_sent.clone();
    let o = run_against(
        "C: a1 NOOP\nS: a1 OK\nC: a2 CHECK\nS: a2 OK",
        "",
        move |c| {
            if c.tag == "a2" {
                seen.store(true, Ordering::SeqCst);
            }
            match c.verb {
                "NOOP" => bytes("a1 NO not today\r\n"),
                _ => Reply::Default,
            }
        },
    )
    .await;
    assert_eq!(o.status, Status::Fail);
    assert!(
        !later_sent.load(Ordering::SeqCst),
        "a line after the mismatch was sent"
    );
}
