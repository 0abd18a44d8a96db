//! Ctrl-C (SIGINT) and SIGTERM for the long-running commands (serve, record, shrink).
//!
//! The handlers are installed before the command says it is ready: a signal that came
//! between a printed banner and a lazily installed handler would take the process down with
//! the default action - no `* BYE` to open sessions, no recording written.

use super::CliError;

/// Installed signal handlers; [`StopSignal::wait`] returns when one of the signals comes.
pub(super) struct StopSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignal {
    /// Installs the handlers now (needs a Tokio runtime).
    pub(super) fn install() -> Result<StopSignal, CliError> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignal {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignal {})
        }
    }

    /// Waits for SIGINT or SIGTERM; returns which one came.
    pub(super) async fn wait(mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                // No way to wait for it: never stop on a signal.
                Err(_) => std::future::pending().await,
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A SIGTERM sent right after `install` (before anything waits) is not lost and does not
    /// kill the test process.
    #[tokio::test]
    async fn a_signal_before_waiting_is_kept() {
        let stop = StopSignal::install().expect("install");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), stop.wait()).await;
        assert_eq!(got, Ok("SIGTERM"));
    }
}
