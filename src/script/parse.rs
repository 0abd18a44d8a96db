//! CONTRACT STUB - the script-language helper replaces this file.
use std::path::Path;

use super::ast::{Loc, Scenario};

/// A malformed scenario: where and why, with the offending text.
#[derive(Debug, thiserror::Error)]
#[error("{loc}: {message}\n    {snippet}")]
pub struct ScriptError {
    pub loc: Loc,
    pub message: String,
    pub snippet: String,
}

pub fn load(_path: &Path) -> Result<Scenario, ScriptError> {
    todo!()
}

pub fn parse_str(_path: &Path, _text: &str) -> Result<Scenario, ScriptError> {
    todo!()
}
