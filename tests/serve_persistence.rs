//! `mailtape serve --data-dir`: an acknowledged change survives SIGKILL right after the
//! tagged OK, the accounts file is honoured, and SIGTERM stops the server cleanly.

#![cfg(unix)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one step may take on a loaded CI machine.
const WAIT: Duration = Duration::from_secs(20);

/// A `mailtape serve` child, killed (by its pid) if the test ends early.
struct Server {
    child: Child,
    imap: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, accounts: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailtape"))
        .args(["serve", "--imap", "127.0.0.1:0", "--imaps", "127.0.0.1:0"])
        .args(["--pop3", "127.0.0.1:0", "--pop3s", "127.0.0.1:0"])
        .args(["--smtp", "127.0.0.1:0", "--submission", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .arg("--accounts")
        .arg(accounts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mailtape serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut imap = None;
    let mut banner = Vec::new();
    while imap.is_none() {
        let line = lines
            .next()
            .expect("serve printed its addresses")
            .expect("read");
        if let Some(addr) = line.strip_prefix("imap   imap://") {
            imap = Some(addr.trim().parse().expect("address"));
        }
        banner.push(line);
    }
    // The rest of the banner: the accounts line must come from the file.
    for line in lines.by_ref() {
        let line = line.expect("read");
        let done = line.starts_with("Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    assert!(
        banner
            .iter()
            .any(|l| l.contains("carol/carolpw") && l.contains("domain mail.test")),
        "{banner:?}"
    );
    Server {
        child,
        imap: imap.unwrap_or_else(|| unreachable!()),
    }
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

    let mut server = serve(&data, &accounts);
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
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reaped");
    drop(server);

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
    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let bye = c.until(|l| l.starts_with("* BYE"));
    assert!(bye.contains("* BYE"), "{bye}");
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = server.child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(start.elapsed() < WAIT, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}
