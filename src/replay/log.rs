//! What a replay keeps while it runs: per session, the recorded side and the live side as
//! two lists of messages in the order the script runs them, each with the per-server values
//! found in it; and the capture pairs learnt step by step.

use std::collections::BTreeMap;

use super::captures::{Captures, Context, Found};
use crate::report::Direction;
use crate::script::{Loc, Protocol};

/// One message (IMAP) or line (POP3, SMTP) of one side.
#[derive(Debug, Clone)]
pub struct Entry {
    pub direction: Direction,
    pub bytes: Vec<u8>,
    pub found: Vec<Found>,
    /// The script line it comes from (recorded side), or the line being run (live side).
    pub loc: Option<Loc>,
}

/// Both sides of one session.
#[derive(Debug, Clone)]
pub struct SessionLog {
    pub protocol: Protocol,
    recorded_ctx: Context,
    live_ctx: Context,
    pub recorded: Vec<Entry>,
    pub live: Vec<Entry>,
}

impl SessionLog {
    fn new(protocol: Protocol) -> SessionLog {
        SessionLog {
            protocol,
            recorded_ctx: Context::new(protocol),
            live_ctx: Context::new(protocol),
            recorded: Vec::new(),
            live: Vec::new(),
        }
    }
}

/// The whole replay's log.
#[derive(Debug, Clone, Default)]
pub struct ReplayLog {
    pub captures: Captures,
    pub sessions: BTreeMap<String, SessionLog>,
}

impl ReplayLog {
    fn session(&mut self, name: &str, protocol: Protocol) -> &mut SessionLog {
        self.sessions
            .entry(name.to_string())
            .or_insert_with(|| SessionLog::new(protocol))
    }

    /// A client line as the script writes it, with recorded UIDs replaced by live ones.
    pub fn map_client(&self, protocol: Protocol, text: String) -> String {
        match protocol {
            Protocol::Imap => self.captures.map_client(&text),
            _ => text,
        }
    }

    /// A client message: as recorded (variables filled in) and as sent.
    pub fn client(
        &mut self,
        name: &str,
        protocol: Protocol,
        recorded: Vec<u8>,
        live: Vec<u8>,
        loc: &Loc,
    ) {
        let s = self.session(name, protocol);
        // Both sides show what was sent: a client line differs from the recording only by
        // what the harness put in (live UIDs, variables, a `{N+}` sent as `{N}`), never by
        // what the server did. The recorded side's context still reads the recorded line.
        s.recorded_ctx.client(&recorded);
        let found = s.live_ctx.client(&live);
        s.recorded.push(Entry {
            direction: Direction::Client,
            bytes: live.clone(),
            found: found.clone(),
            loc: Some(loc.clone()),
        });
        s.live.push(Entry {
            direction: Direction::Client,
            bytes: live,
            found,
            loc: Some(loc.clone()),
        });
    }

    /// One step: the recorded server lines and what the server sent for them now. The
    /// values found in both are paired.
    pub fn step(
        &mut self,
        name: &str,
        protocol: Protocol,
        recorded: Vec<(Vec<u8>, Loc)>,
        live: Vec<Vec<u8>>,
        step_loc: &Loc,
    ) {
        let s = self
            .sessions
            .entry(name.to_string())
            .or_insert_with(|| SessionLog::new(protocol));
        let first_recorded = s.recorded.len();
        for (bytes, loc) in recorded {
            let found = s.recorded_ctx.server(&bytes);
            s.recorded.push(Entry {
                direction: Direction::Server,
                bytes,
                found,
                loc: Some(loc),
            });
        }
        let first_live = s.live.len();
        for bytes in live {
            let found = s.live_ctx.server(&bytes);
            s.live.push(Entry {
                direction: Direction::Server,
                bytes,
                found,
                loc: Some(step_loc.clone()),
            });
        }
        let r = view(&s.recorded[first_recorded..]);
        let l = view(&s.live[first_live..]);
        self.captures.learn_step(&r, &l);
    }
}

fn view(entries: &[Entry]) -> Vec<(&[u8], &[Found])> {
    entries
        .iter()
        .map(|e| (e.bytes.as_slice(), e.found.as_slice()))
        .collect()
}
