//! `--report FILE.html`: one self-contained page (inline CSS and JS, nothing fetched).
//!
//! The data goes in as JSON inside `<script type="application/json">` with `<`, `>` and `&`
//! written as `\u003c`, `\u003e`, `\u0026`, so no server text can close the element or open a
//! comment; the page's script renders it with `textContent` only, never as markup. A
//! Content-Security-Policy forbids loading anything, so even a bug cannot reach the network.
//! With `#selftest` in the URL the page clicks through itself and writes `ok` (or what went
//! wrong) into `<pre id="selftest">`; the headless-browser test reads that.

use serde::Serialize;

use super::{Comparison, label};
use crate::report::Status;

const TEMPLATE: &str = include_str!("page.html");
const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// The JSON the page renders (`version` changes when the shape does).
#[derive(Debug, Serialize)]
struct Data<'a> {
    version: u32,
    title: String,
    command: Option<&'a str>,
    summary: String,
    servers: &'a [String],
    rows: Vec<RowData<'a>>,
}

#[derive(Debug, Serialize)]
struct RowData<'a> {
    id: &'a str,
    title: &'a str,
    file: String,
    kind: &'static str,
    disagree: bool,
    cells: Vec<CellData<'a>>,
    diffs: Vec<DiffData<'a>>,
}

#[derive(Debug, Serialize)]
struct CellData<'a> {
    status: &'static str,
    reason: Option<&'a str>,
    rules: &'a [String],
    problems: &'a [String],
    details: &'a str,
    transcript: &'a str,
}

#[derive(Debug, Serialize)]
struct DiffData<'a> {
    a: usize,
    b: usize,
    diff: &'a str,
}

fn reason(status: &Status) -> Option<&str> {
    match status {
        Status::Skip { reason }
        | Status::ExpectedFailure { reason }
        | Status::UnexpectedPass { reason } => Some(reason),
        Status::Pass | Status::Fail => None,
    }
}

fn title(cmp: &Comparison) -> String {
    format!("mailtape compare: {}", cmp.servers.join(" vs "))
}

/// JSON safe to embed in a `<script>` element: nothing in it can end the element.
pub fn embed_json(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub fn render(cmp: &Comparison) -> Result<String, serde_json::Error> {
    let rows = cmp
        .rows
        .iter()
        .map(|r| RowData {
            id: &r.id,
            title: &r.title,
            file: r.file.display().to_string(),
            kind: r.kind.name(),
            disagree: r.disagrees(),
            cells: r
                .cells
                .iter()
                .map(|c| CellData {
                    status: label(&c.status),
                    reason: reason(&c.status),
                    rules: &c.rules,
                    problems: &c.problems,
                    details: &c.details,
                    transcript: &c.text.full,
                })
                .collect(),
            diffs: r
                .diffs
                .iter()
                .map(|d| DiffData {
                    a: d.a,
                    b: d.b,
                    diff: &d.diff,
                })
                .collect(),
        })
        .collect();
    let data = Data {
        version: 1,
        title: title(cmp),
        command: cmp.command.as_deref(),
        summary: cmp.summary(),
        servers: &cmp.servers,
        rows,
    };
    let json = embed_json(&serde_json::to_string(&data)?);
    // The data goes in last, so nothing in it is ever taken for a placeholder.
    Ok(TEMPLATE
        .replace("{{TITLE}}", &escape(&title(cmp)))
        .replace("{{CSS}}", CSS)
        .replace("{{JS}}", JS)
        .replace("{{DATA}}", &json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_json_cannot_close_the_script_element() {
        let json = serde_json::to_string(&"</script><!-- & -->").unwrap_or_default();
        let embedded = embed_json(&json);
        assert!(!embedded.contains('<') && !embedded.contains('>'));
        let back: String = serde_json::from_str(&embedded).unwrap_or_default();
        assert_eq!(back, "</script><!-- & -->");
    }

    #[test]
    fn the_page_has_only_its_own_scripts() {
        let cmp = Comparison::new(vec!["a".into(), "b".into()], vec![], None);
        let page = match render(&cmp) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(page.matches("<script").count(), 2);
        assert!(page.contains("Content-Security-Policy"));
        assert!(!page.contains("{{"), "every placeholder is filled");
    }
}
