//! What was recorded so far, shared by every connection, and how it becomes a scenario file
//! (docs/recording.md): one session per connection, lines in the order they crossed the
//! proxy, comments where something could not be written as a script line.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::script::Protocol;

/// One line of a session's transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A `C` line (text after the prefix).
    Client(String),
    /// An `S` line.
    Server(String),
    /// A `# mailtape record: ...` comment.
    Note(String),
}

/// One connection through the proxy.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub protocol: Protocol,
    /// The login name the client used (LOGIN, AUTHENTICATE, USER, AUTH), if any.
    pub user: Option<String>,
    pub open: bool,
    pub peer: String,
    /// `--per-connection`: the session ended, its file is written and its entries dropped.
    pub flushed: bool,
}

/// Everything recorded, in time order.
#[derive(Debug)]
pub struct Journal {
    /// The upstream URLs, one per `--listen`/`--upstream` pair, in the order given.
    pub upstreams: Vec<String>,
    /// The scenario's protocol: the first pair's.
    pub protocol: Protocol,
    pub started: SystemTime,
    pub sessions: Vec<SessionInfo>,
    pub entries: Vec<(usize, Entry)>,
}

impl Journal {
    pub fn new(upstreams: Vec<String>, protocol: Protocol) -> Journal {
        Journal {
            upstreams,
            protocol,
            started: SystemTime::now(),
            sessions: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Registers a connection (to an upstream of `protocol`); sessions are numbered from 1
    /// in accept order, whichever listener accepted them.
    pub fn open_session(&mut self, peer: String, protocol: Protocol) -> usize {
        self.sessions.push(SessionInfo {
            protocol,
            user: None,
            open: true,
            peer,
            flushed: false,
        });
        self.sessions.len() - 1
    }

    pub fn is_flushed(&self, session: usize) -> bool {
        self.sessions.get(session).is_some_and(|s| s.flushed)
    }

    /// Drops the entries of an ended session whose file is final (`--per-connection`).
    pub fn flush(&mut self, session: usize) {
        if let Some(s) = self.sessions.get_mut(session)
            && !s.open
        {
            s.flushed = true;
            self.entries.retain(|(i, _)| *i != session);
        }
    }

    pub fn push(&mut self, session: usize, entries: impl IntoIterator<Item = Entry>) {
        self.entries
            .extend(entries.into_iter().map(|e| (session, e)));
    }

    /// The whole recording as one scenario file.
    pub fn render_all(&self) -> String {
        let names: Vec<(usize, String)> = (0..self.sessions.len())
            .map(|i| (i, (i + 1).to_string()))
            .collect();
        self.render(&names, "", self.protocol)
    }

    /// One session as a file of its own (`--per-connection`), named session "1" and of
    /// that session's protocol; the id ends in the connection's number so the files of one
    /// run have distinct ids.
    pub fn render_one(&self, session: usize) -> String {
        let protocol = self
            .sessions
            .get(session)
            .map_or(self.protocol, |s| s.protocol);
        self.render(
            &[(session, "1".to_string())],
            &format!("-{}", session + 1),
            protocol,
        )
    }

    /// `imap://a` for one upstream, `smtp://a and pop3://b` (comma-separated before the
    /// last `and`) for several.
    fn upstream_list(&self) -> String {
        match self.upstreams.as_slice() {
            [] => String::new(),
            [one] => one.clone(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        }
    }

    fn render(&self, names: &[(usize, String)], id_suffix: &str, protocol: Protocol) -> String {
        let stamp = utc_stamp(self.started);
        let upstreams = self.upstream_list();
        let noun = if self.upstreams.len() > 1 {
            "upstreams"
        } else {
            "upstream"
        };
        let mut out = String::new();
        out.push_str(&format!(
            "// Recorded by mailtape record: {noun} {upstreams}, {} UTC.\n",
            stamp.human
        ));
        out.push_str("Scenario(\n");
        out.push_str(&format!(
            "    id: \"recorded-{}{id_suffix}\",\n",
            stamp.compact
        ));
        let title = format!("Recorded session(s) through mailtape record from {upstreams}");
        out.push_str(&format!("    title: {},\n", ron_string(&title)));
        out.push_str("    spec: [\"recorded\"],\n");
        out.push_str(&format!("    protocol: \"{}\",\n", protocol.name()));
        out.push_str("    mailboxes: [],\n");
        out.push_str("    sessions: {\n");
        for (index, name) in names {
            let Some(info) = self.sessions.get(*index) else {
                continue;
            };
            let mut fields = Vec::new();
            if let Some(user) = &info.user {
                fields.push(format!("user: {}", ron_string(user)));
            }
            fields.push("state: \"not-authenticated\"".to_string());
            if info.protocol != protocol {
                fields.push(format!("protocol: \"{}\"", info.protocol.name()));
            }
            out.push_str(&format!("        \"{name}\": ({}),\n", fields.join(", ")));
        }
        out.push_str("    },\n");
        let mut script = String::new();
        for (session, entry) in &self.entries {
            let Some((_, name)) = names.iter().find(|(i, _)| i == session) else {
                continue;
            };
            match entry {
                Entry::Client(t) => push_line(&mut script, &format!("C{name}:"), t),
                Entry::Server(t) => push_line(&mut script, &format!("S{name}:"), t),
                Entry::Note(t) => {
                    script.push_str(&format!("# mailtape record: session {name}: {t}\n"));
                }
            }
        }
        for (index, name) in names {
            if self.sessions.get(*index).is_some_and(|s| s.open) {
                script.push_str(&format!(
                    "# mailtape record: session {name} was still open when this file was written\n"
                ));
            }
        }
        let hashes = "#".repeat(raw_hashes(&script));
        out.push_str(&format!("    script: r{hashes}\"\n{script}\"{hashes},\n"));
        out.push_str(")\n");
        out
    }
}

fn push_line(script: &mut String, prefix: &str, text: &str) {
    script.push_str(prefix);
    if !text.is_empty() {
        script.push(' ');
        script.push_str(text);
    }
    script.push('\n');
}

/// How many `#` a raw string needs so that no `"#...` inside it ends it early.
fn raw_hashes(text: &str) -> usize {
    let mut most = 0;
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'"' {
            let run = bytes[i + 1..].iter().take_while(|&&c| c == b'#').count();
            most = most.max(run);
        }
    }
    most + 1
}

fn ron_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The per-connection file name: FILE's stem plus `-N` before `.ron`.
pub fn per_connection_path(file: &Path, number: usize) -> PathBuf {
    let stem = file
        .file_stem()
        .map_or_else(|| "recording".into(), |s| s.to_string_lossy().into_owned());
    let name = format!("{stem}-{number}.ron");
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name),
        _ => PathBuf::from(name),
    }
}

struct Stamp {
    /// `2026-12-07 01:40:12`
    human: String,
    /// `20261207-014012`
    compact: String,
}

/// UTC calendar time from the system clock (days-from-civil inverse, proleptic Gregorian).
fn utc_stamp(t: SystemTime) -> Stamp {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Stamp {
        human: format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}"),
        compact: format!("{year:04}{month:02}{day:02}-{h:02}{m:02}{s:02}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_607_612);
        let s = utc_stamp(t);
        assert_eq!(s.human, "2026-12-07 01:40:12");
        assert_eq!(s.compact, "20261207-014012");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_stamp(leap).human, "2000-02-29 00:00:00");
    }

    #[test]
    fn raw_string_hashes_grow_with_the_content() {
        assert_eq!(raw_hashes("a1 OK"), 1);
        assert_eq!(raw_hashes("x \"# y"), 2);
        assert_eq!(raw_hashes("x \"### y"), 4);
    }

    #[test]
    fn per_connection_names() {
        assert_eq!(
            per_connection_path(Path::new("/tmp/rec.ron"), 2),
            PathBuf::from("/tmp/rec-2.ron")
        );
        assert_eq!(
            per_connection_path(Path::new("rec"), 1),
            PathBuf::from("rec-1.ron")
        );
    }

    #[test]
    fn rendered_file_loads() {
        let mut j = Journal::new(vec!["imap://127.0.0.1:143".into()], Protocol::Imap);
        let s = j.open_session("peer".into(), Protocol::Imap);
        j.sessions[s].user = Some("alice".into());
        j.push(
            s,
            [
                Entry::Server("* OK ready".into()),
                Entry::Client("a1 LOGIN {user} {password}".into()),
                Entry::Note("a note".into()),
                Entry::Server("a1 OK \"# done".into()),
            ],
        );
        let text = j.render_all();
        let sc = crate::script::parse_str(Path::new("rec.ron"), &text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(sc.sessions["1"].user.as_deref(), Some("alice"));
        assert!(text.contains("r##\""), "{text}");
    }

    /// Two upstreams: sessions of the second protocol say so in the whole file; a file of
    /// one session (`--per-connection`) is of that session's protocol.
    #[test]
    fn sessions_of_several_upstreams() {
        let mut j = Journal::new(
            vec!["smtp://127.0.0.1:25".into(), "pop3://127.0.0.1:110".into()],
            Protocol::Smtp,
        );
        let smtp = j.open_session("a".into(), Protocol::Smtp);
        let pop3 = j.open_session("b".into(), Protocol::Pop3);
        j.sessions[pop3].user = Some("alice".into());
        j.push(smtp, [Entry::Server("220 ready".into())]);
        j.push(pop3, [Entry::Server("+OK ready".into())]);
        j.push(smtp, [Entry::Client("QUIT".into())]);
        let all = j.render_all();
        assert!(
            all.starts_with(
                "// Recorded by mailtape record: upstreams smtp://127.0.0.1:25 and pop3://127.0.0.1:110, "
            ),
            "{all}"
        );
        assert!(all.contains("    protocol: \"smtp\",\n"), "{all}");
        assert!(
            all.contains("\"1\": (state: \"not-authenticated\"),\n"),
            "{all}"
        );
        assert!(
            all.contains(
                "\"2\": (user: \"alice\", state: \"not-authenticated\", protocol: \"pop3\"),"
            ),
            "{all}"
        );
        assert!(
            all.contains("S1: 220 ready\nS2: +OK ready\nC1: QUIT\n"),
            "{all}"
        );
        let sc = crate::script::parse_str(Path::new("rec.ron"), &all)
            .unwrap_or_else(|e| panic!("{e}\n{all}"));
        assert_eq!(sc.sessions["2"].protocol, Protocol::Pop3);

        let one = j.render_one(pop3);
        assert!(one.contains("    protocol: \"pop3\",\n"), "{one}");
        assert!(
            one.contains("\"1\": (user: \"alice\", state: \"not-authenticated\"),\n"),
            "{one}"
        );
        assert!(
            one.contains("S1: +OK ready\n") && !one.contains("QUIT"),
            "{one}"
        );
        let sc = crate::script::parse_str(Path::new("rec-2.ron"), &one)
            .unwrap_or_else(|e| panic!("{e}\n{one}"));
        assert_eq!(sc.protocol, Protocol::Pop3);
    }
}
