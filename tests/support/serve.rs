//! `mailtape serve` as a child process for the integration tests: start it on ephemeral
//! ports, parse the addresses it prints, and make sure it (and any client program a test
//! runs) is killed by its pid however the test ends.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the server may take to print its banner on a loaded CI machine.
pub const START_WAIT: Duration = Duration::from_secs(30);

/// How long one client program (python3, curl) may run before it is killed.
pub const CLIENT_WAIT: Duration = Duration::from_secs(60);

/// A running `mailtape serve`; dropping it SIGKILLs the process (by pid) and reaps it.
pub struct Serve {
    child: Child,
    pub imap: SocketAddr,
    pub imaps: SocketAddr,
    pub pop3: SocketAddr,
    pub pop3s: SocketAddr,
    pub smtp: SocketAddr,
    pub submission: SocketAddr,
    /// Every line printed up to and including the `Ctrl-C ...` line.
    pub banner: Vec<String>,
}

impl Serve {
    /// Starts a server with every listener on `127.0.0.1:0`; `data_dir`/`accounts` are
    /// passed on when given (the default accounts are alice/alicepw and bob/bobpw in
    /// example.test).
    pub fn start(data_dir: Option<&Path>, accounts: Option<&Path>) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailtape"));
        cmd.arg("serve");
        for flag in [
            "--imap",
            "--imaps",
            "--pop3",
            "--pop3s",
            "--smtp",
            "--submission",
        ] {
            cmd.args([flag, "127.0.0.1:0"]);
        }
        if let Some(dir) = data_dir {
            cmd.arg("--data-dir").arg(dir);
        }
        if let Some(file) = accounts {
            cmd.arg("--accounts").arg(file);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mailtape serve");
        let stdout = child.stdout.take().expect("stdout");
        // The banner is read on a thread so a server that hangs before printing cannot hang
        // the test: the channel wait below is bounded, and the guard kills the child.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let last = line.starts_with("Ctrl-C");
                if tx.send(line).is_err() || last {
                    break;
                }
            }
        });
        let mut guard = Starting(Some(child));
        let deadline = Instant::now() + START_WAIT;
        let mut banner = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let last = line.starts_with("Ctrl-C");
                    banner.push(line);
                    if last {
                        break;
                    }
                }
                Err(e) => panic!("serve banner incomplete ({e}): {banner:?}"),
            }
        }
        let find = |scheme: &str| -> SocketAddr {
            banner
                .iter()
                .find_map(|l| {
                    let rest = l.split_whitespace().nth(1)?;
                    rest.strip_prefix(scheme)?.parse().ok()
                })
                .unwrap_or_else(|| panic!("no {scheme} address in {banner:?}"))
        };
        Serve {
            imap: find("imap://"),
            imaps: find("imaps://"),
            pop3: find("pop3://"),
            pop3s: find("pop3s://"),
            smtp: find("smtp://"),
            submission: find("smtp+starttls://"),
            banner,
            child: guard.0.take().expect("child"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (no chance to flush anything) and reap.
    pub fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL serve");
        self.child.wait().expect("reap serve");
    }

    /// The child, for tests that signal it themselves.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a child that did not get as far as becoming a [`Serve`].
struct Starting(Option<Child>);

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a bounded client program produced.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `cmd` (stdin closed) for at most [`CLIENT_WAIT`]; on timeout the child is killed by
/// its pid and the test fails. Output is drained on threads so a chatty child cannot block.
pub fn run_bounded(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut guard = Starting(Some(child));
    let child = guard.0.as_mut().expect("child");
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if start.elapsed() > CLIENT_WAIT {
            // The guard kills it; the reader threads end when the pipes close.
            drop(guard);
            panic!("{what} did not finish within {CLIENT_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    guard.0 = None;
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Whether `program --version` runs (within [`START_WAIT`]); the client tests skip, saying
/// so, when it does not.
pub fn have(program: &str) -> bool {
    let Ok(child) = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let mut guard = Starting(Some(child));
    let child = guard.0.as_mut().expect("child");
    let start = Instant::now();
    while start.elapsed() < START_WAIT {
        match child.try_wait() {
            Ok(Some(status)) => {
                guard.0 = None;
                return status.success();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    // The guard kills a `--version` that hangs.
    false
}
