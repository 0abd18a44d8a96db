//! The RFC 3501 3 state machine: not authenticated -> authenticated -> selected -> logout,
//! driven by commands and their tagged results. Rules: `imap.state.command` (a command not
//! valid in its state completed OK), `imap.state.selected-response` (message data outside the
//! selected state) and `imap.state.logout` (LOGOUT's BYE).

use imap_types::response::GreetingKind;

use super::client::{Kind, Valid};
use super::rules;
use super::session::{Pending, Session, State};
use crate::checks::Violation;

/// Whether a command valid in `valid` may run in `state`.
pub fn allowed(valid: Valid, state: State) -> bool {
    match (valid, state) {
        (Valid::Any | Valid::Unknown, _) | (_, State::Connecting | State::Logout) => true,
        (Valid::NotAuthenticated, s) => s == State::NotAuthenticated,
        (Valid::Authenticated, s) => matches!(s, State::Authenticated | State::Selected),
        (Valid::Selected, s) => s == State::Selected,
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Connecting => "connecting",
        State::NotAuthenticated => "not authenticated",
        State::Authenticated => "authenticated",
        State::Selected => "selected",
        State::Logout => "logout",
    }
}

/// The greeting sets the first state (RFC 3501 7.1.1, 7.1.4, 7.1.5).
pub fn greeted(s: &mut Session, kind: GreetingKind) {
    s.state = match kind {
        GreetingKind::Ok => State::NotAuthenticated,
        GreetingKind::PreAuth => State::Authenticated,
        GreetingKind::Bye => {
            s.bye_seen = true;
            State::Logout
        }
    };
}

/// A tagged completion: check the command was allowed, then move the state.
pub fn completed(
    s: &mut Session,
    p: &Pending,
    ok: bool,
    bad: bool,
    raw: &[u8],
    out: &mut Vec<Violation>,
) {
    if ok
        && let Some(state) = p.state
        && !allowed(p.cmd.valid, state)
    {
        out.push(rules::STATE_COMMAND.violation(
            &s.name,
            format!(
                "{} completed OK in the {} state, where it is not valid",
                p.cmd.name,
                state_name(state)
            ),
            raw,
        ));
    }
    match &p.cmd.kind {
        Kind::Login { user }
        | Kind::Authenticate {
            user: Some(user), ..
        } if ok && s.account.is_empty() => {
            // The engine did not name the account: the login does.
            s.account = user.clone();
            s.state = State::Authenticated;
            s.uncertain = false;
        }
        Kind::Login { .. } | Kind::Authenticate { .. } if ok => {
            s.state = State::Authenticated;
            s.uncertain = false;
        }
        Kind::Select { .. } if ok => {
            s.state = State::Selected;
            s.uncertain = false;
        }
        Kind::Select { .. } => {
            // RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected. A BAD may not have
            // been an attempt at all, so the state is no longer certain.
            s.selection = None;
            if s.state == State::Selected {
                s.state = State::Authenticated;
            }
            s.uncertain |= bad;
        }
        Kind::Deselect if ok => {
            s.selection = None;
            s.state = State::Authenticated;
            s.uncertain = false;
        }
        Kind::Logout if ok => {
            if !s.bye_seen {
                out.push(rules::STATE_LOGOUT.violation(
                    &s.name,
                    "LOGOUT completed OK without an untagged BYE first",
                    raw,
                ));
            }
            s.state = State::Logout;
        }
        _ => {}
    }
}

/// Message data (EXISTS, RECENT, EXPUNGE, FETCH, VANISHED) needs a selected mailbox.
pub fn selected_data(s: &Session, what: &str, raw: &[u8], out: &mut Vec<Violation>) {
    if s.uncertain || s.state_change_in_flight() || s.selection.is_some() {
        return;
    }
    if matches!(s.state, State::NotAuthenticated | State::Authenticated) {
        out.push(rules::STATE_SELECTED_RESPONSE.violation(
            &s.name,
            format!(
                "{what} response in the {} state, with no mailbox selected",
                state_name(s.state)
            ),
            raw,
        ));
    }
}
