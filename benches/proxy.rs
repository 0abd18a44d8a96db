//! `cargo bench --bench proxy`: what `mailtape record` costs a client that talks through it.
//!
//! Against the bundled reference server (in-process, loopback), the same client work runs
//! straight to the server and through a recording proxy, alternately, several rounds:
//! 1. round trips: NOOP after NOOP, each waiting for its completion (latency-bound);
//! 2. bulk: APPEND of a 4 MiB message as one literal and FETCH of it back (throughput-bound;
//!    the proxy relays every byte and keeps a capped copy for the transcript).
//!
//! Reported: medians of each, and the ratio proxy / direct measured in the same go, which is
//! what holds on a noisy machine. Not a test: it prints numbers and asserts nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mailtape::record::{Options, Recorder, Route};
use mailtape::script::Protocol;
use mailtape::target::{Endpoint, Security, Timeouts, TlsOptions};
use reference_server::TlsSource;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ROUNDS: usize = 5;
const NOOPS: usize = 2000;
const BULK: usize = 4 * 1024 * 1024;

/// A line-at-a-time IMAP client, enough for NOOP, APPEND and FETCH.
struct Client {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    line: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let (r, w) = s.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
            line: Vec::new(),
        };
        c.read_line().await; // greeting
        c.command("l LOGIN alice alicepw", "l").await;
        c
    }

    async fn read_line(&mut self) -> &[u8] {
        self.line.clear();
        let n = self
            .r
            .read_until(b'\n', &mut self.line)
            .await
            .expect("read");
        assert!(n > 0, "the server closed the connection");
        &self.line
    }

    /// Sends a command and reads up to its tagged completion, skipping literal data.
    async fn command(&mut self, text: &str, tag: &str) {
        self.w
            .write_all(format!("{text}\r\n").as_bytes())
            .await
            .expect("write");
        self.until(tag).await;
    }

    async fn until(&mut self, tag: &str) {
        let done = format!("{tag} ");
        loop {
            let line = self.read_line().await.to_vec();
            if let Some(n) = literal(&line) {
                let mut rest = vec![0; n];
                self.r.read_exact(&mut rest).await.expect("literal");
            }
            if line.starts_with(done.as_bytes()) {
                assert!(line[done.len()..].starts_with(b"OK"), "{tag} failed");
                return;
            }
        }
    }

    async fn append_and_fetch(&mut self, mailbox: &str, message: &[u8]) {
        let head = format!("a APPEND {mailbox} {{{}}}\r\n", message.len());
        self.w.write_all(head.as_bytes()).await.expect("write");
        let line = self.read_line().await;
        assert!(line.starts_with(b"+"), "no continuation");
        self.w.write_all(message).await.expect("write");
        self.w.write_all(b"\r\n").await.expect("write");
        self.until("a").await;
        self.command(&format!("s SELECT {mailbox}"), "s").await;
        self.command("f FETCH * BODY.PEEK[]", "f").await;
        self.command("d STORE 1:* +FLAGS (\\Deleted)", "d").await;
        self.command("e EXPUNGE", "e").await;
        self.command("u UNSELECT", "u").await;
    }
}

/// The size of a literal announced at the end of a line, `{N}\r\n`.
fn literal(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = line[open + 1..].strip_suffix(b"}")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

async fn round_trips(addr: SocketAddr) -> Duration {
    let mut c = Client::connect(addr).await;
    let started = Instant::now();
    for _ in 0..NOOPS {
        c.command("n NOOP", "n").await;
    }
    started.elapsed()
}

async fn bulk(addr: SocketAddr, mailbox: &str, message: &[u8]) -> Duration {
    let mut c = Client::connect(addr).await;
    let started = Instant::now();
    c.append_and_fetch(mailbox, message).await;
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        tls: Duration::from_secs(5),
        read: Duration::from_secs(60),
    };
    let (target, running) = match mailtape::cli::reference_target(timeouts).await {
        Ok(t) => t,
        Err(e) => panic!("reference server: {e}"),
    };
    let Some(imap) = target
        .endpoints
        .iter()
        .find(|e| e.protocol == Protocol::Imap)
        .cloned()
    else {
        panic!("the reference server has no IMAP endpoint");
    };
    let direct: SocketAddr = format!("{}:{}", imap.host, imap.port)
        .parse()
        .expect("address");
    let dir = tempfile::tempdir().expect("tempdir");
    let recorder = Recorder::bind(Options {
        routes: vec![Route {
            listen: "127.0.0.1:0".parse().expect("addr"),
            upstream: Endpoint {
                security: Security::Plain,
                ..imap
            },
        }],
        output: dir.path().join("bench.ron"),
        per_connection: false,
        keep_secrets: false,
        capture_uidvalidity: false,
        connections: None,
        cert: TlsSource::Generate,
        cert_out: None,
        tls: TlsOptions::default(),
        timeouts,
    })
    .await
    .expect("the proxy binds");
    let proxied = recorder.local_addr().expect("proxy address");
    let proxy = tokio::spawn(recorder.run(std::future::pending()));

    // One mailbox for the bulk runs, created straight at the server.
    let mut setup = Client::connect(direct).await;
    setup.command("c CREATE bench", "c").await;
    let mut message = b"Subject: bulk\r\n\r\n".to_vec();
    while message.len() < BULK {
        message.extend_from_slice(&[b'x'; 76]);
        message.extend_from_slice(b"\r\n");
    }

    let (mut noop_direct, mut noop_proxy, mut bulk_direct, mut bulk_proxy) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        noop_direct.push(round_trips(direct).await);
        noop_proxy.push(round_trips(proxied).await);
        bulk_direct.push(bulk(direct, "bench", &message).await);
        bulk_proxy.push(bulk(proxied, "bench", &message).await);
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / NOOPS as f64;
    let (nd, np) = (median(noop_direct), median(noop_proxy));
    let (bd, bp) = (median(bulk_direct), median(bulk_proxy));
    // APPEND sends the message once and FETCH returns it once.
    let mb = |d: Duration| 2.0 * message.len() as f64 / d.as_secs_f64() / 1e6;
    println!("mailtape record proxy vs direct, reference server on loopback, median of {ROUNDS}");
    println!(
        "  NOOP round trip:     direct {:7.1} us   proxy {:7.1} us   ratio {:.2}x",
        per(nd),
        per(np),
        np.as_secs_f64() / nd.as_secs_f64()
    );
    println!(
        "  4 MiB APPEND+FETCH:  direct {:7.1} MB/s proxy {:7.1} MB/s ratio {:.2}x (time)",
        mb(bd),
        mb(bp),
        bp.as_secs_f64() / bd.as_secs_f64()
    );
    proxy.abort();
    running.shutdown().await;
}
