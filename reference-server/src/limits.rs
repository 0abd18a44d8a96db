//! Resource limits of the reference server: each default is a named constant with the reason
//! for its value, so a test or a harness run can tighten them without guessing.

use std::time::Duration;

/// Longest command line accepted (octets, CRLF included). RFC 7162 section 4 asks clients to
/// keep lines under 8192 octets and servers to accept at least that; 64 KiB leaves room for
/// long sequence sets while still refusing a line that is clearly abuse.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Largest literal accepted (APPEND message size). 32 MiB is above any message a scenario
/// needs and small enough that a session never holds an unreasonable amount of memory.
pub const DEFAULT_MAX_LITERAL: u64 = 32 * 1024 * 1024;

/// Concurrent sessions across both listeners. A stress scenario opens tens of sessions; 256
/// keeps a runaway client from exhausting file descriptors on a small CI machine.
pub const DEFAULT_MAX_SESSIONS: usize = 256;

/// Inactivity autologout. RFC 3501 section 5.4 requires at least 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Resource limits applied to every session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest command line in octets; a longer line gets `BAD`.
    pub max_line: usize,
    /// Largest literal in octets; a larger announcement gets `NO [TOOBIG]` (synchronizing) or
    /// `BAD [TOOBIG]` (non-synchronizing, whose bytes are read and discarded).
    pub max_literal: u64,
    /// Sessions served at once; the next connection gets `* BYE` and is closed.
    pub max_sessions: usize,
    /// Time without client input after which the session is ended with `* BYE`.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            max_literal: DEFAULT_MAX_LITERAL,
            max_sessions: DEFAULT_MAX_SESSIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl Limits {
    /// The Fragmentizer's cap for one whole command (line(s) plus literal), clamped to its
    /// `u32` range. Anything above is framed but dropped, so memory stays bounded.
    pub(crate) fn max_message(&self) -> u32 {
        let total = self
            .max_literal
            .saturating_add(2u64.saturating_mul(self.max_line as u64));
        u32::try_from(total).unwrap_or(u32::MAX)
    }
}
