//! A small, deliberately dumb IMAP server for tests: it answers the harness's setup commands
//! plausibly and lets each test replace the answer to any command, so one planted misbehaviour
//! can be checked against the rule that must catch it. It knows no IMAP meaning beyond that.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the fake does for one command.
pub enum Reply {
    /// Use the built-in plausible answer.
    Default,
    /// Send these bytes (they must include the tagged completion if one is wanted).
    Bytes(Vec<u8>),
    /// Send these bytes, then close the connection.
    BytesThenClose(Vec<u8>),
}

/// One received command: connection number (from 0), tag, upper-case verb, the rest.
pub struct Cmd<'a> {
    pub conn: usize,
    pub tag: &'a str,
    pub verb: &'a str,
    pub args: &'a str,
}

pub type Behaviour = Arc<dyn Fn(&Cmd<'_>) -> Reply + Send + Sync>;

pub struct Fake {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn default_reply(cmd: &Cmd<'_>) -> Vec<u8> {
    let t = cmd.tag;
    match cmd.verb {
        "CAPABILITY" => format!("* CAPABILITY IMAP4rev1\r\n{t} OK done\r\n"),
        "LIST" if cmd.args.trim() == "\"\" \"\"" => format!("* LIST (\\Noselect) \"/\" \"\"\r\n{t} OK done\r\n"),
        "LIST" => format!("{t} OK done\r\n"),
        "SELECT" | "EXAMINE" => format!(
            "* 2 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 42] ok\r\n* OK [UIDNEXT 10] ok\r\n* FLAGS (\\Seen \\Flagged \\Deleted)\r\n{t} OK [READ-WRITE] done\r\n"
        ),
        "LOGOUT" => format!("* BYE bye\r\n{t} OK done\r\n"),
        _ => format!("{t} OK done\r\n"),
    }
    .into_bytes()
}

/// Start a fake on 127.0.0.1 with an ephemeral port.
pub async fn start(behaviour: Behaviour) -> Fake {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind a loopback port for the fake server: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("no local address: {e}"),
    };
    let counter = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let conn = counter.fetch_add(1, Ordering::SeqCst);
            let behaviour = behaviour.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                if w.write_all(b"* OK fake ready\r\n").await.is_err() {
                    return;
                }
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match r.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    // Swallow literals: `{n}` gets a `+`, `{n+}` none; then read n bytes and the rest.
                    while let Some(n) = literal_len(&line) {
                        if !line.ends_with(b"+}\r\n") && w.write_all(b"+ go\r\n").await.is_err() {
                            return;
                        }
                        let mut data = vec![0u8; n];
                        if r.read_exact(&mut data).await.is_err() {
                            return;
                        }
                        let mut more = Vec::new();
                        if r.read_until(b'\n', &mut more).await.is_err() {
                            return;
                        }
                        line.extend_from_slice(b"<literal>");
                        line.extend_from_slice(&more);
                    }
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    let mut parts = text.splitn(3, ' ');
                    let tag = parts.next().unwrap_or("").to_string();
                    let verb = parts.next().unwrap_or("").to_ascii_uppercase();
                    let args = parts.next().unwrap_or("").to_string();
                    let cmd = Cmd {
                        conn,
                        tag: &tag,
                        verb: &verb,
                        args: &args,
                    };
                    let (bytes, close) = match behaviour(&cmd) {
                        Reply::Default => (default_reply(&cmd), verb == "LOGOUT"),
                        Reply::Bytes(b) => (b, false),
                        Reply::BytesThenClose(b) => (b, true),
                    };
                    if w.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    Fake { addr, task }
}

fn literal_len(line: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(line).ok()?.trim_end();
    let s = s.strip_suffix('}')?;
    let open = s.rfind('{')?;
    s[open + 1..].trim_end_matches('+').parse().ok()
}
