//! Misbehaving POP3 and SMTP servers: each fake plants one fault, and the run must report it
//! as the right rule (or as a bounded, clearly worded timeout) without hanging.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailtape::engine::{RunOptions, TargetRun};
use mailtape::report::{Problem, ScenarioOutcome};
use mailtape::script::Protocol;
use mailtape::target::{Account, Endpoint, Security, Target, Timeouts, TlsOptions};
use support::fake_lines::{self, Line};

fn target(protocol: Protocol, addr: std::net::SocketAddr) -> Target {
    Target {
        name: "fake".to_string(),
        endpoints: vec![Endpoint {
            protocol,
            security: Security::Plain,
            host: addr.ip().to_string(),
            port: addr.port(),
        }],
        accounts: vec![Account {
            name: "alice".into(),
            login: "alice".into(),
            password: "alicepw".into(),
        }],
        tls: TlsOptions::default(),
        domain: None,
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            tls: Duration::from_secs(5),
            read: Duration::from_millis(700),
        },
    }
}

async fn run<F>(
    protocol: Protocol,
    greeting: &'static [u8],
    extra: &str,
    script: &str,
    behaviour: F,
) -> ScenarioOutcome
where
    F: Fn(&Line<'_>) -> Vec<u8> + Send + Sync + 'static,
{
    let fake = fake_lines::start(greeting, Arc::new(behaviour)).await;
    let text = format!(
        "Scenario(id: \"fake.text\", title: \"fake\", spec: [\"RFC 5321 4\"], protocol: \"{}\", {extra} script: r#\"\n{script}\n\"#)",
        protocol.name()
    );
    let scenario = match mailtape::script::parse_str(Path::new("inline.ron"), &text) {
        Ok(s) => s,
        Err(e) => panic!("test scenario does not parse: {e}"),
    };
    let run = match TargetRun::new(target(protocol, fake.addr), RunOptions::default()) {
        Ok(r) => r,
        Err(e) => panic!("target: {e}"),
    };
    run.run(&scenario).await.outcome
}

fn rules(o: &ScenarioOutcome) -> Vec<&'static str> {
    o.violations.iter().map(|v| v.rule).collect()
}

const NOT_AUTHENTICATED: &str = r#"sessions: {"": (state: "not-authenticated")},"#;

/// An SMTP server that is right about everything but what the test changes.
fn smtp(line: &Line<'_>) -> Vec<u8> {
    let verb = line
        .text
        .split([' ', ':'])
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" => b"250-fake.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n".to_vec(),
        "DATA" => b"354 go ahead\r\n".to_vec(),
        "QUIT" => b"221 2.0.0 bye\r\n".to_vec(),
        "." => b"250 2.0.0 queued\r\n".to_vec(),
        _ => b"250 2.0.0 ok\r\n".to_vec(),
    }
}

/// A POP3 server with one 120-octet message, right about everything the test does not change.
fn pop3(line: &Line<'_>) -> Vec<u8> {
    let verb = line
        .text
        .split(' ')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match verb.as_str() {
        "STAT" => b"+OK 1 120\r\n".to_vec(),
        "LIST" if line.text.contains(' ') => b"+OK 1 120\r\n".to_vec(),
        "LIST" => b"+OK 1 messages\r\n1 120\r\n.\r\n".to_vec(),
        "UIDL" => b"+OK\r\n1 uid-one\r\n.\r\n".to_vec(),
        "QUIT" => b"+OK bye\r\n".to_vec(),
        _ => b"+OK\r\n".to_vec(),
    }
}

#[tokio::test]
async fn a_pop3_listing_without_its_final_dot_is_a_bounded_timeout() {
    let started = Instant::now();
    let o = run(
        Protocol::Pop3,
        b"+OK fake ready\r\n",
        "",
        "C: LIST\nS: +OK\nS: .",
        |l| match l.text {
            "LIST" => b"+OK 1 messages\r\n1 120\r\n".to_vec(),
            _ => pop3(l),
        },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
    let timeout = o.problems.iter().find_map(|p| match p {
        Problem::Timeout { loc, message, .. } => Some((loc.clone(), message.clone())),
        _ => None,
    });
    let Some((Some(loc), message)) = timeout else {
        panic!("expected a timeout naming the line: {:?}", o.problems)
    };
    assert_eq!(loc.line, 3, "{loc}");
    assert!(message.contains("timed out"), "{message}");
}

#[tokio::test]
async fn healthy_fakes_pass() {
    let o = run(
        Protocol::Pop3,
        b"+OK fake ready\r\n",
        "",
        "C: STAT\nS: +OK 1 120\nC: LIST\nS: +OK\nS: 1 120\nS: .",
        pop3,
    )
    .await;
    assert!(
        o.problems.is_empty() && o.violations.is_empty(),
        "{:?} {:?}",
        o.problems,
        o.violations
    );
    let o = run(
        Protocol::Smtp,
        b"220 fake.test ESMTP\r\n",
        NOT_AUTHENTICATED,
        "S: 220\nC: EHLO client.test\nS: 250\nC: MAIL FROM:<a@example.test>\nS: 250\nC: RCPT TO:<b@example.test>\nS: 250\nC: DATA\nS: 354\nC: Subject: x\nC:\nC: body\nC: .\nS: 250\nC: QUIT\nS: 221",
        smtp,
    )
    .await;
    assert!(
        o.problems.is_empty() && o.violations.is_empty(),
        "{:?} {:?}",
        o.problems,
        o.violations
    );
}

#[tokio::test]
async fn a_deleted_message_still_listed_is_caught() {
    let o = run(
        Protocol::Pop3,
        b"+OK fake ready\r\n",
        "",
        "C: DELE 1\nS: +OK\nC: LIST\nS: +OK",
        // The fault: after DELE 1, the listing still shows message 1.
        pop3,
    )
    .await;
    assert!(
        rules(&o).contains(&"pop3.dele.deleted"),
        "{:?}",
        o.violations
    );
}

#[tokio::test]
async fn a_pop3_listing_with_a_duplicate_unique_id_is_caught() {
    let o = run(
        Protocol::Pop3,
        b"+OK fake ready\r\n",
        "",
        "C: UIDL\nS: +OK",
        |l| match l.text {
            "UIDL" => b"+OK\r\n1 same\r\n2 same\r\n.\r\n".to_vec(),
            _ => pop3(l),
        },
    )
    .await;
    assert!(
        rules(&o).contains(&"pop3.uidl.unique"),
        "{:?}",
        o.violations
    );
}

#[tokio::test]
async fn a_pop3_list_size_that_retr_contradicts_is_caught() {
    let o = run(
        Protocol::Pop3,
        b"+OK fake ready\r\n",
        "",
        "C: LIST 1\nS: +OK 1 120\nC: RETR 1\nS: +OK",
        |l| match l.text {
            // 11 octets with CRLF, not the 120 LIST announced.
            "RETR 1" => b"+OK\r\nSubject: x\r\n.\r\n".to_vec(),
            _ => pop3(l),
        },
    )
    .await;
    assert!(
        rules(&o).contains(&"pop3.size.list-retr"),
        "{:?}",
        o.violations
    );
}

#[tokio::test]
async fn rcpt_before_mail_answered_250_is_caught() {
    // The fake's fault: it accepts RCPT with no MAIL (RFC 5321 4.1.4 wants 503).
    let o = run(
        Protocol::Smtp,
        b"220 fake.test ESMTP\r\n",
        NOT_AUTHENTICATED,
        "S: 220\nC: EHLO client.test\nS: 250\nC: RCPT TO:<b@example.test>\nS: 250",
        smtp,
    )
    .await;
    assert!(
        rules(&o).contains(&"smtp.sequence.rcpt-without-mail"),
        "{:?}",
        o.violations
    );
}

#[tokio::test]
async fn mixed_codes_in_a_multi_line_reply_are_caught() {
    let o = run(
        Protocol::Smtp,
        b"220 fake.test ESMTP\r\n",
        NOT_AUTHENTICATED,
        "S: 220\nC: EHLO client.test\nS: 250-fake.test",
        |l| match l.text {
            t if t.starts_with("EHLO") => {
                b"250-fake.test\r\n251-PIPELINING\r\n250 8BITMIME\r\n".to_vec()
            }
            _ => smtp(l),
        },
    )
    .await;
    assert!(
        rules(&o).contains(&"smtp.reply.same-code"),
        "{:?}",
        o.violations
    );
}

#[tokio::test]
async fn smtp_replies_ending_in_bare_lf_are_caught() {
    let o = run(
        Protocol::Smtp,
        b"220 fake.test ESMTP\r\n",
        NOT_AUTHENTICATED,
        "S: 220\nC: NOOP\nS: 250",
        |l| match l.text {
            "NOOP" => b"250 2.0.0 ok\n".to_vec(),
            _ => smtp(l),
        },
    )
    .await;
    assert!(rules(&o).contains(&"smtp.reply.crlf"), "{:?}", o.violations);
}

#[tokio::test]
async fn unstable_unique_ids_are_caught() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The fake's fault: every UIDL gives message 1 a new unique-id.
    let calls = Arc::new(AtomicUsize::new(0));
    let o = run(
        Protocol::Pop3,
        b"+OK fake ready\r\n",
        "",
        "C: UIDL\nS: +OK\nC: UIDL 1\nS: +OK",
        move |l| {
            if l.text.starts_with("UIDL") {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                return match l.text {
                    "UIDL" => format!("+OK\r\n1 uid-{n}\r\n.\r\n").into_bytes(),
                    _ => format!("+OK 1 uid-{n}\r\n").into_bytes(),
                };
            }
            pop3(l)
        },
    )
    .await;
    assert!(
        rules(&o).contains(&"pop3.uidl.stable"),
        "{:?}",
        o.violations
    );
}

#[tokio::test]
async fn unique_ids_renamed_between_sessions_are_caught() {
    // The fake's fault: each connection gives the same message a new unique-id, as a server
    // that derives ids from something per session would. Each session alone is consistent.
    let o = run(
        Protocol::Pop3,
        b"+OK fake ready\r\n",
        r#"sessions: {"p": (), "q": ()},"#,
        "Cp: LIST\nSp: +OK\nCp: UIDL\nSp: +OK\nCp: QUIT\nSp: +OK\n\
         Cq: LIST\nSq: +OK\nCq: UIDL\nSq: +OK\nCq: QUIT\nSq: +OK",
        |l| match l.text {
            "UIDL" => format!("+OK\r\n1 conn{}-uid\r\n.\r\n", l.conn).into_bytes(),
            _ => pop3(l),
        },
    )
    .await;
    let stable: Vec<_> = o
        .violations
        .iter()
        .filter(|v| v.rule == "pop3.uidl.stable")
        .collect();
    assert_eq!(stable.len(), 1, "{:?}", o.violations);
    assert!(
        stable[0].message.contains("in session `p`"),
        "{}",
        stable[0].message
    );
}
