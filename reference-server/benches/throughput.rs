//! `cargo bench -p mailtape-reference-server --bench throughput`: how fast the reference
//! server serves ordinary client traffic, beside the CI Dovecot when it runs.
//!
//! 1. IMAP: 1, 4 and 16 concurrent sessions over loopback, each on a mailbox of its own,
//!    repeat a fixed mix of commands (NOOP, SELECT, FETCH, STORE +/-FLAGS, SEARCH, UID FETCH
//!    BODY.PEEK[], an APPEND every 10th round, a STORE \Deleted + EXPUNGE every 10th round)
//!    one command at a time (no pipelining); reported as commands per second.
//! 2. POP3: back-to-back sessions (USER, PASS, STAT, LIST, RETR of every seeded message,
//!    QUIT); reported as sessions and RETRs per second. One session at a time, because the
//!    reference server locks the maildrop (RFC 1939 8).
//! 3. SMTP: 1 and 4 concurrent sessions, each EHLO once, then MAIL FROM / RCPT TO alice /
//!    DATA of a ~1 kB message / RSET until the deadline, then QUIT; reported as messages
//!    accepted (250 after the final dot) per second. Then the messages are found in alice's
//!    INBOX over IMAP by their `X-Mailtape-Bench` header, waiting (bounded) for queued ones,
//!    and removed; the wait is reported as the delay until the last one was visible.
//!
//! With `MAILTAPE_DOVECOT_IMAP` and `MAILTAPE_DOVECOT_POP3` set (`eval "$(bash ci/dovecot.sh
//! env)"`) every IMAP and POP3 row also runs against Dovecot and the ratio reference/Dovecot is
//! printed; with `MAILTAPE_POSTFIX_SMTP` set as well (`ci/postfix.sh env`) the SMTP rows run
//! against Postfix, which delivers to that Dovecot over LMTP.
//! Dovecot is left as found: the IMAP mailboxes are created and deleted by the bench, the
//! messages seeded into INBOX for POP3 are found by a header of this run and removed by DELE,
//! and the messages sent through Postfix are found by their header and expunged by UID.
//!
//! Not a test: it prints numbers and asserts nothing. The client runs in this process, so
//! client and server share the machine's cores in both columns.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smtp_proto::response::parser::ResponseReceiver;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Barrier;

/// Length of one measurement: long enough to average out scheduling noise on a 2-core box,
/// short enough that the whole bench stays under a minute.
const MEASURE: Duration = Duration::from_secs(3);
/// Upper bound on commands (IMAP) or sessions (POP3) per measurement, beside the time bound.
const MAX_OPERATIONS: u64 = 10_000_000;
/// Concurrent IMAP sessions per row.
const IMAP_SESSIONS: [usize; 3] = [1, 4, 16];
/// Messages in each IMAP session's mailbox at the start; APPEND and EXPUNGE keep it there.
const IMAP_SEED: usize = 10;
/// Messages every POP3 session retrieves (k).
const POP3_MESSAGES: usize = 10;
/// Concurrent SMTP sessions per row.
const SMTP_SESSIONS: [usize; 2] = [1, 4];
/// Upper bound on messages per SMTP row, all sessions together, beside the time bound: it
/// bounds what lands in alice's INBOX (about 1 kB each, so at most ~100 MB) and how long
/// the cleanup takes. Set above what 3 s give the reference server on a 2-core box (about
/// 50 000), so that the cap does not shorten its measurement there.
const MAX_SMTP_MESSAGES: u64 = 100_000;
/// Longest wait, after the last 250, for queued messages to reach the INBOX before the
/// cleanup removes what has arrived. Postfix on loopback delivers within a second or two.
const DELIVERY_WAIT: Duration = Duration::from_secs(20);
/// Pause between INBOX searches while waiting; also the resolution of the reported lag.
const DELIVERY_POLL: Duration = Duration::from_millis(50);
/// UID ranges per STORE/EXPUNGE command: keeps each line far below the 64 KiB line limits
/// of both servers even if the ranges are scattered.
const UID_RANGES_PER_COMMAND: usize = 500;
/// Every read and write: a server that stalls this long is broken, not slow.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response accepted: the bench's messages are small, so more means a framing bug.
const MAX_RESPONSE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {IO_TIMEOUT:?}")]
    Timeout,
    #[error("{0}")]
    Protocol(String),
}

type Result<T> = std::result::Result<T, BenchError>;

async fn timed<T>(fut: impl Future<Output = std::io::Result<T>>) -> Result<T> {
    match tokio::time::timeout(IO_TIMEOUT, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(BenchError::Timeout),
    }
}

/// Where one server is and who logs in.
#[derive(Debug, Clone)]
struct Endpoint {
    addr: SocketAddr,
    user: String,
    pass: String,
}

/// Reads `scheme://user:pass@host:port` (the form `ci/dovecot.sh env` prints).
fn parse_url(url: &str, scheme: &str) -> Option<Endpoint> {
    let rest = url.strip_prefix(scheme)?.strip_prefix("://")?;
    let (cred, host) = rest.rsplit_once('@')?;
    let (user, pass) = cred.split_once(':')?;
    let addr = host.trim_end_matches('/').to_socket_addrs().ok()?.next()?;
    Some(Endpoint {
        addr,
        user: user.to_string(),
        pass: pass.to_string(),
    })
}

/// A unique-enough token for this run: names mailboxes and marks seeded messages.
fn run_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{}", std::process::id(), nanos % 1_000_000_000)
}

fn message(token: &str, n: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Bench <bench@example.test>\r\nTo: alice@example.test\r\nSubject: bench {n}\r\n\
         Message-ID: <bench-{token}-{n}@example.test>\r\nX-Mailtape-Bench: {token}\r\n\r\n"
    );
    for line in 0..20 {
        m.push_str(&format!(
            "line {line} of a small benchmark message body.\r\n"
        ));
    }
    m.into_bytes()
}

// --- a minimal IMAP client -----------------------------------------------------------------

/// One command at a time; reads whole responses, folding literals in by their `{n}` count.
struct Imap {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    next_tag: u64,
}

/// The literal length announced at the end of a response line, `{n}` or `{n+}`.
fn literal_len(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"\r\n")?.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = inner[open + 1..]
        .strip_suffix(b"+")
        .unwrap_or(&inner[open + 1..]);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Imap {
    async fn connect(at: &Endpoint) -> Result<Self> {
        let tcp = timed(TcpStream::connect(at.addr)).await?;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        let mut c = Imap {
            r: BufReader::new(r),
            w,
            next_tag: 0,
        };
        let greeting = c.response().await?;
        if !greeting.starts_with(b"* OK") {
            return Err(BenchError::Protocol(format!(
                "greeting: {}",
                String::from_utf8_lossy(&greeting)
            )));
        }
        c.cmd(&format!("LOGIN {} {}", at.user, at.pass)).await?;
        Ok(c)
    }

    /// One whole response: a line, plus any literals and the line parts after them.
    async fn response(&mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            let n = timed(self.r.read_until(b'\n', &mut out)).await?;
            if n == 0 {
                return Err(BenchError::Protocol("connection closed".into()));
            }
            let Some(len) = literal_len(&out[start..]) else {
                return Ok(out);
            };
            if out.len() + len > MAX_RESPONSE {
                return Err(BenchError::Protocol(format!("literal of {len} octets")));
            }
            let at = out.len();
            out.resize(at + len, 0);
            timed(self.r.read_exact(&mut out[at..])).await?;
        }
    }

    /// Reads up to the tagged completion of `tag`; the untagged responses before it.
    async fn complete(&mut self, tag: &str, what: &str) -> Result<Vec<Vec<u8>>> {
        let mut untagged = Vec::new();
        loop {
            let resp = self.response().await?;
            if resp.starts_with(tag.as_bytes()) && resp.get(tag.len()) == Some(&b' ') {
                return if resp[tag.len() + 1..].starts_with(b"OK") {
                    Ok(untagged)
                } else {
                    Err(BenchError::Protocol(format!(
                        "{what}: {}",
                        String::from_utf8_lossy(&resp).trim_end()
                    )))
                };
            }
            untagged.push(resp);
        }
    }

    fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("b{}", self.next_tag)
    }

    /// Sends one command and waits for its tagged OK.
    async fn cmd(&mut self, command: &str) -> Result<Vec<Vec<u8>>> {
        let tag = self.tag();
        timed(self.w.write_all(format!("{tag} {command}\r\n").as_bytes())).await?;
        self.complete(&tag, command).await
    }

    /// APPEND with a synchronizing literal, as a client that assumes no LITERAL+ does.
    async fn append(&mut self, mailbox: &str, msg: &[u8]) -> Result<()> {
        let tag = self.tag();
        let head = format!("{tag} APPEND {mailbox} (\\Seen) {{{}}}\r\n", msg.len());
        timed(self.w.write_all(head.as_bytes())).await?;
        let go = self.response().await?;
        if !go.starts_with(b"+") {
            return Err(BenchError::Protocol(format!(
                "APPEND: {}",
                String::from_utf8_lossy(&go).trim_end()
            )));
        }
        timed(self.w.write_all(msg)).await?;
        timed(self.w.write_all(b"\r\n")).await?;
        self.complete(&tag, "APPEND").await.map(drop)
    }
}

/// The highest `UID n` among FETCH responses.
fn max_uid(untagged: &[Vec<u8>]) -> Option<u64> {
    untagged
        .iter()
        .filter_map(|resp| {
            let at = resp.windows(4).position(|w| w == b"UID ")? + 4;
            let digits: Vec<u8> = resp[at..]
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            std::str::from_utf8(&digits).ok()?.parse().ok()
        })
        .max()
}

/// One measured IMAP session: set up its mailbox, wait for the others, run the mix until the
/// deadline. Returns the commands completed and when the last one completed.
async fn imap_session(
    at: Endpoint,
    mailbox: String,
    token: String,
    start: Arc<Barrier>,
) -> Result<(u64, Instant)> {
    let mut c = Imap::connect(&at).await?;
    match c.cmd(&format!("CREATE {mailbox}")).await {
        // The name holds this run's pid and clock, so an existing mailbox of that name can
        // only be this session's: the CI Dovecot now and then answers a fresh CREATE, with
        // several sessions of the user creating at once, with `NO [ALREADYEXISTS]`.
        Err(BenchError::Protocol(e)) if e.contains("[ALREADYEXISTS]") => {}
        other => other.map(drop)?,
    }
    for n in 0..IMAP_SEED {
        c.append(&mailbox, &message(&token, n)).await?;
    }
    // A session whose setup failed has returned above and never arrives here; the caller
    // bounds its own wait on this barrier and then reports the row as failed.
    start.wait().await;
    let deadline = Instant::now() + MEASURE;
    let mut count = 0u64;
    let mut round = 0usize;
    let mut last = Instant::now();
    let extra = message(&token, 999);
    while Instant::now() < deadline && count < MAX_OPERATIONS {
        c.cmd("NOOP").await?;
        c.cmd(&format!("SELECT {mailbox}")).await?;
        let listed = c.cmd("FETCH 1:* (FLAGS UID RFC822.SIZE)").await?;
        c.cmd("STORE 1 +FLAGS (\\Flagged)").await?;
        c.cmd("STORE 1 -FLAGS (\\Flagged)").await?;
        c.cmd("SEARCH UNFLAGGED SUBJECT bench").await?;
        let uid =
            max_uid(&listed).ok_or_else(|| BenchError::Protocol("FETCH returned no UID".into()))?;
        c.cmd(&format!("UID FETCH {uid} BODY.PEEK[]")).await?;
        count += 7;
        // One APPEND and one EXPUNGE per 10 rounds keep the mailbox at its seeded size.
        if round % 10 == 9 {
            c.append(&mailbox, &extra).await?;
            count += 1;
        }
        if round % 10 == 4 {
            c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)").await?;
            c.cmd("EXPUNGE").await?;
            count += 2;
        }
        round += 1;
        last = Instant::now();
    }
    c.cmd("CLOSE").await?;
    c.cmd(&format!("DELETE {mailbox}")).await?;
    let _ = c.cmd("LOGOUT").await;
    Ok((count, last))
}

/// Best-effort removal of a mailbox a failed session may have left behind.
async fn imap_cleanup(at: &Endpoint, mailbox: &str) {
    if let Ok(mut c) = Imap::connect(at).await {
        let _ = c.cmd(&format!("DELETE {mailbox}")).await;
        let _ = c.cmd("LOGOUT").await;
    }
}

/// `sessions` concurrent sessions; commands per second over all of them.
async fn imap_row(at: &Endpoint, sessions: usize) -> Result<f64> {
    let token = run_token();
    let start = Arc::new(Barrier::new(sessions + 1));
    let mut set = tokio::task::JoinSet::new();
    let boxes: Vec<String> = (0..sessions)
        .map(|i| format!("mtbench-{token}-{i}"))
        .collect();
    for mailbox in &boxes {
        set.spawn(imap_session(
            at.clone(),
            mailbox.clone(),
            token.clone(),
            Arc::clone(&start),
        ));
    }
    // A session that fails during setup never reaches the barrier; bound the wait.
    let began = tokio::time::timeout(IO_TIMEOUT * 4, start.wait()).await;
    let t0 = Instant::now();
    let mut total = 0u64;
    let mut end = t0;
    let mut failure = None;
    if began.is_err() {
        set.abort_all();
        failure = Some(BenchError::Protocol("a session failed during setup".into()));
    }
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok((n, last))) => {
                total += n;
                end = end.max(last);
            }
            Ok(Err(e)) => failure = Some(e),
            Err(e) if e.is_cancelled() => {}
            Err(e) => failure = Some(BenchError::Protocol(format!("session task: {e}"))),
        }
    }
    if let Some(e) = failure {
        for mailbox in &boxes {
            imap_cleanup(at, mailbox).await;
        }
        return Err(e);
    }
    Ok(total as f64 / end.duration_since(t0).as_secs_f64().max(1e-9))
}

// --- a minimal POP3 client -----------------------------------------------------------------

struct Pop3 {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Pop3 {
    async fn connect(at: &Endpoint) -> Result<Self> {
        let tcp = timed(TcpStream::connect(at.addr)).await?;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        let mut c = Pop3 {
            r: BufReader::new(r),
            w,
        };
        c.status("greeting").await?;
        c.cmd(&format!("USER {}", at.user)).await?;
        c.cmd(&format!("PASS {}", at.pass)).await?;
        Ok(c)
    }

    async fn status(&mut self, what: &str) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        timed(self.r.read_until(b'\n', &mut line)).await?;
        if line.starts_with(b"+OK") {
            Ok(line)
        } else {
            Err(BenchError::Protocol(format!(
                "{what}: {}",
                String::from_utf8_lossy(&line).trim_end()
            )))
        }
    }

    async fn cmd(&mut self, command: &str) -> Result<Vec<u8>> {
        timed(self.w.write_all(format!("{command}\r\n").as_bytes())).await?;
        self.status(command).await
    }

    /// A multi-line reply: its lines up to the terminating `.` line (dot-stuffing kept).
    async fn multi(&mut self, command: &str) -> Result<Vec<u8>> {
        self.cmd(command).await?;
        let mut body = Vec::new();
        loop {
            let start = body.len();
            let n = timed(self.r.read_until(b'\n', &mut body)).await?;
            if n == 0 {
                return Err(BenchError::Protocol(format!(
                    "{command}: connection closed"
                )));
            }
            if &body[start..] == b".\r\n" {
                body.truncate(start);
                return Ok(body);
            }
            if body.len() > MAX_RESPONSE {
                return Err(BenchError::Protocol(format!("{command}: reply too long")));
            }
        }
    }

    /// Numbers of the messages carrying this run's `X-Mailtape-Bench` header.
    async fn find_ours(&mut self, token: &str) -> Result<Vec<usize>> {
        let stat = self.cmd("STAT").await?;
        let count: usize = String::from_utf8_lossy(&stat)
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| BenchError::Protocol("STAT without a count".into()))?;
        let marker = format!("X-Mailtape-Bench: {token}\r\n");
        let mut ours = Vec::new();
        for n in 1..=count {
            let head = self.multi(&format!("TOP {n} 0")).await?;
            if head.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                ours.push(n);
            }
        }
        Ok(ours)
    }
}

/// Seeds k messages over IMAP, then runs POP3 sessions back to back until the deadline, then
/// deletes the seeded messages with DELE. Returns (sessions/s, RETR/s).
async fn pop3_row(imap: &Endpoint, pop3: &Endpoint) -> Result<(f64, f64)> {
    let token = run_token();
    let seeded = pop3_seed(imap, &token).await;
    let measured = match seeded {
        Ok(()) => pop3_measure(pop3, &token).await,
        Err(e) => Err(e),
    };
    // Remove what was seeded even when seeding or the measurement failed.
    let mut p = Pop3::connect(pop3).await?;
    for n in p.find_ours(&token).await? {
        p.cmd(&format!("DELE {n}")).await?;
    }
    p.cmd("QUIT").await?;
    measured
}

async fn pop3_seed(imap: &Endpoint, token: &str) -> Result<()> {
    let mut c = Imap::connect(imap).await?;
    for n in 0..POP3_MESSAGES {
        c.append("INBOX", &message(token, n)).await?;
    }
    c.cmd("LOGOUT").await.map(drop)
}

async fn pop3_measure(at: &Endpoint, token: &str) -> Result<(f64, f64)> {
    let ours = {
        let mut p = Pop3::connect(at).await?;
        let ours = p.find_ours(token).await?;
        p.cmd("QUIT").await?;
        ours
    };
    if ours.len() != POP3_MESSAGES {
        return Err(BenchError::Protocol(format!(
            "found {} of the {POP3_MESSAGES} seeded messages",
            ours.len()
        )));
    }
    let t0 = Instant::now();
    let deadline = t0 + MEASURE;
    let (mut sessions, mut retrs) = (0u64, 0u64);
    while Instant::now() < deadline && sessions < MAX_OPERATIONS {
        let mut p = Pop3::connect(at).await?;
        p.cmd("STAT").await?;
        p.multi("LIST").await?;
        for n in &ours {
            p.multi(&format!("RETR {n}")).await?;
            retrs += 1;
        }
        p.cmd("QUIT").await?;
        sessions += 1;
    }
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    Ok((sessions as f64 / secs, retrs as f64 / secs))
}

// --- SMTP -----------------------------------------------------------------------------------

/// One SMTP session without pipelining: each command waits for its whole reply, which
/// smtp-proto's `ResponseReceiver` assembles from the (possibly multi-line) reply lines.
struct Smtp {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Smtp {
    /// Connects, reads the 220 greeting and says EHLO once for the whole session.
    async fn connect(addr: SocketAddr) -> Result<Self> {
        let tcp = timed(TcpStream::connect(addr)).await?;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        let mut c = Smtp {
            r: BufReader::new(r),
            w,
        };
        c.expect(220, "greeting").await?;
        c.cmd("EHLO bench.example.test", 250).await?;
        Ok(c)
    }

    /// Reads one whole reply and checks its code.
    async fn expect(&mut self, code: u16, what: &str) -> Result<()> {
        let mut rx = ResponseReceiver::default();
        let mut line = Vec::new();
        let mut total = 0usize;
        loop {
            line.clear();
            let n = timed(self.r.read_until(b'\n', &mut line)).await?;
            if n == 0 {
                return Err(BenchError::Protocol(format!("{what}: connection closed")));
            }
            total += n;
            if total > MAX_RESPONSE {
                return Err(BenchError::Protocol(format!("{what}: reply too long")));
            }
            match rx.parse(&mut line.iter()) {
                Ok(reply) if reply.code == code => return Ok(()),
                Ok(reply) => {
                    return Err(BenchError::Protocol(format!(
                        "{what}: {} {}",
                        reply.code,
                        reply.message.trim_end()
                    )));
                }
                Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                Err(e) => return Err(BenchError::Protocol(format!("{what}: {e}"))),
            }
        }
    }

    async fn cmd(&mut self, command: &str, code: u16) -> Result<()> {
        timed(self.w.write_all(format!("{command}\r\n").as_bytes())).await?;
        self.expect(code, command).await
    }

    /// One transaction to alice; returns when the 250 after the final dot arrives. The
    /// bench's messages have no line starting with `.`, so no dot-stuffing is needed
    /// (`smtp_message` checks that).
    async fn deliver(&mut self, msg: &[u8]) -> Result<()> {
        self.cmd("MAIL FROM:<bench@example.test>", 250).await?;
        self.cmd("RCPT TO:<alice@example.test>", 250).await?;
        self.cmd("DATA", 354).await?;
        timed(self.w.write_all(msg)).await?;
        timed(self.w.write_all(b".\r\n")).await?;
        self.expect(250, "end of DATA").await
    }
}

/// A bench message for SMTP: the common small message, refused if it would need dot-stuffing.
fn smtp_message(token: &str, n: usize) -> Result<Vec<u8>> {
    let m = message(token, n);
    if m.starts_with(b".") || m.windows(3).any(|w| w == b"\n.") {
        return Err(BenchError::Protocol(
            "bench message needs dot-stuffing".into(),
        ));
    }
    if !m.ends_with(b"\r\n") {
        return Err(BenchError::Protocol(
            "bench message lacks a final CRLF".into(),
        ));
    }
    Ok(m)
}

/// Reads `smtp://host:port` (the form `ci/postfix.sh env` prints).
fn parse_smtp_url(url: &str) -> Option<SocketAddr> {
    let host = url.strip_prefix("smtp://")?.trim_end_matches('/');
    host.to_socket_addrs().ok()?.next()
}

/// One measured SMTP session: EHLO, then MAIL/RCPT/DATA/RSET until the deadline or until
/// the row's shared cap is used up, then QUIT. Returns the messages accepted (250 after
/// DATA), when the last one was accepted, and how the session ended: the count is kept
/// after a failure, because those messages still have to be found and removed.
async fn smtp_session(
    addr: SocketAddr,
    token: String,
    session: usize,
    claimed: Arc<AtomicU64>,
    start: Arc<Barrier>,
) -> (u64, Instant, Result<()>) {
    let mut count = 0u64;
    let mut last = Instant::now();
    let outcome = async {
        let mut c = Smtp::connect(addr).await?;
        start.wait().await;
        let deadline = Instant::now() + MEASURE;
        while Instant::now() < deadline
            && claimed.fetch_add(1, Ordering::Relaxed) < MAX_SMTP_MESSAGES
        {
            // A Message-ID unique across the row's sessions.
            let n = session * MAX_SMTP_MESSAGES as usize + count as usize;
            c.deliver(&smtp_message(&token, n)?).await?;
            count += 1;
            last = Instant::now();
            c.cmd("RSET", 250).await?;
        }
        c.cmd("QUIT", 221).await
    }
    .await;
    (count, last, outcome)
}

/// One SMTP row against one server.
struct SmtpRow {
    /// Messages accepted per second over all sessions.
    rate: f64,
    /// From the last 250 to the IMAP SEARCH that found the last message; `None` when not
    /// all were found within `DELIVERY_WAIT`.
    lag: Option<Duration>,
    /// Messages accepted but not found, with the row's token (see `smtp_cleanup`).
    missing: Option<(u64, String)>,
}

/// UIDs of the INBOX messages carrying this row's header.
async fn find_by_header(c: &mut Imap, token: &str) -> Result<Vec<u64>> {
    let untagged = c
        .cmd(&format!("UID SEARCH HEADER X-Mailtape-Bench {token}"))
        .await?;
    Ok(untagged
        .iter()
        .filter_map(|resp| resp.strip_prefix(b"* SEARCH"))
        .flat_map(|rest| {
            String::from_utf8_lossy(rest)
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect())
}

/// Sorted UIDs as IMAP sequence-set ranges (`4:9`, `12`), so a large delivery needs a
/// few short commands rather than one enormous line.
fn uid_ranges(uids: &[u64]) -> Vec<String> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut iter = sorted.into_iter();
    let Some(mut lo) = iter.next() else {
        return out;
    };
    let mut hi = lo;
    for uid in iter {
        if uid == hi + 1 {
            hi = uid;
            continue;
        }
        out.push(if lo == hi {
            format!("{lo}")
        } else {
            format!("{lo}:{hi}")
        });
        (lo, hi) = (uid, uid);
    }
    out.push(if lo == hi {
        format!("{lo}")
    } else {
        format!("{lo}:{hi}")
    });
    out
}

/// Waits (bounded by `DELIVERY_WAIT`) until `expected` messages of this row are in alice's
/// INBOX, then removes every one found with UID STORE \Deleted + UID EXPUNGE (UIDPLUS), so
/// messages other clients marked \Deleted stay. Returns the messages found and, when that
/// is all of them, how long after `since` the SEARCH that found the last one was sent.
/// Fewer can turn up when another client of the shared CI mailbox deletes messages (a POP3
/// suite's DELE) while the bench runs, so a shortfall is reported, not an error.
async fn smtp_cleanup(
    imap: &Endpoint,
    token: &str,
    expected: u64,
    since: Instant,
) -> Result<(u64, Option<Duration>)> {
    let mut c = Imap::connect(imap).await?;
    c.cmd("SELECT INBOX").await?;
    let give_up = since + DELIVERY_WAIT;
    let (found, lag) = loop {
        // Taken before the SEARCH, so the figure does not include the SEARCH itself.
        let asked = Instant::now();
        let found = find_by_header(&mut c, token).await?;
        if found.len() as u64 >= expected {
            break (found, Some(asked.saturating_duration_since(since)));
        }
        if Instant::now() >= give_up {
            break (found, None);
        }
        tokio::time::sleep(DELIVERY_POLL).await;
        // NOOP lets the server announce the new messages before the next SEARCH.
        c.cmd("NOOP").await?;
    };
    for chunk in uid_ranges(&found).chunks(UID_RANGES_PER_COMMAND) {
        let set = chunk.join(",");
        c.cmd(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
            .await?;
        c.cmd(&format!("UID EXPUNGE {set}")).await?;
    }
    c.cmd("CLOSE").await?;
    let _ = c.cmd("LOGOUT").await;
    Ok((found.len() as u64, lag))
}

/// `sessions` concurrent SMTP sessions delivering to alice at `smtp`; the messages are then
/// found over IMAP at `imap` and removed.
async fn smtp_row(smtp: SocketAddr, imap: &Endpoint, sessions: usize) -> Result<SmtpRow> {
    // The suffix keeps one row's token from being a substring of another's (HEADER search
    // matches substrings, and the tokens of one process differ only in their digits).
    let token = format!("{}-smtp", run_token());
    let claimed = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(sessions + 1));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..sessions {
        set.spawn(smtp_session(
            smtp,
            token.clone(),
            i,
            Arc::clone(&claimed),
            Arc::clone(&start),
        ));
    }
    let began = tokio::time::timeout(IO_TIMEOUT * 4, start.wait()).await;
    let t0 = Instant::now();
    let mut total = 0u64;
    let mut end = t0;
    let mut failure = None;
    if began.is_err() {
        set.abort_all();
        failure = Some(BenchError::Protocol("a session failed during setup".into()));
    }
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((n, last, outcome)) => {
                total += n;
                end = end.max(last);
                if let Err(e) = outcome {
                    failure = Some(e);
                }
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => failure = Some(BenchError::Protocol(format!("session task: {e}"))),
        }
    }
    // Clean up even after a failure: the messages accepted before it are in the INBOX (or,
    // behind Postfix, on their way there).
    let cleaned = smtp_cleanup(imap, &token, total, end).await;
    if let Some(e) = failure {
        return Err(e);
    }
    let (found, lag) = cleaned?;
    Ok(SmtpRow {
        rate: total as f64 / end.duration_since(t0).as_secs_f64().max(1e-9),
        lag,
        missing: (found < total).then(|| (total - found, token)),
    })
}

// --- report --------------------------------------------------------------------------------

fn fmt_rate(r: &Result<f64>) -> String {
    match r {
        Ok(v) => format!("{v:>10.0}"),
        Err(_) => format!("{:>10}", "failed"),
    }
}

fn row(name: &str, reference: Result<f64>, dovecot: Option<Result<f64>>) {
    let ratio = match (&reference, &dovecot) {
        (Ok(a), Some(Ok(b))) if *b > 0.0 => format!("{:>7.2}", a / b),
        _ => format!("{:>7}", "-"),
    };
    let dove = dovecot
        .as_ref()
        .map(fmt_rate)
        .unwrap_or_else(|| format!("{:>10}", "-"));
    println!("{name:<34} {} {dove} {ratio}", fmt_rate(&reference));
    for e in [Some(&reference), dovecot.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_ref().err())
    {
        println!("    error: {e}");
    }
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("throughput: cannot build the runtime: {e}");
            return;
        }
    };
    rt.block_on(bench());
}

async fn bench() {
    // `cargo bench --bench throughput -- smtp` runs only the rows of the groups named
    // (imap, pop3, smtp); cargo itself adds `--bench`, hence flags are skipped.
    let groups: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |group: &str| groups.is_empty() || groups.iter().any(|g| g == group);
    let running = match reference_server::start(reference_server::Config::default()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("throughput: reference server: {e}");
            return;
        }
    };
    let (Some(imap_addr), Some(pop3_addr)) = (running.imap, running.pop3) else {
        eprintln!("throughput: reference server has no IMAP or POP3 listener");
        return;
    };
    let login = |addr| Endpoint {
        addr,
        user: "alice".into(),
        pass: "alicepw".into(),
    };
    let (ref_imap, ref_pop3) = (login(imap_addr), login(pop3_addr));
    let dove_imap = std::env::var("MAILTAPE_DOVECOT_IMAP")
        .ok()
        .and_then(|u| parse_url(&u, "imap"));
    let dove_pop3 = std::env::var("MAILTAPE_DOVECOT_POP3")
        .ok()
        .and_then(|u| parse_url(&u, "pop3"));
    if dove_imap.is_none() || dove_pop3.is_none() {
        println!(
            "(MAILTAPE_DOVECOT_IMAP / MAILTAPE_DOVECOT_POP3 not set: reference server only; \
             see `bash ci/dovecot.sh env`)"
        );
    }
    println!(
        "{} s per measurement, {} cores\n",
        MEASURE.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if wanted("imap") || wanted("pop3") {
        println!(
            "{:<34} {:>10} {:>10} {:>7}",
            "row", "reference", "dovecot", "ratio"
        );
    }
    if wanted("imap") {
        for n in IMAP_SESSIONS {
            let reference = imap_row(&ref_imap, n).await;
            let dovecot = match &dove_imap {
                Some(at) => Some(imap_row(at, n).await),
                None => None,
            };
            let plural = if n == 1 { "" } else { "s" };
            row(
                &format!("IMAP commands/s, {n} session{plural}"),
                reference,
                dovecot,
            );
        }
    }
    if wanted("pop3") {
        let reference = pop3_row(&ref_imap, &ref_pop3).await;
        let dovecot = match (&dove_imap, &dove_pop3) {
            (Some(i), Some(p)) => Some(pop3_row(i, p).await),
            _ => None,
        };
        // Both rows come from the same sessions; an error is reported on each.
        let pick = |r: &Result<(f64, f64)>, sessions: bool| match r {
            Ok((s, retr)) => Ok(if sessions { *s } else { *retr }),
            Err(e) => Err(BenchError::Protocol(e.to_string())),
        };
        row(
            &format!("POP3 sessions/s (RETR {POP3_MESSAGES} each)"),
            pick(&reference, true),
            dovecot.as_ref().map(|d| pick(d, true)),
        );
        row(
            "POP3 RETR/s",
            pick(&reference, false),
            dovecot.as_ref().map(|d| pick(d, false)),
        );
    }
    if wanted("smtp") {
        if wanted("imap") || wanted("pop3") {
            println!();
        }
        smtp_rows(&running, &ref_imap, dove_imap.as_ref()).await;
    }
    running.shutdown().await;
}

/// The SMTP rows, reference beside Postfix. Postfix's deliveries land in the CI Dovecot,
/// so they are found and removed over Dovecot's IMAP; without it the Postfix column is
/// skipped rather than leaving messages behind.
async fn smtp_rows(
    running: &reference_server::Running,
    ref_imap: &Endpoint,
    dove_imap: Option<&Endpoint>,
) {
    let Some(ref_smtp) = running.smtp else {
        println!("(reference server has no SMTP listener: SMTP rows skipped)");
        return;
    };
    let postfix = std::env::var("MAILTAPE_POSTFIX_SMTP")
        .ok()
        .and_then(|u| parse_smtp_url(&u));
    let postfix = match (postfix, dove_imap) {
        (Some(smtp), Some(imap)) => Some((smtp, imap)),
        (Some(_), None) => {
            println!(
                "(MAILTAPE_POSTFIX_SMTP set but MAILTAPE_DOVECOT_IMAP not: the Postfix column \
                 needs Dovecot's IMAP to remove its messages, so it is skipped)"
            );
            None
        }
        (None, _) => {
            println!(
                "(MAILTAPE_POSTFIX_SMTP not set: reference server only; see `bash \
                 ci/postfix.sh env`)"
            );
            None
        }
    };
    println!(
        "{:<34} {:>10} {:>10} {:>7}",
        "row", "reference", "postfix", "ratio"
    );
    for n in SMTP_SESSIONS {
        let reference = smtp_row(ref_smtp, ref_imap, n).await;
        let other = match postfix {
            Some((smtp, imap)) => Some(smtp_row(smtp, imap, n).await),
            None => None,
        };
        let rate = |r: &Result<SmtpRow>| match r {
            Ok(row) => Ok(row.rate),
            Err(e) => Err(BenchError::Protocol(e.to_string())),
        };
        let plural = if n == 1 { "" } else { "s" };
        row(
            &format!("SMTP messages/s, {n} session{plural}"),
            rate(&reference),
            other.as_ref().map(rate),
        );
        // Not a rate, so no ratio: how long after the last 250 the last message could be
        // read over IMAP (the reference server delivers before it answers 250).
        let lag = |r: &Result<SmtpRow>| match r {
            Ok(SmtpRow { lag: Some(d), .. }) => format!("{:>10}", d.as_millis()),
            _ => format!("{:>10}", "-"),
        };
        println!(
            "{:<34} {} {}",
            "  last in INBOX after, ms",
            lag(&reference),
            other
                .as_ref()
                .map(lag)
                .unwrap_or_else(|| format!("{:>10}", "-"))
        );
        for (server, r) in [("reference", Some(&reference)), ("postfix", other.as_ref())] {
            if let Some(Ok(SmtpRow {
                missing: Some((n, token)),
                ..
            })) = r
            {
                println!(
                    "    {server}: {n} accepted messages not in the INBOX after {} s (deleted \
                     by another client, or still queued: those carry X-Mailtape-Bench: {token})",
                    DELIVERY_WAIT.as_secs()
                );
            }
        }
    }
}
