//! `results.json`: what one `conform` run reports, case by case, and the artifact folder it sits
//! in. This module owns the format: `conform` writes it with these types, and `import`, `diff`
//! and `conform --on` read it with the same ones. It also holds the one rule that finds artifact
//! folders, and the progress lines an inner run prints for the run that started it.
//!
//! The format stays what CI jobs have uploaded so far: every field a reader does not need to
//! decide anything defaults when absent (older runs, hand-made fixtures).

use crate::observe::{Observation, RawTiming, Wire};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// A case's result in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Changed,
    New,
    Skipped,
    Unstable,
    Failed,
}

impl Status {
    /// Every status, in the order a summary counts them.
    pub const ALL: [Status; 6] = [
        Status::Passed,
        Status::Changed,
        Status::New,
        Status::Skipped,
        Status::Unstable,
        Status::Failed,
    ];

    /// Whether the run wrote a pending snapshot for a case with this status (what `import`
    /// accepts from an artifact).
    pub fn writes_pending(self) -> bool {
        matches!(
            self,
            Status::New | Status::Changed | Status::Unstable | Status::Failed
        )
    }

    /// The name results.json spells: "passed", "changed"...
    pub fn name(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Changed => "changed",
            Status::New => "new",
            Status::Skipped => "skipped",
            Status::Unstable => "unstable",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One case of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseResult {
    pub case: String,
    pub status: Status,
    #[serde(default)]
    pub signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<Observation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<Wire>,
    #[serde(default)]
    pub raw_timings: Vec<RawTiming>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<(String, u64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wire_raw: Vec<String>,
    #[serde(default)]
    pub elapsed_ms: u64,
    /// Set when this platform has no snapshots yet and the observation differs from the nearest
    /// recorded platform's (named here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differs_from: Option<String>,
    /// The readable difference `conform` prints (from the snapshot, or between two rounds);
    /// not part of the file.
    #[serde(skip)]
    pub diff: Option<String>,
}

impl CaseResult {
    /// A case not judged yet: passed until a comparison says otherwise.
    pub fn new(case: String) -> CaseResult {
        CaseResult {
            case,
            status: Status::Passed,
            signature: String::new(),
            skip_reason: None,
            error: None,
            observation: None,
            wire: None,
            raw_timings: Vec::new(),
            measurements: Vec::new(),
            wire_raw: Vec::new(),
            elapsed_ms: 0,
            differs_from: None,
            diff: None,
        }
    }
}

/// A whole run: the platform it ran on, what this machine could do, and every case.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResults {
    /// The platform id (`linux-6.18`): names the snapshot folder and the matrix column.
    pub platform: String,
    /// The raw release the id came from (the full kernel release, the OS build); never compared.
    #[serde(default)]
    pub platform_detail: String,
    /// The kernel release (see `platforms::kernel_release`); shown by `diff`, never compared.
    #[serde(default)]
    pub kernel: String,
    /// The platform whose snapshots this run was compared with (itself, or the nearest).
    #[serde(default)]
    pub compared_with: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub isolation: String,
    #[serde(default)]
    pub capture: String,
    #[serde(default)]
    pub lab: String,
    #[serde(default)]
    pub tcp_table: String,
    #[serde(default)]
    pub repeat: u32,
    #[serde(default)]
    pub wall_ms: u64,
    #[serde(default)]
    pub sum_of_case_ms: u64,
    pub cases: Vec<CaseResult>,
}

/// Why a results.json could not be used.
#[derive(Debug)]
pub enum ReadError {
    Unreadable(PathBuf, std::io::Error),
    /// Not JSON at all (a truncated upload, a file of something else).
    NotJson(PathBuf, serde_json::Error),
    /// JSON, but not the results of a run (a field missing or of another type).
    NotResults(PathBuf, serde_json::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Unreadable(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            ReadError::NotJson(p, e) => write!(
                f,
                "{} is not valid JSON ({e}): not written by `cargo xtask conform --json`",
                p.display()
            ),
            ReadError::NotResults(p, e) => write!(
                f,
                "{} is not the results of `cargo xtask conform --json` ({e})",
                p.display()
            ),
        }
    }
}

impl RunResults {
    /// Read a results.json.
    pub fn read(path: &Path) -> Result<RunResults, ReadError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ReadError::Unreadable(path.to_path_buf(), e))?;
        serde_json::from_str(&text).map_err(|e| {
            if e.is_data() {
                ReadError::NotResults(path.to_path_buf(), e)
            } else {
                ReadError::NotJson(path.to_path_buf(), e)
            }
        })
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).expect("results serialize");
        std::fs::write(path, text)
    }

    /// How many cases have this status.
    pub fn count(&self, status: Status) -> usize {
        self.cases.iter().filter(|c| c.status == status).count()
    }

    /// "52 passed, 3 new, 2 skipped (no snapshots of its own: 1 differ from linux-6.18)".
    pub fn summary(&self) -> String {
        let parts: Vec<String> = Status::ALL
            .iter()
            .map(|s| (s, self.count(*s)))
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        let mut s = parts.join(", ");
        let base = &self.compared_with;
        if !base.is_empty() && *base != self.platform {
            let differ = self
                .cases
                .iter()
                .filter(|c| c.differs_from.is_some())
                .count();
            s += &format!(" (no snapshots of its own: {differ} differ from {base})");
        }
        s
    }
}

/// The file name of a run's results inside its artifact folder.
pub const FILE: &str = "results.json";

/// Whether `dir` is an artifact folder: it holds a run's results.json, or snapshots/ (what
/// `explore --record --artifact` writes, with no results.json).
pub fn is_artifact(dir: &Path) -> bool {
    dir.join(FILE).is_file() || dir.join("snapshots").is_dir()
}

/// The artifact folders under `dir`, found by the one rule every reader uses: `dir` itself if it
/// is an artifact (one downloaded on its own), else each folder in it that is one (as `gh run
/// download RUN_ID -D DIR` lays them out, or `conform --on` under target/stacks/). The other
/// folders in it come second, for a reader that says what it ignored. Symlinks are not followed
/// (an artifact holds plain files).
pub fn find_artifacts(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    if is_artifact(dir) {
        return Ok((vec![dir.to_path_buf()], Vec::new()));
    }
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let link = std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink());
        if p.is_dir() && !link {
            entries.push(p);
        }
    }
    entries.sort();
    Ok(entries.into_iter().partition(|p| is_artifact(p)))
}

/// The prefix of a progress line: with `conform --progress-json`, the run prints one such line
/// per finished case instead of its own, for the run that started it inside a stack.
pub const PROGRESS_PREFIX: &str = "sockconform-progress: ";

/// One finished case, as a progress line carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub case: String,
    /// Skipped (this platform cannot run it), failed (the runner's error), else done.
    pub finished: Finished,
    pub elapsed_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finished {
    Done,
    Skipped,
    Failed,
}

impl Progress {
    /// The line to print.
    pub fn line(&self) -> String {
        PROGRESS_PREFIX.to_string() + &serde_json::to_string(self).expect("serializes")
    }

    /// A progress line read back; None for any other line.
    pub fn parse(line: &str) -> Option<Progress> {
        serde_json::from_str(line.strip_prefix(PROGRESS_PREFIX)?).ok()
    }

    /// "  done  close/orderly_idle (0.12 s)", the line a run prints for itself.
    pub fn human(&self) -> String {
        let secs = self.elapsed_ms as f64 / 1000.0;
        match self.finished {
            Finished::Skipped => format!("  skip  {}", self.case),
            Finished::Failed => format!("  FAIL  {} ({secs:.2} s)", self.case),
            Finished::Done => format!("  done  {} ({secs:.2} s)", self.case),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_round_trip_and_other_lines_are_not_progress() {
        let p = Progress {
            case: "close/orderly_idle".into(),
            finished: Finished::Failed,
            elapsed_ms: 1250,
        };
        assert_eq!(Progress::parse(&p.line()), Some(p.clone()));
        assert_eq!(p.human(), "  FAIL  close/orderly_idle (1.25 s)");
        assert_eq!(Progress::parse("  done  close/orderly_idle (0.1 s)"), None);
        assert_eq!(Progress::parse("sockconform-progress: {nope"), None);
    }

    #[test]
    fn the_committed_fixtures_read_and_summarize() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("suite/tests/fixtures/diff/artifacts");
        let (found, other) = find_artifacts(&dir).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(other.is_empty());
        let mac = RunResults::read(&found[1].join(FILE)).unwrap();
        assert_eq!(mac.platform, "macos-15");
        assert_eq!(mac.summary(), "1 changed, 1 skipped");
        // Written back, a run reads as the same run.
        let text = serde_json::to_string(&mac).unwrap();
        let again: RunResults = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&again).unwrap(), text);
    }

    #[test]
    fn bad_files_say_which_kind_of_bad() {
        let dir = std::env::temp_dir().join(format!("sc-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(FILE);
        std::fs::write(&p, "{ nope").unwrap();
        assert!(matches!(RunResults::read(&p), Err(ReadError::NotJson(..))));
        std::fs::write(&p, r#"{"platform": "linux-6.18"}"#).unwrap();
        let e = RunResults::read(&p).unwrap_err();
        assert!(e.to_string().contains("missing field `cases`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
