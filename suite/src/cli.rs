//! `sockconform conform` and `sockconform list` (reached through `cargo xtask ...`).

use crate::catalog;
use crate::observe::{self, Wire};
use crate::runner::{self, CaseRun, RunConfig};
use crate::script::{Case, Need};
use crate::snapshot;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  cargo xtask conform [--filter TEXT]... [--bless] [--repeat N] [--json PATH] [--jobs N]
                      [--artifact DIR] [--on STACK,...] [--require CAP,...]
  cargo xtask list [--markdown] [--check-readme]
  cargo xtask explore [--cases N] [--seed N] [--on STACK,...] [--jobs N]

conform   run the catalog on this machine and compare with snapshots/<os>/
  --filter TEXT   only cases whose id starts with TEXT (a family: close), whose name contains
                  TEXT (unread), or that need a capability (needs:isolation); repeatable
  --bless         accept what this run observed as the new snapshots
  --repeat N      run the selection N times; fail if any run observes something different
  --json PATH     write every case's status, observation, raw timings and skip reason to PATH
  --jobs N        cases run at once (default: all; they spend their time waiting)
  --artifact DIR  write results.json and pending snapshots into DIR (a CI artifact's layout)
  --on STACKS     run on these stacks of this machine: host, gvisor, linux-X.Y (comma-separated)
  --require CAPS  fail at once unless these are available: isolation, capture, lab, ipv6, sysctl
list      print the catalog with intents and required capabilities
  --markdown      as the Markdown table of the README
  --check-readme  fail if README.md's catalog differs from the catalog in the code
explore   generate scripts, run each twice on every stack, shrink each race and distinct finding
  --cases N       how many scripts (default 32)
  --seed N        the generator's seed, to reproduce an exploration
  --on STACKS     the stacks to compare (default: this machine over IPv4 and over IPv6)
  --jobs N        script runs at once inside each stack";

/// Entry point; returns the exit code (0 ok, 1 behavior changed or a case failed, 2 bad input).
pub fn main(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("conform") => match ConformOptions::parse(&args[1..]) {
            Ok(o) => conform(&o),
            Err(e) => usage_error(&e),
        },
        Some("list") => list(&args[1..]),
        Some("diff") => crate::diff::main(&args[1..]),
        Some("import") => crate::import::main(&args[1..]),
        Some("explore") => crate::explore::main(&args[1..]),
        Some("explore-batch") => crate::explore::batch_main(&args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            if args.is_empty() {
                2
            } else {
                0
            }
        }
        Some(other) => usage_error(&format!("unknown command {other:?}")),
    }
}

fn usage_error(msg: &str) -> i32 {
    eprintln!("error: {msg}\n\n{USAGE}");
    2
}

/// The repository root (see `snapshot::find_repo_root`), else the current directory.
fn repo_root() -> PathBuf {
    crate::snapshot::find_repo_root().unwrap_or_else(|| PathBuf::from("."))
}

/// The agent binary next to this one.
pub fn agent_exe() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    me.with_file_name(format!("sockconform-agent{}", std::env::consts::EXE_SUFFIX))
}

#[derive(Debug, Default)]
pub struct ConformOptions {
    pub filters: Vec<String>,
    pub bless: bool,
    pub repeat: u32,
    pub json: Option<PathBuf>,
    pub jobs: Option<usize>,
    /// Write results.json and the pending snapshots into this folder, laid out as a CI artifact,
    /// instead of into the checkout.
    pub artifact: Option<PathBuf>,
    /// Run on these stacks (`host`, `gvisor`, `linux-6.1`...) instead of only here.
    pub on: Vec<String>,
    /// Capabilities this run must have (`isolation`, `capture`, `lab`, `ipv6`, `sysctl`): a run
    /// that would skip cases for want of one fails at once instead (CI's Linux job, which
    /// would otherwise go green having compared nothing).
    pub require: Vec<String>,
}

impl ConformOptions {
    pub fn parse(args: &[String]) -> Result<ConformOptions, String> {
        let mut o = ConformOptions {
            repeat: 1,
            ..Default::default()
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--filter" => o.filters.push(value("--filter")?),
                "--bless" => o.bless = true,
                "--repeat" => {
                    o.repeat = value("--repeat")?
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or("--repeat takes a whole number of at least 1")?
                }
                "--json" => o.json = Some(PathBuf::from(value("--json")?)),
                "--artifact" => o.artifact = Some(PathBuf::from(value("--artifact")?)),
                "--require" => {
                    for need in value("--require")?.split(',').filter(|s| !s.is_empty()) {
                        if !NEEDS.contains(&need) {
                            return Err(format!(
                                "--require {need:?}: not a capability (one of {})",
                                NEEDS.join(", ")
                            ));
                        }
                        o.require.push(need.to_string());
                    }
                }
                "--on" => {
                    for stack in value("--on")?.split(',').filter(|s| !s.is_empty()) {
                        crate::stacks::Stack::parse(stack)?;
                        o.on.push(stack.to_string());
                    }
                }
                "--jobs" => {
                    o.jobs = Some(
                        value("--jobs")?
                            .parse()
                            .ok()
                            .filter(|n| *n >= 1)
                            .ok_or("--jobs takes a whole number of at least 1")?,
                    )
                }
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        Ok(o)
    }
}

/// The capabilities `--require` and `--filter needs:` name.
pub const NEEDS: [&str; 5] = ["isolation", "capture", "lab", "ipv6", "sysctl"];

/// The first required capability this run lacks, with why.
pub fn missing_requirement(require: &[String], cfg: &RunConfig) -> Option<String> {
    require.iter().find_map(|need| {
        let r = match need.as_str() {
            "isolation" => &cfg.isolation,
            "capture" => &cfg.capture,
            "lab" => &cfg.lab,
            "ipv6" => &cfg.ipv6,
            "sysctl" => &cfg.sysctl,
            _ => return Some(format!("{need}: not a capability")),
        };
        r.as_ref()
            .err()
            .map(|why| format!("{need} is required (--require) but unavailable: {why}"))
    })
}

/// Whether a filter selects a case: a prefix of its id ("close", "close/", "close/orderly_idle"),
/// a part of its name ("unread"), or `needs:<capability>` ("needs:lab").
pub fn matches(case: &Case, filter: &str) -> bool {
    if let Some(need) = filter.strip_prefix("needs:") {
        return case.needs.iter().any(|n| n.to_string() == need);
    }
    case.id().starts_with(filter) || case.name.contains(filter)
}

/// Select cases by filters; an unknown filter is an error that lists the closest ids.
pub fn select(all: Vec<Case>, filters: &[String]) -> Result<Vec<Case>, String> {
    if filters.is_empty() {
        return Ok(all);
    }
    for f in filters {
        if !all.iter().any(|c| matches(c, f)) {
            let mut near: Vec<(usize, String)> =
                all.iter().map(|c| (distance(f, &c.id()), c.id())).collect();
            near.sort();
            let names: Vec<String> = near.into_iter().take(5).map(|(_, id)| id).collect();
            return Err(format!(
                "no case matches --filter {f:?}; closest: {}",
                names.join(", ")
            ));
        }
    }
    Ok(all
        .into_iter()
        .filter(|c| filters.iter().any(|f| matches(c, f)))
        .collect())
}

/// Edit distance of `needle` to the closest substring-sized window of `id` (so "lnger" finds linger/...).
fn distance(needle: &str, id: &str) -> usize {
    let a: Vec<char> = needle.chars().collect();
    let b: Vec<char> = id.chars().collect();
    // Semi-global alignment: free start and end in `id`.
    let mut prev = vec![0usize; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev.into_iter().min().unwrap_or(0)
}

/// Why a case cannot run here, if it cannot.
pub fn unmet_needs(case: &Case, cfg: &RunConfig) -> Option<String> {
    case.needs.iter().find_map(|n| {
        let r = match n {
            Need::Isolation => &cfg.isolation,
            Need::Capture => &cfg.capture,
            Need::Lab => &cfg.lab,
            Need::Ipv6 => &cfg.ipv6,
            Need::Sysctl => &cfg.sysctl,
        };
        r.as_ref().err().map(|why| format!("needs {n}: {why}"))
    })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Changed,
    New,
    Skipped,
    Unstable,
    Failed,
}

#[derive(Serialize)]
struct CaseReport {
    case: String,
    status: Status,
    signature: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    skip_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observation: Option<observe::Observation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wire: Option<Wire>,
    raw_timings: Vec<observe::RawTiming>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    measurements: Vec<(String, u64)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    wire_raw: Vec<String>,
    elapsed_ms: u128,
    /// Set when this platform has no snapshots yet and the observation differs from the nearest
    /// recorded platform's (named here).
    #[serde(skip_serializing_if = "Option::is_none")]
    differs_from: Option<String>,
    #[serde(skip)]
    diff: Option<String>,
}

#[derive(Serialize)]
struct RunReport<'a> {
    /// The platform id (`linux-6.18`): names the snapshot folder and the matrix column.
    platform: &'a str,
    /// The raw release the id came from (the full kernel release, the OS build); never compared.
    platform_detail: &'a str,
    /// The platform whose snapshots this run was compared with (itself, or the nearest).
    compared_with: &'a str,
    os: String,
    isolation: String,
    capture: String,
    lab: String,
    tcp_table: String,
    repeat: u32,
    wall_ms: u128,
    sum_of_case_ms: u128,
    cases: &'a [CaseReport],
}

fn capability_text(r: &Result<(), String>) -> String {
    match r {
        Ok(()) => "available".into(),
        Err(why) => format!("unavailable: {why}"),
    }
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

pub fn conform(o: &ConformOptions) -> i32 {
    if !o.on.is_empty() {
        return crate::stacks::conform_on(o);
    }
    let cases = match select(catalog::all(), &o.filters) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let root = repo_root();
    let base = Baseline::choose(&root, platforms::platform_id(), o.artifact.as_deref());
    if let Some(dir) = &o.artifact {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!(
                "error: cannot create the artifact folder {}: {e}",
                dir.display()
            );
            return 2;
        }
    }
    // Read every snapshot first: a corrupt one is bad input, reported before anything runs.
    let mut stored = BTreeMap::new();
    for c in &cases {
        let (obs_path, wire_path) = snapshot::case_paths(&base.compared_dir, &c.id());
        let read = |p: &Path| snapshot::read_body(p);
        match (read(&obs_path), read(&wire_path)) {
            (Ok(a), Ok(b)) => {
                stored.insert(c.id(), (a, b));
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
    }
    let cfg = RunConfig::probe(agent_exe());
    if !cfg.agent_exe.is_file() {
        eprintln!(
            "error: the agent binary {} is missing (run through `cargo xtask conform`)",
            cfg.agent_exe.display()
        );
        return 2;
    }
    println!(
        "sockconform: {} case(s) on {} ({}; {}); isolation {}; capture {}; TCP table {}",
        cases.len(),
        base.id,
        os_info::get(),
        platforms::platform_detail(),
        capability_text(&cfg.isolation),
        capability_text(&cfg.capture),
        cfg.table.describe()
    );
    if let (None, (_, Some(why))) = (o.jobs, cfg.default_jobs(cases.len())) {
        println!("{why} (--jobs N overrides)");
    }
    if let Some(why) = missing_requirement(&o.require, &cfg) {
        eprintln!("error: {why}");
        return 2;
    }
    if base.is_fallback() {
        println!(
            "no snapshots of {} yet: comparing with the nearest recorded platform, snapshots/{}/; differences are shown, not failures (`--bless` records {} under snapshots/{}/)",
            base.id, base.compared, base.id, base.id
        );
    }
    let started = Instant::now();
    let mut reports: Vec<CaseReport> = Vec::new();
    let mut first: BTreeMap<String, CaseRun> = BTreeMap::new();
    for round in 1..=o.repeat {
        if o.repeat > 1 {
            println!("-- run {round} of {}", o.repeat);
        }
        let runs = run_all(&cases, &cfg, o.jobs, progress);
        for (case, run) in cases.iter().zip(runs) {
            let id = case.id();
            if round == 1 {
                let report = compare(case, &run, &stored[&id], &base, o.bless, &cfg);
                reports.push(report);
                if let Some(run) = run {
                    first.insert(id, run);
                }
                continue;
            }
            // Later rounds: the observation must equal the first round's.
            let (Some(run), Some(base)) = (run, first.get(&id)) else {
                continue;
            };
            let a = base.observation.render() + &base.wire.render(&id).unwrap_or_default();
            let b = run.observation.render() + &run.wire.render(&id).unwrap_or_default();
            let r = reports
                .iter_mut()
                .find(|r| r.case == id)
                .expect("reported in round 1");
            if a != b && r.status != Status::Unstable {
                r.status = Status::Unstable;
                r.diff = Some(format!(
                    "run 1 and run {round} differ:\n{}",
                    snapshot::diff(&a, &b)
                ));
            }
            if run.error.is_some() && r.error.is_none() {
                r.status = Status::Failed;
                r.error = run.error.clone();
            }
        }
    }
    let wall = started.elapsed();
    summarize(&reports, wall, o, &cfg, &base)
}

/// Run every case (in parallel up to `jobs`), calling `done` as each finishes; returns the runs in
/// catalog order (None for a skipped case).
fn run_all(
    cases: &[Case],
    cfg: &RunConfig,
    jobs: Option<usize>,
    mut done: impl FnMut(&Case, Option<&CaseRun>),
) -> Vec<Option<CaseRun>> {
    let jobs = jobs
        .unwrap_or_else(|| cfg.default_jobs(cases.len()).0)
        .max(1);
    let mut results: Vec<Option<CaseRun>> = (0..cases.len()).map(|_| None).collect();
    let (tx, rx) = mpsc::channel::<(usize, CaseRun)>();
    std::thread::scope(|s| {
        let mut next = 0;
        let mut running = 0;
        let mut finished = 0;
        while finished < cases.len() {
            while running < jobs && next < cases.len() {
                let i = next;
                next += 1;
                if unmet_needs(&cases[i], cfg).is_some() {
                    done(&cases[i], None);
                    finished += 1;
                    continue;
                }
                let tx = tx.clone();
                let case = &cases[i];
                running += 1;
                s.spawn(move || {
                    let _ = tx.send((i, runner::run_case(case, cfg)));
                });
            }
            if running == 0 {
                continue;
            }
            let (i, run) = rx.recv().expect("case threads send before they end");
            running -= 1;
            finished += 1;
            done(&cases[i], Some(&run));
            results[i] = Some(run);
        }
    });
    results
}

fn progress(case: &Case, run: Option<&CaseRun>) {
    let line = match run {
        None => format!("  skip  {}", case.id()),
        Some(r) if r.error.is_some() => {
            format!("  FAIL  {} ({:.2} s)", case.id(), r.elapsed.as_secs_f64())
        }
        Some(r) => format!("  done  {} ({:.2} s)", case.id(), r.elapsed.as_secs_f64()),
    };
    println!("{line}");
    let _ = std::io::stdout().flush();
}

type Stored = (Option<String>, Option<String>);

fn compare(
    case: &Case,
    run: &Option<CaseRun>,
    stored: &Stored,
    base: &Baseline,
    bless: bool,
    cfg: &RunConfig,
) -> CaseReport {
    let id = case.id();
    let mut report = CaseReport {
        case: id.clone(),
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
    };
    let Some(run) = run else {
        report.status = Status::Skipped;
        report.skip_reason = unmet_needs(case, cfg);
        return report;
    };
    report.signature = observe::signature(&run.observation, &run.wire);
    report.observation = Some(run.observation.clone());
    report.wire = Some(run.wire.clone());
    report.raw_timings = run.raw_timings.clone();
    report.measurements = run.measurements.clone();
    report.wire_raw = run.wire_raw.clone();
    report.elapsed_ms = run.elapsed.as_millis();
    if let Some(e) = &run.error {
        report.status = Status::Failed;
        report.error = Some(e.clone());
        return report;
    }
    let (obs_path, wire_path) = snapshot::case_paths(&base.write_dir, &id);
    let (old_obs, old_wire) = snapshot::case_paths(&base.compared_dir, &id);
    let mut pairs = vec![(obs_path, old_obs, Some(run.observation.render()), &stored.0)];
    // A run that could not capture compares what it observed and leaves the wire snapshot alone.
    pairs.push((wire_path, old_wire, run.wire.render(&id), &stored.1));
    let mut diffs = Vec::new();
    for (path, old_path, new, old) in pairs {
        let Some(new) = new else { continue };
        match old {
            // Another platform's snapshot: this platform has none of its own, so every case is
            // new here; what differs from the nearest platform is shown, never a failure.
            Some(old) if base.is_fallback() => {
                report.status = Status::New;
                if *old != new {
                    report.differs_from = Some(base.compared.clone());
                    diffs.push(format!(
                        "{} (of {})\n{}",
                        old_path.display(),
                        base.compared,
                        snapshot::diff(old, &new)
                    ));
                }
            }
            Some(old) if *old == new && !base.is_fallback() => continue,
            Some(old) => {
                report.status = Status::Changed;
                diffs.push(format!("{}\n{}", path.display(), snapshot::diff(old, &new)));
            }
            None => {
                if report.status == Status::Passed {
                    report.status = Status::New;
                }
            }
        }
        let written = if bless {
            snapshot::write_accepted(&path, &new).map(|_| path.clone())
        } else {
            snapshot::write_pending(&path, &new)
        };
        if let Err(e) = written {
            report.status = Status::Failed;
            report.error = Some(format!("cannot write {}: {e}", path.display()));
        }
    }
    if !diffs.is_empty() {
        report.diff = Some(diffs.join("\n"));
    }
    report
}

fn summarize(
    reports: &[CaseReport],
    wall: Duration,
    o: &ConformOptions,
    cfg: &RunConfig,
    base: &Baseline,
) -> i32 {
    let mut reports_fixed: Vec<&CaseReport> = reports.iter().collect();
    reports_fixed.sort_by(|a, b| a.case.cmp(&b.case));
    let w_case = reports
        .iter()
        .map(|r| r.case.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let w_sig = reports
        .iter()
        .map(|r| r.signature.len())
        .max()
        .unwrap_or(7)
        .clamp(7, 60);
    println!();
    println!("{:<w_case$}  {:<w_sig$}  status", "case", "outcome");
    println!(
        "{}  {}  {}",
        "-".repeat(w_case),
        "-".repeat(w_sig),
        "-".repeat(8)
    );
    for r in &reports_fixed {
        let status = match (&r.status, &r.skip_reason) {
            (Status::Skipped, Some(why)) => format!("skipped: {why}"),
            (s, _) => format!("{s:?}").to_lowercase(),
        };
        let mut sig = r.signature.clone();
        if sig.len() > w_sig {
            sig.truncate(w_sig - 1);
            sig.push('…');
        }
        println!("{:<w_case$}  {:<w_sig$}  {status}", r.case, sig);
    }
    for r in &reports_fixed {
        if let Some(d) = &r.diff {
            println!("\n== {} {:?}\n{d}", r.case, r.status);
        }
        if let Some(e) = &r.error {
            println!("\n== {} failed\n{e}", r.case);
        }
    }
    let count = |s: Status| reports.iter().filter(|r| r.status == s).count();
    let sum: u128 = reports.iter().map(|r| r.elapsed_ms).sum();
    let slowest = reports.iter().max_by_key(|r| r.elapsed_ms);
    println!(
        "\n{} passed, {} changed, {} new, {} skipped, {} unstable, {} failed",
        count(Status::Passed),
        count(Status::Changed),
        count(Status::New),
        count(Status::Skipped),
        count(Status::Unstable),
        count(Status::Failed)
    );
    println!(
        "wall time {:.2} s; sum of case times {:.2} s; slowest case {} ({:.2} s){}",
        wall.as_secs_f64(),
        sum as f64 / 1000.0,
        slowest.map(|r| r.case.as_str()).unwrap_or("-"),
        slowest.map(|r| r.elapsed_ms).unwrap_or(0) as f64 / 1000.0,
        if o.repeat > 1 {
            format!("; {} runs", o.repeat)
        } else {
            String::new()
        }
    );
    if o.repeat > 1 && count(Status::Unstable) == 0 {
        println!("all {} runs observed the same for every case", o.repeat);
    }
    if base.is_fallback() {
        let differ = reports.iter().filter(|r| r.differs_from.is_some()).count();
        println!(
            "{differ} case(s) differ from {} (the nearest recorded platform): shown above, not a failure",
            base.compared
        );
    }
    let json = o
        .json
        .clone()
        .or_else(|| o.artifact.as_ref().map(|a| a.join("results.json")));
    if let Some(path) = &json {
        let report = RunReport {
            platform: &base.id,
            platform_detail: platforms::platform_detail(),
            compared_with: &base.compared,
            os: os_info::get().to_string(),
            isolation: capability_text(&cfg.isolation),
            capture: capability_text(&cfg.capture),
            lab: capability_text(&cfg.lab),
            tcp_table: cfg.table.describe(),
            repeat: o.repeat,
            wall_ms: wall.as_millis(),
            sum_of_case_ms: sum,
            cases: reports,
        };
        let text = serde_json::to_string_pretty(&report).expect("serializes");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 2;
        }
        println!("results written to {}", path.display());
    }
    let changed = count(Status::Changed) + count(Status::Unstable) + count(Status::Failed);
    let new = count(Status::New);
    if o.bless {
        if changed + new > 0 {
            println!(
                "accepted the observations of {} case(s) into {}/",
                changed + new,
                base.write_dir.display()
            );
        }
        return i32::from(count(Status::Failed) + count(Status::Unstable) > 0);
    }
    if new > 0 {
        println!("{new} case(s) have no snapshot yet: review them with `cargo insta review` or accept with `cargo xtask conform --bless`");
    }
    if count(Status::Failed) > 0 {
        println!(
            "{} case(s) failed to run to the end: see the errors above",
            count(Status::Failed)
        );
    }
    if count(Status::Changed) + count(Status::Unstable) > 0 {
        println!("behavior differs from the snapshots: review with `cargo insta review` (or accept all with `cargo xtask conform --bless`)");
    }
    if changed > 0 {
        return 1;
    }
    0
}

fn list(args: &[String]) -> i32 {
    let mut markdown = false;
    let mut check = false;
    for a in args {
        match a.as_str() {
            "--markdown" => markdown = true,
            "--check-readme" => check = true,
            other => return usage_error(&format!("unknown flag {other:?}")),
        }
    }
    let all = catalog::all();
    if check {
        let readme = repo_root().join("README.md");
        let text = std::fs::read_to_string(&readme).unwrap_or_default();
        let table = markdown_table(&all);
        let begin = "<!-- catalog:begin (generated by `cargo xtask list --markdown`) -->";
        let end = "<!-- catalog:end -->";
        let inside = text
            .split_once(begin)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(t, _)| t.trim());
        if inside == Some(table.trim()) {
            println!("README.md catalog is up to date ({} cases)", all.len());
            return 0;
        }
        eprintln!("README.md's catalog differs from the code: paste the output of `cargo xtask list --markdown` between the catalog markers");
        return 1;
    }
    if markdown {
        println!("{}", markdown_table(&all));
        return 0;
    }
    for c in &all {
        let needs: Vec<String> = c.needs.iter().map(|n| n.to_string()).collect();
        let needs = if needs.is_empty() {
            "-".to_string()
        } else {
            needs.join(", ")
        };
        println!("{:<52} needs: {needs}\n    {}", c.id(), c.intent);
    }
    0
}

/// The README's catalog table.
pub fn markdown_table(all: &[Case]) -> String {
    let mut s = String::from("| case | intent | needs |\n|---|---|---|\n");
    for c in all {
        let needs: Vec<String> = c.needs.iter().map(|n| n.to_string()).collect();
        let needs = if needs.is_empty() {
            "-".to_string()
        } else {
            needs.join(", ")
        };
        s += &format!("| `{}` | {} | {} |\n", c.id(), c.intent, needs);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_flags_and_rejects_unknown_ones() {
        let o = ConformOptions::parse(&args("--filter close --bless --repeat 3 --json r.json"))
            .unwrap();
        assert_eq!(o.filters, ["close"]);
        assert!(o.bless);
        assert_eq!(o.repeat, 3);
        assert!(ConformOptions::parse(&args("--frobnicate"))
            .unwrap_err()
            .contains("--frobnicate"));
        assert!(ConformOptions::parse(&args("--repeat 0")).is_err());
        assert!(ConformOptions::parse(&args("--filter")).is_err());
        let o = ConformOptions::parse(&args("--require isolation,capture")).unwrap();
        assert_eq!(o.require, ["isolation", "capture"]);
        assert!(ConformOptions::parse(&args("--require root"))
            .unwrap_err()
            .contains("not a capability"));
    }

    #[test]
    fn unknown_filter_lists_close_matches() {
        let e = select(catalog::all(), &["lnger/zero".to_string()]).unwrap_err();
        assert!(e.contains("linger/zero_abortive_close"), "{e}");
        let ok = select(catalog::all(), &["linger/".to_string()]).unwrap();
        assert!(ok.iter().all(|c| c.family == "linger") && !ok.is_empty());
        let close = select(catalog::all(), &["close".to_string()]).unwrap();
        assert!(
            close
                .iter()
                .all(|c| c.family == "close" || c.name.contains("close")),
            "a family prefix"
        );
        assert!(!close
            .iter()
            .any(|c| c.family == "after_close" && !c.name.contains("close")));
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(main(&args("conform --nope")), 2);
        assert_eq!(main(&args("frob")), 2);
        assert_eq!(main(&args("list --nope")), 2);
    }
}
