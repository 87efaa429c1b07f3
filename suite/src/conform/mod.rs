//! `sockconform conform` (`cargo xtask conform`): run the catalog here, compare every case with
//! the snapshots of this platform (or of the nearest recorded release of its stack), print the
//! summary, write results.json, and exit 1 on a behavior change.
//!
//! - `compare`: one case's run against its snapshots: passed, changed, new (and the files written).
//! - `rounds`: running the selection, round after round under `--repeat`, and the pure rule that
//!   turns the rounds' observations into statuses and the statuses into the exit code.
//! - `summary`: the table, the differences, the counts and results.json.
//! - `progress`: one line per finished case (or a JSON line for the run that started this one).
//! - `on`: `--on STACK,...`, the selection on several stacks of this machine at once.

mod compare;
mod on;
mod order;
mod progress;
mod rounds;
mod summary;

pub use progress::{left_text, time_left};
pub use rounds::{exit_code, judge_round, rendered};

use crate::catalog;
use crate::paths::{repo_root, writable_dir, writable_file};
use crate::runner::RunConfig;
use crate::script::Case;
use crate::select::{missing_requirement, select, NEEDS};
use crate::snapshot;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The flags of `cargo xtask conform`.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Only cases whose id starts with TEXT (a family: close), whose name contains TEXT
    /// (unread), or that need a capability (needs:isolation); repeatable
    #[arg(long = "filter", value_name = "TEXT")]
    pub filters: Vec<String>,
    /// Accept what this run observed as the new snapshots
    #[arg(long)]
    pub bless: bool,
    /// Run the selection N times; fail if any run observes something different
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Write every case's status, observation, raw timings and skip reason to PATH
    #[arg(long, value_name = "PATH", value_parser = writable_file)]
    pub json: Option<PathBuf>,
    /// Cases run at once (default: all; they spend their time waiting)
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub jobs: Option<usize>,
    /// Write results.json and the pending snapshots into DIR, laid out as a CI artifact, instead
    /// of into the checkout
    #[arg(long, value_name = "DIR", value_parser = writable_dir)]
    pub artifact: Option<PathBuf>,
    /// Run on these stacks of this machine: host, gvisor, linux-X.Y (comma-separated), or all
    /// (every stack this machine can run)
    #[arg(long, value_name = "STACK,...", value_delimiter = ',', value_parser = stack_name)]
    pub on: Vec<String>,
    /// Fail at once unless these capabilities are available (comma-separated): a run that would
    /// skip cases for want of one fails instead (CI's Linux job, which would otherwise go green
    /// having compared nothing)
    #[arg(long, value_name = "CAP,...", value_delimiter = ',',
          value_parser = clap::builder::PossibleValuesParser::new(NEEDS))]
    pub require: Vec<String>,
    /// Write every captured segment of each case as a pcap file into DIR
    /// (close__orderly_idle.pcap), for tcpdump -r or Wireshark; with --on, one folder per stack
    #[arg(long, value_name = "DIR", value_parser = writable_dir)]
    pub pcap: Option<PathBuf>,
    /// Print one JSON line per finished case (prefix `sockconform-progress: `) instead of the
    /// readable one: how `--on` follows the run inside each stack
    #[arg(long, hide = true)]
    pub progress_json: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            filters: Vec::new(),
            bless: false,
            repeat: 1,
            json: None,
            jobs: None,
            artifact: None,
            on: Vec::new(),
            require: Vec::new(),
            pcap: None,
            progress_json: false,
        }
    }
}

fn at_least_one(s: &str) -> Result<usize, String> {
    s.parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "takes a whole number of at least 1".to_string())
}

fn stack_name(s: &str) -> Result<String, String> {
    if s == crate::stacks::ALL {
        return Ok(s.to_string());
    }
    crate::stacks::Stack::parse(s).map(|_| s.to_string())
}

/// Which snapshots a run compares with, and where it writes.
pub struct Baseline {
    /// This run's platform id.
    pub id: String,
    /// The platform whose snapshots are compared: `id` itself, or the nearest recorded platform
    /// of the same stack when `id` has none yet.
    pub compared: String,
    /// Where this run's pending (or, with --bless, accepted) snapshots go: `snapshots/<id>/` of
    /// the checkout, or of the artifact folder.
    pub write_dir: PathBuf,
    pub compared_dir: PathBuf,
}

impl Baseline {
    pub fn choose(root: &Path, id: &str, artifact: Option<&Path>) -> Baseline {
        let recorded = snapshot::recorded_platforms(root);
        let refs: Vec<&str> = recorded.iter().map(String::as_str).collect();
        let compared = platforms::id::nearest(id, &refs).unwrap_or(id).to_string();
        Baseline {
            id: id.to_string(),
            write_dir: snapshot::platform_dir(artifact.unwrap_or(root), id),
            compared_dir: snapshot::platform_dir(root, &compared),
            compared,
        }
    }

    /// Compared with another platform's snapshots: differences are shown, not failures.
    pub fn is_fallback(&self) -> bool {
        self.compared != self.id
    }
}

/// The committed bodies of a case: its observation and its wire (None where there is none).
pub(crate) type Stored = (Option<String>, Option<String>);

/// Everything a run decides before its first case: the cases, the snapshots they are compared
/// with (read first: a corrupt one is bad input, reported before anything runs), and this
/// machine's capabilities.
pub(crate) struct Plan {
    pub cases: Vec<Case>,
    pub base: Baseline,
    pub stored: BTreeMap<String, Stored>,
    pub cfg: RunConfig,
}

/// Entry point of `cargo xtask conform`; returns the exit code (0 ok, 1 behavior changed or a
/// case failed, 2 bad input).
pub fn run(o: &Options) -> i32 {
    if !o.on.is_empty() {
        return on::run(o);
    }
    // Before any thread starts: a user who is not root becomes root of a user namespace.
    let privileges = platforms::enter_user_namespace();
    let plan = match plan(o) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    summary::header(&plan, o, privileges.describe());
    if let Some(why) = missing_requirement(&o.require, &plan.cfg) {
        eprintln!("error: {why}");
        return 2;
    }
    let done = rounds::run(&plan, o);
    summary::summarize(&done, o, &plan)
}

fn plan(o: &Options) -> Result<Plan, String> {
    let cases = select(catalog::all(), &o.filters)?;
    let root = repo_root();
    let base = Baseline::choose(&root, platforms::platform_id(), o.artifact.as_deref());
    if let Some(dir) = &o.artifact {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the artifact folder {}: {e}", dir.display()))?;
    }
    let mut stored = BTreeMap::new();
    for c in &cases {
        let (obs_path, wire_path) = snapshot::case_paths(&base.compared_dir, &c.id());
        let obs = snapshot::read_body(&obs_path).map_err(|e| e.to_string())?;
        let wire = snapshot::read_body(&wire_path).map_err(|e| e.to_string())?;
        stored.insert(c.id(), (obs, wire));
    }
    let cfg = RunConfig::probe(crate::paths::agent_exe());
    if !cfg.agent_exe.is_file() {
        return Err(format!(
            "the agent binary {} is missing (run through `cargo xtask conform`)",
            cfg.agent_exe.display()
        ));
    }
    Ok(Plan {
        cases,
        base,
        stored,
        cfg,
    })
}

/// "available", or "unavailable: why".
pub(crate) fn capability_text(r: &Result<(), String>) -> String {
    match r {
        Ok(()) => "available".into(),
        Err(why) => format!("unavailable: {why}"),
    }
}
