//! Replaying a recording (`mailtape replay`): the sessions connect and send their client lines
//! as in a scenario run, but an `S` step is not matched as patterns. The server's messages are
//! read until the recorded step is accounted for - IMAP: the tagged completions of the tags
//! the step records, else a continuation request if it records one, else as many messages as
//! it records (the greeting, unsolicited data); POP3/SMTP: one reply per command sent - and
//! both sides go into the replay log, to be compared when the run is over.

use std::collections::VecDeque;

use tokio::time::Instant;

use crate::net::NetError;
use crate::proto::imap::ServerFrame;
use crate::report::Problem;
use crate::script::{ExpectLine, Loc, PatternKind, Protocol};
use crate::target::Endpoint;

use super::super::expect::{ReplyLine, check_step, lossy};
use super::super::session::{Sink, is_continuation, tagged_completion};
use super::super::setup::Naming;
use super::{ScenarioRun, self_net_problem, session_mut};

impl ScenarioRun<'_> {
    /// No fixtures, no setup connection: a recording starts from connected sessions.
    pub(super) async fn execute_replay(&mut self) {
        // The protocols of the sessions that have lines (the scenario's own is a default).
        let mut protocols = Vec::new();
        for step in &self.scenario.steps {
            let p = self.protocol_of(step.session());
            if !protocols.contains(&p) {
                protocols.push(p);
            }
        }
        for p in protocols {
            if self.endpoint(p).is_none() {
                self.problems.push(Problem::Error {
                    loc: None,
                    session: None,
                    message: format!(
                        "the recording has {} sessions but no --target {}://... was given",
                        p.name(),
                        p.name()
                    ),
                });
                return;
            }
        }
        let first_user = self.scenario.sessions.values().find_map(|s| s.user.clone());
        // A recording that sends no credentials (SMTP without AUTH) needs no account.
        self.owner = Some(
            self.account(first_user.as_deref())
                .or_else(|| self.run.target.accounts.first().cloned())
                .unwrap_or(crate::target::Account {
                    name: String::new(),
                    login: String::new(),
                    password: String::new(),
                }),
        );
        self.bind_predefined(
            &Naming {
                prefix: String::new(),
                separator: String::new(),
            },
            Default::default(),
        );
        let ok = self.script().await;
        self.completed = ok && self.problems.is_empty();
        self.close_sessions(!ok).await;
        self.close_line_sessions(!ok).await;
    }

    pub(super) async fn replay_expect(
        &mut self,
        endpoint: &Endpoint,
        protocol: Protocol,
        name: &str,
        lines: &[ExpectLine],
    ) -> Result<Vec<Problem>, Problem> {
        let Some(first) = lines.first() else {
            return Ok(Vec::new());
        };
        let loc = first.loc.clone();
        // Captures written in the recording (`[UIDVALIDITY {uidvalidity}]`, as `mailtape
        // record --capture-uidvalidity` does) are bound as in a run, so later lines can use
        // them; whether the lines match is not the question here.
        let mut vars = self.session_vars(name);
        let live: Vec<Vec<u8>> = match protocol {
            Protocol::Imap => {
                let window = self.replay_imap_window(endpoint, name, lines, &loc).await?;
                let _ = check_step(name, lines, &window, &mut vars);
                window.into_iter().map(|f| f.raw).collect()
            }
            _ => {
                let window = self.replay_line_window(endpoint, name, &loc).await?;
                let _ = check_step(name, lines, &window, &mut vars);
                window.into_iter().map(|l| l.0).collect()
            }
        };
        // A capture in a recorded line stands for the value it bound: compared as that value.
        let recorded = lines
            .iter()
            .map(|l| (fill_captures(&l.source, &vars).into_bytes(), l.loc.clone()))
            .collect();
        self.keep_captures(vars);
        if let Some(r) = self.replay.as_mut() {
            r.step(name, protocol, recorded, live, &loc);
        }
        Ok(Vec::new())
    }

    async fn replay_imap_window(
        &mut self,
        endpoint: &Endpoint,
        name: &str,
        lines: &[ExpectLine],
        loc: &Loc,
    ) -> Result<Vec<ServerFrame>, Problem> {
        let wait = self.run.target.timeouts.read;
        let tags: Vec<String> = lines
            .iter()
            .filter_map(|l| match l.pattern.kind() {
                PatternKind::Tagged { tag, .. } => Some(tag.clone()),
                _ => None,
            })
            .collect();
        let plus = lines
            .iter()
            .any(|l| *l.pattern.kind() == PatternKind::Continuation);
        self.ensure_session(endpoint, name, loc).await?;
        let s = session_mut(&mut self.sessions, name, loc).map_err(|p| *p)?;
        let mut sink = Sink {
            transcript: &mut self.transcript,
            checks: &mut self.checks,
            violations: &mut self.violations,
        };
        let deadline = Instant::now() + wait;
        let end = loop {
            if let Some(end) = accounted(&s.pending, &tags, plus, lines.len()) {
                break end;
            }
            if s.closed {
                break s.pending.len();
            }
            match s.read_one(&mut sink, false, deadline, Some(loc)).await {
                Ok(()) => {}
                // What arrived before the server hung up is compared; the diff shows the rest.
                Err(NetError::Closed(_)) => break s.pending.len(),
                Err(e) => {
                    let waiting = if tags.is_empty() {
                        format!("the server's answer recorded at {loc}")
                    } else {
                        format!("the completion of tag {} ({loc})", tags.join(", "))
                    };
                    return Err(timeout_problem(
                        e,
                        name,
                        loc,
                        &waiting,
                        s.pending.iter().map(|f| lossy(&f.raw)),
                    ));
                }
            }
        };
        Ok(s.pending.drain(..end).collect())
    }

    async fn replay_line_window(
        &mut self,
        endpoint: &Endpoint,
        name: &str,
        loc: &Loc,
    ) -> Result<Vec<ReplyLine>, Problem> {
        let wait = self.run.target.timeouts.read;
        self.ensure_line_session(endpoint, name, loc).await?;
        let s = super::line_steps::line_mut(&mut self.lines, name, loc).map_err(|p| *p)?;
        let deadline = Instant::now() + wait;
        while s.owed() > 0 && !s.closed {
            match s
                .read_one(&mut line_sink!(self, Some(loc.clone())), false, deadline)
                .await
            {
                Ok(()) => {}
                Err(NetError::Closed(_)) => break,
                Err(e) => {
                    return Err(timeout_problem(
                        e,
                        name,
                        loc,
                        &format!("the replies recorded at {loc}"),
                        s.pending.iter().map(|r| lossy(&r.raw)),
                    ));
                }
            }
        }
        let window = s.window();
        s.pending.clear();
        Ok(window)
    }
}

/// `text` with each `{name}` / `{name:type}` that `vars` binds replaced by its value
/// (literal announcements such as `{12}` are no names and stay).
fn fill_captures(text: &str, vars: &crate::script::Bindings) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let name = after[..close].split(':').next().unwrap_or_default();
            let v = crate::script::pattern::is_var_name(name)
                .then(|| vars.get(name))
                .flatten()?;
            Some((v.to_template_text(), close))
        });
        match value {
            Some((v, close)) => {
                out.push_str(&v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Where the window of a recorded IMAP step ends in the messages received, if it is complete.
fn accounted(
    pending: &VecDeque<ServerFrame>,
    tags: &[String],
    plus: bool,
    count: usize,
) -> Option<usize> {
    if !tags.is_empty() {
        let mut last = 0;
        for t in tags {
            let p = pending.iter().position(|f| {
                tagged_completion(f).is_some_and(|(tt, _)| tt.eq_ignore_ascii_case(t))
            })?;
            last = last.max(p + 1);
        }
        return Some(last);
    }
    if plus {
        // The go-ahead, or a completion refusing the command instead.
        return pending
            .iter()
            .position(|f| is_continuation(f) || tagged_completion(f).is_some())
            .map(|p| p + 1);
    }
    (pending.len() >= count).then_some(count)
}

fn timeout_problem(
    e: NetError,
    name: &str,
    loc: &Loc,
    waiting: &str,
    got: impl Iterator<Item = String>,
) -> Problem {
    let got: Vec<String> = got.collect();
    let mut p = self_net_problem(e, name, loc, waiting);
    if let Problem::Timeout { message, .. } = &mut p
        && !got.is_empty()
    {
        message.push_str(&format!("; received meanwhile: {}", got.join(" | ")));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::fill_captures;
    use crate::script::{Bindings, Value};

    #[test]
    fn captures_become_their_values_and_literals_stay() {
        let mut vars = Bindings::default();
        vars.insert("uidvalidity", Value::Number(42));
        assert_eq!(
            fill_captures(
                "* OK [UIDVALIDITY {uidvalidity:number}] x {12} {unbound} {",
                &vars
            ),
            "* OK [UIDVALIDITY 42] x {12} {unbound} {"
        );
        assert_eq!(
            fill_captures("a1 OK [APPENDUID {uidvalidity} 3]", &vars),
            "a1 OK [APPENDUID 42 3]"
        );
    }
}
