//! The always-on IMAP checks. The engine feeds every client and server message of every
//! session through [`ImapChecks`]; it keeps a model of each connection (state, commands in
//! progress, the selected mailbox's UIDs) and, through [`SharedModel`], of the target's
//! mailboxes across sessions and scenarios. Each rule lives in [`rules`]; the modules below
//! are named for what they check. Checks only flag what the responses prove: anything the
//! model cannot attribute for sure (pipelined state changes, racing sessions) is skipped.

mod client;
mod flags;
mod mailbox;
mod model;
pub mod rules;
mod session;
mod state;
mod syntax;
mod tags;
mod uidplus;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::MutexGuard;

use imap_types::response::{Code, Data, Response, Status, StatusKind};

use self::client::Kind;
pub use self::model::TargetModel;
use self::session::{Selection, Session, State};
use self::tags::Completion;
use super::Violation;
use crate::proto::imap::{Parsed, ServerFrame};

pub type SharedModel = std::sync::Arc<std::sync::Mutex<TargetModel>>;

/// The IMAP checker for one scenario run (all of its sessions).
pub struct ImapChecks {
    shared: SharedModel,
    sessions: HashMap<String, Session>,
    /// Violations found outside a call that returns them (a session reopened while open).
    backlog: Vec<Violation>,
}

fn lock(shared: &SharedModel) -> MutexGuard<'_, TargetModel> {
    // A panic elsewhere must not stop the checks: the model is only ever a best guess.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl ImapChecks {
    pub fn new(shared: SharedModel) -> Self {
        ImapChecks {
            shared,
            sessions: HashMap::new(),
            backlog: Vec::new(),
        }
    }

    /// A new connection for `session`, logged in (later) as `account`.
    pub fn session_opened(&mut self, session: &str, account: &str) {
        if self.sessions.get(session).is_some_and(|s| !s.closed) {
            let found = self.close(session, false);
            self.backlog.extend(found);
        }
        let id = {
            let mut model = lock(&self.shared);
            model.next_session += 1;
            model.next_session
        };
        self.sessions
            .insert(session.to_string(), Session::new(id, session, account));
    }

    /// The session named `name`; one never announced is tracked under an unknown account.
    fn session<'a>(
        sessions: &'a mut HashMap<String, Session>,
        model: &mut TargetModel,
        name: &str,
    ) -> &'a mut Session {
        sessions.entry(name.to_string()).or_insert_with(|| {
            model.next_session += 1;
            Session::new(model.next_session, name, "")
        })
    }

    /// One whole client message as sent (line plus literals, CRLF included).
    pub fn client_message(&mut self, session: &str, bytes: &[u8]) -> Vec<Violation> {
        let mut out = std::mem::take(&mut self.backlog);
        let shared = self.shared.clone();
        let mut model = lock(&shared);
        let now = model.tick();
        let s = Self::session(&mut self.sessions, &mut model, session);
        // Continuation data for a command in progress rather than a new command.
        if let Some(p) = s
            .pending
            .iter_mut()
            .find(|p| matches!(p.cmd.kind, Kind::Authenticate { .. }))
        {
            p.client_data += 1;
            if let Kind::Authenticate { mechanism, user } = &mut p.cmd.kind
                && user.is_none()
                && p.client_data == 1
            {
                let line = client::first_line(bytes);
                *user = client::base64(line).and_then(|d| client::sasl_user(mechanism, &d));
            }
            return out;
        }
        if client::is_done(bytes)
            && let Some(p) = s
                .pending
                .iter_mut()
                .find(|p| matches!(p.cmd.kind, Kind::Idle) && !p.done_sent)
        {
            p.done_sent = true;
            return out;
        }
        let Some(cmd) = client::parse_command(bytes) else {
            return out;
        };
        let tag = cmd.tag.clone();
        match &cmd.kind {
            Kind::Select { mailbox, examine } => {
                let key = s.key(mailbox);
                let tainted = !s.pending.is_empty();
                s.selection = Some(Selection::new(key, *examine, tainted));
            }
            Kind::Create { mailbox } | Kind::Delete { mailbox } => model.forget(&s.key(mailbox)),
            Kind::Rename { from, to } => {
                let account = s.account.clone();
                model.forget_tree(&account, &model::mailbox_name(from));
                model.forget_tree(&account, &model::mailbox_name(to));
            }
            _ => {}
        }
        let flag_change = matches!(
            cmd.kind,
            Kind::Store { .. } | Kind::Fetch { body: true, .. }
        );
        tags::command_sent(s, cmd, client::sync_literals(bytes), now, &mut out);
        if flag_change && let Some(sel) = s.selection.as_ref().filter(|sel| !sel.tainted) {
            let key = sel.key.clone();
            model.mailbox(&key).change_started(s.id);
            if let Some(p) = s.pending.last_mut() {
                p.flag_change_in = Some(key);
            }
        }
        // A rejection that arrived before the message was recorded.
        let early: Vec<ServerFrame> = {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut s.early)
                .into_iter()
                .partition(|f| syntax::tokens(&f.raw).0 == tag);
            s.early = rest;
            mine
        };
        tags::flush_early(s, &mut out);
        for frame in early {
            Self::server_frame(&mut model, s, &frame, now, &mut out);
        }
        out
    }

    /// One whole server message as received.
    pub fn server_message(&mut self, session: &str, frame: &ServerFrame) -> Vec<Violation> {
        let mut out = std::mem::take(&mut self.backlog);
        let shared = self.shared.clone();
        let mut model = lock(&shared);
        let now = model.tick();
        let s = Self::session(&mut self.sessions, &mut model, session);
        if s.state == State::Connecting {
            let greeted = syntax::check_greeting(&s.name, frame, &mut out);
            if let Parsed::Greeting(g) = &frame.parsed {
                state::greeted(s, g.kind);
            } else {
                s.state = State::NotAuthenticated;
                s.uncertain = true;
            }
            if !greeted && frame.line_ending == crate::proto::imap::LineEnding::Lf {
                out.push(rules::SYNTAX_CRLF.violation(
                    &s.name,
                    "line ends with a bare LF instead of CRLF",
                    &frame.raw,
                ));
            }
            if greeted {
                syntax::check(&s.name, frame, &mut out);
            }
            return out;
        }
        syntax::check(&s.name, frame, &mut out);
        Self::server_frame(&mut model, s, frame, now, &mut out);
        out
    }

    fn server_frame(
        model: &mut TargetModel,
        s: &mut Session,
        frame: &ServerFrame,
        now: u64,
        out: &mut Vec<Violation>,
    ) {
        let raw = frame.raw.as_slice();
        match &frame.parsed {
            Parsed::Greeting(_) => {}
            Parsed::Unparsed(_) => {
                let (t0, t1, _) = syntax::tokens(raw);
                match (t0.as_str(), t1.as_str()) {
                    ("+", _) => tags::continuation(s, raw),
                    ("*", "BYE") => s.bye_seen = true,
                    ("*", _) => {}
                    (tag, word @ ("OK" | "NO" | "BAD")) => {
                        let kind = match word {
                            "OK" => StatusKind::Ok,
                            "NO" => StatusKind::No,
                            _ => StatusKind::Bad,
                        };
                        if let Completion::Command(p) = tags::completion(s, tag, frame, out) {
                            Self::completed(model, s, &p, kind, None, now, raw, out);
                        }
                    }
                    _ => {}
                }
            }
            Parsed::Response(Response::CommandContinuationRequest(_)) => tags::continuation(s, raw),
            Parsed::Response(Response::Status(Status::Bye(_))) => s.bye_seen = true,
            Parsed::Response(Response::Status(Status::Untagged(body))) => {
                if let Some(code) = &body.code {
                    Self::untagged_code(model, s, code, now, raw, out);
                }
            }
            Parsed::Response(Response::Status(Status::Tagged(t))) => {
                if let Completion::Command(p) = tags::completion(s, t.tag.as_ref(), frame, out) {
                    Self::completed(
                        model,
                        s,
                        &p,
                        t.body.kind,
                        t.body.code.as_ref(),
                        now,
                        raw,
                        out,
                    );
                }
            }
            Parsed::Response(Response::Data(data)) => Self::data(model, s, data, now, raw, out),
        }
    }

    fn untagged_code(
        model: &mut TargetModel,
        s: &mut Session,
        code: &Code<'_>,
        now: u64,
        raw: &[u8],
        out: &mut Vec<Violation>,
    ) {
        if let Code::CopyUid {
            uid_validity,
            source,
            destination,
        } = code
        {
            let moving = s
                .pending
                .iter()
                .position(|p| matches!(p.cmd.kind, Kind::Copy { is_move: true, .. }));
            if let Some(i) = moving {
                s.pending[i].copyuid_seen = true;
                let p = s.pending[i].clone();
                uidplus::copyuid(
                    model,
                    s,
                    &p,
                    uid_validity.get(),
                    source,
                    destination,
                    now,
                    raw,
                    out,
                );
            }
            return;
        }
        mailbox::on_select_code(s, code);
    }

    #[allow(clippy::too_many_arguments)]
    fn completed(
        model: &mut TargetModel,
        s: &mut Session,
        p: &session::Pending,
        kind: StatusKind,
        code: Option<&Code<'_>>,
        now: u64,
        raw: &[u8],
        out: &mut Vec<Violation>,
    ) {
        let ok = kind == StatusKind::Ok;
        let bad = kind == StatusKind::Bad;
        match (&p.cmd.kind, code) {
            (Kind::Select { .. }, _) if ok => {
                mailbox::select_completed(model, s, p, code, now, raw, out)
            }
            (Kind::Append { .. }, Some(Code::AppendUid { uid_validity, uid })) if ok => {
                uidplus::appenduid(model, s, p, uid_validity.get(), uid.get(), now, raw, out)
            }
            (
                Kind::Copy { .. },
                Some(Code::CopyUid {
                    uid_validity,
                    source,
                    destination,
                }),
            ) if ok && !p.copyuid_seen => uidplus::copyuid(
                model,
                s,
                p,
                uid_validity.get(),
                source,
                destination,
                now,
                raw,
                out,
            ),
            (Kind::Store { .. }, _) if !bad => flags::store_completed(model, s, p, ok, now),
            (Kind::Create { mailbox } | Kind::Delete { mailbox }, _) => {
                model.forget(&s.key(mailbox))
            }
            (Kind::Rename { from, to }, _) => {
                model.forget_tree(&s.account, &model::mailbox_name(from));
                model.forget_tree(&s.account, &model::mailbox_name(to));
            }
            _ => {}
        }
        state::completed(s, p, ok, bad, raw, out);
        if let Some(key) = &p.flag_change_in {
            model.mailbox(key).change_ended(s.id, now);
        }
    }

    fn data(
        model: &mut TargetModel,
        s: &mut Session,
        data: &Data<'_>,
        now: u64,
        raw: &[u8],
        out: &mut Vec<Violation>,
    ) {
        match data {
            Data::Exists(n) => {
                state::selected_data(s, "EXISTS", raw, out);
                mailbox::on_exists(s, *n, raw, out);
            }
            Data::Recent(_) => state::selected_data(s, "RECENT", raw, out),
            Data::Expunge(n) => {
                state::selected_data(s, "EXPUNGE", raw, out);
                mailbox::on_expunge(model, s, n.get(), raw, out);
            }
            Data::Fetch { seq, items } => {
                state::selected_data(s, "FETCH", raw, out);
                mailbox::on_fetch(model, s, seq.get(), items.as_ref(), now, raw, out);
            }
            Data::Vanished {
                earlier,
                known_uids,
            } => {
                state::selected_data(s, "VANISHED", raw, out);
                mailbox::on_vanished(model, s, *earlier, known_uids);
            }
            Data::Status { mailbox: m, items } => {
                let name = match m {
                    imap_types::mailbox::Mailbox::Inbox => "INBOX".to_string(),
                    imap_types::mailbox::Mailbox::Other(o) => {
                        String::from_utf8_lossy(o.as_ref()).into_owned()
                    }
                };
                mailbox::on_status(model, s, &name, items, now, raw, out);
            }
            _ => {}
        }
    }

    fn close(&mut self, session: &str, client_dropped: bool) -> Vec<Violation> {
        let mut out = Vec::new();
        let shared = self.shared.clone();
        let mut model = lock(&shared);
        let now = model.tick();
        let Some(s) = self.sessions.get_mut(session) else {
            return out;
        };
        if s.closed {
            return out;
        }
        for key in s.pending.iter().filter_map(|p| p.flag_change_in.clone()) {
            model.mailbox(&key).change_ended(s.id, now);
        }
        tags::closed(s, client_dropped, &mut out);
        s.closed = true;
        s.state = State::Logout;
        s.selection = None;
        out
    }

    /// The connection ended (LOGOUT, BYE, close or end of script).
    pub fn session_closed(&mut self, session: &str) -> Vec<Violation> {
        let mut out = std::mem::take(&mut self.backlog);
        out.extend(self.close(session, false));
        out
    }

    /// The harness itself dropped the connection (e.g. a scenario ending with commands in
    /// flight on purpose): like [`Self::session_closed`], but commands still in progress are
    /// not the server's fault.
    pub fn session_dropped(&mut self, session: &str) -> Vec<Violation> {
        let mut out = std::mem::take(&mut self.backlog);
        out.extend(self.close(session, true));
        out
    }

    /// The scenario is over: close every session still open and return what that finds.
    pub fn finish(&mut self) -> Vec<Violation> {
        let mut out = std::mem::take(&mut self.backlog);
        let mut open: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.closed)
            .map(|(n, _)| n.clone())
            .collect();
        open.sort();
        for name in open {
            out.extend(self.close(&name, false));
        }
        out
    }
}
