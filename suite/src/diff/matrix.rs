//! The matrix: one row per catalog case, one column per platform id, the claims of each column's
//! stack (within their release range) beside its cell, and for rows where the observed platforms
//! disagree an aligned step-by-step difference.

use super::claims::{self, Applies, Checked, Claim};
use super::load::{Cell, PlatformData, Seen};
use crate::observe::event::{Checkpoint, Event, Part, Returned, Section as Kind, WireEvent};
use crate::observe::same::{self, AlignedLine, Rule, WireOrder};
use crate::proto::Outcome;
use crate::script::Case;

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
    /// Which lines these are, to read them as events.
    pub kind: Kind,
    /// One cell per diff column; None where that platform has no such line.
    pub lines: Vec<AlignedLine>,
    /// Why the section is partial, if it is (for example: wire captured on one platform only).
    pub note: Option<String>,
}

impl Section {
    fn new(kind: Kind, lines: Vec<AlignedLine>, note: Option<String>) -> Section {
        Section {
            title: kind.title(),
            kind,
            lines,
            note,
        }
    }
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
    // Two platforms are compared: codes by kind, a gap on either side (see `same::Rule`).
    let rule = Rule::AcrossPlatforms;
    let mut sections = vec![
        Section::new(Kind::Steps, same::align(rule, Kind::Steps, &steps), None),
        Section::new(Kind::Timing, same::align(rule, Kind::Timing, &timing), None),
    ];
    // The wire is compared among the platforms that captured it; the others show no lines.
    let captured = observed.iter().filter(|(_, s)| s.wire.is_some()).count();
    let empty: Vec<String> = Vec::new();
    let wire: Vec<&[String]> = observed
        .iter()
        .map(|(_, s)| s.wire.as_deref().unwrap_or(&empty))
        .collect();
    let mut wire_lines = same::align_wire(rule, WireOrder::PerConnection, &wire);
    let uncaptured: Vec<usize> = observed
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| s.wire.is_none())
        .map(|(k, _)| k)
        .collect();
    for line in &mut wire_lines {
        let present: Vec<Option<&str>> = line
            .cells
            .iter()
            .enumerate()
            .filter(|(k, _)| !uncaptured.contains(k))
            .map(|(_, c)| c.as_deref())
            .collect();
        line.differs = same::cells_differ(rule, Kind::Wire, &present);
    }
    let wire_note = match captured {
        0 => Some("the wire was not captured".to_string()),
        n if n < observed.len() => Some(
            "the wire was captured on some platforms only; only those are compared".to_string(),
        ),
        _ => None,
    };
    if captured > 0 {
        sections.push(Section::new(Kind::Wire, wire_lines, wire_note));
    }
    let differs = sections.iter().any(|s| s.lines.iter().any(|l| l.differs));
    if !differs {
        return None;
    }
    sections.retain(|s| !s.lines.is_empty());
    Some(StepDiff { columns, sections })
}

impl Row {
    /// What differs in matrix column `column` of a differing row, named by the typed elements
    /// of its differing lines ("server RST-ACK", "client poll: IN|OUT", "end: server
    /// TIME_WAIT"); None where the row agrees or the column did not observe the case. Two cells
    /// may read the same signature and still differ: this says where.
    pub fn what_differs(&self, column: usize) -> Option<String> {
        let diff = self.diff.as_ref()?;
        let k = diff.columns.iter().position(|&c| c == column)?;
        let mut out: Vec<String> = Vec::new();
        for section in &diff.sections {
            for line in section.lines.iter().filter(|l| l.differs) {
                let events: Vec<Option<Event>> = line
                    .cells
                    .iter()
                    .map(|c| c.as_deref().map(|l| Event::parse(section.kind, l)))
                    .collect();
                let others: Vec<&Event> = events
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != k)
                    .filter_map(|(_, e)| e.as_ref())
                    .collect();
                let named = match (&events[k], others.first()) {
                    (Some(e), _) => element(e, &others),
                    (None, Some(other)) => format!("no {}", element(other, &[])),
                    (None, None) => continue,
                };
                if !named.is_empty() && !out.contains(&named) {
                    out.push(named);
                }
            }
        }
        (!out.is_empty()).then(|| out.join("; "))
    }
}

/// The part of an event that tells it apart from the others of its aligned line.
fn element(e: &Event, others: &[&Event]) -> String {
    match e {
        Event::Wire(WireEvent::Sent { from, what, .. }) => format!("{from} {what}"),
        Event::Call(c) => {
            let name = c.op.split('(').next().unwrap_or(&c.op).trim_end();
            format!("{} {name}: {}", c.who, short(&c.result))
        }
        Event::Checkpoint(c) => {
            let theirs: Vec<&Checkpoint> = others
                .iter()
                .filter_map(|o| match o {
                    Event::Checkpoint(x) => Some(x),
                    _ => None,
                })
                .collect();
            differing_ends(c, &theirs)
        }
        Event::Reading { value, .. } => value.to_string(),
        Event::Timing { bucket, .. } => bucket.clone(),
        other => other.to_string(),
    }
}

/// A call's result in a few words: an error by its kind, readiness by its events.
fn short(r: &Returned) -> String {
    fn outcome(o: &Outcome) -> String {
        match o {
            Outcome::Error { kind, code } if kind == "Uncategorized" => format!("{kind} {code}"),
            Outcome::Error { kind, .. } => kind.clone(),
            Outcome::Events { events } if !events.is_empty() => events.join("|"),
            Outcome::Died { how } => format!("died ({how})"),
            Outcome::Filled { then } => format!("filled, then {}", outcome(then)),
            other => other.to_string(),
        }
    }
    match r {
        Returned::Outcome(o) => outcome(o),
        other => other.to_string(),
    }
}

/// The ends of checkpoint `c` that differ from the same end in any of `theirs`:
/// "after_close: client FIN_WAIT1"; the whole checkpoint when its parts do not line up.
fn differing_ends(c: &Checkpoint, theirs: &[&Checkpoint]) -> String {
    let lined_up = theirs.iter().all(|t| t.parts.len() == c.parts.len());
    if !lined_up {
        return c.to_string()["checkpoint ".len()..].to_string();
    }
    let mut ends = Vec::new();
    for (i, part) in c.parts.iter().enumerate() {
        let mine = part_ends(part);
        for (j, (name, end)) in mine.iter().enumerate() {
            let differs = theirs.iter().any(|t| {
                let other = part_ends(&t.parts[i]);
                other.get(j).is_none_or(|(n, e)| {
                    n != name || !same::same_end(Rule::AcrossPlatforms, end, e)
                })
            });
            if differs {
                ends.push(format!("{name} {end}"));
            }
        }
        if let Part::Listener(state) = part {
            if theirs.iter().any(|t| t.parts[i] != *part) {
                ends.push(format!("listener {state}"));
            }
        }
    }
    format!("{}: {}", c.name, ends.join(", "))
}

/// The named ends of a connection part ("c2 client", its end); none for a listener.
fn part_ends(p: &Part) -> Vec<(String, crate::observe::event::End)> {
    match (p, p.end_names()) {
        (Part::Conn { client, server, .. }, Some([c, s])) => {
            vec![(c, client.clone()), (s, server.clone())]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::load;

    /// The matrix of one case over the three committed platforms, read from snapshots/: its
    /// one row is row 0.
    fn committed_row(case: &str) -> (Matrix, usize) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let cases: Vec<Case> = crate::catalog::all()
            .into_iter()
            .chain(crate::explore::corpus())
            .filter(|c| c.id() == case)
            .collect();
        let platforms: Vec<PlatformData> = ["linux-6.1", "linux-6.18", "gvisor-20221219"]
            .iter()
            .map(|p| load::committed(root, p, &cases).expect("committed snapshots load"))
            .collect();
        (build(&cases, &platforms, &[], None), 0)
    }

    #[test]
    fn cells_of_a_differing_row_name_what_differs_even_when_their_signatures_match() {
        let (m, r) = committed_row("close/data_after_peer_closed");
        let row = &m.rows[r];
        assert!(row.differs);
        // The signatures read the same: the difference is RST against RST-ACK.
        let sig: Vec<String> = row
            .cells
            .iter()
            .map(|c| c.seen().expect("observed").signature())
            .collect();
        assert!(sig.iter().all(|s| *s == sig[0]), "{sig:?}");
        let named: Vec<Option<String>> = (0..3).map(|i| row.what_differs(i)).collect();
        assert_eq!(
            named,
            [
                Some("server RST".to_string()),
                Some("server RST".to_string()),
                Some("server RST-ACK".to_string())
            ]
        );
    }

    #[test]
    fn cells_name_the_differing_outcome_and_checkpoint_end() {
        let (m, r) = committed_row("after_close/write_after_reset_sigpipe_default");
        let named = m.rows[r].what_differs(2).expect("differs");
        assert_eq!(named, "client write: BrokenPipe");
        assert_eq!(
            m.rows[r].what_differs(0).as_deref(),
            Some("client write: died (signal SIGPIPE); client write: not performed (the process had ended: signal SIGPIPE)")
        );
        // A corpus row: the poll flags that differ.
        let (m, r) = committed_row("explore/seed1_32");
        let named = m.rows[r].what_differs(0).expect("differs");
        assert!(named.contains("client poll: IN|OUT|RDHUP"), "{named}");
        let named = m.rows[r].what_differs(2).expect("differs");
        assert!(named.contains("client poll: IN|OUT"), "{named}");
        assert!(!named.contains("RDHUP"), "{named}");
        // A checkpoint: the end whose state differs, named with its checkpoint.
        let (m, r) = committed_row("linger/positive_nonblocking");
        let named = m.rows[r].what_differs(0).expect("differs");
        assert!(named.contains("after_close: server ESTABLISHED"), "{named}");
        let named = m.rows[r].what_differs(2).expect("differs");
        assert!(named.contains("after_close: server CLOSE_WAIT"), "{named}");
        // A row whose platforms agree names nothing.
        let (m, r) = committed_row("close/orderly_idle");
        assert!(!m.rows[r].differs);
        assert_eq!(m.rows[r].what_differs(0), None);
    }
}
