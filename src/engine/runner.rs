//! Runs one scenario's script: sets up fixtures, opens sessions as the script first uses
//! them, sends `C` batches, waits for and matches `S` lines, and cleans up.

use std::collections::BTreeMap;

use base64::Engine as _;
use tokio::time::Instant;

use crate::checks::Violation;
use crate::checks::imap::ImapChecks;
use crate::net::NetError;
use crate::report::{Problem, Transcript};
use crate::script::pattern::{Bindings, PatternKind, Value};
use crate::script::{
    ClientMessage, ExpectLine, InitialState, Loc, Presence, Protocol, Scenario, Step,
};
use crate::target::{Account, Endpoint};

/// The sink a POP3 or SMTP session reports into, built from the run's fields (a macro, so
/// the borrow stays field by field beside a borrow of `self.lines`).
macro_rules! line_sink {
    ($run:expr, $loc:expr) => {
        $crate::engine::line_session::LineSink {
            transcript: &mut $run.transcript,
            violations: &mut $run.violations,
            pop3: &mut $run.pop3_checks,
            smtp: &mut $run.smtp_checks,
            loc: $loc,
        }
    };
}

mod line_steps;

use super::TargetRun;
use super::expect::{check_step, lossy, satisfiable};
use super::line_session::LineSession;
use super::session::{Session, Sink, tagged_completion};
use super::setup::{self, Naming, SetupError};

/// Name of the harness's own connection for fixtures; not a valid script session name.
pub(crate) const SETUP_SESSION: &str = "~setup";

/// Pause between two tries of a polling step.
const POLL_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// How often a fixture CREATE is retried under a new name after a spurious ALREADYEXISTS.
const CREATE_ATTEMPTS: u32 = 3;

pub struct ScenarioRun<'a> {
    run: &'a TargetRun,
    scenario: &'a Scenario,
    checks: ImapChecks,
    pop3_checks: crate::checks::pop3::Pop3Checks,
    smtp_checks: crate::checks::smtp::SmtpChecks,
    transcript: Transcript,
    violations: Vec<Violation>,
    problems: Vec<Problem>,
    sessions: BTreeMap<String, Session>,
    /// POP3 and SMTP sessions.
    lines: BTreeMap<String, LineSession>,
    vars: Bindings,
    /// Fresh mailbox variable -> full name.
    mailboxes: BTreeMap<String, String>,
    /// The account that owns the fresh mailboxes.
    owner: Option<Account>,
    completed: bool,
    /// Set when the script's own STARTTLS met a certificate nobody said to trust: a skip.
    untrusted: Option<String>,
}

/// A line to send, then optionally a literal: (synchronizing, data).
type Piece<'a> = (Vec<u8>, Option<(bool, &'a [u8])>);

/// What a finished run hands back to [`super::TargetRun::run`].
pub struct Finished {
    pub problems: Vec<Problem>,
    pub violations: Vec<Violation>,
    pub transcript: Transcript,
    pub substitutions: Vec<(String, String)>,
    pub completed: bool,
    /// Sessions kept out of snapshots: POP3 and SMTP ones (their text needs its own
    /// normalizer), and every session of a scenario that works on INBOX.
    pub text_sessions: Vec<String>,
}

impl<'a> ScenarioRun<'a> {
    pub fn new(run: &'a TargetRun, scenario: &'a Scenario) -> ScenarioRun<'a> {
        ScenarioRun {
            run,
            scenario,
            checks: ImapChecks::new(run.model.clone()),
            pop3_checks: crate::checks::pop3::Pop3Checks::new(run.pop3_model.clone()),
            smtp_checks: crate::checks::smtp::SmtpChecks::new(),
            transcript: Transcript::default(),
            violations: Vec::new(),
            problems: Vec::new(),
            sessions: BTreeMap::new(),
            lines: BTreeMap::new(),
            vars: Bindings::default(),
            mailboxes: BTreeMap::new(),
            owner: None,
            completed: false,
            untrusted: None,
        }
    }

    pub fn finish(mut self) -> Finished {
        let mut subs: Vec<(String, String)> = self
            .mailboxes
            .iter()
            .map(|(var, name)| (name.clone(), format!("{{{var}}}")))
            .collect();
        for a in &self.run.target.accounts {
            subs.push((a.login.clone(), format!("{{user:{}}}", a.name)));
        }
        // Longest first so a name that contains another is replaced whole.
        subs.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        let mut checks_left = Vec::new();
        for (name, s) in self.sessions.iter_mut() {
            if !s.closed {
                s.closed = true;
                checks_left.extend(self.checks.session_closed(name));
            }
        }
        self.violations.extend(checks_left);
        Finished {
            problems: self.problems,
            violations: self.violations,
            transcript: self.transcript,
            substitutions: subs,
            completed: self.completed,
            text_sessions: match super::uses_inbox(self.scenario) {
                true => self
                    .lines
                    .into_keys()
                    .chain(self.sessions.into_keys())
                    .collect(),
                false => self.lines.into_keys().collect(),
            },
        }
    }

    fn endpoint(&self, protocol: Protocol) -> Option<&'a Endpoint> {
        self.run
            .target
            .endpoints
            .iter()
            .find(|e| e.protocol == protocol)
    }

    fn account(&self, user: Option<&str>) -> Option<Account> {
        let accounts = &self.run.target.accounts;
        match user {
            None => accounts.first().cloned(),
            Some(u) => accounts
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(u))
                .cloned(),
        }
    }

    /// The protocol a script session speaks.
    fn protocol_of(&self, session: &str) -> Protocol {
        self.scenario
            .sessions
            .get(session)
            .map(|s| s.protocol)
            .unwrap_or(self.scenario.protocol)
    }

    /// Run the whole scenario. `Some(reason)` means it was skipped.
    pub async fn execute(&mut self) -> Option<String> {
        let mut protocols = vec![self.scenario.protocol];
        protocols.extend(self.scenario.sessions.values().map(|s| s.protocol));
        for p in &protocols {
            if self.endpoint(*p).is_none() {
                return Some(format!(
                    "the target has no {} endpoint (add --target {}://...)",
                    p.name(),
                    p.name()
                ));
            }
        }
        for (name, spec) in &self.scenario.sessions {
            if spec.state != InitialState::NotAuthenticated
                && self.account(spec.user.as_deref()).is_none()
            {
                return Some(format!(
                    "session {name:?} needs account {:?}, which the target does not have (add --account)",
                    spec.user.as_deref().unwrap_or("<first>")
                ));
            }
        }
        let first_user = self.scenario.sessions.values().find_map(|s| s.user.clone());
        let Some(owner) = self.account(first_user.as_deref()) else {
            return Some(
                "the target has no account (give user:pass in the URL or --account)".to_string(),
            );
        };
        self.owner = Some(owner.clone());
        // Fixtures (fresh mailboxes, seed messages) are made over IMAP.
        let imap = self.endpoint(Protocol::Imap);
        if imap.is_none() && !self.scenario.seed.is_empty() {
            return Some(
                "seed messages are put in place over IMAP; the target has no imap endpoint"
                    .to_string(),
            );
        }
        let prepared = match imap {
            Some(endpoint) => self.prepare(endpoint, &owner).await,
            None => self.prepare_without_imap().await,
        };
        let prepared = match prepared {
            Ok(None) if self.scenario.protocol != Protocol::Imap => self.line_requires().await,
            other => other,
        };
        match prepared {
            Ok(Some(skip)) => return Some(skip),
            Ok(None) => {}
            Err(e) => {
                self.problems.push(Problem::Error {
                    loc: None,
                    session: Some(SETUP_SESSION.to_string()),
                    message: format!("setup failed: {e}"),
                });
                return None;
            }
        }
        let ok = self.script().await;
        self.completed = ok && self.problems.is_empty();
        self.close_sessions(!ok).await;
        self.close_line_sessions(!ok).await;
        if let Some(endpoint) = imap
            && let Err(e) = self.cleanup(endpoint, &owner).await
        {
            self.problems.push(Problem::Error {
                loc: None,
                session: Some(SETUP_SESSION.to_string()),
                message: format!("cleanup failed: {e}"),
            });
        }
        self.untrusted.take()
    }

    /// A STARTTLS that the script itself does, on a plain target the user configured no trust
    /// for, fails when the server's certificate is self-signed, as test servers' are. That
    /// says nothing about the protocol: the scenario is skipped, saying how to run it.
    fn untrusted_certificate(&self, problem: &Problem, protocol: Protocol) -> Option<String> {
        let Problem::Error { message, .. } = problem else {
            return None;
        };
        let tls = &self.run.target.tls;
        let plain = self
            .endpoint(protocol)
            .is_some_and(|e| e.security == crate::target::Security::Plain);
        let configured = tls.ca_file.is_some() || tls.insecure || !tls.extra_roots.is_empty();
        (message.contains("invalid peer certificate") && plain && !configured).then(|| {
            format!(
                "the server's certificate is not trusted ({}); pass --ca-file PEM (or --insecure) to run this TLS scenario",
                message.split(" while ").next().unwrap_or(message)
            )
        })
    }

    fn sink(&mut self) -> Sink<'_> {
        Sink {
            transcript: &mut self.transcript,
            checks: &mut self.checks,
            violations: &mut self.violations,
        }
    }

    /// Capabilities, naming, fresh mailboxes and seed messages. `Ok(Some)` = skip.
    async fn prepare(
        &mut self,
        endpoint: &Endpoint,
        owner: &Account,
    ) -> Result<Option<String>, SetupError> {
        let wait = self.run.target.timeouts.read;
        let run = self.run;
        let scenario = self.scenario;
        let mut sink = self.sink();
        let mut s = setup::open(
            run,
            endpoint,
            SETUP_SESSION,
            owner,
            InitialState::NotAuthenticated,
            None,
            &mut sink,
        )
        .await?;
        if let Some(greeting) = s.pending.front() {
            let _ = run.product.set(super::product::recognize(&greeting.raw));
        }
        // Capabilities before login matter too (STARTTLS, AUTH=...); after login, the rest.
        let mut caps = setup::capabilities(&mut s, &mut sink, wait).await?;
        s.pending.clear();
        let tag = s.next_tag();
        let text = format!(
            "LOGIN {} {}",
            setup::quoted(&owner.login),
            setup::quoted(&owner.password)
        );
        let (status, frames) = s.command(&mut sink, &tag, &text, wait).await?;
        if status != super::session::Completion::Ok {
            let last = frames.last().map(|f| lossy(&f.raw)).unwrap_or_default();
            return Err(SetupError::Refused(format!(
                "LOGIN as {} failed: {last}",
                owner.login
            )));
        }
        caps.extend(setup::capabilities(&mut s, &mut sink, wait).await?);
        // A POP3 or SMTP scenario's `requires` name CAPA / EHLO keywords, checked when its
        // first session opens; IMAP capabilities are checked here.
        let missing: Vec<&String> = scenario
            .requires
            .iter()
            .filter(|_| scenario.protocol == Protocol::Imap)
            .filter(|r| !caps.iter().any(|c| c.eq_ignore_ascii_case(r)))
            .collect();
        if !missing.is_empty() {
            setup::logout(&mut s, &mut sink, wait).await?;
            let list: Vec<&str> = missing.iter().map(|m| m.as_str()).collect();
            return Ok(Some(format!(
                "the server does not announce {}",
                list.join(", ")
            )));
        }
        let naming = run
            .naming
            .get_or_try_init(|| async { setup::discover(&mut s, &mut sink, &caps, wait).await })
            .await?
            .clone();
        let mut mailboxes = BTreeMap::new();
        for var in &scenario.mailboxes {
            let mut attempt = 1;
            let name = loop {
                let name = run.fresh_name(&naming);
                match setup::create(&mut s, &mut sink, &name, wait).await {
                    Ok(()) => break name,
                    // Dovecot 2.3 (Maildir++) now and then answers NO [ALREADYEXISTS] for a
                    // name nobody used while other sessions of the same user CREATE and
                    // DELETE at the same time. The fixture only needs some unique name.
                    Err(SetupError::Refused(why))
                        if why.contains("ALREADYEXISTS") && attempt < CREATE_ATTEMPTS =>
                    {
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            };
            mailboxes.insert(var.clone(), name);
        }
        for seed in &scenario.seed {
            let name = match mailboxes.get(&seed.mailbox) {
                Some(name) => name.as_str(),
                None if seed.mailbox == "INBOX" => "INBOX",
                None => continue,
            };
            setup::append(&mut s, &mut sink, name, seed, wait).await?;
        }
        setup::logout(&mut s, &mut sink, wait).await?;
        self.bind_predefined(&naming, mailboxes);
        Ok(None)
    }

    fn bind_predefined(&mut self, naming: &Naming, mailboxes: BTreeMap<String, String>) {
        for (var, name) in &mailboxes {
            self.vars
                .0
                .insert(var.clone(), Value::String(name.clone().into_bytes()));
        }
        self.vars.0.insert(
            "sep".to_string(),
            Value::String(naming.separator.clone().into_bytes()),
        );
        self.mailboxes = mailboxes;
    }

    /// Variables of one session: its account's login and password on top of the shared ones.
    fn session_vars(&self, session: &str) -> Bindings {
        let mut vars = self.vars.clone();
        let user = self
            .scenario
            .sessions
            .get(session)
            .and_then(|s| s.user.clone());
        if let Some(a) = self.account(user.as_deref()) {
            vars.0.insert(
                "user".to_string(),
                Value::String(a.login.clone().into_bytes()),
            );
            // SASL PLAIN initial response (RFC 4616 2): empty authzid, login, password.
            let plain = format!("\0{}\0{}", a.login, a.password);
            vars.0.insert(
                "auth_plain".to_string(),
                Value::Atom(base64::engine::general_purpose::STANDARD.encode(plain)),
            );
            // SMTP AUTH LOGIN (draft-murchison-sasl-login) sends login and password base64'd.
            for (var, value) in [("user_b64", &a.login), ("password_b64", &a.password)] {
                vars.0.insert(
                    var.to_string(),
                    Value::Atom(base64::engine::general_purpose::STANDARD.encode(value)),
                );
            }
            vars.0.insert(
                "password".to_string(),
                Value::String(a.password.into_bytes()),
            );
        }
        vars
    }

    async fn expect_any(
        &mut self,
        endpoint: &Endpoint,
        protocol: Protocol,
        session: &str,
        lines: &[ExpectLine],
    ) -> Result<Vec<Problem>, Problem> {
        match protocol {
            Protocol::Imap => self.expect(endpoint, session, lines).await,
            _ => self.line_expect(endpoint, session, lines).await,
        }
    }

    /// A polling pair (`S~:` lines): send the batch and match the step again and again, a
    /// short pause between tries, until it matches or `--poll-timeout` is over; only the
    /// last try's mismatches count. This is how a scenario waits for a delivery that takes
    /// a moment on a real MTA, without sleeping a fixed time.
    async fn poll(
        &mut self,
        endpoint: &Endpoint,
        protocol: Protocol,
        session: &str,
        messages: &[ClientMessage],
        lines: &[ExpectLine],
    ) -> Result<(), Problem> {
        let deadline = Instant::now() + self.run.options.poll_timeout;
        loop {
            match protocol {
                Protocol::Imap => self.send(endpoint, session, messages, false).await?,
                _ => self.line_send(endpoint, session, messages, false).await?,
            }
            let problems = self.expect_any(endpoint, protocol, session, lines).await?;
            if problems.is_empty() {
                return Ok(());
            }
            if Instant::now() + POLL_PAUSE >= deadline {
                self.problems.extend(problems);
                return Ok(());
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }

    /// Keep a step's captures for later lines; the per-session predefined values are not
    /// captures and are bound again for each session.
    fn keep_captures(&mut self, merged: Bindings) {
        for (k, v) in merged.0 {
            if !matches!(
                k.as_str(),
                "user" | "password" | "auth_plain" | "user_b64" | "password_b64"
            ) {
                self.vars.0.insert(k, v);
            }
        }
    }

    /// Run the steps. Returns false when the scenario had to stop early.
    async fn script(&mut self) -> bool {
        let steps = &self.scenario.steps;
        let mut polled = false;
        for (i, step) in steps.iter().enumerate() {
            // The first mismatch ends the script: later lines would act on a state the
            // script did not expect (a POP3 `DELE {n}` could delete another message).
            if !self.problems.is_empty() {
                return false;
            }
            if std::mem::take(&mut polled) {
                // The Expect step of a polling pair already ran with its Send step.
                continue;
            }
            let protocol = self.protocol_of(step.session());
            let Some(endpoint) = self.endpoint(protocol) else {
                return false;
            };
            let result = match step {
                Step::Send { session, messages }
                    if let Some(Step::Expect { session: s, lines }) = steps.get(i + 1)
                        && s == session
                        && lines.iter().any(|l| l.poll) =>
                {
                    polled = true;
                    self.poll(endpoint, protocol, session, messages, lines)
                        .await
                }
                Step::Send { session, messages } => {
                    // A batch with no S lines of its own session right after it waits for all
                    // its completions before the script moves on.
                    let expect_follows = matches!(steps.get(i + 1), Some(Step::Expect { session: s, .. }) if s == session);
                    if protocol == Protocol::Imap {
                        self.send(endpoint, session, messages, !expect_follows)
                            .await
                    } else {
                        self.line_send(endpoint, session, messages, !expect_follows)
                            .await
                    }
                }
                Step::Expect { session, lines } => self
                    .expect_any(endpoint, protocol, session, lines)
                    .await
                    .map(|problems| self.problems.extend(problems)),
            };
            if let Err(problem) = result {
                self.untrusted = self.untrusted_certificate(&problem, protocol);
                if self.untrusted.is_none() {
                    self.problems.push(problem);
                }
                return false;
            }
        }
        self.problems.is_empty()
    }

    /// A script session's initial state, the user the scenario names (if any) and the
    /// account it logs in as (the named one, else the fixtures' owner).
    fn session_setup(
        &self,
        name: &str,
        loc: &Loc,
    ) -> Result<(InitialState, Option<String>, Account), Box<Problem>> {
        let spec = self.scenario.sessions.get(name);
        let state = spec.map_or(InitialState::Authenticated, |s| s.state);
        let user = spec.and_then(|s| s.user.clone());
        let account = self
            .account(user.as_deref())
            .or_else(|| self.owner.clone())
            .ok_or_else(|| {
                Box::new(Problem::Error {
                    loc: Some(loc.clone()),
                    session: Some(name.to_string()),
                    message: "no account for this session".to_string(),
                })
            })?;
        Ok((state, user, account))
    }

    async fn ensure_session(
        &mut self,
        endpoint: &Endpoint,
        name: &str,
        loc: &Loc,
    ) -> Result<(), Problem> {
        if !self.sessions.contains_key(name) {
            let (state, _, account) = self.session_setup(name, loc).map_err(|p| *p)?;
            let select = self.mailboxes.get("mailbox").cloned();
            let run = self.run;
            let mut sink = self.sink();
            let s = setup::open(
                run,
                endpoint,
                name,
                &account,
                state,
                select.as_deref(),
                &mut sink,
            )
            .await
            .map_err(|e| Problem::Error {
                loc: Some(loc.clone()),
                session: Some(name.to_string()),
                message: format!("could not open the session: {e}"),
            })?;
            self.sessions.insert(name.to_string(), s);
        }
        Ok(())
    }

    async fn send(
        &mut self,
        endpoint: &Endpoint,
        name: &str,
        messages: &[ClientMessage],
        wait_completion: bool,
    ) -> Result<(), Problem> {
        let wait = self.run.target.timeouts.read;
        let mut sent_tags = Vec::new();
        for m in messages {
            let vars = self.session_vars(name);
            let mut rendered = Vec::new();
            for seg in &m.segments {
                let text = seg.text.render(&vars).map_err(|e| Problem::Error {
                    loc: Some(m.loc.clone()),
                    session: Some(name.to_string()),
                    message: e.to_string(),
                })?;
                rendered.push(text);
            }
            self.ensure_session(endpoint, name, &m.loc).await?;
            let s = session_mut(&mut self.sessions, name, &m.loc).map_err(|p| *p)?;
            if s.closed {
                return Err(Problem::Error {
                    loc: Some(m.loc.clone()),
                    session: Some(name.to_string()),
                    message: "the session's connection is already closed".to_string(),
                });
            }
            let plus_ok = s.has_literal_plus();
            // Build the exact bytes first: the checks see the whole command before any `+`.
            let mut pieces: Vec<Piece<'_>> = Vec::new();
            for (seg, text) in m.segments.iter().zip(rendered) {
                let mut line = text.into_bytes();
                let lit = seg.literal.as_ref().map(|l| {
                    let sync = !l.non_sync || !plus_ok;
                    if l.non_sync && !plus_ok && line.ends_with(b"+}") {
                        // RFC 7888: without LITERAL+ the client must wait; fall back to `{N}`.
                        let n = line.len();
                        line.remove(n - 2);
                    }
                    (sync, l.data.as_slice())
                });
                pieces.push((line, lit));
            }
            let mut whole = Vec::new();
            for (line, lit) in &pieces {
                whole.extend_from_slice(line);
                whole.extend_from_slice(b"\r\n");
                if let Some((_, data)) = lit {
                    whole.extend_from_slice(data);
                }
            }
            if let Some(tag) = &m.tag {
                s.outstanding.insert(tag.clone());
                sent_tags.push(tag.clone());
                let verb = whole
                    .split(|b| *b == b' ')
                    .nth(1)
                    .map(|v| String::from_utf8_lossy(v).trim_end().to_ascii_uppercase())
                    .unwrap_or_default();
                match verb.as_str() {
                    "STARTTLS" => s.starttls_tag = Some(tag.clone()),
                    "LOGOUT" => s.logout_tag = Some(tag.clone()),
                    _ => {}
                }
            }
            let mut sink = Sink {
                transcript: &mut self.transcript,
                checks: &mut self.checks,
                violations: &mut self.violations,
            };
            s.sent(&mut sink, false, &whole, Some(&m.loc));
            for (line, lit) in pieces {
                let mut bytes = line;
                bytes.extend_from_slice(b"\r\n");
                s.send_raw(&bytes).await.map_err(|e| net(e, name, &m.loc))?;
                let Some((sync, data)) = lit else { continue };
                if sync {
                    let go = s
                        .wait_continuation(&mut sink, m.tag.as_deref(), wait, Some(&m.loc))
                        .await
                        .map_err(|e| net(e, name, &m.loc))?;
                    if !go {
                        // The server refused the literal with a tagged completion: stop here.
                        break;
                    }
                }
                s.send_raw(data).await.map_err(|e| net(e, name, &m.loc))?;
            }
        }
        if wait_completion && !sent_tags.is_empty() {
            let loc = messages
                .last()
                .map(|m| m.loc.clone())
                .ok_or_else(|| Problem::Error {
                    loc: None,
                    session: Some(name.to_string()),
                    message: "empty batch".to_string(),
                })?;
            self.ensure_session(endpoint, name, &loc).await?;
            let s = session_mut(&mut self.sessions, name, &loc).map_err(|p| *p)?;
            let mut sink = Sink {
                transcript: &mut self.transcript,
                checks: &mut self.checks,
                violations: &mut self.violations,
            };
            for tag in &sent_tags {
                if let Err(e) = s.wait_tag(&mut sink, false, tag, wait, Some(&loc)).await {
                    return Err(self_net_problem(
                        e,
                        name,
                        &loc,
                        &format!("the completion of tag {tag}"),
                    ));
                }
            }
            // Nothing in the script looks at these messages: consume them up to the last completion.
            let last = s
                .pending
                .iter()
                .rposition(|f| tagged_completion(f).is_some_and(|(t, _)| sent_tags.contains(&t)));
            if let Some(last) = last {
                s.pending.drain(..=last);
            }
        }
        Ok(())
    }

    async fn expect(
        &mut self,
        endpoint: &Endpoint,
        name: &str,
        lines: &[ExpectLine],
    ) -> Result<Vec<Problem>, Problem> {
        let wait = self.run.target.timeouts.read;
        let Some(first) = lines.first() else {
            return Ok(Vec::new());
        };
        let loc = first.loc.clone();
        let tags: Vec<String> = lines
            .iter()
            .filter(|l| l.presence == Presence::Must)
            .filter_map(|l| match l.pattern.kind() {
                PatternKind::Tagged { tag, .. } => Some(tag.clone()),
                _ => None,
            })
            .collect();
        let has_must = lines.iter().any(|l| l.presence == Presence::Must);
        let vars = self.session_vars(name);
        self.ensure_session(endpoint, name, &loc).await?;
        let s = session_mut(&mut self.sessions, name, &loc).map_err(|p| *p)?;
        let mut sink = Sink {
            transcript: &mut self.transcript,
            checks: &mut self.checks,
            violations: &mut self.violations,
        };
        let deadline = Instant::now() + wait;
        // Read until the step can be judged; the window is what the step consumes.
        let window_end = loop {
            let done = if !tags.is_empty() {
                let mut last = None;
                let mut all = true;
                for t in &tags {
                    match s.pending.iter().position(|f| {
                        tagged_completion(f).is_some_and(|(tt, _)| tt.eq_ignore_ascii_case(t))
                    }) {
                        Some(p) => last = Some(last.map_or(p, |l: usize| l.max(p))),
                        None => all = false,
                    }
                }
                if all { last.map(|l| l + 1) } else { None }
            } else if has_must {
                let window: Vec<_> = s.pending.iter().cloned().collect();
                if satisfiable(lines, &window, &vars) {
                    Some(window.len())
                } else {
                    None
                }
            } else if s.outstanding.is_empty() {
                Some(s.pending.len())
            } else {
                None
            };
            if let Some(end) = done {
                break end;
            }
            if s.closed {
                let window: Vec<_> = s.pending.iter().map(|f| lossy(&f.raw)).collect();
                return Err(Problem::Mismatch {
                    loc: loc.clone(),
                    session: name.to_string(),
                    expected: lines
                        .iter()
                        .map(|l| l.source.as_str())
                        .collect::<Vec<_>>()
                        .join(" / "),
                    got: window,
                    message: "the connection closed before these lines arrived".to_string(),
                });
            }
            if let Err(e) = s.read_one(&mut sink, false, deadline, Some(&loc)).await {
                let waiting = if tags.is_empty() {
                    format!("the lines at {loc}")
                } else {
                    format!("the completion of tag {} ({loc})", tags.join(", "))
                };
                let got: Vec<String> = s.pending.iter().map(|f| lossy(&f.raw)).collect();
                let mut p = self_net_problem(e, name, &loc, &waiting);
                if let Problem::Timeout { message, .. } = &mut p
                    && !got.is_empty()
                {
                    message.push_str(&format!("; received meanwhile: {}", got.join(" | ")));
                }
                return Err(p);
            }
        };
        let window: Vec<_> = s.pending.drain(..window_end).collect();
        let mut merged = vars.clone();
        let problems = check_step(name, lines, &window, &mut merged);
        // Keep captures (not the per-session predefined values) for later lines.
        self.keep_captures(merged);
        Ok(problems)
    }

    /// LOGOUT every session the script left open, so the server sees a clean end.
    /// After an early stop, or with commands still in flight (an IDLE never ended), a LOGOUT
    /// could be read as data and wait out the timeout: such sessions are dropped instead, and
    /// the checks are told the harness did it.
    async fn close_sessions(&mut self, aborted: bool) {
        let wait = self.run.target.timeouts.read;
        let names: Vec<String> = self.sessions.keys().cloned().collect();
        for name in names {
            let Some(s) = self.sessions.get_mut(&name) else {
                continue;
            };
            if s.closed {
                continue;
            }
            if aborted || !s.outstanding.is_empty() {
                s.closed = true;
                let found = self.checks.session_dropped(&name);
                self.violations.extend(found);
                continue;
            }
            let mut sink = Sink {
                transcript: &mut self.transcript,
                checks: &mut self.checks,
                violations: &mut self.violations,
            };
            // Errors here (e.g. a server that already dropped us) are not the scenario's
            // verdict; violations from the exchange are still recorded.
            let _ = setup::logout(s, &mut sink, wait).await;
        }
    }

    async fn cleanup(&mut self, endpoint: &Endpoint, owner: &Account) -> Result<(), SetupError> {
        if self.mailboxes.is_empty() {
            return Ok(());
        }
        let wait = self.run.target.timeouts.read;
        let run = self.run;
        let names: Vec<String> = self.mailboxes.values().cloned().collect();
        let separator = run
            .naming
            .get()
            .map(|n| n.separator.clone())
            .unwrap_or_default();
        let mut sink = self.sink();
        let mut s = setup::open(
            run,
            endpoint,
            SETUP_SESSION,
            owner,
            InitialState::Authenticated,
            None,
            &mut sink,
        )
        .await?;
        for n in names {
            setup::delete_tree(&mut s, &mut sink, &n, &separator, wait).await?;
        }
        setup::logout(&mut s, &mut sink, wait).await
    }
}

fn net(e: NetError, session: &str, loc: &Loc) -> Problem {
    self_net_problem(e, session, loc, "the server to accept the command")
}

fn self_net_problem(e: NetError, session: &str, loc: &Loc, waiting: &str) -> Problem {
    match e {
        NetError::Timeout(..) => Problem::Timeout {
            loc: Some(loc.clone()),
            session: session.to_string(),
            message: format!("{e} while waiting for {waiting}"),
        },
        other => Problem::Error {
            loc: Some(loc.clone()),
            session: Some(session.to_string()),
            message: format!("{other} while waiting for {waiting}"),
        },
    }
}

fn session_mut<'s>(
    sessions: &'s mut BTreeMap<String, Session>,
    name: &str,
    loc: &Loc,
) -> Result<&'s mut Session, Box<Problem>> {
    sessions.get_mut(name).ok_or_else(|| {
        Box::new(Problem::Error {
            loc: Some(loc.clone()),
            session: Some(name.to_string()),
            message: "the session is not open".to_string(),
        })
    })
}
