//! The scenario language: RON files with an RFC-transcript-style script.
//! See `docs/scenario-language.md`.

pub mod ast;
pub mod parse;
pub mod pattern;

pub use ast::*;
pub use parse::{ScriptError, load, parse_str};
