//! A real third-party client: Python's imaplib (python3 is part of every machine image of this
//! project) runs a short session, including STARTTLS trusting `Running::certificate`.

mod common;

use std::process::Command;

const SCRIPT: &str = r#"
import imaplib, ssl, sys
port, cert_hex = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cadata=bytes.fromhex(cert_hex))
m = imaplib.IMAP4("127.0.0.1", port)
m.starttls(ssl_context=ctx)
assert m.login("alice@example.test", "alicepw")[0] == "OK"
msg = b"From: py@example.test\r\nSubject: from python\r\n\r\nhello from imaplib\r\n"
typ, data = m.append("INBOX", r"(\Flagged)", None, msg)
assert typ == "OK" and b"APPENDUID" in data[0], (typ, data)
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"1", (typ, data)
typ, data = m.search(None, "SUBJECT", '"from python"')
assert data[0] == b"1", data
typ, data = m.fetch("1", "(BODY.PEEK[TEXT] FLAGS)")
assert data[0][1] == b"hello from imaplib\r\n", data
typ, data = m.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
assert typ == "OK", (typ, data)
typ, data = m.expunge()
assert typ == "OK" and data[0] == b"1", (typ, data)
typ, data = m.list()
assert typ == "OK" and any(b"INBOX" in d for d in data), data
m.logout()
print("imaplib ok")
"#;

#[tokio::test]
async fn python_imaplib_session_with_starttls() {
    let running = common::server().await;
    let port = running.imap.expect("imap").port().to_string();
    let cert_hex: String = running
        .certificate
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", SCRIPT, &port, &cert_hex])
            .output()
    })
    .await
    .expect("join")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("imaplib ok"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    running.shutdown().await;
}
