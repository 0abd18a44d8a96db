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

    /// One step: the recorded server lines and what the server sent for them now (IMAP:
    /// messages; POP3/SMTP: reply lines). The values found in both are paired, line by line;
    /// POP3/SMTP lines are then kept as whole replies, as the text normalizer reads them.
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
        let rec: Vec<Line> = recorded
            .into_iter()
            .map(|(bytes, loc)| Line::read(&mut s.recorded_ctx, bytes, loc))
            .collect();
        let live: Vec<Line> = live
            .into_iter()
            .map(|bytes| Line::read(&mut s.live_ctx, bytes, step_loc.clone()))
            .collect();
        self.captures.learn_step(&view(&rec), &view(&live));
        for l in rec {
            push_server(&mut s.recorded, l);
        }
        for l in live {
            push_server(&mut s.live, l);
        }
    }
}

/// One server message or reply line as read, with whether it starts a reply.
struct Line {
    bytes: Vec<u8>,
    found: Vec<Found>,
    loc: Loc,
    starts: bool,
}

impl Line {
    fn read(ctx: &mut Context, bytes: Vec<u8>, loc: Loc) -> Line {
        let starts = ctx.starts_reply();
        let found = ctx.server(&bytes);
        Line {
            bytes,
            found,
            loc,
            starts,
        }
    }
}

/// Appends a server line: a new entry when it starts a reply, else to the last one.
fn push_server(entries: &mut Vec<Entry>, line: Line) {
    if !line.starts
        && let Some(last) = entries
            .last_mut()
            .filter(|e| e.direction == Direction::Server)
    {
        let offset = last.bytes.len() + 2;
        last.bytes.extend_from_slice(b"\r\n");
        last.bytes.extend_from_slice(&line.bytes);
        last.found.extend(line.found.into_iter().map(|f| Found {
            range: f.range.start + offset..f.range.end + offset,
            kind: f.kind,
        }));
        return;
    }
    entries.push(Entry {
        direction: Direction::Server,
        bytes: line.bytes,
        found: line.found,
        loc: Some(line.loc),
    });
}

fn view(lines: &[Line]) -> Vec<(&[u8], &[Found])> {
    lines
        .iter()
        .map(|l| (l.bytes.as_slice(), l.found.as_slice()))
        .collect()
}
