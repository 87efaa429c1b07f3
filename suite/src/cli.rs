//! `sockconform conform` and `sockconform list` (reached through `cargo xtask ...`).

use crate::catalog;
use crate::observe::{self, Wire};
use crate::runner::{self, CaseRun, RunConfig};
use crate::script::{Case, Need};
use crate::snapshot;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `sockconform` (reached as `cargo xtask <COMMAND>`): one parser for every subcommand.
#[derive(Parser, Debug)]
#[command(
    name = "sockconform",
    bin_name = "cargo xtask",
    about = "What the OS really does when the peer dies: socket-behavior conformance cases run \
             between real processes, recorded as snapshots per platform and compared across them.",
    disable_help_subcommand = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the catalog on this machine and compare with snapshots/<platform>/
    Conform(ConformOptions),
    /// Print the catalog with intents and required capabilities
    List(ListOptions),
    /// Render the cross-platform matrix of every platform's snapshots
    Diff(crate::diff::Options),
    /// Copy the pending snapshots of CI artifacts or stack runs into snapshots/<platform>/
    Import(crate::import::Options),
    /// Generate scripts, run each on every stack (--on), shrink each distinct difference; --record the corpus
    Explore(crate::explore::Options),
}

/// The parser, its top-level help ending with every command's flags (generated from the same
/// definitions, so it cannot fall out of date).
fn command() -> clap::Command {
    let cmd = Cli::command();
    let mut flags =
        String::from("Flags of each command (`cargo xtask <COMMAND> --help` explains them):");
    for sub in cmd.get_subcommands() {
        let mut line = format!("\n  {:<8}", sub.get_name());
        let mut width = 10;
        for a in sub.get_arguments() {
            let values = a
                .get_value_names()
                .filter(|_| a.get_action().takes_values());
            let name = match (a.get_long(), values) {
                (Some(l), Some(v)) => format!("--{l} {}", v.join(" ")),
                (Some(l), None) => format!("--{l}"),
                (None, Some(v)) => v.join(" "),
                (None, None) => continue,
            };
            if name == "--help" {
                continue;
            }
            if width + name.len() + 1 > 96 {
                line += &format!("\n  {:<8}", "");
                width = 10;
            }
            line += &format!(" {name}");
            width += name.len() + 1;
        }
        flags += &line;
    }
    cmd.after_help(flags)
}

/// Entry point; returns the exit code (0 ok, 1 behavior changed or a case failed, 2 bad input).
/// `args` are the arguments after the program name.
pub fn main(args: &[String]) -> i32 {
    // Inside a stack only: the explorer's batch runner, started by `explore --on`.
    if args.first().map(String::as_str) == Some("explore-batch") {
        return crate::explore::batch_main(&args[1..]);
    }
    let argv = std::iter::once("sockconform".to_string()).chain(args.iter().cloned());
    let cli = match command()
        .try_get_matches_from(argv)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => return parse_error(&e, args.first().map(String::as_str)),
    };
    match cli.command {
        Command::Conform(o) => conform(&o),
        Command::List(o) => list(&o),
        Command::Diff(o) => crate::diff::run(&o),
        Command::Import(o) => crate::import::run(&o),
        Command::Explore(o) => crate::explore::run(&o),
    }
}

/// Help is printed whole; an error is one line and a hint (clap's suggestion when it has one),
/// never the whole usage.
fn parse_error(e: &clap::Error, sub: Option<&str>) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return 0;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return 2;
        }
        _ => {}
    }
    let text = e.render().to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    eprintln!("{}", lines.next().unwrap_or("error: bad arguments"));
    let known = Cli::command().find_subcommand(sub.unwrap_or("")).is_some();
    let help = match sub {
        Some(s) if known => format!("cargo xtask {s} --help"),
        _ => "cargo xtask --help".to_string(),
    };
    match lines.find_map(|l| l.trim_start().strip_prefix("tip: ")) {
        Some(tip) => eprintln!("hint: {tip}; see `{help}`"),
        None => eprintln!("hint: see `{help}`"),
    }
    2
}

/// A file the run will write: its folder must exist and be writable, checked when the flags are
/// read (a run of minutes must not fail only at its end). The file itself is left as it was.
pub fn writable_file(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_dir() {
        return Err(format!("{s} is a directory"));
    }
    let existed = p.exists();
    match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&p)
    {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(&p);
            }
            Ok(p)
        }
        Err(e) => Err(format!("cannot write {s}: {e}")),
    }
}

/// A folder the run will write into: created if missing, and a file is written and removed in it.
pub fn writable_dir(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    std::fs::create_dir_all(&p).map_err(|e| format!("cannot create the folder {s}: {e}"))?;
    let probe = p.join(format!(".sockconform-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("cannot write into {s}: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(p)
}

fn at_least_one(s: &str) -> Result<usize, String> {
    s.parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "takes a whole number of at least 1".to_string())
}

fn stack_name(s: &str) -> Result<String, String> {
    crate::stacks::Stack::parse(s).map(|_| s.to_string())
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

/// The flags of `cargo xtask conform`.
#[derive(Args, Debug, Clone)]
pub struct ConformOptions {
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
    /// Run on these stacks of this machine: host, gvisor, linux-X.Y (comma-separated)
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
}

impl Default for ConformOptions {
    fn default() -> ConformOptions {
        ConformOptions {
            filters: Vec::new(),
            bless: false,
            repeat: 1,
            json: None,
            jobs: None,
            artifact: None,
            on: Vec::new(),
            require: Vec::new(),
            pcap: None,
        }
    }
}

/// The flags of `cargo xtask list`.
#[derive(Args, Debug, Clone)]
pub struct ListOptions {
    /// As the Markdown table of the README
    #[arg(long)]
    pub markdown: bool,
    /// Fail if README.md's catalog differs from the catalog in the code
    #[arg(long)]
    pub check_readme: bool,
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
    /// The kernel release (see `platforms::kernel_release`); shown by `diff`, never compared.
    kernel: &'a str,
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
    // Before any thread starts: a user who is not root becomes root of a user namespace.
    let privileges = platforms::enter_user_namespace();
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
    if let Some(how) = privileges.describe() {
        println!("{how}");
    }
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
    let mut progress = Progress::new(cases.len() * o.repeat as usize);
    let mut pcaps = Pcaps::default();
    for round in 1..=o.repeat {
        if o.repeat > 1 {
            println!("-- run {round} of {}", o.repeat);
        }
        let runs = run_all(&cases, &cfg, o.jobs, |c, r| progress.case(c, r));
        for (case, run) in cases.iter().zip(runs) {
            let id = case.id();
            if round == 1 {
                let report = compare(case, &run, &stored[&id], &base, o.bless, &cfg);
                if let Some(dir) = &o.pcap {
                    pcaps.add(dir, &id, run.as_ref());
                }
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
    if let Some(dir) = &o.pcap {
        pcaps.report(dir);
    }
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

/// What `--pcap` wrote (the first run of each case), and why a case has no file.
#[derive(Default)]
struct Pcaps {
    written: usize,
    missing: BTreeMap<String, Vec<String>>,
}

impl Pcaps {
    fn add(&mut self, dir: &Path, id: &str, run: Option<&CaseRun>) {
        let why = match run.map(|r| (&r.frames, &r.wire)) {
            Some((Some(frames), _)) => match crate::pcap::write(dir, id, frames) {
                Ok(_) => {
                    self.written += 1;
                    return;
                }
                Err(e) => format!("cannot write: {e}"),
            },
            Some((None, Wire::NotCaptured { reason })) => format!("not captured: {reason}"),
            Some((None, _)) => "not captured".to_string(),
            None => "skipped".to_string(),
        };
        self.missing.entry(why).or_default().push(id.to_string());
    }

    fn report(&self, dir: &Path) {
        println!(
            "pcap: {} file(s) in {} (tcpdump -r FILE, or open in Wireshark)",
            self.written,
            dir.display()
        );
        for (why, ids) in &self.missing {
            println!(
                "pcap: no file for {} case(s), {why}: {}",
                ids.len(),
                ids.join(", ")
            );
        }
    }
}

/// One line per finished case; on a terminal each line also says how far the run is and an
/// estimate of the time left (CI logs, which are not terminals, keep plain lines).
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        use std::io::IsTerminal;
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            tty: std::io::stdout().is_terminal(),
        }
    }

    fn case(&mut self, case: &Case, run: Option<&CaseRun>) {
        self.done += 1;
        let mut line = match run {
            None => format!("  skip  {}", case.id()),
            Some(r) if r.error.is_some() => {
                format!("  FAIL  {} ({:.2} s)", case.id(), r.elapsed.as_secs_f64())
            }
            Some(r) => format!("  done  {} ({:.2} s)", case.id(), r.elapsed.as_secs_f64()),
        };
        if self.tty {
            line += &format!("  [{}/{}", self.done, self.total);
            if let Some(left) = time_left(self.started.elapsed(), self.done, self.total) {
                line += &format!(", {left}");
            }
            line.push(']');
        }
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
}

/// "about 40 s left", from the pace so far: None before the first item or after the last.
pub fn time_left(elapsed: Duration, done: usize, total: usize) -> Option<String> {
    if done == 0 || done >= total {
        return None;
    }
    let left = elapsed.as_secs_f64() / done as f64 * (total - done) as f64;
    Some(left_text(left))
}

/// "about 40 s left", "about 3 min left".
pub fn left_text(secs: f64) -> String {
    if secs >= 90.0 {
        format!("about {:.0} min left", secs / 60.0)
    } else {
        format!("about {:.0} s left", secs.max(1.0))
    }
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
            Some(old) if observe::agrees(old, &new) && !base.is_fallback() => {
                // The observation is unchanged; --bless still refreshes a header that is not this
                // run's (the kernel that confirmed it, insta's exact format). A run that agrees
                // only through "not visible" lines (rootless) never overwrites what root saw.
                if !(bless && *old == new && snapshot::differs_from_this_run(&old_path, &new)) {
                    continue;
                }
            }
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
        // Into an artifact, even --bless writes pending files: `import --accept` (and `conform
        // --on ... --bless`) accepts them into the checkout.
        let written = if bless && base.write_dir == base.compared_dir {
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
            kernel: platforms::kernel_release(),
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

fn list(o: &ListOptions) -> i32 {
    let (markdown, check) = (o.markdown, o.check_readme);
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

    fn conform_options(s: &str) -> Result<ConformOptions, clap::Error> {
        Cli::try_parse_from(
            ["sockconform", "conform"]
                .into_iter()
                .chain(s.split_whitespace()),
        )
        .map(|c| match c.command {
            Command::Conform(o) => o,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn parses_flags_and_rejects_unknown_ones() {
        let o = conform_options("--filter close --bless --repeat 3 --json r.json").unwrap();
        assert_eq!(o.filters, ["close"]);
        assert!(o.bless);
        assert_eq!(o.repeat, 3);
        assert_eq!(conform_options("").unwrap().repeat, 1);
        assert!(conform_options("--frobnicate")
            .unwrap_err()
            .to_string()
            .contains("--frobnicate"));
        assert!(conform_options("--repeat 0").is_err());
        assert!(conform_options("--jobs 0").is_err());
        assert!(conform_options("--filter").is_err());
        let o = conform_options("--require isolation,capture").unwrap();
        assert_eq!(o.require, ["isolation", "capture"]);
        assert!(conform_options("--require root").is_err());
        let o = conform_options("--on host,gvisor --on linux-6.1").unwrap();
        assert_eq!(o.on, ["host", "gvisor", "linux-6.1"]);
        assert!(conform_options("--on qemu").is_err());
    }

    #[test]
    fn unwritable_outputs_are_refused_before_anything_runs() {
        let e = conform_options("--json /nonexistent-sockconform/r.json").unwrap_err();
        assert!(e.to_string().contains("cannot write"), "{e}");
        assert!(conform_options("--json /").is_err(), "a directory");
        assert!(conform_options("--artifact /proc/sockconform-no").is_err());
        // The check leaves no file behind.
        let dir = std::env::temp_dir().join(format!("sc-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("r.json");
        conform_options(&format!("--json {}", json.display())).unwrap();
        assert!(!json.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn help_lists_every_command_with_its_flags() {
        let help = command().render_help().to_string();
        for name in ["conform", "list", "diff", "import", "explore"] {
            assert!(help.contains(&format!("\n  {name} ")), "{name}: {help}");
        }
        for flag in [
            "--filter TEXT",
            "--on STACK,...",
            "--check-readme",
            "--format F",
            "ARTIFACTS_DIR",
            "--seed N",
        ] {
            assert!(help.contains(flag), "{flag}: {help}");
        }
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
    fn xtasks_static_help_names_every_command_as_the_parser_does() {
        // xtask stays dependency-free, so its help is a copy: held to the parser here.
        let xtask = include_str!("../../xtask/src/main.rs");
        for sub in Cli::command().get_subcommands() {
            let line = format!("  {:<8} {}", sub.get_name(), sub.get_about().unwrap());
            assert!(xtask.contains(&line), "xtask/src/main.rs lacks {line:?}");
            assert!(
                xtask.contains(&format!("\"{}\"", sub.get_name())),
                "xtask dispatches {}",
                sub.get_name()
            );
        }
    }

    #[test]
    fn time_left_follows_the_pace_so_far() {
        let s = Duration::from_secs;
        assert_eq!(time_left(s(10), 0, 4), None);
        assert_eq!(time_left(s(10), 1, 4).as_deref(), Some("about 30 s left"));
        assert_eq!(time_left(s(60), 1, 4).as_deref(), Some("about 3 min left"));
        assert_eq!(time_left(s(10), 4, 4), None);
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(main(&args("conform --nope")), 2);
        assert_eq!(main(&args("frob")), 2);
        assert_eq!(main(&args("list --nope")), 2);
        assert_eq!(main(&args("")), 2);
        assert_eq!(main(&args("--help")), 0);
        assert_eq!(main(&args("conform --help")), 0);
    }
}
