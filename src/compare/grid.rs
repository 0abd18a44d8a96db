//! The terminal rendering: the grid, the failures under it, the diffs where servers
//! disagree, and the summary line. Colour only when asked for.

use std::fmt::Write as _;

use owo_colors::Style;

use super::{Cell, Comparison, label};
use crate::report::Status;
use crate::report::human::diff_line_style;
use crate::report::normalize::escape_lossy;

/// Formatting with or without ANSI colour.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    pub color: bool,
}

impl Paint {
    fn paint(&self, text: &str, style: Style) -> String {
        if self.color {
            style.style(text).to_string()
        } else {
            text.to_string()
        }
    }

    fn status(&self, status: &Status, width: usize) -> String {
        let style = match status {
            Status::Pass => Style::new().green().bold(),
            Status::Fail | Status::UnexpectedPass { .. } => Style::new().red().bold(),
            Status::Skip { .. } => Style::new().yellow().bold(),
            Status::ExpectedFailure { .. } => Style::new().cyan().bold(),
        };
        // Padded before painting so the escape codes do not upset the alignment.
        self.paint(&format!("{:<width$}", label(status)), style)
    }
}

/// Everything but the summary: grid, failures, diffs.
pub fn render(cmp: &Comparison, paint: Paint) -> String {
    let mut out = String::new();
    let id_width = cmp
        .rows
        .iter()
        .map(|r| r.id.chars().count())
        .chain(["scenario".len()])
        .max()
        .unwrap_or(8);
    let widths: Vec<usize> = cmp
        .servers
        .iter()
        .map(|s| s.chars().count().max(5))
        .collect();
    let mut header = format!("{:<id_width$}", "scenario");
    for (s, w) in cmp.servers.iter().zip(&widths) {
        let _ = write!(header, "  {s:<w$}");
    }
    let _ = writeln!(
        out,
        "{}",
        paint.paint(header.trim_end(), Style::new().bold())
    );
    for row in &cmp.rows {
        let mut line = format!("{:<id_width$}", row.id);
        for (cell, w) in row.cells.iter().zip(&widths) {
            line.push_str("  ");
            line.push_str(&paint.status(&cell.status, *w));
        }
        if row.disagrees() {
            line.push_str(&paint.paint("  ~", Style::new().yellow()));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }

    let failures: Vec<String> = cmp
        .rows
        .iter()
        .flat_map(|row| {
            row.cells
                .iter()
                .zip(&cmp.servers)
                .filter(|(c, _)| c.status.is_unexpected_failure())
                .map(move |(c, s)| failure_line(&row.id, s, c, paint))
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            paint.paint("Failures:", Style::new().red().bold())
        );
        for f in failures {
            out.push_str(&f);
        }
    }

    let disagreeing: Vec<_> = cmp.rows.iter().filter(|r| r.disagrees()).collect();
    if !disagreeing.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            paint.paint("Where servers disagree:", Style::new().yellow().bold())
        );
    }
    for row in disagreeing {
        let statuses: Vec<String> = row
            .cells
            .iter()
            .zip(&cmp.servers)
            .map(|(c, s)| format!("{s} {}", label(&c.status)))
            .collect();
        let _ = writeln!(
            out,
            "--- {} ({})",
            paint.paint(&row.id, Style::new().bold()),
            statuses.join(", ")
        );
        let diffs = row.baseline_diffs();
        if diffs.is_empty() {
            let _ = writeln!(out, "    ({})", row.no_diff_note());
        }
        for d in diffs {
            for line in d.diff.lines() {
                // Server text may hold escape sequences: never sent to the terminal raw.
                let text = escape_lossy(line.as_bytes());
                let _ = writeln!(out, "    {}", paint.paint(&text, diff_line_style(line)));
            }
        }
    }
    out
}

/// `  FAIL imap.x [dovecot]: imap.tag.echo; mismatch at file:3:1 (session 1)`
fn failure_line(id: &str, server: &str, cell: &Cell, paint: Paint) -> String {
    let mut what: Vec<String> = cell.rules.clone();
    what.extend(cell.problems.iter().cloned());
    if let Status::UnexpectedPass { reason } = &cell.status {
        what.push(format!(
            "passed, but listed as an expected failure ({reason})"
        ));
    }
    let status = paint.status(&cell.status, 0);
    if what.is_empty() {
        return format!("  {status} {id} [{server}]\n");
    }
    format!(
        "  {} {id} [{server}]: {}\n",
        status,
        escape_lossy(what.join("; ").as_bytes())
    )
}

/// The last line: the counts per server and how many scenarios disagree.
pub fn summary(cmp: &Comparison, paint: Paint, elapsed: std::time::Duration) -> String {
    let style = if cmp.failed() {
        Style::new().red().bold()
    } else {
        Style::new().green().bold()
    };
    format!(
        "{}: {} [{:.3}s]\n",
        paint.paint("Summary", style),
        cmp.summary(),
        elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::cell;
    use super::super::{Kind, Row};
    use super::*;

    #[test]
    fn grid_lists_failures_and_diffs() {
        let servers = vec!["reference".to_string(), "other".to_string()];
        let row = Row::new(
            "imap.noop".into(),
            "t".into(),
            "x.ron".into(),
            Kind::Imap,
            vec![
                cell(Status::Pass, "C: a1 NOOP\nS: a1 OK\n"),
                cell(Status::Fail, "C: a1 NOOP\nS: a1 BAD\n"),
            ],
            &servers,
        );
        let cmp = Comparison::new(servers, vec![row], None);
        let text = render(&cmp, Paint { color: false });
        assert_eq!(
            text,
            "scenario   reference  other\n\
             imap.noop  PASS       FAIL   ~\n\
             \n\
             Failures:\n  FAIL imap.noop [other]\n\
             \n\
             Where servers disagree:\n\
             --- imap.noop (reference PASS, other FAIL)\n\
             \x20   --- reference\n    +++ other\n    @@ -1,2 +1,2 @@\n     C: a1 NOOP\n    -S: a1 OK\n    +S: a1 BAD\n"
        );
    }
}
