//! Tags and continuations: each command gets exactly one tagged completion with its exact tag
//! (`imap.tag.*`), and `+` only answers a synchronizing literal, AUTHENTICATE or IDLE
//! (`imap.continuation.unexpected`).
//!
//! The engine may record a client message only after sending all of it, so a `+` for its
//! literal, or an early rejection, can arrive before the message itself: both are held until
//! the next client message (or the end of the session) explains them.

use super::client::{Cmd, Kind};
use super::rules;
use super::session::{Pending, Session};
use super::syntax::tokens;
use crate::checks::Violation;
use crate::proto::imap::ServerFrame;

/// Register a command the client sent; `+`s already received pay for its literals.
pub fn command_sent(s: &mut Session, cmd: Cmd, literals: u32, now: u64, out: &mut Vec<Violation>) {
    let paid = (literals as usize).min(s.unexplained_plus.len());
    s.unexplained_plus.drain(..paid);
    flush_unexplained(s, out);
    let state = if s.uncertain || s.state_change_in_flight() {
        None
    } else {
        Some(s.state)
    };
    s.pending.push(Pending {
        cmd,
        sent_at: now,
        state,
        literals_owed: literals - paid as u32,
        plus_seen: paid as u32,
        flags_reported: Default::default(),
        flag_change_in: None,
        copyuid_seen: false,
        done_sent: false,
        client_data: 0,
    });
}

/// `+` requests no command asked for.
pub fn flush_unexplained(s: &mut Session, out: &mut Vec<Violation>) {
    for raw in s.unexplained_plus.drain(..) {
        out.push(rules::CONTINUATION_UNEXPECTED.violation(
            &s.name,
            "continuation request while no literal, AUTHENTICATE or IDLE was waiting for one",
            &raw,
        ));
    }
}

/// Completions for tags that no client message explained.
pub fn flush_early(s: &mut Session, out: &mut Vec<Violation>) {
    for frame in std::mem::take(&mut s.early) {
        let (tag, _, _) = tokens(&frame.raw);
        out.push(rules::TAG_UNKNOWN.violation(
            &s.name,
            format!("tagged completion for {tag}, a tag never sent"),
            &frame.raw,
        ));
    }
}

/// A `+` continuation request.
pub fn continuation(s: &mut Session, raw: &[u8]) {
    if let Some(p) = s.pending.iter_mut().find(|p| p.literals_owed > 0) {
        p.literals_owed -= 1;
        p.plus_seen += 1;
    } else if let Some(p) = s.pending.iter_mut().find(|p| {
        matches!(p.cmd.kind, Kind::Authenticate { .. })
            || (matches!(p.cmd.kind, Kind::Idle) && p.plus_seen == 0)
    }) {
        p.plus_seen += 1;
    } else {
        s.unexplained_plus.push(raw.to_vec());
    }
}

/// What a tagged completion completes.
pub enum Completion {
    Command(Box<Pending>),
    /// Held until the client message shows up (or reported).
    None,
}

/// Match a tagged completion to its command.
pub fn completion(
    s: &mut Session,
    tag: &str,
    frame: &ServerFrame,
    out: &mut Vec<Violation>,
) -> Completion {
    if let Some(i) = s.pending.iter().position(|p| p.cmd.tag == tag) {
        s.completed.insert(tag.to_string());
        return Completion::Command(Box::new(s.pending.remove(i)));
    }
    if let Some(i) = s
        .pending
        .iter()
        .position(|p| p.cmd.tag.eq_ignore_ascii_case(tag))
    {
        let p = s.pending.remove(i);
        out.push(rules::TAG_ECHO.violation(
            &s.name,
            format!(
                "completion tagged {tag} for the command tagged {}",
                p.cmd.tag
            ),
            &frame.raw,
        ));
        s.completed.insert(p.cmd.tag.clone());
        return Completion::Command(Box::new(p));
    }
    if s.completed.contains(tag) {
        out.push(rules::TAG_DUPLICATE.violation(
            &s.name,
            format!("second tagged completion for {tag}"),
            &frame.raw,
        ));
    } else {
        s.early.push(frame.clone());
    }
    Completion::None
}

/// The connection ended: commands the server never completed.
pub fn closed(s: &mut Session, client_dropped: bool, out: &mut Vec<Violation>) {
    flush_unexplained(s, out);
    flush_early(s, out);
    let pending = std::mem::take(&mut s.pending);
    if s.bye_seen || client_dropped {
        return;
    }
    for p in pending {
        // Still owed a `+`, or waiting for the client (IDLE without DONE, AUTHENTICATE data):
        // the client never finished the command.
        let client_turn = p.literals_owed > 0
            || (matches!(p.cmd.kind, Kind::Idle) && !p.done_sent)
            || (matches!(p.cmd.kind, Kind::Authenticate { .. }) && p.plus_seen > p.client_data);
        if client_turn || !p.cmd.parsed {
            continue;
        }
        out.push(rules::TAG_MISSING.violation(
            &s.name,
            format!("{} {} was never completed", p.cmd.tag, p.cmd.name),
            &[],
        ));
    }
}
