//! The catalogue of IMAP rules: one stable id, level and RFC section each. Every violation is
//! built from an entry here, and docs/checks.md lists the same table.

pub use crate::checks::Rule;
use crate::checks::{must, should};

pub const SYNTAX_RESPONSE: Rule = must(
    "imap.syntax.response",
    "RFC 3501 9",
    "every server message follows the formal syntax",
);
pub const SYNTAX_CRLF: Rule = must(
    "imap.syntax.crlf",
    "RFC 3501 2.2",
    "every line ends with CRLF, never a bare LF",
);
pub const SYNTAX_RESPONSE_CODE: Rule = must(
    "imap.syntax.response-code",
    "RFC 3501 7.1, 9",
    "a response code in brackets follows the resp-text-code syntax",
);
pub const GREETING: Rule = must(
    "imap.greeting",
    "RFC 3501 2.2, 7.1",
    "the first server message is an untagged OK, PREAUTH or BYE greeting",
);
pub const TAG_UNKNOWN: Rule = must(
    "imap.tag.unknown",
    "RFC 3501 2.2.2",
    "a tagged completion carries the tag of a command the client sent",
);
pub const TAG_ECHO: Rule = must(
    "imap.tag.echo",
    "RFC 3501 2.2.2",
    "a tagged completion repeats the command's tag exactly (tags are case-sensitive)",
);
pub const TAG_DUPLICATE: Rule = must(
    "imap.tag.duplicate-completion",
    "RFC 3501 2.2.2",
    "each command gets exactly one tagged completion",
);
pub const TAG_MISSING: Rule = must(
    "imap.tag.missing-completion",
    "RFC 3501 2.2.2",
    "every command sent is completed before the connection ends (unless the server said BYE)",
);
pub const CONTINUATION_UNEXPECTED: Rule = must(
    "imap.continuation.unexpected",
    "RFC 3501 7.5",
    "a `+` continuation request only answers a synchronizing literal, AUTHENTICATE or IDLE",
);
pub const STATE_COMMAND: Rule = must(
    "imap.state.command",
    "RFC 3501 3, 6",
    "a command not valid in the connection's state is not completed with OK",
);
pub const STATE_SELECTED_RESPONSE: Rule = must(
    "imap.state.selected-response",
    "RFC 3501 3.2, 7.3, 7.4",
    "EXISTS, RECENT, EXPUNGE and FETCH responses are only sent while a mailbox is selected",
);
pub const STATE_LOGOUT: Rule = must(
    "imap.state.logout",
    "RFC 3501 6.1.3",
    "LOGOUT is answered with an untagged BYE before its tagged OK",
);
pub const UID_ASCENDING: Rule = must(
    "imap.uid.ascending",
    "RFC 3501 2.3.1.1",
    "UIDs are strictly ascending with message sequence numbers",
);
pub const UID_STABLE: Rule = must(
    "imap.uid.stable",
    "RFC 3501 2.3.1.1",
    "a message's UID does not change during the session",
);
pub const UID_BELOW_UIDNEXT: Rule = must(
    "imap.uid.below-uidnext",
    "RFC 3501 2.3.1.1",
    "UIDNEXT is above every UID already assigned; messages present at selection have UIDs below it",
);
pub const UID_REUSED: Rule = must(
    "imap.uid.reused",
    "RFC 3501 2.3.1.1",
    "an expunged UID never names another message in the same mailbox and UIDVALIDITY",
);
pub const UIDVALIDITY_STABLE: Rule = should(
    "imap.uidvalidity.stable",
    "RFC 3501 2.3.1.1",
    "UIDVALIDITY of a mailbox stays the same across sessions unless it is deleted or renamed",
);
pub const UIDVALIDITY_DECREASE: Rule = must(
    "imap.uidvalidity.decrease",
    "RFC 3501 2.3.1.1",
    "when UIDVALIDITY changes it becomes greater than before",
);
pub const UIDVALIDITY_RANGE: Rule = must(
    "imap.uidvalidity.range",
    "RFC 3501 2.3.1.1, 9",
    "UIDVALIDITY (and UIDNEXT) are non-zero 32-bit numbers",
);
pub const UIDPLUS_APPENDUID: Rule = must(
    "imap.uidplus.appenduid",
    "RFC 4315 3",
    "APPENDUID names the mailbox's UIDVALIDITY and a fresh UID not below UIDNEXT",
);
pub const UIDPLUS_COPYUID: Rule = must(
    "imap.uidplus.copyuid",
    "RFC 4315 3",
    "COPYUID's source set names copied messages, both sets have the same size, destination UIDs are fresh",
);
pub const FLAGS_PERSIST: Rule = must(
    "imap.flags.persist",
    "RFC 3501 2.3.2, 6.4.6",
    "permanent flags stored on a message are seen by later commands and sessions",
);
pub const RECENT_SINGLE_SESSION: Rule = must(
    "imap.recent.single-session",
    "RFC 3501 2.3.2",
    "\\Recent is shown to one read-write session only",
);
pub const EXISTS_CONSISTENT: Rule = must(
    "imap.exists.consistent",
    "RFC 3501 5.2, 7.3.1",
    "EXISTS never decreases and no message number beyond it is used",
);
pub const EXPUNGE_RANGE: Rule = must(
    "imap.expunge.range",
    "RFC 3501 7.4.1",
    "EXPUNGE names a message number that exists",
);
pub const EXPUNGE_DURING_FETCH: Rule = must(
    "imap.expunge.during-fetch",
    "RFC 3501 7.4.1",
    "no EXPUNGE while only FETCH, STORE or SEARCH (non-UID) commands are in progress",
);
pub const EXPUNGE_NO_COMMAND: Rule = must(
    "imap.expunge.no-command",
    "RFC 3501 5.3, 7.4.1",
    "no EXPUNGE while no command is in progress",
);
pub const LITERAL_SIZE: Rule = should(
    "imap.literal.size",
    "RFC 3501 2.3.4, 6.4.5",
    "RFC822.SIZE equals the number of octets of the message's BODY[] / RFC822",
);

/// Every rule, in documentation order.
pub const ALL: &[Rule] = &[
    SYNTAX_RESPONSE,
    SYNTAX_CRLF,
    SYNTAX_RESPONSE_CODE,
    GREETING,
    TAG_UNKNOWN,
    TAG_ECHO,
    TAG_DUPLICATE,
    TAG_MISSING,
    CONTINUATION_UNEXPECTED,
    STATE_COMMAND,
    STATE_SELECTED_RESPONSE,
    STATE_LOGOUT,
    UID_ASCENDING,
    UID_STABLE,
    UID_BELOW_UIDNEXT,
    UID_REUSED,
    UIDVALIDITY_STABLE,
    UIDVALIDITY_DECREASE,
    UIDVALIDITY_RANGE,
    UIDPLUS_APPENDUID,
    UIDPLUS_COPYUID,
    FLAGS_PERSIST,
    RECENT_SINGLE_SESSION,
    EXISTS_CONSISTENT,
    EXPUNGE_RANGE,
    EXPUNGE_DURING_FETCH,
    EXPUNGE_NO_COMMAND,
    LITERAL_SIZE,
];
