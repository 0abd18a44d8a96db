//! The catalogue of POP3 rules: one stable id, level and RFC section each. Every violation is
//! built from an entry here, and docs/checks.md lists the same table.

pub use crate::checks::Rule;
use crate::checks::{must, should};

pub const SYNTAX_STATUS: Rule = must(
    "pop3.syntax.status",
    "RFC 1939 3",
    "every reply starts with `+OK` or `-ERR` in upper case; `+ ` only answers AUTH",
);
pub const SYNTAX_CRLF: Rule = must(
    "pop3.syntax.crlf",
    "RFC 1939 3",
    "every reply line ends with CRLF, never a bare LF",
);
pub const DOT_STUFFING: Rule = must(
    "pop3.multiline.dot-stuffing",
    "RFC 1939 3",
    "a body line starting with `.` is sent with one more `.` in front",
);
pub const GREETING: Rule = should(
    "pop3.greeting",
    "RFC 1939 4",
    "the greeting is a positive response",
);
pub const STATE_AUTHORIZATION: Rule = must(
    "pop3.state.authorization",
    "RFC 1939 4, 5",
    "TRANSACTION commands are refused before login",
);
pub const STATE_TRANSACTION: Rule = must(
    "pop3.state.transaction",
    "RFC 1939 4, 5, 7; RFC 2595 4",
    "login commands and STLS are refused after login",
);
pub const DELETED: Rule = must(
    "pop3.dele.deleted",
    "RFC 1939 5",
    "a message marked deleted cannot be referenced or listed until RSET",
);
pub const UIDL_SYNTAX: Rule = must(
    "pop3.uidl.syntax",
    "RFC 1939 7",
    "a unique-id is 1 to 70 characters in 0x21-0x7E",
);
pub const UIDL_UNIQUE: Rule = must(
    "pop3.uidl.unique",
    "RFC 1939 7",
    "no two messages of a maildrop share a unique-id",
);
pub const UIDL_STABLE: Rule = must(
    "pop3.uidl.stable",
    "RFC 1939 7",
    "a message keeps its unique-id: UIDL never names one message with two ids",
);
pub const SIZE_LIST_RETR: Rule = must(
    "pop3.size.list-retr",
    "RFC 1939 5, 11",
    "the size LIST gives a message is the exact octet count RETR delivers",
);
pub const SIZE_STAT_LIST: Rule = must(
    "pop3.size.stat-list",
    "RFC 1939 5",
    "STAT's count and total agree with the LIST scan listings",
);

/// Every rule, for the docs test and reports.
pub const ALL: &[Rule] = &[
    SYNTAX_STATUS,
    SYNTAX_CRLF,
    DOT_STUFFING,
    GREETING,
    STATE_AUTHORIZATION,
    STATE_TRANSACTION,
    DELETED,
    UIDL_SYNTAX,
    UIDL_UNIQUE,
    UIDL_STABLE,
    SIZE_LIST_RETR,
    SIZE_STAT_LIST,
];
