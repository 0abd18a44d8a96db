//! Client programs the tests start (python3, curl): waited for with a bound, killed by their
//! own handle (never by name) when they overrun it.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Waits for `child` at most `limit`; past that it is killed and the test fails, naming it.
/// Its output must fit the pipe buffers (small client output) since nothing reads meanwhile.
pub fn wait_bounded(child: &mut Child, what: &str, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} (pid {}) still running after {limit:?}; killed",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a client program; `None` when it is not installed (the caller skips, saying so).
pub fn spawn(command: &mut Command) -> Option<Child> {
    match command.spawn() {
        Ok(c) => Some(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{:?}: {e}", command.get_program()),
    }
}
