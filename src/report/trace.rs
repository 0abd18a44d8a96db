//! Wire traces (`--trace`, or `RUST_LOG=mailtape::wire=trace`): every message of every
//! session as it is recorded into a transcript, one event per line, under the scenario's
//! span (its id and target). Credentials appear as sent: traces are for debugging a run,
//! not for logs kept anywhere.

use super::Direction;
use super::normalize::{escape_lossy, line_prefix};

/// The tracing target of wire events.
pub const TARGET: &str = "mailtape::wire";

/// Longest part of one message traced; the rest is counted, not printed (a 20 MB literal
/// would drown the terminal).
const MAX_TRACED: usize = 4096;

/// Emits one message at TRACE level; cheap when tracing is off.
pub fn message(session: &str, direction: Direction, setup: bool, bytes: &[u8]) {
    if !tracing::enabled!(target: TARGET, tracing::Level::TRACE) {
        return;
    }
    let prefix = line_prefix(session, direction, setup);
    let shown = &bytes[..bytes.len().min(MAX_TRACED)];
    for line in shown.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        tracing::trace!(target: TARGET, "{prefix} {}", escape_lossy(line));
    }
    if bytes.len() > MAX_TRACED {
        tracing::trace!(
            target: TARGET,
            "{prefix} ... ({} more octets not traced)",
            bytes.len() - MAX_TRACED
        );
    }
}
