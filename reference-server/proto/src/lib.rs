//! Protocol code that both the mailtape harness and its bundled reference server need, kept in
//! a crate of its own so neither depends on the other (the harness starts the server
//! in-process, so the server cannot depend on the harness). Sans-I/O: bytes in, typed values
//! and bytes out; no sockets, no printing.
//!
//! # Layout
//! - [`pop3`]: the POP3 codec (RFC 1939, RFC 2449): commands, responses, dot-stuffing, and
//!   framers for command lines (server side) and replies (client side)

pub mod pop3;
