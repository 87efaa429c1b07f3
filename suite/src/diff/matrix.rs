//! The matrix: one row per catalog case, one column per platform id, the claims of each column's
//! stack (within their release range) beside its cell, and for rows where the observed platforms
//! disagree an aligned step-by-step difference.

use super::claims::{self, Applies, Checked, Claim};
use super::load::{Cell, PlatformData, Seen};
use crate::script::Case;
use similar::{capture_diff_slices, Algorithm, DiffOp};

/// A column of the matrix.
#[derive(Clone, Debug)]
pub struct Column {
    /// The platform id (`linux-6.18`), or a stack name for a stack with no platform.
    pub name: String,
    pub origin: String,
    /// The release detail recorded by the run (`6.18.44-fc-v1045`), when known; never compared.
    pub detail: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Row {
    pub case: String,
    pub family: String,
    pub intent: String,
    /// One per column.
    pub cells: Vec<Cell>,
    /// The claims that apply to each column (its stack, its release), in file order.
    pub claims: Vec<Vec<Checked>>,
    /// At least two platforms observed the case and they disagree.
    pub differs: bool,
    /// The aligned difference, for rows that differ.
    pub diff: Option<StepDiff>,
}

impl Row {
    pub fn contradictions(&self) -> usize {
        self.claims
            .iter()
            .flatten()
            .filter(|c| matches!(c.verdict, claims::Verdict::Contradicted(_)))
            .count()
    }
}

/// The lines of the observed platforms side by side.
#[derive(Clone, Debug)]
pub struct StepDiff {
    /// The columns (indices into the matrix's columns) that observed the case.
    pub columns: Vec<usize>,
    pub sections: Vec<Section>,
}

#[derive(Clone, Debug)]
pub struct Section {
    /// "steps", "timing" or "wire".
    pub title: &'static str,
    pub lines: Vec<Line>,
    /// Why the section is partial, if it is (for example: wire captured on one platform only).
    pub note: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Line {
    /// One per diff column; None where that platform has no such line.
    pub cells: Vec<Option<String>>,
    pub differs: bool,
}

#[derive(Clone, Debug)]
pub struct Matrix {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    /// Claims about cases the catalog does not have yet.
    pub orphan_claims: Vec<Claim>,
    /// Claims of a catalog case whose release range matches no column (a Linux release that was
    /// not run), listed apart so that they stay visible.
    pub unmatched_claims: Vec<Claim>,
    /// Snapshot files without a catalog case ("linux: family/name").
    pub orphan_snapshots: Vec<String>,
    /// Where the claims came from, if a claims file was read.
    pub claims_origin: Option<String>,
}

impl Matrix {
    pub fn differing(&self) -> usize {
        self.rows.iter().filter(|r| r.differs).count()
    }

    pub fn all_checked(&self) -> impl Iterator<Item = (&Row, &Checked)> {
        self.rows
            .iter()
            .flat_map(|r| r.claims.iter().flatten().map(move |c| (r, c)))
    }

    pub fn claim_count(&self) -> usize {
        self.all_checked().count() + self.orphan_claims.len() + self.unmatched_claims.len()
    }

    pub fn contradicted(&self) -> Vec<(&Row, &Checked)> {
        self.all_checked()
            .filter(|(_, c)| matches!(c.verdict, claims::Verdict::Contradicted(_)))
            .collect()
    }

    pub fn families(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !out.contains(&r.family.as_str()) {
                out.push(&r.family);
            }
        }
        out
    }
}

/// Build the matrix. `platforms` are the columns in order; `claims` may name any case.
pub fn build(
    cases: &[Case],
    platforms: &[PlatformData],
    claims: &[Claim],
    claims_origin: Option<String>,
) -> Matrix {
    let columns: Vec<Column> = platforms
        .iter()
        .map(|p| Column {
            name: p.name.clone(),
            origin: p.origin.clone(),
            detail: p.detail.clone(),
        })
        .collect();
    let ids: Vec<String> = cases.iter().map(Case::id).collect();
    let rows = cases
        .iter()
        .map(|case| {
            let id = case.id();
            let cells: Vec<Cell> = platforms.iter().map(|p| p.cell(&id).clone()).collect();
            let row_claims = platforms
                .iter()
                .zip(&cells)
                .map(|(p, cell)| {
                    let observed = !p.cells.is_empty();
                    claims
                        .iter()
                        .filter(|c| c.case == id)
                        .filter_map(|c| {
                            let verdict = match c.applies_to(&p.name, observed) {
                                Applies::No => return None,
                                Applies::Yes => claims::check(c, cell),
                                Applies::ReleaseUnknown => match cell {
                                    Cell::Observed(_) => claims::Verdict::Unchecked(format!(
                                        "the claim is for {}; the release of {} is unknown",
                                        c.scope(),
                                        p.name
                                    )),
                                    other => claims::check(c, other),
                                },
                            };
                            Some(Checked {
                                claim: c.clone(),
                                column: p.name.clone(),
                                verdict,
                            })
                        })
                        .collect()
                })
                .collect();
            let diff = step_diff(&cells);
            let differs = diff.is_some();
            Row {
                case: id,
                family: case.family.to_string(),
                intent: case.intent.to_string(),
                cells,
                claims: row_claims,
                differs,
                diff,
            }
        })
        .collect();
    let orphan_claims = claims
        .iter()
        .filter(|c| !ids.contains(&c.case))
        .cloned()
        .collect();
    let unmatched_claims = claims
        .iter()
        .filter(|c| ids.contains(&c.case))
        .filter(|c| {
            platforms
                .iter()
                .all(|p| c.applies_to(&p.name, !p.cells.is_empty()) == Applies::No)
        })
        .cloned()
        .collect();
    let orphan_snapshots = platforms
        .iter()
        .flat_map(|p| p.orphans.iter().map(move |o| format!("{}: {o}", p.name)))
        .collect();
    Matrix {
        columns,
        rows,
        orphan_claims,
        unmatched_claims,
        orphan_snapshots,
        claims_origin,
    }
}

/// The part of a line that identifies it across platforms: the operation, not its outcome.
fn label(section: &str, line: &str) -> String {
    match section {
        "steps" => {
            if let Some((l, _)) = line.split_once(" -> ") {
                l.to_string()
            } else if let Some(rest) = line.strip_prefix("checkpoint ") {
                format!("checkpoint {}", rest.split(':').next().unwrap_or(rest))
            } else {
                line.to_string()
            }
        }
        "timing" => line
            .rsplit_once(": ")
            .map(|(l, _)| l.to_string())
            .unwrap_or_else(|| line.to_string()),
        _ => line.to_string(),
    }
}

/// The part of a line that is compared. A platform spells its error codes its own way
/// (ECONNRESET, WSAECONNRESET), so `error(Kind, CODE)` compares by its portable kind; only for
/// `Uncategorized`, where the code is all there is, the code counts (without Windows' WSA prefix).
pub fn comparable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("error(") {
        let (before, after) = rest.split_at(i + "error(".len());
        out.push_str(before);
        let Some(close) = after.find(')') else {
            rest = after;
            break;
        };
        let inner = &after[..close];
        match inner.split_once(", ") {
            Some(("Uncategorized", code)) => {
                out.push_str("Uncategorized, ");
                out.push_str(code.strip_prefix("WSA").unwrap_or(code));
            }
            Some((kind, _)) => out.push_str(kind),
            None => out.push_str(inner),
        }
        rest = &after[close..];
    }
    out.push_str(rest);
    out
}

/// Align the lines of several platforms: each platform in turn is diffed (by label) against the
/// rows built so far, so equal operations share a row and a platform's extra lines get rows of
/// their own.
pub fn align(section: &str, columns: &[&[String]]) -> Vec<Line> {
    let width = columns.len();
    let mut grid: Vec<Vec<Option<String>>> = Vec::new();
    for (c, lines) in columns.iter().enumerate() {
        let old_keys: Vec<String> = grid
            .iter()
            .map(|row| {
                let first = row.iter().flatten().next().map(String::as_str);
                label(section, first.unwrap_or(""))
            })
            .collect();
        let new_keys: Vec<String> = lines.iter().map(|l| label(section, l)).collect();
        let ops = capture_diff_slices(Algorithm::Myers, &old_keys, &new_keys);
        let mut next: Vec<Vec<Option<String>>> = Vec::with_capacity(grid.len() + lines.len());
        let put = |next: &mut Vec<Vec<Option<String>>>, old: Option<usize>, new: Option<usize>| {
            let mut row = match old {
                Some(i) => grid[i].clone(),
                None => vec![None; width],
            };
            if let Some(j) = new {
                row[c] = Some(lines[j].clone());
            }
            next.push(row);
        };
        for op in ops {
            match op {
                DiffOp::Equal {
                    old_index,
                    new_index,
                    len,
                } => {
                    for k in 0..len {
                        put(&mut next, Some(old_index + k), Some(new_index + k));
                    }
                }
                DiffOp::Delete {
                    old_index, old_len, ..
                } => {
                    for k in 0..old_len {
                        put(&mut next, Some(old_index + k), None);
                    }
                }
                DiffOp::Insert {
                    new_index, new_len, ..
                } => {
                    for k in 0..new_len {
                        put(&mut next, None, Some(new_index + k));
                    }
                }
                DiffOp::Replace {
                    old_index,
                    old_len,
                    new_index,
                    new_len,
                } => {
                    // Pair the replaced lines one to one: they are the same steps done differently.
                    let both = old_len.min(new_len);
                    for k in 0..both {
                        put(&mut next, Some(old_index + k), Some(new_index + k));
                    }
                    for k in both..old_len {
                        put(&mut next, Some(old_index + k), None);
                    }
                    for k in both..new_len {
                        put(&mut next, None, Some(new_index + k));
                    }
                }
            }
        }
        grid = next;
    }
    grid.into_iter()
        .map(|cells| {
            let first = cells[0].as_deref();
            let differs = cells.iter().any(|c| !agree(first, c.as_deref()));
            Line { cells, differs }
        })
        .collect()
}

/// Whether two platforms' versions of one aligned line say the same thing. What a platform
/// cannot show is no difference: a checkpoint end written `not visible (...)` agrees with any
/// state, and a receive queue one table does not report agrees with the other's figure.
pub fn agree(a: Option<&str>, b: Option<&str>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return a.is_none() && b.is_none();
    };
    let (a, b) = (comparable(a), comparable(b));
    if a == b {
        return true;
    }
    // A measurement or fact the platform cannot take ("kernel memory per connection:
    // unavailable (cannot read the slab caches here)") says nothing about behavior.
    let unavailable = |l: &str| l.contains(": unavailable (") || l.contains(": not visible (");
    if unavailable(&a) || unavailable(&b) {
        let subject = |l: &str| l.split([':', '(']).next().unwrap_or("").trim().to_string();
        if subject(&a) == subject(&b) {
            return true;
        }
    }
    let (Some(ea), Some(eb)) = (checkpoint_ends(&a), checkpoint_ends(&b)) else {
        return false;
    };
    ea.len() == eb.len()
        && ea.iter().zip(&eb).all(|((la, sa, qa), (lb, sb, qb))| {
            la == lb
                && (sa == sb || sa == NOT_VISIBLE || sb == NOT_VISIBLE)
                && (qa.is_none() || qb.is_none() || qa == qb)
        })
}

const NOT_VISIBLE: &str = "not visible";

/// The ends of a checkpoint line ("checkpoint x: client A, server B rx_queue=1; listener L") as
/// (label, state, queue annotation); None for any other line.
fn checkpoint_ends(line: &str) -> Option<Vec<(String, String, Option<String>)>> {
    let (head, body) = line.strip_prefix("checkpoint ")?.split_once(": ")?;
    // A `not visible (...)` explanation holds commas of its own: fold it into one word first.
    let mut folded = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("not visible (") {
        folded.push_str(&rest[..i]);
        folded.push_str(NOT_VISIBLE);
        let after = &rest[i + "not visible (".len()..];
        rest = after.find(')').map_or("", |j| &after[j + 1..]);
    }
    folded.push_str(rest);
    let mut ends = vec![(format!("checkpoint {head}"), String::new(), None)];
    for part in folded
        .split([';', ','])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (words, queue) = match part.find(" rx_queue") {
            Some(i) => (&part[..i], Some(part[i + 1..].to_string())),
            None => (part, None),
        };
        let (label, state) = match words.strip_suffix(NOT_VISIBLE) {
            Some(label) => (label.trim_end(), NOT_VISIBLE),
            None => words.rsplit_once(' ')?,
        };
        ends.push((label.to_string(), state.to_string(), queue));
    }
    Some(ends)
}

/// The aligned difference of a row, or None when fewer than two platforms observed it or they agree.
fn step_diff(cells: &[Cell]) -> Option<StepDiff> {
    let observed: Vec<(usize, &Seen)> = cells
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.seen().map(|s| (i, s)))
        .collect();
    if observed.len() < 2 {
        return None;
    }
    let columns: Vec<usize> = observed.iter().map(|(i, _)| *i).collect();
    let steps: Vec<&[String]> = observed
        .iter()
        .map(|(_, s)| s.observation.steps.as_slice())
        .collect();
    let timing: Vec<&[String]> = observed
        .iter()
        .map(|(_, s)| s.observation.timing.as_slice())
        .collect();
    let mut sections = vec![
        Section {
            title: "steps",
            lines: align("steps", &steps),
            note: None,
        },
        Section {
            title: "timing",
            lines: align("timing", &timing),
            note: None,
        },
    ];
    // The wire is compared among the platforms that captured it; the others show no lines.
    let captured = observed.iter().filter(|(_, s)| s.wire.is_some()).count();
    let empty: Vec<String> = Vec::new();
    let wire: Vec<&[String]> = observed
        .iter()
        .map(|(_, s)| s.wire.as_deref().unwrap_or(&empty))
        .collect();
    let mut wire_lines = align("wire", &wire);
    let uncaptured: Vec<usize> = observed
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| s.wire.is_none())
        .map(|(k, _)| k)
        .collect();
    for line in &mut wire_lines {
        let present: Vec<Option<String>> = line
            .cells
            .iter()
            .enumerate()
            .filter(|(k, _)| !uncaptured.contains(k))
            .map(|(_, c)| c.as_deref().map(String::from))
            .collect();
        line.differs = present
            .windows(2)
            .any(|w| !agree(w[0].as_deref(), w[1].as_deref()));
    }
    let wire_note = match captured {
        0 => Some("the wire was not captured".to_string()),
        n if n < observed.len() => Some(
            "the wire was captured on some platforms only; only those are compared".to_string(),
        ),
        _ => None,
    };
    if captured > 0 {
        sections.push(Section {
            title: "wire",
            lines: wire_lines,
            note: wire_note,
        });
    }
    let differs = sections.iter().any(|s| s.lines.iter().any(|l| l.differs));
    if !differs {
        return None;
    }
    sections.retain(|s| !s.lines.is_empty());
    Some(StepDiff { columns, sections })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn code_names_do_not_count_but_kinds_do() {
        assert_eq!(
            comparable("client: read(100) -> error(ConnectionReset, WSAECONNRESET)"),
            comparable("client: read(100) -> error(ConnectionReset, ECONNRESET)")
        );
        assert_ne!(
            comparable("x -> error(ConnectionReset, ECONNRESET)"),
            comparable("x -> error(ConnectionAborted, WSAECONNABORTED)")
        );
        assert_eq!(
            comparable("x -> error(Uncategorized, WSAEMFILE)"),
            "x -> error(Uncategorized, EMFILE)"
        );
        assert_ne!(
            comparable("x -> error(Uncategorized, EMFILE)"),
            comparable("x -> error(Uncategorized, ENOBUFS)")
        );
        assert_eq!(
            comparable("write until full -> filled, then error(WouldBlock, EAGAIN)"),
            "write until full -> filled, then error(WouldBlock)"
        );
    }

    #[test]
    fn alignment_keeps_equal_steps_on_one_row_and_gives_extra_lines_their_own() {
        let a = v(&[
            "server: listen(backlog 16) -> ok",
            "client: read(100) -> eof",
            "client: write(5) -> error(BrokenPipe, EPIPE)",
        ]);
        let b = v(&[
            "server: listen(backlog 16) -> ok",
            "checkpoint extra: client CLOSED",
            "client: read(100) -> error(ConnectionReset, ECONNRESET)",
            "client: write(5) -> error(BrokenPipe, EPIPE)",
        ]);
        let lines = align("steps", &[&a, &b]);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(!lines[0].differs);
        assert_eq!(lines[1].cells[0], None);
        assert!(lines[1].differs);
        assert!(lines[2].differs);
        assert_eq!(
            lines[2].cells[0].as_deref(),
            Some("client: read(100) -> eof")
        );
        assert!(!lines[3].differs);
    }

    #[test]
    fn three_way_alignment_is_rectangular() {
        let a = v(&["a -> ok", "b -> ok"]);
        let b = v(&["a -> ok", "x -> ok", "b -> ok"]);
        let c = v(&["b -> eof"]);
        let lines = align("steps", &[&a, &b, &c]);
        assert!(lines.iter().all(|l| l.cells.len() == 3));
        let b_row = lines
            .iter()
            .find(|l| l.cells[0].as_deref() == Some("b -> ok"))
            .unwrap();
        assert_eq!(b_row.cells[2].as_deref(), Some("b -> eof"));
        assert!(b_row.differs);
    }

    #[test]
    fn what_a_platform_cannot_show_is_no_difference() {
        let linux = "checkpoint after_kill: client CLOSE_WAIT rx_queue=1, server FIN_WAIT2; listener CLOSED";
        let gvisor = "checkpoint after_kill: client CLOSE_WAIT, server not visible (CLOSED, or FIN_WAIT2 or TIME_WAIT, which this table does not list); listener CLOSED";
        assert!(agree(Some(linux), Some(gvisor)));
        // A state both tables show and that differs is still a difference.
        let other = "checkpoint after_kill: client ESTABLISHED, server not visible (CLOSED, which this table does not list); listener CLOSED";
        assert!(!agree(Some(linux), Some(other)));
        // Two real queue figures that differ are a difference; a missing step is one too.
        let q2 = "checkpoint after_kill: client CLOSE_WAIT rx_queue=2, server FIN_WAIT2; listener CLOSED";
        assert!(!agree(Some(linux), Some(q2)));
        assert!(!agree(Some(linux), None));
        assert!(agree(None, None));
        assert!(agree(
            Some("kernel memory per connection (both ends, TCP slab caches): about 4 KiB"),
            Some("kernel memory per connection: unavailable (cannot read the slab caches here)")
        ));
    }
}
