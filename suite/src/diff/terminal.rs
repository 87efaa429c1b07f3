//! The matrix for a terminal: a table, each row's claims under it, then the differences.
//! Colored with ANSI escapes when asked to (stdout is a terminal and NO_COLOR is unset).

use super::claims::Verdict;
use super::matrix::{Matrix, Row};
use super::{cell_text, clip, column_title, width, CellKind};
use std::fmt::Write;

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
    fn red(&self, s: &str) -> String {
        self.wrap("1;31", s)
    }
    fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    fn verdict(&self, v: &Verdict, s: &str) -> String {
        match v {
            Verdict::Holds => self.green(s),
            Verdict::Contradicted(_) => self.red(s),
            Verdict::Unchecked(_) => s.to_string(),
            Verdict::NoObservation(_) => self.dim(s),
        }
    }
}

/// Pad to a display width (colors are added after padding, so escapes never count).
fn pad(s: &str, w: usize) -> String {
    let n = width(s);
    format!("{s}{}", " ".repeat(w.saturating_sub(n)))
}

/// The heading of the claims whose release range matches no column.
pub const UNMATCHED: &str = "Claims of releases not in the matrix";

/// " [linux >=6.5]" for a claim limited to a release range, else "".
pub fn range_note(c: &super::claims::Claim) -> String {
    if c.releases.is_some() {
        format!(" [{}]", c.scope())
    } else {
        String::new()
    }
}

const CELL: usize = 44;
const LINE: usize = 58;

pub fn render(m: &Matrix, color: bool) -> String {
    let p = Paint(color);
    let mut out = String::new();
    let origins: Vec<String> = m
        .columns
        .iter()
        .map(|c| format!("{}: {}", column_title(c), c.origin))
        .collect();
    let _ = writeln!(
        out,
        "{} {} cases x {} platforms ({})",
        p.bold("sockconform diff:"),
        m.rows.len(),
        m.columns.len(),
        origins.join("; ")
    );
    let contradicted = m.contradicted();
    let _ = writeln!(
        out,
        "{} differing row(s); {} claim(s){}, {} contradicted by an observation",
        m.differing(),
        m.claim_count(),
        m.claims_origin
            .as_deref()
            .map(|o| format!(" from {o}"))
            .unwrap_or_default(),
        contradicted.len()
    );
    let _ = writeln!(
        out,
        "{}",
        p.dim("legend: ≠ platforms disagree; claims: ✓ holds, ✗ contradicted, ? not checkable, · no observation")
    );
    out.push('\n');

    table(&mut out, m, &p);
    disagreements(&mut out, m, &p);
    claims_apart(&mut out, m, &p);
    out
}

/// The matrix itself: a row per case, a cell per platform, the claims under each row.
fn table(out: &mut String, m: &Matrix, p: &Paint) {
    let w_case = m
        .rows
        .iter()
        .map(|r| width(&r.case))
        .max()
        .unwrap_or(4)
        .max(4);
    // Each column as wide as its longest cell, up to CELL: a column that is all "not run" stays narrow.
    let w_col: Vec<usize> = (0..m.columns.len())
        .map(|i| {
            m.rows
                .iter()
                .map(|r| width(&shown(r, i).0))
                .max()
                .unwrap_or(0)
                .max(width(&m.columns[i].name))
                .min(CELL)
        })
        .collect();
    let mut header = format!("  {}", pad("case", w_case));
    for (c, w) in m.columns.iter().zip(&w_col) {
        header += &format!("  {}", pad(&c.name, *w));
    }
    let _ = writeln!(out, "{}", p.bold(header.trim_end()));
    // The release detail under each name, when a run recorded it (shown, never compared).
    if m.columns.iter().any(|c| c.detail.is_some()) {
        let mut details = format!("  {}", pad("", w_case));
        for (c, w) in m.columns.iter().zip(&w_col) {
            let d = c.detail.as_deref().unwrap_or("");
            details += &format!("  {}", pad(&clip(d, *w), *w));
        }
        let _ = writeln!(out, "{}", p.dim(details.trim_end()));
    }
    let mut rule = format!("  {}", "-".repeat(w_case));
    for w in &w_col {
        rule += &format!("  {}", "-".repeat(*w));
    }
    let _ = writeln!(out, "{rule}");
    let w_platform = m.columns.iter().map(|c| width(&c.name)).max().unwrap_or(0);
    for row in &m.rows {
        let mark = if row.differs {
            p.yellow("≠")
        } else {
            " ".into()
        };
        let case = if row.differs {
            p.bold(&pad(&row.case, w_case))
        } else {
            pad(&row.case, w_case)
        };
        let mut line = format!("{mark} {case}");
        for (i, w) in w_col.iter().enumerate() {
            let (text, kind) = shown(row, i);
            let shown = pad(&clip(&text, *w), *w);
            let shown = match kind {
                CellKind::Observed => shown,
                CellKind::Missing => p.dim(&shown),
                CellKind::Problem => p.yellow(&shown),
            };
            line += &format!("  {shown}");
        }
        let _ = writeln!(out, "{}", line.trim_end());
        row_notes(out, m, row, w_platform, p);
    }
}

/// Under a row: each cell's note, then the claims of each column.
fn row_notes(out: &mut String, m: &Matrix, row: &Row, w_platform: usize, p: &Paint) {
    for (col, cell) in m.columns.iter().zip(&row.cells) {
        if let Some(note) = cell.seen().and_then(|s| s.note.as_deref()) {
            let _ = writeln!(out, "      {} {}", pad(&col.name, w_platform), p.dim(note));
        }
    }
    for (col, checked) in m.columns.iter().zip(&row.claims) {
        for c in checked {
            let sym = p.verdict(&c.verdict, c.verdict.symbol());
            let mut l = format!(
                "      {} {sym} [{}] {} ({}){}",
                pad(&col.name, w_platform),
                c.claim.tag,
                c.claim.claim,
                c.claim.source,
                range_note(&c.claim)
            );
            if let Verdict::Contradicted(why) = &c.verdict {
                l += &format!(" {}", p.red(&format!("CONTRADICTED: {why}")));
            }
            let _ = writeln!(out, "{l}");
        }
    }
}

/// The aligned lines of every row where the platforms disagree.
fn disagreements(out: &mut String, m: &Matrix, p: &Paint) {
    let differing: Vec<_> = m.rows.iter().filter(|r| r.diff.is_some()).collect();
    if !differing.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("Where the platforms disagree"));
        for row in differing {
            let diff = row.diff.as_ref().expect("filtered");
            let _ = writeln!(
                out,
                "\n{} {}\n  {}",
                p.yellow("≠"),
                p.bold(&row.case),
                p.dim(&row.intent)
            );
            let names: Vec<&str> = diff
                .columns
                .iter()
                .map(|&i| m.columns[i].name.as_str())
                .collect();
            for section in &diff.sections {
                let heads: Vec<String> = names
                    .iter()
                    .map(|n| format!("{n} ({})", section.title))
                    .collect();
                let w: Vec<usize> = (0..names.len())
                    .map(|k| {
                        section
                            .lines
                            .iter()
                            .filter_map(|l| l.cells[k].as_deref().map(width))
                            .max()
                            .unwrap_or(0)
                            .max(width(&heads[k]))
                            .min(LINE)
                    })
                    .collect();
                let mut head = String::from("    ");
                for (k, h) in heads.iter().enumerate() {
                    head += &format!("{}  ", pad(h, w[k]));
                }
                let _ = writeln!(out, "{}", p.dim(head.trim_end()));
                for line in &section.lines {
                    let mut l = String::from(if line.differs { "  ≠ " } else { "    " });
                    for (k, cell) in line.cells.iter().enumerate() {
                        let text = cell.as_deref().unwrap_or("—");
                        l += &format!("{}  ", pad(&clip(text, w[k]), w[k]));
                    }
                    let l = l.trim_end().to_string();
                    let _ = writeln!(out, "{}", if line.differs { p.yellow(&l) } else { l });
                }
                if let Some(note) = &section.note {
                    let _ = writeln!(out, "    {}", p.dim(&format!("({note})")));
                }
            }
        }
    }
}

/// The contradicted claims, the claims with no case or no column, and orphan snapshots.
fn claims_apart(out: &mut String, m: &Matrix, p: &Paint) {
    let contradicted = m.contradicted();
    if !contradicted.is_empty() {
        let _ = writeln!(out, "\n{}", p.red("Claims contradicted by an observation"));
        for (row, c) in &contradicted {
            let _ = writeln!(
                out,
                "  ✗ {} on {}: [{}] {} ({}): {}",
                row.case,
                c.column,
                c.claim.tag,
                c.claim.claim,
                c.claim.source,
                c.verdict.why().unwrap_or("")
            );
        }
    }
    for (title, list) in [
        ("Claims without a case yet", &m.orphan_claims),
        (UNMATCHED, &m.unmatched_claims),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}", p.bold(title));
        for c in list {
            let _ = writeln!(
                out,
                "  · {} on {}: [{}] {} ({})",
                c.case,
                c.scope(),
                c.tag,
                c.claim,
                c.source
            );
        }
    }
    if !m.orphan_snapshots.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("Snapshots without a catalog case"));
        for s in &m.orphan_snapshots {
            let _ = writeln!(out, "  {s}");
        }
    }
}

/// A cell's text: its signature, led in a differing row by what differs there ("≠ server
/// RST-ACK · server RST, eof, BrokenPipe"), since two cells may read the same signature.
fn shown(row: &Row, i: usize) -> (String, CellKind) {
    let (text, kind) = cell_text(&row.cells[i]);
    match row.what_differs(i) {
        Some(what) => (format!("≠ {what} · {text}"), kind),
        None => (text, kind),
    }
}
