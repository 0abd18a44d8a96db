//! The exit-code table, documented in `--help` and the README.

/// Nothing unexpected failed.
pub const SUCCESS: u8 = 0;
/// At least one scenario failed unexpectedly (or an expected failure passed).
pub const FAILED: u8 = 1;
/// Usage or configuration error: bad flags, unreadable targets file, no scenarios found.
pub const USAGE: u8 = 2;
