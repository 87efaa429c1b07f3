//! Whether a finding is behavior the catalog already shows, so that only new behavior asks for a
//! new case: a catalog case whose committed snapshots of the same two platforms differ in the
//! same way. "The same way" is one differing step line in common, its sides aside ("client:
//! poll(0 ms) -> events(OUT)  |  client: poll(0 ms) -> events(IN|OUT|RDHUP)" is the same
//! difference whichever end polls); a finding whose steps all agree (it differs on the wire
//! only) is matched by its differing wire lines, their direction aside.

use super::shrink::WIRE;
use super::{differences, RunLines};
use crate::observe::same::Rule;
use crate::snapshot;
use std::collections::BTreeSet;
use std::path::Path;

/// The catalog cases (ids, in catalog order) whose snapshots of `platforms` differ in one of the
/// finding's differing `lines` (as `differences` writes them).
pub fn cases_showing(root: &Path, platforms: [&str; 2], lines: &BTreeSet<String>) -> Vec<String> {
    let wanted = keys(lines);
    if wanted.is_empty() {
        return Vec::new();
    }
    crate::catalog::all()
        .iter()
        .map(|c| c.id())
        .filter(|id| {
            let [Some(a), Some(b)] = platforms.map(|p| committed(root, p, id)) else {
                return false;
            };
            !keys(&differences(Rule::AcrossPlatforms, &a, &b)).is_disjoint(&wanted)
        })
        .collect()
}

/// The differing step lines without their sides; the wire lines only where no step differs.
fn keys(lines: &BTreeSet<String>) -> BTreeSet<String> {
    // A line is the wire's when either cell is ("-  |  wire: ...").
    let (wire, steps): (Vec<&String>, Vec<&String>) = lines
        .iter()
        .partition(|l| l.split("  |  ").any(|c| c.starts_with(WIRE)));
    // A wire line only one stack has ("-  |  RST-ACK") says too little to name a case by: many
    // cases send a segment more on one stack. One segment for another ("RST  |  RST-ACK") does.
    let wire = wire
        .into_iter()
        .filter(|l| !l.contains("-  |  ") && !l.ends_with("  |  -"));
    let chosen: Vec<&String> = if steps.is_empty() {
        wire.collect()
    } else {
        steps
    };
    chosen
        .into_iter()
        .map(|l| {
            l.split("  |  ")
                .map(without_side)
                .collect::<Vec<_>>()
                .join("  |  ")
        })
        .collect()
}

/// "client: poll(0 ms) -> events(OUT)" -> "poll(0 ms) -> events(OUT)"; "wire: client > server:
/// RST-ACK" -> "RST-ACK" (a closed socket answering data with RST-ACK is the same behavior
/// whichever end was closed).
fn without_side(cell: &str) -> &str {
    let cell = cell.strip_prefix(WIRE).unwrap_or(cell);
    match cell.split_once(": ") {
        Some((side, rest)) if !side.contains(' ') || side.contains(" > ") => rest,
        _ => cell,
    }
}

/// A case's committed observation of a platform as the explorer's lines: its steps, then its
/// wire lines; None where the platform has no snapshot of the case.
fn committed(root: &Path, platform: &str, id: &str) -> Option<RunLines> {
    let (obs, wire) = snapshot::case_paths(&snapshot::platform_dir(root, platform), id);
    let list = |path: &Path, key: &str| -> Option<Vec<String>> {
        let body = snapshot::read_body(path).ok()??;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let items = v.get(key)?.as_array()?;
        Some(
            items
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect(),
        )
    };
    let mut lines = list(&obs, "steps")?;
    let wire = list(&wire, "wire").unwrap_or_default();
    lines.extend(wire.into_iter().map(|w| format!("{WIRE}{w}")));
    Some(RunLines { lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(lines: &[&str]) -> BTreeSet<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn a_difference_is_the_same_whichever_end_shows_it() {
        let k = keys(&set(&[
            "server: poll(0 ms) -> events(OUT)  |  server: poll(0 ms) -> events(IN|OUT|RDHUP)",
            "wire: client > server: FIN  |  wire: client > server: RST",
        ]));
        assert_eq!(
            k,
            set(&["poll(0 ms) -> events(OUT)  |  poll(0 ms) -> events(IN|OUT|RDHUP)"])
        );
        // Only where no step differs does the wire decide, whichever end sent the segment, and
        // only by one segment for another.
        let k = keys(&set(&[
            "wire: client > server: RST  |  wire: client > server: RST-ACK",
            "wire: client > server: FIN  |  -",
        ]));
        assert_eq!(k, set(&["RST  |  RST-ACK"]));
        assert!(keys(&set(&["-  |  wire: client > server: RST-ACK"])).is_empty());
    }

    /// The committed snapshots: gVisor's zero-timeout poll after the peer's FIN has no RDHUP
    /// (`readiness/poll_on_peer_fin`); a finding showing that difference names the case.
    #[test]
    fn a_finding_the_catalog_shows_names_its_case() {
        let root = crate::snapshot::find_repo_root().expect("run in the repository");
        let lines = set(&[
            "client: poll(0 ms) -> events(IN|OUT)  |  client: poll(0 ms) -> events(IN|OUT|RDHUP)",
        ]);
        let shown = cases_showing(&root, ["gvisor-20221219", "linux-6.18"], &lines);
        assert!(
            shown.contains(&"readiness/poll_on_peer_fin".to_string()),
            "{shown:?}"
        );
        // A difference no case shows names none.
        let lines =
            set(&["client: poll(0 ms) -> events(PRI)  |  client: poll(0 ms) -> events(ERR)"]);
        assert!(cases_showing(&root, ["gvisor-20221219", "linux-6.18"], &lines).is_empty());
    }
}
