//! Matching a step's `S` lines against the server messages it received.
//!
//! Must-lines are assigned to distinct messages (untagged ones in any order), with
//! backtracking so that captures bound by one line do not starve a later one.

use crate::proto::imap::ServerFrame;
use crate::report::Problem;
use crate::script::pattern::{Bindings, PatternKind};
use crate::script::{ExpectLine, Presence};

use super::session::{is_continuation, tagged_completion};

/// Upper bound on match attempts per step: a pathological script gives up instead of hanging.
const MAX_ATTEMPTS: usize = 100_000;

/// A server message a step's lines can be matched against: an IMAP message, or one line of
/// a POP3 or SMTP reply.
pub trait Received {
    fn raw(&self) -> &[u8];
    /// Whether a pattern of this kind may match it at all.
    fn fits(&self, kind: &PatternKind) -> bool;
}

impl Received for ServerFrame {
    fn raw(&self) -> &[u8] {
        &self.raw
    }

    fn fits(&self, kind: &PatternKind) -> bool {
        match kind {
            PatternKind::Tagged { tag, .. } => {
                matches!(tagged_completion(self), Some((t, _)) if t.eq_ignore_ascii_case(tag))
            }
            PatternKind::Continuation => is_continuation(self),
            PatternKind::Untagged => self.raw.starts_with(b"*"),
        }
    }
}

/// One line of a POP3 or SMTP reply, without its line ending. Text-protocol patterns are all
/// "untagged": any line may match them.
pub struct ReplyLine(pub Vec<u8>);

impl Received for ReplyLine {
    fn raw(&self) -> &[u8] {
        &self.0
    }

    fn fits(&self, kind: &PatternKind) -> bool {
        match kind {
            PatternKind::Untagged => true,
            PatternKind::Continuation => self.0.starts_with(b"+ ") || self.0.starts_with(b"334"),
            PatternKind::Tagged { .. } => false,
        }
    }
}

fn kind_fits<M: Received>(kind: &PatternKind, frame: &M) -> bool {
    frame.fits(kind)
}

fn merged(vars: &Bindings, new: Bindings) -> Bindings {
    let mut out = vars.clone();
    out.0.extend(new.0);
    out
}

/// Try to give every must-line its own frame. Returns the assignment and the bindings.
fn assign<M: Received>(
    must: &[&ExpectLine],
    window: &[M],
    used: &mut Vec<bool>,
    vars: &Bindings,
    attempts: &mut usize,
) -> Option<(Vec<usize>, Bindings)> {
    let Some((first, rest)) = must.split_first() else {
        return Some((Vec::new(), vars.clone()));
    };
    for (i, frame) in window.iter().enumerate() {
        if used[i] || !kind_fits(first.pattern.kind(), frame) {
            continue;
        }
        *attempts += 1;
        if *attempts > MAX_ATTEMPTS {
            return None;
        }
        if let Ok(new) = first.pattern.matches(frame.raw(), vars) {
            used[i] = true;
            let vars2 = merged(vars, new);
            if let Some((mut idx, b)) = assign(rest, window, used, &vars2, attempts) {
                idx.insert(0, i);
                return Some((idx, b));
            }
            used[i] = false;
        }
    }
    None
}

/// Whether all must-lines can be matched in `window` (used while waiting).
pub fn satisfiable<M: Received>(lines: &[ExpectLine], window: &[M], vars: &Bindings) -> bool {
    let must: Vec<&ExpectLine> = lines
        .iter()
        .filter(|l| l.presence == Presence::Must)
        .collect();
    let mut used = vec![false; window.len()];
    let mut attempts = 0;
    assign(&must, window, &mut used, vars, &mut attempts).is_some()
}

pub fn lossy(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.trim_end_matches(['\r', '\n']).to_string()
}

/// Match a step; on success update `vars`. Returns the problems found.
pub fn check_step<M: Received>(
    session: &str,
    lines: &[ExpectLine],
    window: &[M],
    vars: &mut Bindings,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let must: Vec<&ExpectLine> = lines
        .iter()
        .filter(|l| l.presence == Presence::Must)
        .collect();
    let mut used = vec![false; window.len()];
    let mut attempts = 0;
    match assign(&must, window, &mut used, vars, &mut attempts) {
        Some((_, b)) => *vars = b,
        None => {
            // Report each must-line that cannot be matched on its own, with the closest reason.
            let got: Vec<String> = window.iter().map(|f| lossy(f.raw())).collect();
            for line in &must {
                let mut reasons = Vec::new();
                let mut ok = false;
                for frame in window {
                    if !kind_fits(line.pattern.kind(), frame) {
                        continue;
                    }
                    match line.pattern.matches(frame.raw(), vars) {
                        Ok(_) => {
                            ok = true;
                            break;
                        }
                        Err(m) => reasons.push(format!("{}: {}", lossy(frame.raw()), m)),
                    }
                }
                if ok {
                    continue;
                }
                let message = match reasons.first() {
                    Some(r) => format!("no server message matched; closest: {r}"),
                    None => "no server message of this kind arrived".to_string(),
                };
                problems.push(Problem::Mismatch {
                    loc: line.loc.clone(),
                    session: session.to_string(),
                    expected: line.source.clone(),
                    got: got.clone(),
                    message,
                });
            }
            if problems.is_empty() {
                // Each line matches something, but not all at once (two lines want one message).
                if let Some(line) = must.first() {
                    problems.push(Problem::Mismatch {
                        loc: line.loc.clone(),
                        session: session.to_string(),
                        expected: must
                            .iter()
                            .map(|l| l.source.as_str())
                            .collect::<Vec<_>>()
                            .join(" / "),
                        got,
                        message:
                            "the expected lines cannot all be matched to distinct server messages"
                                .to_string(),
                    });
                }
            }
            return problems;
        }
    }
    // May-lines: bind captures when they match a message no must-line took.
    for line in lines.iter().filter(|l| l.presence == Presence::May) {
        for (i, frame) in window.iter().enumerate() {
            if used[i] || !kind_fits(line.pattern.kind(), frame) {
                continue;
            }
            if let Ok(new) = line.pattern.matches(frame.raw(), vars) {
                used[i] = true;
                vars.0.extend(new.0);
                break;
            }
        }
    }
    for line in lines.iter().filter(|l| l.presence == Presence::MustNot) {
        for frame in window {
            if kind_fits(line.pattern.kind(), frame)
                && line.pattern.matches(frame.raw(), vars).is_ok()
            {
                problems.push(Problem::Mismatch {
                    loc: line.loc.clone(),
                    session: session.to_string(),
                    expected: format!("no message like: {}", line.source),
                    got: vec![lossy(frame.raw())],
                    message: "a server message the script forbids arrived".to_string(),
                });
            }
        }
    }
    problems
}
