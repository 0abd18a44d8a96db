//! Unit tests: one triggering exchange per rule, and clean sessions that must stay silent.

use std::collections::BTreeSet;

use mailtape_proto::pop3::{ReplyStatus, parse_status_line};

use super::*;

/// A reply as the engine frames it: `raw` as received; multi-line when it has more than one
/// line (the body is unstuffed like the framer does).
fn reply(raw: &str) -> LineReply {
    let mut pieces: Vec<&[u8]> = raw.as_bytes().split(|&b| b == b'\n').collect();
    if pieces.last().is_some_and(|l| l.is_empty()) {
        pieces.pop();
    }
    let bare_lf = pieces.iter().any(|l| !l.ends_with(b"\r"));
    let lines: Vec<Vec<u8>> = pieces
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let last = i + 1 == pieces.len();
            match l.strip_prefix(b".") {
                Some(rest) if i > 0 && !last => rest.to_vec(),
                _ => l.to_vec(),
            }
        })
        .collect();
    let kind = match lines.first().map(|l| parse_status_line(l).0) {
        Some(ReplyStatus::Ok) => ReplyKind::Positive,
        Some(ReplyStatus::Err) => ReplyKind::Negative,
        Some(ReplyStatus::Continuation) => ReplyKind::Intermediate,
        _ => ReplyKind::Malformed,
    };
    LineReply {
        raw: raw.as_bytes().to_vec(),
        lines,
        line_ending: if bare_lf {
            LineEnding::Lf
        } else {
            LineEnding::Crlf
        },
        kind,
        code: 0,
    }
}

/// Runs a script of `C: ` lines and `S: ` replies (a reply's lines joined by `|`), CRLF added,
/// and returns the ids of the rules broken.
fn run(script: &[&str]) -> BTreeSet<&'static str> {
    let mut c = Pop3Checks::new(SharedModel::default());
    c.session_opened("x", "alice");
    let mut got = Vec::new();
    for step in script {
        if let Some(line) = step.strip_prefix("C: ") {
            got.extend(c.client_line("x", format!("{line}\r\n").as_bytes()));
        } else if let Some(r) = step.strip_prefix("S: ") {
            let raw: String = r.split('|').map(|l| format!("{l}\r\n")).collect();
            got.extend(c.server_reply("x", &reply(&raw)));
        } else if let Some(r) = step.strip_prefix("RAW: ") {
            got.extend(c.server_reply("x", &reply(r)));
        }
    }
    got.extend(c.session_closed("x"));
    got.iter().map(|v| v.rule).collect()
}

const LOGIN: [&str; 5] = [
    "S: +OK ready",
    "C: USER alice",
    "S: +OK",
    "C: PASS pw",
    "S: +OK",
];

fn logged_in(rest: &[&str]) -> BTreeSet<&'static str> {
    let script: Vec<&str> = LOGIN.iter().chain(rest).copied().collect();
    run(&script)
}

fn only(id: &'static str) -> BTreeSet<&'static str> {
    BTreeSet::from([id])
}

#[test]
fn clean_realistic_session() {
    let got = logged_in(&[
        "C: CAPA",
        "S: +OK Capability list follows|TOP|UIDL|USER|.",
        "C: STAT",
        "S: +OK 2 38",
        "C: LIST",
        "S: +OK 2 messages|1 20|2 18|.",
        "C: UIDL",
        "S: +OK|1 a1|2 b2|.",
        "C: RETR 1",
        "S: +OK 20 octets|Subject: x||..dot|.",
        "C: TOP 2 0",
        "S: +OK|Subject: y|.",
        "C: DELE 1",
        "S: +OK deleted",
        "C: RETR 1",
        "S: -ERR no such message",
        "C: STAT",
        "S: +OK 1 18",
        "C: LIST",
        "S: +OK|2 18|.",
        "C: UIDL",
        "S: +OK|2 b2|.",
        "C: RSET",
        "S: +OK",
        "C: LIST 1",
        "S: +OK 1 20",
        "C: UIDL 1",
        "S: +OK 1 a1",
        "C: NOOP",
        "S: +OK",
        "C: USER bob",
        "S: -ERR already logged in",
        "C: QUIT",
        "S: +OK bye",
    ]);
    assert_eq!(got, BTreeSet::new());
}

#[test]
fn clean_sasl_login_and_pipelining() {
    let got = run(&[
        "S: +OK ready",
        "C: STAT",
        "S: -ERR log in first",
        "C: AUTH PLAIN",
        "S: + ",
        "C: AGFsaWNlAHB3",
        "S: +OK logged in",
        "C: STAT",
        "C: LIST",
        "C: UIDL 1",
        "S: +OK 1 5",
        "S: +OK|1 5|.",
        "S: +OK 1 u-1",
        "C: AUTH",
        "S: +OK|PLAIN|.",
    ]);
    assert_eq!(got, BTreeSet::new());
}

#[test]
fn unparsed_and_cancelled_lines_keep_replies_aligned() {
    // A bad command and a cancelled AUTH each take one reply; the STAT after login is then
    // matched to its own `+OK`, and a later STAT before any login would still be caught.
    let got = run(&[
        "S: +OK",
        "C: LIST abc",
        "S: -ERR bad argument",
        "C: AUTH PLAIN",
        "S: + ",
        "C: *",
        "S: -ERR cancelled",
        "C: STAT",
        "S: +OK 0 0",
    ]);
    assert_eq!(got, only("pop3.state.authorization"));
}

#[test]
fn status_indicator_case_and_stray_continuation() {
    assert_eq!(
        logged_in(&["C: NOOP", "S: +ok"]),
        only("pop3.syntax.status")
    );
    assert_eq!(
        logged_in(&["C: NOOP", "S: + go on"]),
        only("pop3.syntax.status")
    );
    assert_eq!(run(&["S: OK ready"]), only("pop3.syntax.status"));
}

#[test]
fn bare_lf() {
    assert_eq!(
        logged_in(&["C: NOOP", "RAW: +OK\n"]),
        only("pop3.syntax.crlf")
    );
}

#[test]
fn missed_dot_stuffing() {
    assert_eq!(
        logged_in(&["C: RETR 1", "S: +OK|a|.hidden|."]),
        only("pop3.multiline.dot-stuffing")
    );
}

#[test]
fn negative_greeting() {
    assert_eq!(run(&["S: -ERR go away"]), only("pop3.greeting"));
}

#[test]
fn transaction_command_before_login() {
    assert_eq!(
        run(&["S: +OK", "C: STAT", "S: +OK 0 0"]),
        only("pop3.state.authorization")
    );
    assert_eq!(
        run(&[
            "S: +OK",
            "C: USER a",
            "S: +OK",
            "C: PASS bad",
            "S: -ERR",
            "C: NOOP",
            "S: +OK"
        ]),
        only("pop3.state.authorization")
    );
}

#[test]
fn login_command_after_login() {
    assert_eq!(
        logged_in(&["C: USER bob", "S: +OK"]),
        only("pop3.state.transaction")
    );
    assert_eq!(
        logged_in(&["C: STLS", "S: +OK"]),
        only("pop3.state.transaction")
    );
}

#[test]
fn deleted_message_referenced_or_listed() {
    for access in ["RETR 2", "TOP 2 0", "LIST 2", "UIDL 2", "DELE 2"] {
        let got = logged_in(&[
            "C: DELE 2",
            "S: +OK",
            &format!("C: {access}"),
            "S: +OK 2 5|.",
        ]);
        assert_eq!(got, only("pop3.dele.deleted"), "{access}");
    }
    assert_eq!(
        logged_in(&["C: DELE 2", "S: +OK", "C: LIST", "S: +OK|1 5|2 6|."]),
        only("pop3.dele.deleted")
    );
    assert_eq!(
        logged_in(&["C: DELE 2", "S: +OK", "C: UIDL", "S: +OK|1 a|2 b|."]),
        only("pop3.dele.deleted")
    );
    // RSET brings it back.
    assert_eq!(
        logged_in(&[
            "C: DELE 2",
            "S: +OK",
            "C: RSET",
            "S: +OK",
            "C: RETR 2",
            "S: +OK|x|."
        ]),
        BTreeSet::new()
    );
}

#[test]
fn unique_id_syntax_and_uniqueness() {
    assert_eq!(
        logged_in(&["C: UIDL", "S: +OK|1 same|2 same|."]),
        only("pop3.uidl.unique")
    );
    let long = format!("C: UIDL 1\nS: +OK 1 {}", "x".repeat(71));
    let steps: Vec<&str> = long.lines().collect();
    assert_eq!(logged_in(&steps), only("pop3.uidl.syntax"));
    assert_eq!(
        logged_in(&["C: UIDL", "S: +OK|1 caf\u{e9}|."]),
        only("pop3.uidl.syntax")
    );
}

#[test]
fn list_size_against_retr() {
    assert_eq!(
        logged_in(&["C: LIST 1", "S: +OK 1 10", "C: RETR 1", "S: +OK|abc|."]),
        only("pop3.size.list-retr")
    );
    // Either order; and the exact count passes (`abc` CRLF `.x` CRLF = 5 + 4).
    assert_eq!(
        logged_in(&["C: RETR 1", "S: +OK|abc|..x|.", "C: LIST", "S: +OK|1 8|."]),
        only("pop3.size.list-retr")
    );
    assert_eq!(
        logged_in(&["C: RETR 1", "S: +OK|abc|..x|.", "C: LIST", "S: +OK|1 9|."]),
        BTreeSet::new()
    );
}

#[test]
fn stat_against_list() {
    assert_eq!(
        logged_in(&["C: STAT", "S: +OK 2 30", "C: LIST", "S: +OK|1 10|2 10|."]),
        only("pop3.size.stat-list")
    );
    // A DELE in between makes them incomparable.
    assert_eq!(
        logged_in(&[
            "C: LIST",
            "S: +OK|1 10|2 10|.",
            "C: DELE 1",
            "S: +OK",
            "C: STAT",
            "S: +OK 1 10"
        ]),
        BTreeSet::new()
    );
}

#[test]
fn garbage_never_panics() {
    let mut c = Pop3Checks::new(SharedModel::default());
    for raw in [
        "",
        "\n",
        ".\r\n",
        "+OK\r\n.\r\n",
        "+OK\r\n\r\n.\r\n",
        "\u{0}\r\n",
    ] {
        let r = reply(raw);
        c.client_line("y", b"\xff\xfe");
        c.client_line("y", b"LIST");
        let _ = c.server_reply("y", &r);
        let _ = c.server_reply("y", &r);
    }
    assert!(c.session_closed("y").is_empty());
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
    let ids: BTreeSet<&str> = ALL.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), ALL.len(), "duplicate rule id");
}

// ---------------------------------------------------------------- the reference server

mod live {
    use std::time::Duration;

    use mailtape_proto::pop3::{Framed, ReplyFramer};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    use super::*;

    /// Generous: the server is in-process on loopback.
    const WAIT: Duration = Duration::from_secs(10);
    const MAX_REPLY: usize = 1 << 20;

    /// Delivers one message to alice over plain SMTP (`hello` = `EHLO`) or LMTP (`LHLO`).
    async fn deliver(addr: std::net::SocketAddr, hello: &str, body: &str) {
        let s = TcpStream::connect(addr).await.expect("smtp connect");
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let mut line = String::new();
        // Reads one whole reply (continuation lines `ddd-`).
        async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, line: &mut String) {
            loop {
                line.clear();
                r.read_line(line).await.expect("smtp read");
                assert!(!line.is_empty(), "smtp closed");
                if line.as_bytes().get(3) != Some(&b'-') {
                    return;
                }
            }
        }
        reply(&mut r, &mut line).await;
        for cmd in [
            format!("{hello} t\r\n"),
            "MAIL FROM:<t@example.test>\r\n".into(),
            "RCPT TO:<alice@example.test>\r\n".into(),
            "DATA\r\n".into(),
            format!("{body}.\r\n"),
            "QUIT\r\n".into(),
        ] {
            w.write_all(cmd.as_bytes()).await.expect("smtp write");
            reply(&mut r, &mut line).await;
            assert!(!line.starts_with('4') && !line.starts_with('5'), "{line}");
        }
    }

    /// Runs `commands` one at a time against the server, feeding every line and reply to
    /// `checks`, and returns the violations.
    async fn session(
        checks: &mut Pop3Checks,
        name: &str,
        addr: std::net::SocketAddr,
        commands: &[&str],
    ) -> (Vec<Violation>, Vec<LineReply>) {
        let mut s = TcpStream::connect(addr).await.expect("pop3 connect");
        let mut framer = ReplyFramer::new(MAX_REPLY);
        let mut out = Vec::new();
        let mut replies = Vec::new();
        checks.session_opened(name, "alice");
        framer.expect(Expect::SingleLine);
        let mut buf = vec![0u8; 4096];
        let mut read = async |s: &mut TcpStream, framer: &mut ReplyFramer| loop {
            if let Ok(Framed::Reply(r)) = framer.next_reply() {
                return r;
            }
            let n = tokio::time::timeout(WAIT, s.read(&mut buf))
                .await
                .expect("pop3 reply in time")
                .expect("pop3 read");
            assert!(n > 0, "pop3 closed");
            framer.feed(&buf[..n]);
        };
        let to_line_reply = |r: mailtape_proto::pop3::Reply| {
            let mut lines = vec![r.status_line().to_vec()];
            let status = lines[0].strip_suffix(b"\r\n").map(<[u8]>::to_vec);
            lines[0] = status.unwrap_or_else(|| lines[0].clone());
            if let Some(body) = &r.lines {
                lines.extend(body.iter().cloned());
                lines.push(b".".to_vec());
            }
            LineReply {
                kind: match r.status {
                    ReplyStatus::Ok => ReplyKind::Positive,
                    ReplyStatus::Err => ReplyKind::Negative,
                    ReplyStatus::Continuation => ReplyKind::Intermediate,
                    _ => ReplyKind::Malformed,
                },
                line_ending: if r.bare_lf() {
                    LineEnding::Lf
                } else {
                    LineEnding::Crlf
                },
                raw: r.raw,
                lines,
                code: 0,
            }
        };
        let greeting = read(&mut s, &mut framer).await;
        out.extend(checks.server_reply(name, &to_line_reply(greeting)));
        for cmd in commands {
            let line = format!("{cmd}\r\n");
            let shape = parse_command(line.as_bytes()).map_or(Expect::SingleLine, |c| c.expect());
            framer.expect(shape);
            out.extend(checks.client_line(name, line.as_bytes()));
            s.write_all(line.as_bytes()).await.expect("pop3 write");
            let r = to_line_reply(read(&mut s, &mut framer).await);
            out.extend(checks.server_reply(name, &r));
            replies.push(r);
        }
        out.extend(checks.session_closed(name));
        (out, replies)
    }

    /// Two sessions over alice's two fresh messages (the first has a line starting with `.`),
    /// touching every rule's territory; no violation may come out.
    async fn exercise(pop3: std::net::SocketAddr) {
        let mut checks = Pop3Checks::new(SharedModel::default());
        let (mut all, replies) = session(
            &mut checks,
            "a",
            pop3,
            &[
                "CAPA",
                "STAT",
                "USER alice",
                "PASS alicepw",
                "STAT",
                "LIST",
                "UIDL",
                "RETR 1",
                "RETR 2",
                "LIST 1",
                "UIDL 2",
                "TOP 1 0",
                "DELE 1",
                "RETR 1",
                "LIST",
                "UIDL",
                "STAT",
                "USER alice",
                "RSET",
                "LIST",
                "STAT",
                "NOOP",
                "QUIT",
            ],
        )
        .await;
        // The session really reached the messages: RETR 1 (the 8th command) returned the
        // stuffed line, so the size and stuffing rules were exercised.
        assert!(replies[4].lines[0].starts_with(b"+OK 2 "), "STAT");
        assert!(replies[7].lines.contains(&b".starts with a dot".to_vec()));
        let (second, replies) = session(
            &mut checks,
            "b",
            pop3,
            &[
                "AUTH PLAIN AGFsaWNlAGFsaWNlcHc=",
                "STAT",
                "LIST",
                "RETR 1",
                "QUIT",
            ],
        )
        .await;
        all.extend(second);
        assert_eq!(replies[0].kind, ReplyKind::Positive, "AUTH PLAIN");
        // Leave the maildrop empty, so the test can run again on the same server.
        let (third, _) = session(
            &mut checks,
            "c",
            pop3,
            &[
                "USER alice",
                "PASS alicepw",
                "DELE 1",
                "DELE 2",
                "STAT",
                "LIST",
                "QUIT",
            ],
        )
        .await;
        all.extend(third);
        assert_eq!(all, Vec::new());
    }

    /// The same against the CI Dovecot (`ci/dovecot.sh start`, then `eval "$(ci/dovecot.sh
    /// env)"`); skipped when it is not configured. Alice's maildrop must start empty; the test
    /// empties it again.
    #[tokio::test]
    async fn dovecot_sessions_are_clean() {
        let (Ok(pop3), Ok(lmtp)) = (
            std::env::var("MAILTAPE_POP3CHECKS_DOVECOT_POP3"),
            std::env::var("MAILTAPE_POP3CHECKS_DOVECOT_LMTP"),
        ) else {
            eprintln!("SKIP: MAILTAPE_POP3CHECKS_DOVECOT_POP3/_LMTP (host:port) are not set");
            return;
        };
        let (Ok(pop3), Ok(lmtp)) = (pop3.parse(), lmtp.parse()) else {
            panic!("MAILTAPE_POP3CHECKS_DOVECOT_POP3/_LMTP must be host:port");
        };
        deliver(
            lmtp,
            "LHLO",
            "Subject: one\r\n\r\n..starts with a dot\r\nplain\r\n",
        )
        .await;
        deliver(lmtp, "LHLO", "Subject: two\r\n\r\nsecond\r\n").await;
        exercise(pop3).await;
    }

    #[tokio::test]
    async fn reference_server_sessions_are_clean() {
        let config = reference_server::Config {
            imap: None,
            imaps: None,
            pop3s: None,
            submission: None,
            ..reference_server::Config::default()
        };
        let running = reference_server::start(config).await.expect("start");
        let (Some(pop3), Some(smtp)) = (running.pop3, running.smtp) else {
            panic!("no listeners");
        };
        deliver(
            smtp,
            "EHLO",
            "Subject: one\r\n\r\n..starts with a dot\r\nplain\r\n",
        )
        .await;
        deliver(smtp, "EHLO", "Subject: two\r\n\r\nsecond\r\n").await;
        exercise(pop3).await;
        running.shutdown().await;
    }
}

/// Runs several sessions of one checks instance in turn (each a script as for [`run`], as
/// `(session, account, script)`: the session is opened for the account and logs in with
/// `USER account`), and returns the rules broken by each.
fn sessions(list: &[(&str, &str, &[&str])]) -> Vec<BTreeSet<&'static str>> {
    let list: Vec<(&str, &str, &str, &[&str])> =
        list.iter().map(|&(n, a, s)| (n, a, a, s)).collect();
    sessions_as(&list)
}

/// Like [`sessions`], with `(session, opened for, USER login, script)`.
fn sessions_as(list: &[(&str, &str, &str, &[&str])]) -> Vec<BTreeSet<&'static str>> {
    let mut c = Pop3Checks::new(SharedModel::default());
    let mut all = Vec::new();
    for (name, account, login, script) in list {
        c.session_opened(name, account);
        let mut got = Vec::new();
        let user = format!("C: USER {login}");
        let login_lines = ["S: +OK ready", &user, "S: +OK", "C: PASS pw", "S: +OK"];
        for step in login_lines.iter().chain(script.iter()) {
            if let Some(line) = step.strip_prefix("C: ") {
                got.extend(c.client_line(name, format!("{line}\r\n").as_bytes()));
            } else if let Some(r) = step.strip_prefix("S: ") {
                let raw: String = r.split('|').map(|l| format!("{l}\r\n")).collect();
                got.extend(c.server_reply(name, &reply(&raw)));
            }
        }
        got.extend(c.session_closed(name));
        all.push(got.iter().map(|v| v.rule).collect());
    }
    all
}

const WHOLE_AB: [&str; 4] = [
    "C: LIST",
    "S: +OK|1 20|2 18|.",
    "C: UIDL",
    "S: +OK|1 a1|2 b2|.",
];

#[test]
fn a_unique_id_that_changes_in_the_next_session_is_caught() {
    let later: [&str; 4] = [
        "C: LIST",
        "S: +OK|1 20|2 18|.",
        "C: UIDL",
        "S: +OK|1 a1|2 zz|.",
    ];
    let got = sessions(&[("p", "alice", &WHOLE_AB), ("q", "alice", &later)]);
    assert_eq!(got[0], BTreeSet::new());
    assert_eq!(got[1], only("pop3.uidl.stable"));
}

#[test]
fn unique_ids_kept_across_sessions_are_silent() {
    // New mail after the first session: its messages open the second listing.
    let later: [&str; 4] = [
        "C: UIDL",
        "S: +OK|1 a1|2 b2|3 c3|.",
        "C: LIST",
        "S: +OK|1 20|2 18|3 7|.",
    ];
    let got = sessions(&[("p", "alice", &WHOLE_AB), ("q", "alice", &later)]);
    assert!(got.iter().all(BTreeSet::is_empty), "{got:?}");
}

#[test]
fn deletions_committed_at_quit_renumber_without_a_finding() {
    let first: Vec<&str> = WHOLE_AB
        .iter()
        .copied()
        .chain(["C: DELE 1", "S: +OK", "C: QUIT", "S: +OK bye"])
        .collect();
    let later: [&str; 4] = ["C: LIST", "S: +OK|1 18|.", "C: UIDL", "S: +OK|1 b2|."];
    let got = sessions(&[("p", "alice", &first), ("q", "alice", &later)]);
    assert!(got.iter().all(BTreeSet::is_empty), "{got:?}");
    // Without QUIT nothing was committed: the same listing must come back, ids and all.
    let first: Vec<&str> = WHOLE_AB
        .iter()
        .copied()
        .chain(["C: DELE 1", "S: +OK"])
        .collect();
    let later: [&str; 4] = [
        "C: LIST",
        "S: +OK|1 20|2 18|.",
        "C: UIDL",
        "S: +OK|1 new|2 b2|.",
    ];
    let got = sessions(&[("p", "alice", &first), ("q", "alice", &later)]);
    assert_eq!(got[1], only("pop3.uidl.stable"));
}

#[test]
fn other_accounts_moved_messages_and_partial_views_prove_nothing() {
    let renamed: [&str; 4] = [
        "C: LIST",
        "S: +OK|1 20|2 18|.",
        "C: UIDL",
        "S: +OK|1 x|2 y|.",
    ];
    // Another account's maildrop.
    let got = sessions(&[("p", "alice", &WHOLE_AB), ("q", "bob", &renamed)]);
    assert!(got.iter().all(BTreeSet::is_empty), "{got:?}");
    // Sizes that do not open the new listing: not provably the same messages.
    let other: [&str; 4] = [
        "C: LIST",
        "S: +OK|1 18|2 20|.",
        "C: UIDL",
        "S: +OK|1 x|2 y|.",
    ];
    let got = sessions(&[("p", "alice", &WHOLE_AB), ("q", "alice", &other)]);
    assert!(got.iter().all(BTreeSet::is_empty), "{got:?}");
    // Equal sizes, but the ids moved rather than changed (an expunge and a delivery).
    let shifted: [&str; 4] = [
        "C: LIST",
        "S: +OK|1 20|2 20|.",
        "C: UIDL",
        "S: +OK|1 b2|2 c3|.",
    ];
    let same_size: [&str; 4] = [
        "C: LIST",
        "S: +OK|1 20|2 20|.",
        "C: UIDL",
        "S: +OK|1 a1|2 b2|.",
    ];
    let got = sessions(&[("p", "alice", &same_size), ("q", "alice", &shifted)]);
    assert!(got.iter().all(BTreeSet::is_empty), "{got:?}");
    // A listing taken after a DELE is not the whole maildrop.
    let after_dele: [&str; 6] = [
        "C: DELE 1",
        "S: +OK",
        "C: LIST",
        "S: +OK|2 18|.",
        "C: UIDL",
        "S: +OK|2 zz|.",
    ];
    let got = sessions(&[("p", "alice", &WHOLE_AB), ("q", "alice", &after_dele)]);
    assert!(got.iter().all(BTreeSet::is_empty), "{got:?}");
}

#[test]
fn the_login_sent_with_user_names_the_maildrop() {
    // Session q was opened for bob but logs in as alice (LOGIN sends USER alice).
    let later: [&str; 4] = [
        "C: LIST",
        "S: +OK|1 20|2 18|.",
        "C: UIDL",
        "S: +OK|1 a1|2 zz|.",
    ];
    let got = sessions_as(&[
        ("p", "alice", "alice", &WHOLE_AB),
        ("q", "bob", "alice", &later),
    ]);
    assert_eq!(got[1], only("pop3.uidl.stable"));
}
