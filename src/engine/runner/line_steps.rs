//! The steps of POP3 and SMTP sessions. Each `C` line is one command (or, after SMTP's 354,
//! one line of message content, dot-stuffed by the harness; a line `.` ends it). An `S` step
//! waits until every reply the server owes has arrived, then matches its lines against the
//! lines of those replies, in any order, as IMAP untagged lines are.

use tokio::time::Instant;

use crate::net::NetError;
use crate::proto::line::ReplyKind;
use crate::report::Problem;
use crate::script::{ClientMessage, ExpectLine, InitialState, Loc, Protocol};
use crate::target::{Endpoint, Security};

use super::super::expect::{check_step, lossy};
use super::super::line_session::LineSession;
use super::super::setup::{self, SetupError};
use super::{SETUP_SESSION, ScenarioRun, self_net_problem};

impl ScenarioRun<'_> {
    /// No IMAP endpoint: no fresh mailboxes and no seeds; only the predefined variables.
    pub(super) async fn prepare_without_imap(&mut self) -> Result<Option<String>, SetupError> {
        self.bind_predefined(
            &setup::Naming {
                prefix: String::new(),
                separator: String::new(),
            },
            Default::default(),
        );
        Ok(None)
    }

    /// `requires` of a POP3 or SMTP scenario: the CAPA tags (RFC 2449 5) or EHLO keywords
    /// (RFC 5321 4.1.1.1) a fresh connection announces.
    pub(super) async fn line_requires(&mut self) -> Result<Option<String>, SetupError> {
        if self.scenario.requires.is_empty() {
            return Ok(None);
        }
        let protocol = self.scenario.protocol;
        let Some(endpoint) = self.endpoint(protocol) else {
            return Ok(None);
        };
        let wait = self.run.target.timeouts.read;
        let owner = self.owner.clone().ok_or_else(|| {
            SetupError::Refused("no account to probe the capabilities with".to_string())
        })?;
        let mut s = setup::open_line(
            self.run,
            endpoint,
            SETUP_SESSION,
            &owner,
            InitialState::NotAuthenticated,
            false,
            &mut line_sink!(self, None),
        )
        .await?;
        s.settle(&mut line_sink!(self, None), true, wait).await?;
        s.pending.clear();
        // On a STARTTLS endpoint the scenario's sessions talk after the upgrade, and servers
        // announce differently there (AUTH often only over TLS, RFC 4954 4; RFC 2595 4).
        if endpoint.security == Security::StartTls {
            let upgrade: &[&str] = match protocol {
                Protocol::Pop3 => &["STLS"],
                _ => &["EHLO mailtape.example.test", "STARTTLS"],
            };
            for command in upgrade {
                let r = s
                    .command(&mut line_sink!(self, None), command, wait)
                    .await?;
                if r.kind != ReplyKind::Positive {
                    return Err(SetupError::Refused(format!(
                        "{command} failed: {}",
                        lossy(&r.raw)
                    )));
                }
            }
        }
        let probe = if protocol == Protocol::Pop3 {
            "CAPA"
        } else {
            "EHLO mailtape.example.test"
        };
        let reply = s.command(&mut line_sink!(self, None), probe, wait).await?;
        // POP3: each body line's first word; SMTP: each line's first word after the code
        // (the first line names the host, so it is skipped).
        let announced: Vec<String> = match protocol {
            Protocol::Pop3 => reply
                .lines
                .iter()
                .skip(1)
                .filter_map(|l| first_word(l))
                .collect(),
            _ => reply
                .lines
                .iter()
                .skip(1)
                .filter_map(|l| l.get(4..).and_then(first_word))
                .collect(),
        };
        // Leaving politely is courtesy, not part of the verdict.
        let _ = s.command(&mut line_sink!(self, None), "QUIT", wait).await;
        let missing: Vec<&str> = self
            .scenario
            .requires
            .iter()
            .filter(|r| !announced.iter().any(|a| a.eq_ignore_ascii_case(r)))
            .map(String::as_str)
            .collect();
        Ok((!missing.is_empty())
            .then(|| format!("the server does not announce {}", missing.join(", "))))
    }

    async fn ensure_line_session(
        &mut self,
        endpoint: &Endpoint,
        name: &str,
        loc: &Loc,
    ) -> Result<(), Problem> {
        if self.lines.contains_key(name) {
            return Ok(());
        }
        let (state, user, account) = self.session_setup(name, loc).map_err(|p| *p)?;
        // SMTP authenticates only when the scenario names the session's user.
        let authenticate = user.is_some();
        let s = setup::open_line(
            self.run,
            endpoint,
            name,
            &account,
            state,
            authenticate,
            &mut line_sink!(self, Some(loc.clone())),
        )
        .await
        .map_err(|e| Problem::Error {
            loc: Some(loc.clone()),
            session: Some(name.to_string()),
            message: format!("could not open the session: {e}"),
        })?;
        self.lines.insert(name.to_string(), s);
        Ok(())
    }

    pub(super) async fn line_send(
        &mut self,
        endpoint: &Endpoint,
        name: &str,
        messages: &[ClientMessage],
        wait_completion: bool,
    ) -> Result<(), Problem> {
        let wait = self.run.target.timeouts.read;
        for m in messages {
            let vars = self.session_vars(name);
            let mut text = String::new();
            for seg in &m.segments {
                let rendered = seg.text.render(&vars).map_err(|e| Problem::Error {
                    loc: Some(m.loc.clone()),
                    session: Some(name.to_string()),
                    message: e.to_string(),
                })?;
                text.push_str(&rendered);
            }
            self.ensure_line_session(endpoint, name, &m.loc).await?;
            let s = line_mut(&mut self.lines, name, &m.loc).map_err(|p| *p)?;
            if s.closed {
                return Err(Problem::Error {
                    loc: Some(m.loc.clone()),
                    session: Some(name.to_string()),
                    message: "the session's connection is already closed".to_string(),
                });
            }
            s.send_line(&mut line_sink!(self, Some(m.loc.clone())), false, &text)
                .await
                .map_err(|e| self_net_problem(e, name, &m.loc, "the server to accept the line"))?;
        }
        if wait_completion && let Some(last) = messages.last() {
            let s = line_mut(&mut self.lines, name, &last.loc).map_err(|p| *p)?;
            s.settle(&mut line_sink!(self, Some(last.loc.clone())), false, wait)
                .await
                .map_err(|e| self_net_problem(e, name, &last.loc, "the server's replies"))?;
            // Nothing in the script looks at these replies.
            s.pending.clear();
        }
        Ok(())
    }

    pub(super) async fn line_expect(
        &mut self,
        endpoint: &Endpoint,
        name: &str,
        lines: &[ExpectLine],
    ) -> Result<Vec<Problem>, Problem> {
        let Some(first) = lines.first() else {
            return Ok(Vec::new());
        };
        let loc = first.loc.clone();
        let wait = self.run.target.timeouts.read;
        self.ensure_line_session(endpoint, name, &loc).await?;
        let s = line_mut(&mut self.lines, name, &loc).map_err(|p| *p)?;
        let deadline = Instant::now() + wait;
        while s.owed() > 0 && !s.closed {
            if let Err(e) = s
                .read_one(&mut line_sink!(self, Some(loc.clone())), false, deadline)
                .await
            {
                if matches!(e, NetError::Closed(_)) {
                    break;
                }
                let got: Vec<String> = s.pending.iter().map(|r| lossy(&r.raw)).collect();
                let mut p = self_net_problem(e, name, &loc, &format!("the replies at {loc}"));
                if let Problem::Timeout { message, .. } = &mut p
                    && !got.is_empty()
                {
                    message.push_str(&format!("; received meanwhile: {}", got.join(" | ")));
                }
                return Err(p);
            }
        }
        let window = s.window();
        s.pending.clear();
        let mut merged = self.session_vars(name);
        let problems = check_step(name, lines, &window, &mut merged);
        self.keep_captures(merged);
        Ok(problems)
    }

    /// QUIT every POP3/SMTP session left open (POP3's UPDATE state happens only then); a
    /// session in the middle of something is dropped instead.
    pub(super) async fn close_line_sessions(&mut self, aborted: bool) {
        let wait = self.run.target.timeouts.read;
        for s in self.lines.values_mut() {
            if s.closed {
                continue;
            }
            if !(aborted || s.owed() > 0 || s.in_data) {
                // A server that already hung up is not the scenario's business here.
                let _ = s.command(&mut line_sink!(self, None), "QUIT", wait).await;
            }
            s.close(&mut line_sink!(self, None));
        }
    }
}

fn first_word(line: &[u8]) -> Option<String> {
    let word = line.split(|b| *b == b' ').next()?;
    (!word.is_empty()).then(|| String::from_utf8_lossy(word).into_owned())
}

fn line_mut<'s>(
    lines: &'s mut std::collections::BTreeMap<String, LineSession>,
    name: &str,
    loc: &Loc,
) -> Result<&'s mut LineSession, Box<Problem>> {
    lines.get_mut(name).ok_or_else(|| {
        Box::new(Problem::Error {
            loc: Some(loc.clone()),
            session: Some(name.to_string()),
            message: "the session is not open".to_string(),
        })
    })
}
