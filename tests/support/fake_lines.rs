//! A deliberately dumb line-protocol server for tests (POP3 or SMTP): it sends a greeting,
//! then answers each line the client sends with whatever the test's behaviour returns. SMTP
//! message content after a `354` is swallowed up to the final `.` and answered like a line
//! `.`, so a behaviour only sees commands. It knows nothing else of either protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One line the client sent: connection number (from 0) and the line without CRLF.
pub struct Line<'a> {
    pub conn: usize,
    pub text: &'a str,
}

pub type Behaviour = Arc<dyn Fn(&Line<'_>) -> Vec<u8> + Send + Sync>;

pub struct FakeLines {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLines {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(greeting: &'static [u8], behaviour: Behaviour) -> FakeLines {
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
                if w.write_all(greeting).await.is_err() {
                    return;
                }
                let mut in_data = false;
                let mut line = String::new();
                loop {
                    line.clear();
                    match r.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let text = line.trim_end_matches(['\r', '\n']);
                    if in_data && text != "." {
                        continue;
                    }
                    in_data = false;
                    let reply = behaviour(&Line { conn, text });
                    if reply.starts_with(b"354") {
                        in_data = true;
                    }
                    if w.write_all(&reply).await.is_err() {
                        return;
                    }
                    if text.eq_ignore_ascii_case("QUIT") {
                        return;
                    }
                }
            });
        }
    });
    FakeLines { addr, task }
}
