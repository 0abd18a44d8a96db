//! `mailtape serve --data-dir`: an acknowledged change survives SIGKILL right after the
//! tagged OK, the accounts file is honoured, and SIGTERM stops the server cleanly. The same
//! holds for SMTP (the `250` to the final `.` of DATA) and POP3 (the `+OK` to QUIT), and a
//! POP3 session killed before QUIT deletes nothing.

#![cfg(unix)]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::serve::Serve;

/// How long one step may take on a loaded CI machine.
const WAIT: Duration = Duration::from_secs(20);

/// Starts `mailtape serve` on `data` with `accounts`; the accounts line of the banner must
/// come from the file.
fn serve(data: &Path, accounts: &Path) -> Serve {
    let server = Serve::start(Some(data), Some(accounts));
    assert!(
        server
            .banner
            .iter()
            .any(|l| l.contains("carol/carolpw") && l.contains("domain mail.test")),
        "{:?}",
        server.banner
    );
    server
}

struct Imap {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Imap {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut c = Imap {
            stream,
            buf: Vec::new(),
        };
        let greeting = c.until(|l| l.starts_with("* OK"));
        assert!(greeting.contains("IMAP4rev1"), "{greeting}");
        c
    }

    /// Reads until a line for which `done` holds; returns everything read.
    fn until(&mut self, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            if let Some(line) = text.split("\r\n").find(|l| done(l)) {
                let end = text.find(line).unwrap_or(0) + line.len();
                self.buf.drain(..(end + 2).min(self.buf.len()));
                return text[..end].to_string();
            }
            assert!(start.elapsed() < WAIT, "no reply in time: {text}");
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "server closed: {text}");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a tagged command and returns the reply, which must be the tagged OK.
    fn ok(&mut self, line: &str) -> String {
        let tag = line.split(' ').next().unwrap_or_default().to_string();
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
        let reply = self.until(|l| l.starts_with(&format!("{tag} ")));
        let last = reply.rsplit("\r\n").next().unwrap_or_default();
        assert!(last.starts_with(&format!("{tag} OK")), "{line}: {reply}");
        reply
    }
}

const MESSAGE: &str = "From: x@mail.test\r\nSubject: kept\r\n\r\nsurvives kill -9\r\n";

#[test]
fn acknowledged_changes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let accounts = dir.path().join("accounts.ron");
    std::fs::write(
        &accounts,
        r#"(domain: "mail.test", accounts: [(user: "carol", password: "carolpw")])"#,
    )
    .expect("write accounts");

    let server = serve(&data, &accounts);
    let mut c = Imap::connect(server.imap);
    c.ok("a LOGIN carol@mail.test carolpw");
    c.ok("b CREATE Archive/2026");
    let appended = c.ok(&format!(
        "c APPEND INBOX (\\Flagged $Work) {{{}+}}\r\n{MESSAGE}",
        MESSAGE.len()
    ));
    assert!(appended.contains("APPENDUID"), "{appended}");
    c.ok("d SELECT INBOX");
    c.ok("e STORE 1 +FLAGS (\\Seen)");
    // SIGKILL straight after the tagged OK: nothing gets a chance to flush later.
    server.sigkill();

    let mut server = serve(&data, &accounts);
    let mut c = Imap::connect(server.imap);
    c.ok("a LOGIN carol carolpw");
    let list = c.ok("b LIST \"\" \"*\"");
    assert!(list.contains("\"Archive/2026\""), "{list}");
    c.ok("c SELECT INBOX");
    let fetch = c.ok("d UID FETCH 1:* (FLAGS BODY.PEEK[])");
    assert!(
        fetch.contains("UID 1 FLAGS (\\Flagged $Work \\Seen"),
        "{fetch}"
    );
    assert!(fetch.contains(MESSAGE), "{fetch}");
    assert_eq!(fetch.matches("FETCH (").count(), 1, "{fetch}");

    // The message is a plain Maildir file with the flag letters.
    let cur = data.join("carol").join("Maildir").join("cur");
    let files: Vec<String> = std::fs::read_dir(&cur)
        .expect("cur")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(":2,FS"), "{files:?}");

    // SIGTERM: a clean stop with status 0 and a goodbye to the open session.
    let pid = server.pid().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let bye = c.until(|l| l.starts_with("* BYE"));
    assert!(bye.contains("* BYE"), "{bye}");
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = server.child().try_wait().expect("try_wait") {
            break s;
        }
        assert!(start.elapsed() < WAIT, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}

/// A line-based SMTP or POP3 client over plain TCP, every read bounded by [`WAIT`].
struct Lines {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Lines {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        Lines {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).expect("write");
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 2);
                return line;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(
                n > 0,
                "server closed: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A whole SMTP reply (RFC 5321 4.2: `ddd-` lines, then `ddd `); must have `code`.
    fn smtp(&mut self, command: &str, code: &str) -> String {
        self.send(command);
        let mut reply = String::new();
        loop {
            let line = self.line();
            reply.push_str(&line);
            reply.push('\n');
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        assert!(reply.starts_with(code), "{command:?}: {reply}");
        reply
    }

    /// A single-line POP3 reply that must be `+OK`.
    fn pop_ok(&mut self, command: &str) -> String {
        self.send(command);
        let line = self.line();
        assert!(line.starts_with("+OK"), "{command:?}: {line}");
        line
    }
}

fn smtp_message(n: usize) -> String {
    format!(
        "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: durable {n}\r\n\r\n\
         delivery {n} survives kill -9\r\n"
    )
}

/// Delivers `message` to alice over SMTP and returns as soon as the final `250` arrived,
/// leaving the connection open (no QUIT) so nothing later can help it reach the disk.
fn smtp_deliver(addr: SocketAddr, message: &str) -> Lines {
    let mut s = Lines::connect(addr);
    let greeting = s.line();
    assert!(greeting.starts_with("220"), "{greeting}");
    s.smtp("EHLO client.test\r\n", "250");
    s.smtp("MAIL FROM:<bob@example.test>\r\n", "250");
    s.smtp("RCPT TO:<alice@example.test>\r\n", "250");
    s.smtp("DATA\r\n", "354");
    s.smtp(&format!("{message}.\r\n"), "250");
    s
}

/// The INBOX of alice over IMAP: its messages' full text, in order.
fn imap_inbox(addr: SocketAddr) -> String {
    let mut c = Imap::connect(addr);
    c.ok("a LOGIN alice alicepw");
    c.ok("b SELECT INBOX");
    c.ok("c FETCH 1:* (BODY.PEEK[])")
}

#[test]
fn smtp_delivery_survives_sigkill_after_250() {
    const ROUNDS: usize = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Several rounds: each SIGKILL lands right after the 250 to the final dot, while the
    // SMTP connection is still open.
    for n in 1..=ROUNDS {
        let server = Serve::start(Some(&data), None);
        let _open = smtp_deliver(server.smtp, &smtp_message(n));
        server.sigkill();
    }
    let server = Serve::start(Some(&data), None);
    let inbox = imap_inbox(server.imap);
    assert_eq!(inbox.matches("FETCH (").count(), ROUNDS, "{inbox}");
    for n in 1..=ROUNDS {
        assert!(
            inbox.contains(&smtp_message(n)),
            "message {n} lost: {inbox}"
        );
    }
}

#[test]
fn pop3_deletion_survives_sigkill_after_quit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Serve::start(Some(&data), None);
    for n in 1..=2 {
        smtp_deliver(server.smtp, &smtp_message(n));
    }

    // DELE without QUIT, then SIGKILL: RFC 1939 6 removes messages only in the UPDATE
    // state, so both must still be there.
    let mut p = Lines::connect(server.pop3);
    p.line();
    p.pop_ok("USER alice\r\n");
    p.pop_ok("PASS alicepw\r\n");
    p.pop_ok("DELE 1\r\n");
    server.sigkill();
    let server = Serve::start(Some(&data), None);
    let inbox = imap_inbox(server.imap);
    assert_eq!(inbox.matches("FETCH (").count(), 2, "{inbox}");

    // DELE then QUIT; SIGKILL right after the +OK to QUIT.
    let mut p = Lines::connect(server.pop3);
    p.line();
    p.pop_ok("USER alice\r\n");
    p.pop_ok("PASS alicepw\r\n");
    let stat = p.pop_ok("STAT\r\n");
    assert!(stat.starts_with("+OK 2 "), "{stat}");
    p.pop_ok("DELE 1\r\n");
    p.pop_ok("QUIT\r\n");
    server.sigkill();

    let server = Serve::start(Some(&data), None);
    let inbox = imap_inbox(server.imap);
    assert_eq!(inbox.matches("FETCH (").count(), 1, "{inbox}");
    assert!(
        !inbox.contains("Subject: durable 1"),
        "deleted message back: {inbox}"
    );
    assert!(inbox.contains(&smtp_message(2)), "{inbox}");
    let mut p = Lines::connect(server.pop3);
    p.line();
    p.pop_ok("USER alice\r\n");
    p.pop_ok("PASS alicepw\r\n");
    let stat = p.pop_ok("STAT\r\n");
    assert!(stat.starts_with("+OK 1 "), "{stat}");
    p.pop_ok("RETR 1\r\n");
    let mut text = String::new();
    loop {
        let line = p.line();
        if line == "." {
            break;
        }
        text.push_str(&line);
        text.push_str("\r\n");
    }
    assert!(text.ends_with(&smtp_message(2)), "{text}");
    p.pop_ok("QUIT\r\n");
}

/// Puts a plain file where alice's `Maildir/tmp/` directory was, so that writing any new
/// message fails (also for root, unlike a permission change).
fn break_alice_tmp(data: &Path) {
    let tmp = data.join("alice").join("Maildir").join("tmp");
    std::fs::remove_dir(&tmp).expect("remove tmp/");
    std::fs::write(&tmp, b"").expect("file in place of tmp/");
}

#[test]
fn imap_append_refused_when_it_cannot_be_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Serve::start(Some(&data), None);
    break_alice_tmp(&data);
    let mut c = Imap::connect(server.imap);
    c.ok("a LOGIN alice alicepw");
    let message = smtp_message(1);
    c.stream
        .write_all(format!("b APPEND INBOX {{{}+}}\r\n{message}\r\n", message.len()).as_bytes())
        .expect("write");
    let reply = c.until(|l| l.starts_with("b "));
    assert!(
        reply
            .rsplit("\r\n")
            .next()
            .unwrap_or_default()
            .starts_with("b NO"),
        "an unwritten APPEND was acknowledged: {reply}"
    );
}

/// RFC 5321 6.1: a `250` to the final dot means the server has taken responsibility for the
/// message, so a delivery it could not write must get a 4yz (and must not stay in memory,
/// or the client's retry would deliver it twice).
#[test]
fn smtp_refuses_a_delivery_it_cannot_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Serve::start(Some(&data), None);
    break_alice_tmp(&data);
    let mut s = Lines::connect(server.smtp);
    s.line();
    s.smtp("EHLO client.test\r\n", "250");
    s.smtp("MAIL FROM:<bob@example.test>\r\n", "250");
    s.smtp("RCPT TO:<alice@example.test>\r\n", "250");
    s.smtp("DATA\r\n", "354");
    s.smtp(&format!("{}.\r\n", smtp_message(1)), "4");
}
