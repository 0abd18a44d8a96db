//! Scenario-style tests: hand-written client/server exchanges, one or more per rule, and clean
//! Dovecot-like sessions that must trigger nothing.

use std::collections::BTreeSet;

use imap_codec::decode::Decoder;
use imap_codec::{GreetingCodec, ResponseCodec};

use super::{ImapChecks, SharedModel, rules};
use crate::checks::{Level, Violation};
use crate::proto::imap::{LineEnding, Parsed, ServerFrame};

/// Build a frame as the engine would: parsed by imap-codec, or Unparsed.
fn frame(raw: &[u8], greeting: bool) -> ServerFrame {
    let bare_lf = raw
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || raw[i - 1] != b'\r'));
    // A lenient framer would still parse a bare-LF message: parse its CRLF form.
    let text: Vec<u8> = if bare_lf {
        raw.iter()
            .flat_map(|b| {
                if *b == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![*b]
                }
            })
            .collect()
    } else {
        raw.to_vec()
    };
    let parsed = if greeting {
        match GreetingCodec::default().decode_static(&text) {
            Ok((b"", g)) => Parsed::Greeting(g),
            _ => Parsed::Unparsed("not a greeting".into()),
        }
    } else {
        match ResponseCodec::default().decode_static(&text) {
            Ok((b"", r)) => Parsed::Response(r),
            _ => Parsed::Unparsed("imap-codec rejected it".into()),
        }
    };
    ServerFrame {
        raw: raw.to_vec(),
        line_ending: if bare_lf {
            LineEnding::Lf
        } else {
            LineEnding::Crlf
        },
        parsed,
    }
}

fn crlf(text: &str) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    if !v.ends_with(b"\n") {
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Drives one `ImapChecks` like the engine does.
struct Run {
    checks: ImapChecks,
    greeted: BTreeSet<String>,
    found: Vec<Violation>,
}

impl Run {
    fn new(shared: &SharedModel) -> Self {
        Run {
            checks: ImapChecks::new(shared.clone()),
            greeted: BTreeSet::new(),
            found: Vec::new(),
        }
    }

    fn open(&mut self, session: &str, account: &str) {
        self.checks.session_opened(session, account);
        self.greeted.remove(session);
    }

    /// Client lines (CRLF appended to each `\n`-less piece).
    fn c(&mut self, session: &str, text: &str) {
        let f = self.checks.client_message(session, &crlf(text));
        self.found.extend(f);
    }

    fn c_raw(&mut self, session: &str, bytes: &[u8]) {
        let f = self.checks.client_message(session, bytes);
        self.found.extend(f);
    }

    /// One server message per line of `text` (lines ending in `}` join the next).
    fn s(&mut self, session: &str, text: &str) {
        for msg in text.split("\n").filter(|l| !l.is_empty()) {
            self.s_raw(session, &crlf(msg));
        }
    }

    fn s_raw(&mut self, session: &str, raw: &[u8]) {
        let greeting = self.greeted.insert(session.to_string());
        let f = self.checks.server_message(session, &frame(raw, greeting));
        self.found.extend(f);
    }

    fn close(&mut self, session: &str) {
        let f = self.checks.session_closed(session);
        self.found.extend(f);
    }

    fn finish(&mut self) -> Vec<&'static str> {
        let f = self.checks.finish();
        self.found.extend(f);
        self.rules()
    }

    fn rules(&self) -> Vec<&'static str> {
        self.found.iter().map(|v| v.rule).collect()
    }

    /// Greeting, LOGIN and SELECT of INBOX with `exists` messages.
    fn login_select(&mut self, session: &str, uidvalidity: u32, uidnext: u32, exists: u32) {
        self.open(session, "alice");
        self.s(
            session,
            "* OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE LITERAL+] Dovecot ready.",
        );
        self.c(session, "a1 LOGIN alice secret");
        self.s(
            session,
            "a1 OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE] Logged in",
        );
        self.c(session, "a2 SELECT INBOX");
        self.s(
            session,
            &format!(
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\n\
                 * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\n\
                 * {exists} EXISTS\n* 0 RECENT\n\
                 * OK [UIDVALIDITY {uidvalidity}] UIDs valid\n* OK [UIDNEXT {uidnext}] Predicted next UID\n\
                 a2 OK [READ-WRITE] Select completed."
            ),
        );
    }
}

fn model() -> SharedModel {
    SharedModel::default()
}

fn only(found: &[&'static str], rule: &str) {
    assert!(!found.is_empty(), "expected {rule}, found nothing");
    assert!(
        found.iter().all(|r| *r == rule),
        "expected only {rule}, found {found:?}"
    );
}

// ---------------------------------------------------------------- clean sessions

#[test]
fn dovecot_like_sessions_are_clean() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.login_select("1", 1700000000, 4, 3);
    r.c("1", "a3 FETCH 1:* (UID FLAGS RFC822.SIZE)");
    r.s(
        "1",
        "* 1 FETCH (UID 1 FLAGS (\\Seen) RFC822.SIZE 5)\n\
         * 2 FETCH (UID 2 FLAGS () RFC822.SIZE 7)\n\
         * 3 FETCH (UID 3 FLAGS (\\Recent) RFC822.SIZE 9)\n\
         a3 OK Fetch completed.",
    );
    r.c("1", "a4 STORE 2 +FLAGS (\\Flagged $Work)");
    r.s(
        "1",
        "* 2 FETCH (FLAGS (\\Flagged $Work))\na4 OK Store completed.",
    );
    r.c("1", "a5 UID FETCH 1 (BODY[])");
    r.s_raw("1", b"* 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\n");
    r.s("1", "a5 OK Fetch completed.");
    r.c("1", "a6 STORE 3 +FLAGS.SILENT (\\Deleted)");
    r.s("1", "a6 OK Store completed.");
    // APPEND with a synchronizing literal: the `+` arrives before the message is recorded.
    r.s("1", "+ OK");
    r.c_raw("1", b"a7 APPEND INBOX (\\Seen) {5}\r\nhello\r\n");
    r.s(
        "1",
        "* 4 EXISTS\n* 1 RECENT\na7 OK [APPENDUID 1700000000 4] Append completed.",
    );
    r.c("1", "a8 EXPUNGE");
    r.s("1", "* 3 EXPUNGE\na8 OK Expunge completed.");
    r.c("1", "a9 UID COPY 1:2 Archive");
    r.s("1", "a9 OK [COPYUID 42 1:2 7:8] Copy completed.");
    r.c("1", "a10 IDLE");
    r.s("1", "+ idling\n* 4 EXISTS");
    r.c("1", "DONE");
    r.s("1", "a10 OK Idle completed.");
    r.c("1", "a11 FETCH 4 (UID FLAGS)");
    r.s(
        "1",
        "* 4 FETCH (UID 5 FLAGS (\\Recent))\na11 OK Fetch completed.",
    );
    r.c("1", "a12 LOGOUT");
    r.s("1", "* BYE Logging out\na12 OK Logout completed.");
    r.close("1");

    // A second session (and a second scenario) sees the same mailbox.
    let mut r2 = Run::new(&shared);
    r2.login_select("2", 1700000000, 6, 4);
    r2.c("2", "b3 FETCH 1:* (UID FLAGS)");
    r2.s(
        "2",
        "* 1 FETCH (UID 1 FLAGS (\\Seen))\n\
         * 2 FETCH (UID 2 FLAGS (\\Flagged $Work))\n\
         * 3 FETCH (UID 4 FLAGS (\\Seen))\n\
         * 4 FETCH (UID 5 FLAGS ())\n\
         b3 OK Fetch completed.",
    );
    r2.c("2", "b4 STATUS Archive (UIDVALIDITY UIDNEXT MESSAGES)");
    r2.s(
        "2",
        "* STATUS Archive (MESSAGES 2 UIDNEXT 9 UIDVALIDITY 42)\nb4 OK Status completed.",
    );
    r2.c("2", "b5 CLOSE");
    r2.s("2", "b5 OK Close completed.");
    r2.c("2", "b6 LIST \"\" *");
    r2.s(
        "2",
        "* LIST (\\HasNoChildren) \"/\" INBOX\nb6 OK List completed.",
    );
    r.found.extend(r2.checks.finish());
    r.found.extend(r2.found);
    assert_eq!(r.finish(), Vec::<&str>::new(), "{:#?}", r.found);
}

#[test]
fn legal_but_tricky_behaviour_is_clean() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.login_select("1", 7, 10, 2);
    r.c("1", "a3 FETCH 1:2 (UID FLAGS)");
    r.s(
        "1",
        "* 1 FETCH (UID 3 FLAGS ($Temp))\n* 2 FETCH (UID 8 FLAGS ())\na3 OK done",
    );
    // EXPUNGE during a UID command is allowed; a new message above UIDNEXT is fine.
    r.c("1", "a4 UID FETCH 1:* (FLAGS)");
    r.s(
        "1",
        "* 1 EXPUNGE\n* 2 EXISTS\n* 2 FETCH (UID 12 FLAGS (\\Recent))\na4 OK done",
    );
    // A literal rejected before the engine recorded the message.
    r.s("1", "a5 NO [TOOBIG] too big");
    r.c("1", "a5 APPEND INBOX {999999999}");
    // A pipelined SELECT cannot be attributed: nothing checked, nothing flagged.
    r.c("1", "a6 NOOP");
    r.c("1", "a7 SELECT Other");
    r.s(
        "1",
        "* 1 FETCH (UID 1 FLAGS ())\na6 OK done\n* 0 EXISTS\na7 OK [READ-WRITE] done",
    );
    // DELETE then CREATE: a new UIDVALIDITY is expected.
    r.c("1", "a8 DELETE Other");
    r.s("1", "a8 OK done");
    r.c("1", "a9 CREATE Other");
    r.s("1", "a9 OK done");
    r.c("1", "a10 STATUS Other (UIDVALIDITY UIDNEXT)");
    r.s(
        "1",
        "* STATUS Other (UIDVALIDITY 99 UIDNEXT 1)\na10 OK done",
    );
    // ESEARCH is legal even though imap-codec does not parse it.
    r.c("1", "a11 UID SEARCH RETURN (ALL) ALL");
    r.s("1", "* ESEARCH (TAG \"a11\") UID ALL 1:3\na11 OK done");
    r.close("1");

    // EXAMINE does not consume \Recent; a keyword outside PERMANENTFLAGS may be lost.
    let mut r2 = Run::new(&shared);
    r2.open("2", "alice");
    r2.s("2", "* PREAUTH ready");
    r2.c("2", "b1 EXAMINE Other");
    r2.s(
        "2",
        "* 0 EXISTS\n* OK [UIDVALIDITY 99] ok\nb1 OK [READ-ONLY] done",
    );
    r2.c("2", "b2 SELECT INBOX");
    r2.s("2", "* 2 EXISTS\n* OK [PERMANENTFLAGS (\\Seen \\Flagged)] limited\n* OK [UIDVALIDITY 7] ok\nb2 OK done");
    r2.c("2", "b3 STORE 1 +FLAGS (\\Flagged $Session)");
    r2.s("2", "* 1 FETCH (FLAGS (\\Flagged $Session))\nb3 OK done");
    r2.c("2", "b4 LOGOUT");
    r2.s("2", "* BYE bye\nb4 OK done");
    r2.close("2");
    let mut r3 = Run::new(&shared);
    r3.open("3", "alice");
    r3.s("3", "* PREAUTH ready");
    r3.c("3", "c1 SELECT INBOX");
    r3.s("3", "* 2 EXISTS\n* OK [UIDVALIDITY 7] ok\nc1 OK done");
    r3.c("3", "c2 FETCH 1 (UID FLAGS)");
    r3.s("3", "* 1 FETCH (UID 8 FLAGS (\\Flagged))\nc2 OK done");
    // A server BYE ends the session: the outstanding command needs no completion.
    r3.c("3", "c3 NOOP");
    r3.s("3", "* BYE shutting down");
    r3.close("3");
    r.found.extend(r2.found);
    r.found.extend(r3.found);
    assert_eq!(r.finish(), Vec::<&str>::new(), "{:#?}", r.found);
}

#[test]
fn extensions_imap_codec_lacks_are_clean() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.login_select("1", 7, 20, 2);
    r.c("1", "a3 LIST (SUBSCRIBED) \"\" *");
    r.s(
        "1",
        "* LIST (\\Subscribed) \"/\" foo (\"CHILDINFO\" (\"SUBSCRIBED\"))\na3 OK done",
    );
    r.c("1", "a4 STATUS INBOX (APPENDLIMIT)");
    r.s("1", "* STATUS INBOX (APPENDLIMIT 1000)\na4 OK done");
    // MULTIAPPEND: APPENDUID with a UID set.
    r.c("1", "a5 APPEND INBOX {1+}\r\nx {1+}\r\ny");
    r.s("1", "* 4 EXISTS\na5 OK [APPENDUID 7 21:22] done");
    r.c("1", "a6 FETCH 1 (UID EMAILID (M1))");
    r.s(
        "1",
        "* 1 FETCH (UID 3 EMAILID (M6d99ac3275bb4e))\na6 OK done",
    );
    assert_eq!(r.finish(), Vec::<&str>::new(), "{:#?}", r.found);
}

#[test]
fn uidnext_sent_before_exists_proves_nothing_about_new_messages() {
    let mut r = Run::new(&model());
    r.open("1", "alice");
    r.s("1", "* PREAUTH hi");
    r.c("1", "a1 SELECT INBOX");
    r.s(
        "1",
        "* OK [UIDVALIDITY 3] v\n* OK [UIDNEXT 5] n\n* 2 EXISTS\na1 OK done",
    );
    r.c("1", "a2 FETCH 2 UID");
    r.s("1", "* 2 FETCH (UID 5)\na2 OK done");
    assert_eq!(r.finish(), Vec::<&str>::new(), "{:#?}", r.found);
}

#[test]
fn cleared_flag_reappears() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.login_select("1", 1, 10, 1);
    r.c("1", "a3 STORE 1 FLAGS (\\Seen \\Flagged)");
    r.s(
        "1",
        "* 1 FETCH (UID 4 FLAGS (\\Seen \\Flagged))\na3 OK done",
    );
    r.c("1", "a4 STORE 1 FLAGS.SILENT (\\Seen)");
    r.s("1", "a4 OK done");
    r.close("1");
    r.login_select("2", 1, 10, 1);
    r.c("2", "b3 FETCH 1 (UID FLAGS)");
    r.s(
        "2",
        "* 1 FETCH (UID 4 FLAGS (\\Seen \\Flagged))\nb3 OK done",
    );
    only(&r.finish(), rules::FLAGS_PERSIST.id);
}

// ---------------------------------------------------------------- syntax

#[test]
fn garbage_is_a_syntax_violation() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.s("1", "* ))garbage((");
    only(&r.rules(), rules::SYNTAX_RESPONSE.id);
}

#[test]
fn bare_lf_is_flagged() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.c("1", "a3 NOOP");
    r.s_raw("1", b"a3 OK done\n");
    only(&r.finish(), rules::SYNTAX_CRLF.id);
}

#[test]
fn malformed_response_code() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.s("1", "* OK [UIDNEXT abc] next");
    only(&r.rules(), rules::SYNTAX_RESPONSE_CODE.id);
}

#[test]
fn uidvalidity_zero_or_too_big() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.s("1", "* OK [UIDVALIDITY 0] zero");
    r.c("1", "a3 STATUS INBOX (UIDVALIDITY)");
    r.s("1", "* STATUS INBOX (UIDVALIDITY 4294967296)\na3 OK done");
    assert_eq!(r.rules(), vec![rules::UIDVALIDITY_RANGE.id; 2]);
}

#[test]
fn first_message_must_be_a_greeting() {
    let mut r = Run::new(&model());
    r.open("1", "alice");
    r.s("1", "* 3 EXISTS");
    only(&r.rules(), rules::GREETING.id);
}

// ---------------------------------------------------------------- tags and continuations

#[test]
fn wrong_tag_is_unknown() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.c("1", "a3 NOOP");
    r.s("1", "zz9 OK done");
    r.c("1", "a4 NOOP");
    r.s("1", "a4 OK done");
    let found = r.finish();
    assert_eq!(found, vec![rules::TAG_UNKNOWN.id, rules::TAG_MISSING.id]);
}

#[test]
fn tag_case_mangled() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.c("1", "abc NOOP");
    r.s("1", "ABC OK done");
    only(&r.finish(), rules::TAG_ECHO.id);
}

#[test]
fn duplicate_completion() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.c("1", "a3 NOOP");
    r.s("1", "a3 OK done\na3 OK again");
    only(&r.finish(), rules::TAG_DUPLICATE.id);
}

#[test]
fn missing_completion_at_close() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.c("1", "a3 CHECK");
    r.close("1");
    only(&r.rules(), rules::TAG_MISSING.id);
    assert_eq!(r.found[0].level, Level::Must);
}

#[test]
fn unparsable_command_answered_untagged_is_not_missing() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.c("1", "DONE");
    r.s("1", "* BAD Error in IMAP command received by server.");
    assert_eq!(r.finish(), Vec::<&str>::new(), "{:#?}", r.found);
}

#[test]
fn dropped_by_the_client_is_not_missing() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.c("1", "a3 CHECK");
    let found = r.checks.session_dropped("1");
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn unexpected_continuation() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.s("1", "+ go ahead");
    r.c("1", "a3 NOOP");
    r.s("1", "a3 OK done");
    only(&r.finish(), rules::CONTINUATION_UNEXPECTED.id);
}

#[test]
fn second_idle_continuation_is_unexpected() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.c("1", "a3 IDLE");
    r.s("1", "+ idling\n+ idling");
    r.c("1", "DONE");
    r.s("1", "a3 OK done");
    only(&r.finish(), rules::CONTINUATION_UNEXPECTED.id);
}

// ---------------------------------------------------------------- state machine

#[test]
fn fetch_before_select_completed_ok() {
    let mut r = Run::new(&model());
    r.open("1", "alice");
    r.s("1", "* OK ready");
    r.c("1", "a1 LOGIN alice secret");
    r.s("1", "a1 OK in");
    r.c("1", "a2 FETCH 1 FLAGS");
    r.s("1", "a2 OK done");
    only(&r.finish(), rules::STATE_COMMAND.id);
}

#[test]
fn failed_select_deselects() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 1);
    r.c("1", "a3 SELECT nosuch");
    r.s("1", "a3 NO [NONEXISTENT] no such mailbox");
    r.c("1", "a4 EXPUNGE");
    r.s("1", "a4 OK done");
    only(&r.finish(), rules::STATE_COMMAND.id);
}

#[test]
fn login_twice_is_a_state_error() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 1);
    r.c("1", "a3 LOGIN alice secret");
    r.s("1", "a3 OK again");
    only(&r.finish(), rules::STATE_COMMAND.id);
}

#[test]
fn exists_when_nothing_selected() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 1);
    r.c("1", "a3 CLOSE");
    r.s("1", "a3 OK closed");
    r.c("1", "a4 NOOP");
    r.s("1", "* 5 EXISTS\na4 OK done");
    only(&r.finish(), rules::STATE_SELECTED_RESPONSE.id);
}

#[test]
fn logout_without_bye() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 2, 0);
    r.c("1", "a3 LOGOUT");
    r.s("1", "a3 OK bye");
    only(&r.finish(), rules::STATE_LOGOUT.id);
}

// ---------------------------------------------------------------- UIDs

#[test]
fn uids_going_backwards() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 10, 3);
    r.c("1", "a3 FETCH 1:3 UID");
    r.s(
        "1",
        "* 1 FETCH (UID 5)\n* 2 FETCH (UID 3)\n* 3 FETCH (UID 6)\na3 OK done",
    );
    only(&r.finish(), rules::UID_ASCENDING.id);
}

#[test]
fn uid_changes_within_session() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 10, 1);
    r.c("1", "a3 FETCH 1 UID");
    r.s("1", "* 1 FETCH (UID 5)\na3 OK done");
    r.c("1", "a4 FETCH 1 UID");
    r.s("1", "* 1 FETCH (UID 6)\na4 OK done");
    only(&r.finish(), rules::UID_STABLE.id);
}

#[test]
fn old_message_at_or_above_uidnext() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 5, 2);
    r.c("1", "a3 FETCH 2 UID");
    r.s("1", "* 2 FETCH (UID 7)\na3 OK done");
    only(&r.finish(), rules::UID_BELOW_UIDNEXT.id);
}

#[test]
fn uidnext_not_above_seen_uid() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.login_select("1", 1, 10, 1);
    r.c("1", "a3 FETCH 1 UID");
    r.s("1", "* 1 FETCH (UID 9)\na3 OK done");
    r.c("1", "a4 STATUS INBOX (UIDNEXT)");
    r.s("1", "* STATUS INBOX (UIDNEXT 9)\na4 OK done");
    only(&r.finish(), rules::UID_BELOW_UIDNEXT.id);
}

#[test]
fn expunged_uid_reappears_in_later_session() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.login_select("1", 1, 10, 2);
    r.c("1", "a3 FETCH 1:2 UID");
    r.s("1", "* 1 FETCH (UID 3)\n* 2 FETCH (UID 4)\na3 OK done");
    r.c("1", "a4 EXPUNGE");
    r.s("1", "* 1 EXPUNGE\na4 OK done");
    r.close("1");
    r.login_select("2", 1, 10, 2);
    r.c("2", "b3 FETCH 1:2 UID");
    r.s("2", "* 1 FETCH (UID 3)\n* 2 FETCH (UID 4)\nb3 OK done");
    only(&r.finish(), rules::UID_REUSED.id);
}

#[test]
fn uidvalidity_changes_between_sessions() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.login_select("1", 100, 10, 0);
    r.close("1");
    r.login_select("2", 200, 10, 0);
    only(&r.finish(), rules::UIDVALIDITY_STABLE.id);
    assert_eq!(r.found[0].level, Level::Should);
    let mut r = Run::new(&shared);
    r.login_select("3", 50, 10, 0);
    only(&r.finish(), rules::UIDVALIDITY_DECREASE.id);
}

#[test]
fn appenduid_with_wrong_uidvalidity_or_old_uid() {
    let mut r = Run::new(&model());
    r.login_select("1", 100, 10, 0);
    r.c("1", "a3 APPEND INBOX {1+}\r\nx");
    r.s("1", "a3 OK [APPENDUID 101 10] done");
    r.c("1", "a4 APPEND INBOX {1+}\r\nx");
    r.s("1", "a4 OK [APPENDUID 100 3] done");
    assert_eq!(r.finish(), vec![rules::UIDPLUS_APPENDUID.id; 2]);
}

#[test]
fn copyuid_set_sizes_and_source() {
    let mut r = Run::new(&model());
    r.login_select("1", 100, 10, 2);
    r.c("1", "a3 UID COPY 1:2 Archive");
    r.s("1", "a3 OK [COPYUID 5 1:2 7] done");
    r.c("1", "a4 UID COPY 1 Archive");
    r.s("1", "a4 OK [COPYUID 5 4 9] done");
    assert_eq!(r.finish(), vec![rules::UIDPLUS_COPYUID.id; 2]);
}

// ---------------------------------------------------------------- flags

#[test]
fn stored_flag_disappears_in_later_session() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.login_select("1", 1, 10, 1);
    r.c("1", "a3 UID STORE 4 +FLAGS.SILENT (\\Flagged)");
    r.s("1", "a3 OK done");
    r.c("1", "a4 FETCH 1 (UID FLAGS)");
    r.s("1", "* 1 FETCH (UID 4 FLAGS (\\Flagged))\na4 OK done");
    r.c("1", "a5 LOGOUT");
    r.s("1", "* BYE bye\na5 OK done");
    r.close("1");
    let mut r2 = Run::new(&shared);
    r2.login_select("2", 1, 10, 1);
    r2.c("2", "b3 FETCH 1 (UID FLAGS)");
    r2.s("2", "* 1 FETCH (UID 4 FLAGS ())\nb3 OK done");
    only(&r2.finish(), rules::FLAGS_PERSIST.id);
    assert!(r.finish().is_empty());
}

#[test]
fn silent_store_is_modelled() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.login_select("1", 1, 10, 1);
    r.c("1", "a3 FETCH 1 (UID FLAGS)");
    r.s("1", "* 1 FETCH (UID 4 FLAGS (\\Seen))\na3 OK done");
    r.c("1", "a4 STORE 1 -FLAGS.SILENT (\\Seen)");
    r.s("1", "a4 OK done");
    r.close("1");
    r.login_select("2", 1, 10, 1);
    r.c("2", "b3 FETCH 1 (UID FLAGS)");
    r.s("2", "* 1 FETCH (UID 4 FLAGS (\\Seen))\nb3 OK done");
    only(&r.finish(), rules::FLAGS_PERSIST.id);
}

#[test]
fn unnamed_sessions_are_keyed_by_their_login() {
    let shared = model();
    let mut r = Run::new(&shared);
    // No session_opened: the account comes from AUTHENTICATE PLAIN (bob) and LOGIN (carol).
    for (session, auth) in [("1", "bob"), ("2", "carol")] {
        r.s(session, "* OK hi");
        if auth == "bob" {
            r.c(session, "a1 AUTHENTICATE PLAIN");
            r.s(session, "+ ");
            r.c(session, "AGJvYgBzZWNyZXQ=");
        } else {
            r.c(session, "a1 LOGIN carol secret");
        }
        r.s(session, "a1 OK in");
        r.c(session, "a2 SELECT INBOX");
        let v = if auth == "bob" { 10 } else { 20 };
        r.s(
            session,
            &format!("* 0 EXISTS\n* OK [UIDVALIDITY {v}] v\na2 OK done"),
        );
    }
    assert_eq!(r.finish(), Vec::<&str>::new(), "{:#?}", r.found);
    // The same user again: now UIDVALIDITY is compared.
    let mut r = Run::new(&shared);
    r.s("3", "* OK hi");
    r.c("3", "a1 AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=");
    r.s("3", "a1 OK in");
    r.c("3", "a2 SELECT INBOX");
    r.s("3", "* 0 EXISTS\n* OK [UIDVALIDITY 11] v\na2 OK done");
    only(&r.finish(), rules::UIDVALIDITY_STABLE.id);
}

#[test]
fn base64_and_sasl_users() {
    use super::client::{base64, sasl_user};
    assert_eq!(
        base64(b"AGJvYgBzZWNyZXQ=").as_deref(),
        Some(&b"\0bob\0secret"[..])
    );
    assert_eq!(base64(b"not base64!"), None);
    assert_eq!(
        sasl_user("PLAIN", b"admin\0bob\0pw").as_deref(),
        Some("admin")
    );
    assert_eq!(sasl_user("LOGIN", b"bob").as_deref(), Some("bob"));
    assert_eq!(sasl_user("XOAUTH2", b"x"), None);
}

#[test]
fn store_ignored_on_read_only_mailbox_is_not_modelled() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.open("1", "alice");
    r.s("1", "* PREAUTH hi");
    r.c("1", "a1 EXAMINE INBOX");
    r.s(
        "1",
        "* 1 EXISTS\n* OK [UIDVALIDITY 1] v\n* OK [UIDNEXT 5] n\na1 OK [READ-ONLY] done",
    );
    r.c("1", "a2 FETCH 1 (UID FLAGS)");
    r.s("1", "* 1 FETCH (UID 4 FLAGS ())\na2 OK done");
    r.c("1", "a3 STORE 1 +FLAGS.SILENT (\\Seen)");
    r.s("1", "a3 OK Store ignored with read-only mailbox");
    r.close("1");
    r.login_select("2", 1, 5, 1);
    r.c("2", "b3 FETCH 1 (UID FLAGS)");
    r.s("2", "* 1 FETCH (UID 4 FLAGS ())\nb3 OK done");
    assert_eq!(r.finish(), Vec::<&str>::new(), "{:#?}", r.found);
}

#[test]
fn recent_in_two_sessions() {
    let shared = model();
    let mut r = Run::new(&shared);
    r.login_select("1", 1, 10, 1);
    r.c("1", "a3 FETCH 1 (UID FLAGS)");
    r.s("1", "* 1 FETCH (UID 4 FLAGS (\\Recent))\na3 OK done");
    r.login_select("2", 1, 10, 1);
    r.c("2", "b3 FETCH 1 (UID FLAGS)");
    r.s("2", "* 1 FETCH (UID 4 FLAGS (\\Recent))\nb3 OK done");
    only(&r.finish(), rules::RECENT_SINGLE_SESSION.id);
}

// ---------------------------------------------------------------- counts

#[test]
fn exists_decreasing() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 10, 3);
    r.c("1", "a3 NOOP");
    r.s("1", "* 2 EXISTS\na3 OK done");
    only(&r.finish(), rules::EXISTS_CONSISTENT.id);
}

#[test]
fn fetch_beyond_exists() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 10, 3);
    r.c("1", "a3 NOOP");
    r.s("1", "* 4 FETCH (FLAGS ())\na3 OK done");
    only(&r.finish(), rules::EXISTS_CONSISTENT.id);
}

#[test]
fn expunge_beyond_exists() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 10, 3);
    r.c("1", "a3 EXPUNGE");
    r.s("1", "* 5 EXPUNGE\na3 OK done");
    only(&r.finish(), rules::EXPUNGE_RANGE.id);
}

#[test]
fn expunge_during_fetch() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 10, 3);
    r.c("1", "a3 FETCH 1:3 FLAGS");
    r.s("1", "* 2 EXPUNGE\na3 OK done");
    only(&r.finish(), rules::EXPUNGE_DURING_FETCH.id);
}

#[test]
fn expunge_with_no_command() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 10, 3);
    r.s("1", "* 2 EXPUNGE");
    only(&r.finish(), rules::EXPUNGE_NO_COMMAND.id);
}

#[test]
fn size_disagrees_with_body() {
    let mut r = Run::new(&model());
    r.login_select("1", 1, 10, 1);
    r.c("1", "a3 FETCH 1 (UID RFC822.SIZE BODY.PEEK[])");
    r.s_raw(
        "1",
        b"* 1 FETCH (UID 3 RFC822.SIZE 10 BODY[] {5}\r\nhello)\r\n",
    );
    r.s("1", "a3 OK done");
    only(&r.finish(), rules::LITERAL_SIZE.id);
    assert_eq!(r.found[0].level, Level::Should);
}

// ---------------------------------------------------------------- robustness

#[test]
fn any_bytes_never_panic() {
    let mut r = Run::new(&model());
    r.open("1", "alice");
    let inputs: [&[u8]; 8] = [
        b"",
        b"\r\n",
        b"+",
        b"* 0 EXPUNGE\r\n",
        b"* 4294967295 EXISTS\r\n",
        b"a\xff OK\r\n",
        b"{5}\r\n",
        b"* 0 FETCH (UID 1)\r\n",
    ];
    for i in inputs {
        r.s_raw("1", i);
        r.c_raw("1", i);
    }
    r.login_select("3", 1, 2, 0);
    r.s(
        "3",
        "* 4294967295 EXISTS\n* 4294967295 FETCH (UID 4294967295 FLAGS ())\n* 1 EXPUNGE",
    );
    r.c_raw("2", b"x UID STORE * FLAGS (\\Seen)\r\n");
    r.s_raw("2", b"x OK\r\n");
    r.finish();
}

#[test]
fn docs_list_every_rule() {
    let doc = include_str!("../../../docs/checks.md");
    for rule in rules::ALL {
        assert!(
            doc.contains(&format!("`{}`", rule.id)),
            "docs/checks.md misses {}",
            rule.id
        );
    }
    let ids: BTreeSet<&str> = rules::ALL.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), rules::ALL.len(), "duplicate rule id");
}

// ---------------------------------------------------------------- a real server

/// A transcript recorded from Dovecot 2.3.19 on loopback (three sessions: APPEND with both
/// literal kinds, SELECT, FETCH, STORE, COPY, EXPUNGE, IDLE with a concurrent APPEND,
/// AUTHENTICATE, a failed SELECT, EXAMINE, UID MOVE, CLOSE, STATUS, LOGOUT).
/// Records: `<O|C|S|X> <session> <length>\n<bytes>\n`.
const DOVECOT: &[u8] = include_bytes!("testdata/dovecot-2.3.txt");

fn replay(transcript: &[u8], edit: impl Fn(&[u8]) -> Vec<u8>) -> Vec<Violation> {
    let shared = model();
    let mut r = Run::new(&shared);
    let mut rest = transcript;
    while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
        let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
        let mut words = header.split(' ');
        let (kind, session) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let len: usize = words
            .next()
            .and_then(|n| n.parse().ok())
            .expect("record length");
        let body = &rest[nl + 1..nl + 1 + len];
        rest = &rest[nl + 1 + len + 1..];
        match kind {
            "O" => r.open(session, &String::from_utf8_lossy(body)),
            "C" => r.c_raw(session, body),
            "S" => r.s_raw(session, &edit(body)),
            "X" => r.close(session),
            other => panic!("bad record {other}"),
        }
    }
    r.checks.finish();
    r.found
}

/// A second Dovecot 2.3.19 transcript: QRESYNC (VANISHED, MODSEQ), a second session's STORE
/// and UID EXPUNGE seen by NOOP, pipelined commands, ESEARCH, DELETE/CREATE/RENAME with new
/// UIDVALIDITYs, LIST-STATUS, unknown commands, UNSELECT, a STORE ignored on a read-only
/// mailbox, MOVE.
const DOVECOT_B: &[u8] = include_bytes!("testdata/dovecot-2.3-b.txt");

#[test]
fn dovecot_transcripts_are_clean() {
    for transcript in [DOVECOT, DOVECOT_B] {
        let found = replay(transcript, |b| b.to_vec());
        assert!(found.is_empty(), "{found:#?}");
    }
}

#[test]
fn dovecot_transcript_with_a_lost_flag_is_caught() {
    // Session 2 no longer shows \Flagged on the message session 1 flagged.
    let lost = b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Seen $Work))\r\n";
    let found = replay(DOVECOT, |b| {
        if b == lost {
            b"* 1 FETCH (UID 1 FLAGS (\\Seen $Work))\r\n".to_vec()
        } else {
            b.to_vec()
        }
    });
    let rules: Vec<&str> = found.iter().map(|v| v.rule).collect();
    assert_eq!(rules, vec![rules::FLAGS_PERSIST.id], "{found:#?}");
}

#[test]
fn mutated_transcripts_never_panic() {
    // Deterministic LCG: flip, drop or duplicate bytes of server messages.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    for _ in 0..150 {
        let salt = next();
        let found = replay(DOVECOT_B, |b| {
            let mut v = b.to_vec();
            if !v.is_empty() && salt % 3 == 0 {
                let i = (salt / 3) % v.len();
                v[i] = v[i].wrapping_add((salt % 251) as u8 + 1);
            } else if !v.is_empty() && salt % 3 == 1 {
                v.truncate((salt / 3) % v.len());
            }
            v
        });
        // Whatever was found names a known rule.
        assert!(
            found
                .iter()
                .all(|f| rules::ALL.iter().any(|r| r.id == f.rule))
        );
    }
}
