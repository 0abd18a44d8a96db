//! The scenario language: RON files with an RFC-transcript-style script.
//! See `docs/scenario-language.md`.
//!
//! - [`parse`]: [`load`] / [`parse_str`] read a file into a [`Scenario`] (or a [`ScriptError`]
//!   at file:line:column).
//! - [`ast`]: the parsed form: sessions, seed, and [`Step`]s of [`ClientMessage`]s and
//!   [`ExpectLine`]s; [`Template::render`] fills in variables.
//! - [`pattern`]: server-line [`Pattern`]s matched on IMAP values, with captures into
//!   [`Bindings`].

pub mod ast;
pub mod parse;
pub mod pattern;

pub use ast::*;
pub use parse::{PREDEFINED_VARS, ScriptError, load, load_recording, parse_recording, parse_str};
pub use pattern::{Bindings, Mismatch, Pattern, PatternError, PatternKind, Value};
