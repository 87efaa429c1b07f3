//! What each platform observed: the committed snapshots (`snapshots/<platform-id>/`), replaced per
//! case by a CI run's or a stack run's artifacts when given (`results.json`, then pending
//! `.snap.new` files, then the artifact's `.snap` files).
//!
//! A platform is a platform id (`linux-6.18`, `gvisor-20221219`, `macos-15`, or a bare stack name
//! such as `linux` when the release is unknown; see `platforms::id`). A folder under `snapshots/`
//! that is not a platform id is not a platform and is ignored; an artifact naming something that is
//! not a platform id is refused.

use super::DiffError;
use crate::observe::event::{Event, Gap, Section, Value};
use crate::observe::{Observation, Wire};
use crate::proto::Outcome;
use crate::results::{self, CaseResult, RunResults, Status};
use crate::script::Case;
use crate::snapshot;
use platforms::id::{compare_releases, is_platform_id, release_of, stack_of, STACKS};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One platform's result for one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Nothing recorded for this platform.
    NotRun,
    Observed(Seen),
    /// The run skipped the case; the reason as recorded.
    Skipped(String),
    /// The run failed (the runner's error); what it saw is not compared.
    Failed(String),
}

impl Cell {
    pub fn seen(&self) -> Option<&Seen> {
        match self {
            Cell::Observed(s) => Some(s),
            _ => None,
        }
    }
}

/// An observation with its wire events (None when the platform did not capture the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub observation: Observation,
    pub wire: Option<Vec<String>>,
    /// Where it came from when that is not the committed snapshot, or what the run said of it.
    pub note: Option<String>,
}

impl Seen {
    /// The short summary shown in the matrix cell: `observe::signature`, plus what it leaves out
    /// that tells platforms apart here: the error that ends a repeated operation
    /// ("ok(10 connections), then error(AddrNotAvailable, ...)") and, for a case that only records
    /// facts, the facts.
    pub fn signature(&self) -> String {
        let wire = match &self.wire {
            Some(events) => Wire::Captured {
                events: events.clone(),
            },
            None => Wire::NotCaptured {
                reason: String::new(),
            },
        };
        let base = crate::observe::signature(&self.observation, &wire);
        let mut parts: Vec<String> = if base == "all ok" {
            Vec::new()
        } else {
            base.split(", ").map(str::to_string).collect()
        };
        let events = Event::parse_all(Section::Steps, &self.observation.steps);
        for e in &events {
            // A repeated operation's end: "ok(10 connections), then error(AddrNotAvailable, ..)".
            let then = match e {
                Event::Call(c) => match c.result.outcome() {
                    Some(Outcome::Many { then: Some(t), .. }) => t.as_ref(),
                    _ => continue,
                },
                _ => continue,
            };
            if let Outcome::Error { kind, .. } = then {
                if !parts.contains(kind) {
                    parts.push(kind.clone());
                }
            }
        }
        if parts.is_empty() {
            let facts: Vec<String> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Reading {
                        subject,
                        value: Value::Shown(v),
                    } if subject == "fact (read, not waited for)" => {
                        Some(v.split(':').next().unwrap_or(v).to_string())
                    }
                    Event::Reading {
                        subject,
                        value: Value::Gap(Gap::Unavailable(_)),
                    } if subject == "fact" => Some("fact unavailable".into()),
                    _ => None,
                })
                .collect();
            if !facts.is_empty() {
                return facts.join("; ");
            }
            return base;
        }
        parts.join(", ")
    }
}

/// Everything known about one platform.
#[derive(Clone, Debug, Default)]
pub struct PlatformData {
    /// The platform id (`linux-6.18`), or the bare stack name of a "not run" placeholder column.
    pub name: String,
    /// Where its cells come from ("snapshots/linux-6.18", "artifact conform-macos-15", ...).
    pub origin: String,
    /// What the run recorded of its platform beyond the id (the full kernel release
    /// `6.18.44-fc-v1045`, the OS build), from results.json's `platform_detail` or the snapshots'
    /// `kernel:` header lines; shown, never compared. Several distinct values are joined.
    pub detail: Option<String>,
    pub cells: BTreeMap<String, Cell>,
    /// Snapshot files of this platform whose case is not in the catalog.
    pub orphans: Vec<String>,
}

impl PlatformData {
    pub fn cell(&self, case: &str) -> &Cell {
        self.cells.get(case).unwrap_or(&Cell::NotRun)
    }
}

#[derive(Deserialize)]
struct WireBody {
    wire: Vec<String>,
}

fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path, body: &str) -> Result<T, DiffError> {
    serde_json::from_str(body).map_err(|e| {
        DiffError::input(
            path,
            format!("corrupt: the body is not an observation of ours ({e})"),
        )
    })
}

/// Add `value` to a detail ("a, b"), once.
fn add_detail(detail: &mut Option<String>, value: &str) {
    match detail {
        None => *detail = Some(value.to_string()),
        Some(d) if d.split(", ").any(|v| v == value) => {}
        Some(d) => {
            d.push_str(", ");
            d.push_str(value);
        }
    }
}

/// The `kernel:` of a snapshot file's header, if the file has one.
fn file_detail(path: &Path) -> Option<String> {
    snapshot::header_value(&std::fs::read_to_string(path).ok()?, "kernel")
}

/// Read one case's pair of snapshot files under `dir` (a `snapshots/<platform-id>` directory), with
/// `ext` appended to each name ("" for accepted snapshots, ".new" for pending ones).
fn read_pair(dir: &Path, case: &str, ext: &str) -> Result<Option<Seen>, DiffError> {
    let (obs, wire) = snapshot::case_paths(dir, case);
    let with = |p: PathBuf| {
        let mut s = p.into_os_string();
        s.push(ext);
        PathBuf::from(s)
    };
    let (obs, wire) = (with(obs), with(wire));
    read_files(&obs, &wire)
}

/// The observation file and wire file of a case, whatever their names.
fn read_files(obs: &Path, wire: &Path) -> Result<Option<Seen>, DiffError> {
    let read = |p: &Path| snapshot::read_body(p).map_err(DiffError::from);
    let Some(body) = read(obs)? else {
        return Ok(None);
    };
    let observation: Observation = parse_json(obs, &body)?;
    let wire = match read(wire)? {
        Some(body) => Some(parse_json::<WireBody>(wire, &body)?.wire),
        None => None,
    };
    Ok(Some(Seen {
        observation,
        wire,
        note: None,
    }))
}

/// Snapshot files under a platform directory whose case is not in the catalog.
fn orphans(dir: &Path, known: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(families) = std::fs::read_dir(dir) else {
        return out;
    };
    for fam in families.flatten() {
        let Ok(files) = std::fs::read_dir(fam.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".snap") else {
                continue;
            };
            if stem.ends_with(".wire") {
                continue;
            }
            let id = format!("{}/{stem}", fam.file_name().to_string_lossy());
            if !known.contains(&id) {
                out.push(id);
            }
        }
    }
    out.sort();
    out
}

/// The committed snapshots of one platform.
pub fn committed(root: &Path, platform: &str, cases: &[Case]) -> Result<PlatformData, DiffError> {
    let dir = snapshot::platform_dir(root, platform);
    let mut data = PlatformData {
        name: platform.to_string(),
        origin: if dir.is_dir() {
            format!("snapshots/{platform}")
        } else {
            "no snapshots".into()
        },
        ..Default::default()
    };
    if !dir.is_dir() {
        return Ok(data);
    }
    let ids: Vec<String> = cases.iter().map(Case::id).collect();
    for id in &ids {
        if let Some(seen) = read_pair(&dir, id, "")? {
            if let Some(k) = file_detail(&snapshot::case_paths(&dir, id).0) {
                add_detail(&mut data.detail, &k);
            }
            data.cells.insert(id.clone(), Cell::Observed(seen));
        }
    }
    data.orphans = orphans(&dir, &ids);
    Ok(data)
}

/// The platforms present under `snapshots/`: every folder whose name is a platform id, sorted as
/// the columns are. Other folders are not platforms and are ignored.
pub fn platform_ids(root: &Path) -> Vec<String> {
    let mut out = platform_folders(root);
    out.sort_by(|a, b| column_order(a, b));
    out
}

/// The folders under `root/snapshots/` whose name is a platform id, in no particular order.
fn platform_folders(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_platform_id(n))
        .collect()
}

/// The order of the matrix's columns: by stack (`STACKS` order), then by release (numerically; an
/// id without a release first), then by name.
pub fn column_order(a: &str, b: &str) -> std::cmp::Ordering {
    let stack = |id: &str| {
        stack_of(id)
            .and_then(|s| STACKS.iter().position(|x| *x == s))
            .unwrap_or(STACKS.len())
    };
    stack(a)
        .cmp(&stack(b))
        .then_with(|| match (release_of(a), release_of(b)) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => compare_releases(x, y),
        })
        .then_with(|| a.cmp(b))
}

/// The columns in order, with one "not run" column, named by the stack, for every stack that has
/// no platform at all (so a reader sees which stacks are missing).
pub fn arrange(mut data: Vec<PlatformData>) -> Vec<PlatformData> {
    for stack in STACKS {
        if !data.iter().any(|d| stack_of(&d.name) == Some(stack)) {
            data.push(PlatformData {
                name: stack.to_string(),
                origin: "no snapshots".into(),
                ..Default::default()
            });
        }
    }
    data.sort_by(|a, b| column_order(&a.name, &b.name));
    data
}

/// One platform's artifact (a CI job's download, a stack run's folder), read into its column.
#[derive(Debug)]
pub struct ArtifactData {
    pub platform: String,
    pub dir: PathBuf,
    pub data: PlatformData,
}

/// Read the artifacts under `dir`, found by `results::find_artifacts`'s rule (one artifact, or
/// one folder per platform: `conform-macos-15/`, a stack run's folder, ...).
pub fn artifacts(dir: &Path, cases: &[Case]) -> Result<Vec<ArtifactData>, DiffError> {
    if !dir.is_dir() {
        return Err(DiffError::input(
            dir,
            "not a directory of CI artifacts".into(),
        ));
    }
    let (dirs, _) = results::find_artifacts(dir)
        .map_err(|e| DiffError::input(dir, format!("unreadable: {e}")))?;
    if dirs.is_empty() {
        return Err(DiffError::input(
            dir,
            "no artifact found (expected folders such as conform-macos-15/ holding results.json or snapshots/)".into(),
        ));
    }
    let mut out: Vec<ArtifactData> = Vec::new();
    for d in dirs {
        let a = artifact(&d, cases)?;
        if let Some(other) = out.iter().find(|o| o.platform == a.platform) {
            return Err(DiffError::input(
                &d,
                format!(
                    "a second artifact for {} (the first is {})",
                    a.platform,
                    other.dir.display()
                ),
            ));
        }
        out.push(a);
    }
    Ok(out)
}

/// An artifact's results.json, if it has one.
fn read_results(dir: &Path) -> Result<Option<RunResults>, DiffError> {
    let path = dir.join(results::FILE);
    if !path.is_file() {
        return Ok(None);
    }
    RunResults::read(&path).map(Some).map_err(|e| match e {
        results::ReadError::Unreadable(_, e) => DiffError::input(&path, format!("unreadable: {e}")),
        results::ReadError::NotJson(_, e) | results::ReadError::NotResults(_, e) => {
            DiffError::input(
                &path,
                format!("corrupt: not the results of `sockconform conform --json` ({e})"),
            )
        }
    })
}

/// The platform of an artifact: what its results.json names, else its one
/// `snapshots/<platform-id>/` folder, else its folder's name (`conform-<platform-id>`).
fn artifact_platform(dir: &Path, results: Option<&RunResults>) -> Result<String, DiffError> {
    if let Some(r) = results {
        if !is_platform_id(&r.platform) {
            return Err(DiffError::input(
                &dir.join(results::FILE),
                format!(
                    "names the platform {:?}, which is not a platform id (a stack, one of {}, \
                     optionally followed by -release)",
                    r.platform,
                    STACKS.join(", ")
                ),
            ));
        }
        return Ok(r.platform.clone());
    }
    let from_snapshots = platform_folders(dir);
    if let [one] = from_snapshots.as_slice() {
        return Ok(one.clone());
    }
    folder_name(dir)
        .strip_prefix("conform-")
        .filter(|id| is_platform_id(id))
        .map(str::to_string)
        .ok_or_else(|| {
            DiffError::input(
                dir,
                "cannot tell the platform (no results.json, not one \
                 snapshots/<platform-id>/, and the folder is not conform-<platform-id>)"
                    .into(),
            )
        })
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn artifact(dir: &Path, cases: &[Case]) -> Result<ArtifactData, DiffError> {
    let results = read_results(dir)?;
    let platform = artifact_platform(dir, results.as_ref())?;
    let mut data = PlatformData {
        name: platform.clone(),
        detail: results
            .as_ref()
            .map(|r| r.platform_detail.clone())
            .filter(|d| !d.trim().is_empty()),
        origin: format!(
            "artifact {}{}",
            folder_name(dir),
            if results.is_some() {
                " (results.json)"
            } else {
                ""
            }
        ),
        ..Default::default()
    };
    if let Some(k) = results.as_ref().map(|r| r.kernel.as_str()) {
        if !k.trim().is_empty() {
            add_detail(&mut data.detail, k);
        }
    }
    let by_case: BTreeMap<&str, &CaseResult> = results
        .iter()
        .flat_map(|r| r.cases.iter())
        .map(|c| (c.case.as_str(), c))
        .collect();
    let snaps = dir.join("snapshots").join(&platform);
    let detail_given = data.detail.is_some();
    for case in cases {
        let id = case.id();
        if let Some(cell) = by_case.get(id.as_str()).and_then(|r| result_cell(r)) {
            data.cells.insert(id, cell);
            continue;
        }
        let (obs, _) = snapshot::case_paths(&snaps, &id);
        if let Some(mut seen) = read_pair(&snaps, &id, ".new")? {
            header_detail(&mut data, &snapshot::pending_path(&obs), detail_given);
            seen.note = Some("pending snapshot from the artifact".into());
            data.cells.insert(id, Cell::Observed(seen));
        } else if let Some(seen) = read_pair(&snaps, &id, "")? {
            header_detail(&mut data, &obs, detail_given);
            data.cells.insert(id, Cell::Observed(seen));
        }
    }
    Ok(ArtifactData {
        platform,
        dir: dir.to_path_buf(),
        data,
    })
}

/// The cell a case's entry in results.json makes: skipped, failed, or what it observed (with a
/// note of its status); None when it holds no observation (the snapshots are read instead).
fn result_cell(r: &CaseResult) -> Option<Cell> {
    match r.status {
        Status::Skipped => {
            let why = r.skip_reason.clone();
            return Some(Cell::Skipped(
                why.unwrap_or_else(|| "no reason recorded".into()),
            ));
        }
        Status::Failed => {
            let why = r.error.clone();
            return Some(Cell::Failed(
                why.unwrap_or_else(|| "no error recorded".into()),
            ));
        }
        _ => {}
    }
    let obs = r.observation.as_ref()?;
    let wire = match &r.wire {
        Some(Wire::Captured { events }) => Some(events.clone()),
        _ => None,
    };
    let note = match r.status {
        Status::Changed => Some("changed from the committed snapshot".to_string()),
        Status::New => Some("no committed snapshot yet".to_string()),
        Status::Unstable => Some("unstable across repeated runs".to_string()),
        _ => None,
    };
    Some(Cell::Observed(Seen {
        observation: obs.clone(),
        wire,
        note,
    }))
}

/// The snapshot header's `kernel:` as the artifact's detail, unless results.json gave one.
fn header_detail(data: &mut PlatformData, path: &Path, detail_given: bool) {
    if detail_given {
        return;
    }
    if let Some(k) = file_detail(path) {
        add_detail(&mut data.detail, &k);
    }
}

/// Lay an artifact over the committed data of its platform: the artifact's cells win, and cases
/// the artifact does not have keep their committed snapshot, marked as such.
pub fn overlay(committed: PlatformData, artifact: ArtifactData) -> PlatformData {
    let mut data = artifact.data;
    for (id, cell) in committed.cells {
        if data.cells.contains_key(&id) {
            continue;
        }
        let cell = match cell {
            Cell::Observed(mut seen) => {
                seen.note = Some("committed snapshot (not in the artifact)".into());
                Cell::Observed(seen)
            }
            other => other,
        };
        data.cells.insert(id, cell);
    }
    data.orphans = committed.orphans;
    if data.detail.is_none() {
        data.detail = committed.detail;
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::header_value;

    fn seen(steps: &[&str]) -> Seen {
        Seen {
            observation: Observation {
                case: "x/y".into(),
                intent: String::new(),
                steps: steps.iter().map(|s| s.to_string()).collect(),
                timing: Vec::new(),
            },
            wire: None,
            note: None,
        }
    }

    #[test]
    fn signatures_add_the_error_ending_a_repetition_and_show_facts() {
        let s = seen(&[
            "server: listen(backlog 64) -> ok",
            "client: connect up to 100 times -> ok(10 connections), then error(AddrNotAvailable, EADDRNOTAVAIL)",
            "server listener3: listen(backlog 64) -> error(AddrInUse, EADDRINUSE)",
        ]);
        assert_eq!(s.signature(), "AddrInUse, AddrNotAvailable");
        let s = seen(&[
            "fact (read, not waited for): net.ipv4.tcp_retries2 = 15: gives up after about 924.6 s",
            "fact (read, not waited for): keepalive idle 7200 s, interval 75 s, 9 probes",
            "fact: unavailable (not supported here)",
        ]);
        assert_eq!(
            s.signature(),
            "net.ipv4.tcp_retries2 = 15; keepalive idle 7200 s, interval 75 s, 9 probes; fact unavailable"
        );
        assert_eq!(seen(&["client: connect -> ok"]).signature(), "all ok");
        assert_eq!(seen(&["client: read(100) -> eof"]).signature(), "eof");
    }

    #[test]
    fn columns_are_ordered_by_stack_then_release_with_a_column_per_missing_stack() {
        let data = [
            "macos-15",
            "linux-6.18",
            "gvisor",
            "linux-6.1",
            "linux-6.9",
            "linux",
        ]
        .iter()
        .map(|n| PlatformData {
            name: n.to_string(),
            ..Default::default()
        })
        .collect();
        let names: Vec<String> = arrange(data).into_iter().map(|d| d.name).collect();
        assert_eq!(
            names,
            [
                "linux",
                "linux-6.1",
                "linux-6.9",
                "linux-6.18",
                "gvisor",
                "macos-15",
                "windows",
                "freebsd"
            ]
        );
    }

    #[test]
    fn header_values_are_read_from_the_info_block_quoted_or_not() {
        let t = "---\nsource: x\ninfo:\n  kernel: \"6.18.44-fc-v1045\"\n  os: Debian\n  platform: \"linux-6.18\"\n---\n{\"kernel\": \"body\"}\n";
        assert_eq!(
            header_value(t, "kernel").as_deref(),
            Some("6.18.44-fc-v1045")
        );
        assert_eq!(header_value(t, "os").as_deref(), Some("Debian"));
        assert_eq!(header_value(t, "platform").as_deref(), Some("linux-6.18"));
        assert_eq!(header_value(t, "version"), None);
        assert_eq!(header_value("{\"kernel\": 1}", "kernel"), None);
        let mut d = None;
        add_detail(&mut d, "6.18.44");
        add_detail(&mut d, "6.18.44");
        add_detail(&mut d, "6.18.45");
        assert_eq!(d.as_deref(), Some("6.18.44, 6.18.45"));
    }
}
