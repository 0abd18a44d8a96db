//! `--report FILE.md`: the grid as a Markdown table for a pull request or the docs, then one
//! collapsed block per scenario where servers disagree, with the diff in a ```` ```diff ````
//! fence.
//!
//! Server text only ever appears inside fences (a fence longer than any run of backticks in
//! it) or escaped: a hostile server cannot add links, images or HTML to the page.

use std::fmt::Write as _;

use super::{Cell, Comparison, label};
use crate::report::Status;

fn emoji(status: &Status) -> &'static str {
    match status {
        Status::Pass => "✅",
        Status::Fail => "❌",
        Status::Skip { .. } => "⏭️",
        Status::ExpectedFailure { .. } => "☑️",
        Status::UnexpectedPass { .. } => "❗",
    }
}

/// Escapes text for a table cell or a line of Markdown: HTML-significant characters become
/// entities, Markdown punctuation is backslash-escaped, and line breaks become spaces.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\r' | '\n' => out.push(' '),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '!' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A fenced block whose fence is longer than any backtick run in `body`.
fn fence(info: &str, body: &str) -> String {
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let ticks = "`".repeat((longest + 1).max(3));
    let mut body = body.to_string();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    format!("{ticks}{info}\n{body}{ticks}\n")
}

fn cell_text(cell: &Cell) -> String {
    let mut s = format!("{} {}", emoji(&cell.status), label(&cell.status));
    if cell.status.is_unexpected_failure() {
        // The rule ids, then the kind of each other problem (`mismatch`, `timeout`, ...).
        let what: Vec<String> = cell
            .rules
            .iter()
            .map(|r| escape(r))
            .chain(
                cell.problems
                    .iter()
                    .map(|p| escape(p.split(' ').next().unwrap_or(p))),
            )
            .collect();
        if !what.is_empty() {
            let _ = write!(s, "<br>{}", what.join(", "));
        }
    }
    s
}

/// The whole report.
pub fn render(cmp: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Compatibility: {}\n",
        cmp.servers
            .iter()
            .map(|s| escape(s))
            .collect::<Vec<_>>()
            .join(" vs ")
    );
    if let Some(command) = &cmp.command {
        let _ = writeln!(out, "Produced by:\n\n{}", fence("sh", command));
    }
    let _ = writeln!(out, "**Summary:** {}\n", escape(&cmp.summary()));
    let _ = writeln!(
        out,
        "Legend: ✅ PASS, ❌ FAIL, ⏭️ SKIP (not run: a capability, account or endpoint is \
         missing), ☑️ XFAIL (an expected failure, listed in the scenario with its RFC \
         reason), ❗ XPASS (listed as an expected failure but passed). ≠ marks scenarios \
         where the servers' normalized transcripts or statuses differ.\n"
    );

    let _ = write!(out, "| scenario | protocol |");
    for s in &cmp.servers {
        let _ = write!(out, " {} |", escape(s));
    }
    let _ = write!(out, " |\n|---|---|");
    for _ in &cmp.servers {
        let _ = write!(out, "---|");
    }
    out.push_str("---|\n");
    for row in &cmp.rows {
        let _ = write!(out, "| {} | {} |", escape(&row.id), row.kind.name());
        for c in &row.cells {
            let _ = write!(out, " {} |", cell_text(c));
        }
        let mark = if row.disagrees() { "≠" } else { "" };
        let _ = writeln!(out, " {mark} |");
    }

    let disagreeing: Vec<_> = cmp.rows.iter().filter(|r| r.disagrees()).collect();
    if !disagreeing.is_empty() {
        let _ = writeln!(out, "\n## Where servers disagree\n");
    }
    for row in disagreeing {
        let statuses: Vec<String> = row
            .cells
            .iter()
            .zip(&cmp.servers)
            .map(|(c, s)| format!("{} {} {}", escape(s), emoji(&c.status), label(&c.status)))
            .collect();
        let _ = writeln!(
            out,
            "<details><summary><b>{}</b>: {}</summary>\n",
            escape(&row.id),
            statuses.join(", ")
        );
        let _ = writeln!(out, "{}\n", escape(&row.title));
        for (c, s) in row.cells.iter().zip(&cmp.servers) {
            if c.details.trim().is_empty() {
                continue;
            }
            let _ = writeln!(out, "{}:\n\n{}", escape(s), fence("text", &c.details));
        }
        let diffs = row.baseline_diffs();
        if diffs.is_empty() {
            let _ = writeln!(out, "No diff: {}.\n", row.no_diff_note());
        }
        for d in diffs {
            let _ = writeln!(out, "{}", fence("diff", &d.diff));
        }
        out.push_str("</details>\n\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralizes_markup() {
        assert_eq!(
            escape("<img src=x onerror=alert(1)> | [a](b) `c`"),
            "&lt;img src=x onerror=alert\\(1\\)&gt; \\| \\[a\\]\\(b\\) \\`c\\`"
        );
    }

    #[test]
    fn fences_outgrow_the_backticks_inside() {
        assert_eq!(fence("diff", "a\n"), "```diff\na\n```\n");
        assert_eq!(fence("diff", "x ```` y"), "`````diff\nx ```` y\n`````\n");
    }
}
