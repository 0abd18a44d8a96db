//! The POP3 codec: RFC 1939 (commands, states, multi-line responses) with the RFC 2449
//! extension mechanism (CAPA, response codes, 255-octet commands), RFC 2595 STLS and
//! RFC 5034 AUTH.
//!
//! Server side: [`LineFramer`] cuts command lines out of a byte stream, [`parse_command`] turns
//! one into a [`Command`], [`SingleLine`] and [`encode_multiline`] / [`encode_message`] write the
//! responses (dot-stuffed, terminated by `.`).
//!
//! Client side: [`Command::to_line`] encodes a command, [`Command::expect`] says what shape its
//! reply has, and [`ReplyFramer`] turns received bytes into whole [`Reply`] values, keeping the
//! raw bytes and the line endings it saw.
//!
//! # Layout
//! - `command`: [`Command`], [`parse_command`], [`CommandError`], [`Secret`]
//! - `response`: [`Status`], [`RespCode`], [`SingleLine`], multi-line encoding
//! - `message`: a stored message as POP3 sends it (CRLF lines, sizes, TOP)
//! - `framer`: [`LineFramer`] and [`ReplyFramer`]

mod command;
mod framer;
mod message;
mod response;

pub use command::{Command, CommandError, MAX_COMMAND_LINE, Secret, parse_command};
pub use framer::{
    Expect, FrameError, Framed, FramedLine, LineEnding, LineFramer, Reply, ReplyFramer,
};
pub use message::{message_lines, normalized_len, top_lines};
pub use response::{
    MAX_RESPONSE_LINE, ReplyStatus, RespCode, SingleLine, Status, continuation, dot_stuff_line,
    encode_message, encode_multiline, parse_status_line,
};
