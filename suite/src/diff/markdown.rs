//! The matrix as Markdown for a CI job summary. GitHub refuses a step summary over 1 MiB, so the
//! output stays under [`BUDGET`]: the table and the contradicted claims always come first, and the
//! per-row details are cut, with a note, when they would not fit.

use super::claims::Verdict;
use super::matrix::{Matrix, Row};
use super::terminal::{range_note, UNMATCHED};
use super::{cell_text, clip, column_title};
use std::fmt::Write;

/// The most the Markdown may weigh: well under GitHub's 1 MiB limit for a job summary.
pub const BUDGET: usize = 900 * 1024;

/// Aligned lines shown per row at most; a longer difference says how many were left out.
const MAX_LINES_PER_ROW: usize = 200;

/// Text inside a table cell: no pipes, no HTML, no newlines.
fn cell(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "&#124;")
        .replace('\n', " ")
}

/// Text inside `<code>` within a cell.
fn code(s: &str) -> String {
    format!("<code>{}</code>", cell(s))
}

pub fn render(m: &Matrix) -> String {
    render_with_budget(m, BUDGET)
}

/// Render within `budget` bytes (exposed for tests).
pub fn render_with_budget(m: &Matrix, budget: usize) -> String {
    let mut head = String::new();
    let contradicted = m.contradicted();
    let _ = writeln!(head, "## sockconform: cross-platform matrix\n");
    let origins: Vec<String> = m
        .columns
        .iter()
        .map(|c| format!("**{}**: {}", cell(&column_title(c)), c.origin))
        .collect();
    let _ = writeln!(
        head,
        "{} cases; {}. **{}** row(s) where the platforms disagree (≠); {} claim(s){}, **{}** contradicted by an observation (✗).\n",
        m.rows.len(),
        origins.join(", "),
        m.differing(),
        m.claim_count(),
        m.claims_origin
            .as_deref()
            .map(|o| format!(" from `{o}`"))
            .unwrap_or_default(),
        contradicted.len()
    );
    let _ = writeln!(
        head,
        "Claims beside each cell: ✓ holds; ✗ contradicted; ? not checkable here; · no observation for that platform (in small type). A claim never fills a cell.\n"
    );
    let mut table = String::from("| | case |");
    for c in &m.columns {
        match &c.detail {
            Some(d) => {
                let _ = write!(table, " {}<br><sub>{}</sub> |", c.name, cell(d));
            }
            None => {
                let _ = write!(table, " {} |", c.name);
            }
        }
    }
    table.push_str("\n|---|---|");
    for _ in &m.columns {
        table.push_str("---|");
    }
    table.push('\n');
    for row in &m.rows {
        table.push_str(&table_row(row));
    }
    let mut out = head;
    out.push_str(&table);

    // Findings first: they are short and the reason to read the summary.
    let mut blocks: Vec<String> = Vec::new();
    if !contradicted.is_empty() {
        let mut b = String::from("\n### ✗ Claims contradicted by an observation\n\n");
        for (row, c) in &contradicted {
            let _ = writeln!(
                b,
                "- `{}` on **{}**: [{}] {}{} — _{}_. {}",
                row.case,
                c.column,
                c.claim.tag,
                cell(&c.claim.claim),
                cell(&range_note(&c.claim)),
                cell(&c.claim.source),
                cell(c.verdict.why().unwrap_or(""))
            );
        }
        blocks.push(b);
    }
    for (title, list) in [
        ("Claims without a case yet", &m.orphan_claims),
        (UNMATCHED, &m.unmatched_claims),
    ] {
        if list.is_empty() {
            continue;
        }
        let mut b = format!("\n### {title}\n\n");
        for c in list {
            let _ = writeln!(
                b,
                "- `{}` on **{}**: [{}] {} — _{}_",
                c.case,
                cell(&c.scope()),
                c.tag,
                cell(&c.claim),
                cell(&c.source)
            );
        }
        blocks.push(b);
    }
    if !m.orphan_snapshots.is_empty() {
        let mut b = String::from("\n### Snapshots without a catalog case\n\n");
        for s in &m.orphan_snapshots {
            let _ = writeln!(b, "- `{s}`");
        }
        blocks.push(b);
    }
    blocks.push(sources(m));
    let differing: Vec<&Row> = m.rows.iter().filter(|r| r.diff.is_some()).collect();
    if !differing.is_empty() {
        blocks.push("\n### ≠ Where the platforms disagree\n".into());
        for row in &differing {
            blocks.push(details(m, row));
        }
    }

    // Keep room for the note that says what was left out.
    let reserve = 400;
    let mut omitted = 0;
    for b in blocks {
        if out.len() + b.len() + reserve <= budget {
            out.push_str(&b);
        } else {
            omitted += 1;
        }
    }
    if omitted > 0 {
        let _ = writeln!(
            out,
            "\n> **Truncated:** {omitted} section(s) of details were left out to keep this summary under GitHub's 1 MiB limit. Run `cargo xtask diff --format html` for the full report."
        );
    }
    // The table alone could exceed the budget only with absurd inputs; cut it hard if so.
    if out.len() > budget {
        let mut cut = budget.saturating_sub(200);
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("\n\n> **Truncated:** the matrix itself exceeded the size limit.\n");
    }
    out
}

fn table_row(row: &Row) -> String {
    let mark = if row.differs { "≠" } else { "" };
    let mut s = format!("| {mark} | `{}` |", row.case);
    for (i, (c, claims)) in row.cells.iter().zip(&row.claims).enumerate() {
        let (text, _) = cell_text(c);
        let mut parts = vec![if c.seen().is_some() {
            format!("**{}**", cell(&clip(&text, 120)))
        } else {
            cell(&clip(&text, 120))
        }];
        // Two cells may read the same signature and still differ: name where.
        if let Some(what) = row.what_differs(i) {
            parts.push(format!("≠ {}", code(&clip(&what, 120))));
        }
        for k in claims {
            let tag = match &k.claim.releases {
                Some(_) => format!("{}, {}", k.claim.tag, cell(&k.claim.scope())),
                None => k.claim.tag.clone(),
            };
            let (symbol, text) = (k.verdict.symbol(), cell(&clip(&k.claim.claim, 140)));
            parts.push(match k.verdict {
                Verdict::NoObservation(_) => format!("<sub>{symbol} {text} [{tag}]</sub>"),
                Verdict::Contradicted(_) => format!("**{symbol} {text}** <sub>[{tag}]</sub>"),
                _ => format!("{symbol} {text} <sub>[{tag}]</sub>"),
            });
        }
        let _ = write!(s, " {} |", parts.join("<br>"));
    }
    s.push('\n');
    s
}

/// One differing row's aligned lines, collapsed.
fn details(m: &Matrix, row: &Row) -> String {
    let diff = row.diff.as_ref().expect("only rows with a difference");
    let n_diff: usize = diff
        .sections
        .iter()
        .map(|s| s.lines.iter().filter(|l| l.differs).count())
        .sum();
    let mut b = format!(
        "\n<details><summary><code>{}</code>: {} line(s) differ</summary>\n\n{}\n\n",
        row.case,
        n_diff,
        cell(&row.intent)
    );
    let names: Vec<&str> = diff
        .columns
        .iter()
        .map(|&i| m.columns[i].name.as_str())
        .collect();
    b.push_str("| | |");
    for n in &names {
        let _ = write!(b, " {n} |");
    }
    b.push_str("\n|---|---|");
    for _ in &names {
        b.push_str("---|");
    }
    b.push('\n');
    let mut shown = 0;
    let total: usize = diff.sections.iter().map(|s| s.lines.len()).sum();
    'sections: for section in &diff.sections {
        for line in &section.lines {
            if shown == MAX_LINES_PER_ROW {
                break 'sections;
            }
            shown += 1;
            let _ = write!(
                b,
                "| {} | {} |",
                if line.differs { "≠" } else { "" },
                section.title
            );
            for c in &line.cells {
                let text = match c {
                    Some(t) if line.differs => format!("**{}**", code(&clip(t, 200))),
                    Some(t) => code(&clip(t, 200)),
                    None => "—".into(),
                };
                let _ = write!(b, " {text} |");
            }
            b.push('\n');
        }
    }
    if shown < total {
        let _ = writeln!(
            b,
            "\n_{} more line(s) not shown here; see the HTML report._",
            total - shown
        );
    }
    for s in &diff.sections {
        if let Some(note) = &s.note {
            let _ = writeln!(b, "\n_{}: {note}._", s.title);
        }
    }
    b.push_str("\n</details>\n");
    b
}

/// Every claim with its source, collapsed (the table shows only the claim's text).
fn sources(m: &Matrix) -> String {
    let mut b = String::from("\n<details><summary>Claims and their sources</summary>\n\n");
    for (row, c) in m.all_checked() {
        let why = c
            .verdict
            .why()
            .map(|w| format!(" ({})", cell(w)))
            .unwrap_or_default();
        let _ = writeln!(
            b,
            "- {} `{}` on **{}**: [{}] {}{} — _{}_{why}",
            c.verdict.symbol(),
            row.case,
            c.column,
            c.claim.tag,
            cell(&c.claim.claim),
            cell(&range_note(&c.claim)),
            cell(&c.claim.source),
        );
    }
    b.push_str("\n</details>\n");
    b
}
