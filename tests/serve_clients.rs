//! Real clients against `mailtape serve`: Python's smtplib/imaplib/poplib and curl deliver,
//! find, fetch, flag and download messages over the plain and STARTTLS ports, and what they
//! read back is byte for byte what was sent below the trace fields the server adds.
//! Each test skips (printing SKIP) only when python3 or curl is not installed.

#![cfg(unix)]
mod support;

use std::process::Command;

use support::serve::{Serve, have, run_bounded};

/// The Python side of [`python_clients`]: one script, run once, printing a JSON report that
/// the test checks. Every socket has a timeout so a stuck server fails instead of hanging.
/// The submission port's certificate is self-signed and `serve` does not print it, so the
/// STARTTLS context is deliberately unverified (`ssl._create_unverified_context()`).
const PYTHON: &str = r#"
import base64, imaplib, json, poplib, smtplib, ssl, sys

host = "127.0.0.1"
smtp_port, sub_port, imap_port, pop_port = (int(p) for p in sys.argv[1:5])
plain_msg, sub_msg = sys.argv[5], sys.argv[6]
T = 20
out = {}
b64 = lambda b: base64.b64encode(b).decode()

with smtplib.SMTP(host, smtp_port, timeout=T) as s:
    s.ehlo("client.test")
    out["smtp_refused"] = s.sendmail("bob@example.test", ["alice@example.test"], plain_msg)

with smtplib.SMTP(host, sub_port, timeout=T) as s:
    s.ehlo("client.test")
    out["sub_starttls_offered"] = s.has_extn("starttls")
    s.starttls(context=ssl._create_unverified_context())
    s.ehlo("client.test")
    # Submission demands AUTH: MAIL before it must be refused.
    try:
        s.sendmail("alice@example.test", ["alice@example.test"], sub_msg)
        out["sub_unauth_code"] = 250
    except smtplib.SMTPSenderRefused as e:
        out["sub_unauth_code"] = e.smtp_code
        s.rset()
    s.login("alice", "alicepw")
    out["sub_refused"] = s.sendmail("alice@example.test", ["alice@example.test"], sub_msg)

def imap_login():
    m = imaplib.IMAP4(host, imap_port, timeout=T)
    m.login("alice", "alicepw")
    typ, data = m.select("INBOX")
    assert typ == "OK", (typ, data)
    return m

m = imap_login()
found = {}
for subject in ("smtplib plain", "smtplib submission"):
    typ, data = m.search(None, "SUBJECT", '"%s"' % subject)
    assert typ == "OK", (typ, data)
    found[subject] = data[0].decode().split()
out["search"] = found
bodies = {}
for subject, ids in found.items():
    typ, data = m.fetch(ids[0], "(BODY[])")
    assert typ == "OK", (typ, data)
    bodies[subject] = b64(data[0][1])
out["imap_bodies"] = bodies
plain_id = found["smtplib plain"][0]
typ, data = m.store(plain_id, "+FLAGS", "(\\Flagged)")
assert typ == "OK", (typ, data)
m.logout()

m = imap_login()
typ, data = m.fetch(plain_id, "(FLAGS)")
assert typ == "OK", (typ, data)
out["flags_after_reconnect"] = data[0].decode()
m.logout()

p = poplib.POP3(host, pop_port, timeout=T)
p.user("alice")
p.pass_("alicepw")
count, _size = p.stat()
retr = {}
for n in range(1, count + 1):
    _resp, lines, _octets = p.retr(n)
    retr[str(n)] = b64(b"".join(l + b"\r\n" for l in lines))
out["pop_retr"] = retr
_resp, lines, _octets = p.uidl()
out["pop_uidl"] = [l.decode() for l in lines]
p.quit()

print(json.dumps(out))
"#;

/// A message with a leading-dot line (dot-stuffing must round-trip) and CRLF endings.
fn message(subject: &str, from: &str) -> String {
    format!(
        "From: {from}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@client.test>\r\n\r\nHello Alice,\r\n.a line that starts with a dot\r\n\
         ..and two\r\nbye\r\n",
        subject.replace(' ', "-")
    )
}

/// `delivered` must be `Return-Path:` + a folded `Received:` field, then exactly `sent`.
fn assert_delivered(delivered: &[u8], sent: &str, reverse_path: &str) {
    let text = String::from_utf8_lossy(delivered);
    let prefix = text
        .strip_suffix(sent)
        .unwrap_or_else(|| panic!("delivered copy does not end with what was sent:\n{text}"));
    let mut lines = prefix.split_terminator("\r\n");
    assert_eq!(
        lines.next(),
        Some(format!("Return-Path: <{reverse_path}>").as_str()),
        "{text}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("Received: from ")),
        "{text}"
    );
    for l in lines {
        assert!(
            l.starts_with('\t'),
            "unexpected trace line {l:?} in\n{text}"
        );
    }
}

fn b64(s: &serde_json::Value) -> Vec<u8> {
    let s = s.as_str().unwrap_or_else(|| panic!("not a string: {s}"));
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s).expect("base64")
}

#[test]
fn python_clients() {
    if !have("python3") {
        eprintln!("SKIP python_clients: python3 not installed");
        return;
    }
    let server = Serve::start(None, None);
    let plain = message("smtplib plain", "bob@example.test");
    let sub = message("smtplib submission", "alice@example.test");
    let out = run_bounded(
        Command::new("python3")
            .arg("-c")
            .arg(PYTHON)
            .arg(server.smtp.port().to_string())
            .arg(server.submission.port().to_string())
            .arg(server.imap.port().to_string())
            .arg(server.pop3.port().to_string())
            .arg(&plain)
            .arg(&sub),
    );
    assert!(out.status.success(), "python failed: {}", out.stderr);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", out.stdout_text()));

    assert_eq!(report["smtp_refused"], serde_json::json!({}), "{report}");
    assert_eq!(report["sub_starttls_offered"], true, "{report}");
    assert_eq!(report["sub_unauth_code"], 530, "{report}");
    assert_eq!(report["sub_refused"], serde_json::json!({}), "{report}");
    // Two messages in a fresh INBOX, one per subject.
    assert_eq!(
        report["search"]["smtplib plain"],
        serde_json::json!(["1"]),
        "{report}"
    );
    assert_eq!(
        report["search"]["smtplib submission"],
        serde_json::json!(["2"]),
        "{report}"
    );
    let imap_plain = b64(&report["imap_bodies"]["smtplib plain"]);
    let imap_sub = b64(&report["imap_bodies"]["smtplib submission"]);
    assert_delivered(&imap_plain, &plain, "bob@example.test");
    assert_delivered(&imap_sub, &sub, "alice@example.test");
    // The submission copy was authenticated over TLS: RFC 3848 says ESMTPSA.
    assert!(
        String::from_utf8_lossy(&imap_sub).contains(" with ESMTPSA "),
        "{}",
        String::from_utf8_lossy(&imap_sub)
    );

    let flags = report["flags_after_reconnect"].as_str().unwrap_or_default();
    assert!(flags.contains("\\Flagged"), "{report}");

    // POP3 sees the same two messages, byte for byte as IMAP served them.
    assert_eq!(b64(&report["pop_retr"]["1"]), imap_plain, "{report}");
    assert_eq!(b64(&report["pop_retr"]["2"]), imap_sub, "{report}");
    let uidl: Vec<&str> = report["pop_uidl"]
        .as_array()
        .expect("uidl list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(uidl.len(), 2, "{report}");
    let ids: Vec<(&str, &str)> = uidl
        .iter()
        .map(|l| {
            l.split_once(' ')
                .unwrap_or_else(|| panic!("UIDL line {l:?}"))
        })
        .collect();
    assert_eq!((ids[0].0, ids[1].0), ("1", "2"), "{uidl:?}");
    assert_ne!(ids[0].1, ids[1].1, "unique-ids must differ: {uidl:?}");
    for (_, id) in &ids {
        // RFC 1939 section 7: 1 to 70 characters in 0x21..0x7E.
        assert!(
            (1..=70).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{uidl:?}"
        );
    }
}

/// Runs curl with a per-transfer timeout; the output must be a success.
fn curl(args: &[&str]) -> Vec<u8> {
    let out = run_bounded(
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20"])
            .args(args),
    );
    assert!(out.status.success(), "curl {args:?}: {}", out.stderr);
    out.stdout
}

#[test]
fn curl_clients() {
    if !have("curl") {
        eprintln!("SKIP curl_clients: curl not installed");
        return;
    }
    let server = Serve::start(None, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let first = message("curl first", "bob@example.test");
    let second = message("curl second", "bob@example.test");
    for (name, text) in [("first.eml", &first), ("second.eml", &second)] {
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("write message");
        let file = file.to_string_lossy().into_owned();
        curl(&[
            &format!("smtp://{}/client.test", server.smtp),
            "--mail-from",
            "bob@example.test",
            "--mail-rcpt",
            "alice@example.test",
            "--upload-file",
            &file,
        ]);
    }

    let imap = format!("imap://{}", server.imap);
    let search = String::from_utf8_lossy(&curl(&[
        "--user",
        "alice:alicepw",
        &format!("{imap}/INBOX?SUBJECT%20%22curl%20second%22"),
    ]))
    .into_owned();
    let hits: Vec<&str> = search
        .lines()
        .find_map(|l| l.strip_prefix("* SEARCH"))
        .unwrap_or_else(|| panic!("no SEARCH response: {search:?}"))
        .split_whitespace()
        .collect();
    // In a fresh INBOX the second delivery is number 2 (and UID 2).
    assert_eq!(hits, ["2"], "{search:?}");
    let fetched = curl(&[
        "--user",
        "alice:alicepw",
        &format!("{imap}/INBOX;UID={}", hits[0]),
    ]);
    assert_delivered(&fetched, &second, "bob@example.test");

    let pop3 = format!("pop3://{}", server.pop3);
    let list = String::from_utf8_lossy(&curl(&["--user", "alice:alicepw", &format!("{pop3}/")]))
        .into_owned();
    let sizes: Vec<(usize, usize)> = list
        .lines()
        .map(|l| {
            let (n, size) = l
                .trim_end()
                .split_once(' ')
                .unwrap_or_else(|| panic!("LIST line {l:?}"));
            (
                n.parse().expect("message number"),
                size.parse().expect("size"),
            )
        })
        .collect();
    assert_eq!(sizes.len(), 2, "{list:?}");
    // RFC 1939 sizes count the CRLF-ended message as it would be retrieved.
    assert_eq!(sizes[1], (2, fetched.len()), "{list:?}");
    let retr = curl(&["--user", "alice:alicepw", &format!("{pop3}/2")]);
    assert_eq!(retr, fetched, "POP3 RETR 2 differs from the IMAP fetch");
    let first_retr = curl(&["--user", "alice:alicepw", &format!("{pop3}/1")]);
    assert_delivered(&first_retr, &first, "bob@example.test");
    assert_eq!(sizes[0], (1, first_retr.len()), "{list:?}");
}
