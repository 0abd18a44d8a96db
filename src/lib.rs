//! mailtape: an interoperability test harness for SMTP, POP3 and IMAP servers.
//!
//! # Layout
//! - [`cli`]: clap commands, one file each; no protocol logic.
//! - [`target`]: target URLs (`imap://`, `imaps://`, `imap+starttls://`), accounts, RON targets files.
//! - [`net`]: the only tokio + rustls code: connect, TLS, STARTTLS, timeouts.
//! - [`proto`]: protocol framing on the client side (IMAP via imap-codec's Fragmentizer).
//! - [`script`]: the scenario language: RON file, transcript script, patterns, captures.
//! - [`engine`]: runs a scenario against a target, producing a transcript and an outcome.
//! - [`checks`]: always-on, pure protocol checks; each violation cites its rule and RFC section.
//! - [`replay`]: replaying a recording against a server and comparing; shrinking a failing one.
//! - [`report`]: outcomes, snapshots, human / JSON / JUnit output; never decides pass or fail.
//! - [`compare`]: `mailtape compare`: several servers, one grid, diffs, HTML/Markdown reports.
//! - [`exit`]: the exit-code table.

pub mod checks;
pub mod cli;
pub mod compare;
pub mod engine;
pub mod exit;
pub mod net;
pub mod proto;
pub mod record;
pub mod replay;
pub mod report;
pub mod script;
pub mod target;
