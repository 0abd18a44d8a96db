//! Helpers shared by the integration tests.
#![allow(dead_code)]
pub mod child;
pub mod fake_imap;
pub mod fake_lines;
pub mod serve;
