//! The explorer (`cargo xtask explore`): proptest generates scripts in the case language, every
//! script runs on every stack, and each distinct difference is shrunk to a minimal script.
//!
//! A generated script opens one connection, gives both ends a 50 ms read timeout (so no read
//! waits long), then makes up to eight moves on either side (`moves.rs`: data, shutdown, linger,
//! close, kill, exit, poll, filling the buffer, a second connection queued on the listener, the
//! listener's close; with `--faults`, the lab's crash, reboot, partition and heal) and ends with
//! a checkpoint. Each script runs twice on each stack:
//! - two runs on one stack that differ mean the script races with the kernel there: a sequence
//!   that the catalog could only keep with an await step; it is shrunk and reported as a race;
//! - two stacks that each agree with themselves and differ from each other is a **finding**: it is
//!   shrunk to the fewest moves that still differ (stably), printed side by side and as a
//!   ready-to-paste catalog case. Findings are results, not failures.
//!
//! The stacks are those of `conform --on` (`host`, `gvisor`, `linux-X.Y`): each runs a batch of
//! scripts in one launch (`sockconform explore-batch IN OUT` inside it), and every round of
//! shrinking is one more batch per stack (`shrink.rs`). Without `--on`, the two "stacks" are this
//! machine over IPv4 and over IPv6 (where ::1 exists), run in this process.
//!
//! The runner's own promises hold for every generated script too: each run ends within its
//! deadlines, without a runner error, and (tested in `tests/runner.rs`) leaves no process behind.

mod known;
mod moves;
mod shrink;

pub use moves::{
    moves, moves_with_faults, name_of, rust_case, script, valid_moves, Move, Script,
    READ_TIMEOUT_MS,
};
pub use shrink::{
    differences, explore, judge, side_by_side, Judgement, Kind, Observed, Report, Shrunk, Stacks,
};

use crate::observe::same::Rule;
use crate::runner::{self, RunConfig};
use crate::stacks::launch::{self, Ended};
use crate::stacks::{Launch, Stack};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `cargo xtask explore` flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Options {
    /// How many scripts to generate.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub cases: u32,
    /// The generator's seed, to reproduce an exploration (default: from the clock).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Run every script on each of these stacks (host, gvisor, linux-X.Y, or all; comma-separated) and
    /// report the stable differences between them as findings.
    #[arg(long, value_name = "STACK,...", value_delimiter = ',')]
    pub on: Vec<String>,
    /// Script runs at once inside each stack (default: the stack's own choice).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Record the first N scripts of the seed (default seed: 1) as snapshots of each platform
    /// that runs them, family `explore/`, instead of exploring: the corpus CI compares.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub record: Option<u32>,
    /// With --record: write the snapshots into DIR/snapshots/<platform>/ (a CI artifact's
    /// layout; with --on, DIR/<stack>/snapshots/<platform>/) instead of into the checkout.
    #[arg(long, value_name = "DIR", requires = "record")]
    pub artifact: Option<PathBuf>,
    /// Add the lab's faults to the moves (the server's host crashes or reboots, the network
    /// partitions or heals); every stack must run the lab (host and linux-X.Y do, gVisor not).
    #[arg(long, conflicts_with = "record")]
    pub faults: bool,
}

/// The committed corpus: the first `CORPUS_SIZE` scripts of `CORPUS_SEED`, recorded on every
/// platform (`explore --record 50 --seed 1`) and compared by `cargo xtask diff`.
pub const CORPUS_SEED: u64 = 1;
pub const CORPUS_SIZE: u32 = 50;

/// The case id of the `i`-th generated script of `seed` in a corpus: `explore/seed1_07`.
pub fn corpus_id(seed: u64, i: usize) -> String {
    format!("explore/seed{seed}_{i:02}")
}

/// The intent recorded with a corpus script.
fn corpus_intent(seed: u64, i: usize, m: &[(crate::script::Side, Move)]) -> String {
    format!(
        "Verify: generated script {i} of seed {seed} observes the same on every platform: {}.",
        describe(&valid_moves(m))
    )
}

/// The corpus as cases (family `explore`), so that `cargo xtask diff` compares its snapshots.
pub fn corpus() -> Vec<crate::script::Case> {
    static CORPUS: std::sync::OnceLock<Vec<crate::script::Case>> = std::sync::OnceLock::new();
    CORPUS
        .get_or_init(|| {
            generate(CORPUS_SIZE, CORPUS_SEED)
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let mut c = script(m);
                    let id = corpus_id(CORPUS_SEED, i);
                    // Leaked once per process (the OnceLock): a case's names are 'static.
                    c.name = Box::leak(id["explore/".len()..].to_string().into_boxed_str());
                    c.intent = Box::leak(corpus_intent(CORPUS_SEED, i, m).into_boxed_str());
                    c
                })
                .collect()
        })
        .clone()
}

/// Write the stable observations of a recorded batch as accepted snapshots of this platform
/// under `root/snapshots/<platform>/explore/` (the old corpus of the platform removed first);
/// the ids whose two runs differed (not written) or failed.
fn write_corpus(
    root: &std::path::Path,
    ids: &[String],
    intents: &[String],
    observed: &[Observed],
) -> std::io::Result<Vec<String>> {
    let dir = crate::snapshot::platform_dir(root, &platforms::id::detect());
    let _ = std::fs::remove_dir_all(dir.join("explore"));
    let mut left_out = Vec::new();
    for ((id, intent), o) in ids.iter().zip(intents).zip(observed) {
        let seen = match o {
            // Stable by the one rule of two runs on one platform: independent connections that
            // interleave differently on the wire are the same observation (the first is kept).
            Observed::Runs(r)
                if r.iter()
                    .all(|x| differences(Rule::SamePlatform, &r[0], x).is_empty()) =>
            {
                &r[0]
            }
            Observed::Runs(_) => {
                left_out.push(format!("{id}: unstable (its two runs differ)"));
                continue;
            }
            Observed::Error(e) => {
                left_out.push(format!("{id}: failed ({e})"));
                continue;
            }
            Observed::CannotRun(why) => {
                left_out.push(format!("{id}: cannot run here ({why})"));
                continue;
            }
        };
        let (wire, steps): (Vec<String>, Vec<String>) = seen
            .lines
            .iter()
            .cloned()
            .partition(|l| l.starts_with("wire: "));
        let obs = crate::observe::Observation {
            case: id.clone(),
            intent: intent.clone(),
            steps,
            timing: Vec::new(),
        };
        let (snap, wire_snap) = crate::snapshot::case_paths(&dir, id);
        crate::snapshot::write_accepted(&snap, &obs.render())?;
        if !wire.is_empty() {
            let events = wire
                .iter()
                .map(|l| l["wire: ".len()..].to_string())
                .collect();
            let w = crate::observe::Wire::Captured { events };
            crate::snapshot::write_accepted(&wire_snap, &w.render(id).expect("captured"))?;
        }
    }
    Ok(left_out)
}

/// What one run of a script observed, in the form that is compared: the steps' lines, then the
/// wire's events as `wire: ...` lines (none when the wire was not captured).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunLines {
    pub lines: Vec<String>,
}

impl fmt::Display for RunLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "    {l}")?;
        }
        Ok(())
    }
}

/// Why a run of a script observed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unrun {
    /// An op needs a knob this platform's backend does not implement: the run stopped there,
    /// which is no error of the runner and no behavior of the stack.
    CannotRun(String),
    /// A runner error (a hang, a broken agent), or a capability the script needs is missing.
    Error(String),
}

impl fmt::Display for Unrun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unrun::CannotRun(why) => write!(f, "cannot run here: {why}"),
            Unrun::Error(e) => f.write_str(e),
        }
    }
}

/// Run a case once; a runner error (a hang, a broken agent) is an error, not an observation.
pub fn run_once(case: &crate::script::Case, cfg: &RunConfig) -> Result<RunLines, Unrun> {
    // A script this stack cannot run (faults without a lab) is an error, never an agreement.
    if let Some(why) = crate::select::unmet_needs(case, cfg) {
        return Err(Unrun::Error(format!("cannot run here: {why}")));
    }
    let r = runner::run_case(case, cfg);
    if let Some(e) = r.error {
        return Err(Unrun::Error(format!("runner error: {e}")));
    }
    if let Some(why) = r.skipped {
        return Err(Unrun::CannotRun(why));
    }
    let mut lines = r.observation.steps;
    if let crate::observe::Wire::Captured { events } = r.wire {
        let timing_varies = case.is_bulk() || case.retransmissions_vary.is_some();
        lines.extend(
            compared_wire(events, timing_varies)
                .into_iter()
                .map(|e| format!("wire: {e}")),
        );
    }
    Ok(RunLines { lines })
}

/// The wire events of a script's run that are compared. A generated script that fills a buffer
/// never waits for the flow it starts: how much more data, which zero-window probes and
/// retransmissions fall before its end is timing (both runs of one script on one stack differed
/// so), and so is how many resets answer it: each data segment the fill had in flight when the
/// peer's reset came back is answered by one of its own (gVisor: 9 in one run, 11 in the next).
/// Its wire keeps what ends or opens a connection (SYN, FIN, the first reset of a run of resets
/// from one end: RST or RST-ACK as it came). With
/// faults, how many retransmissions and probes fall into a crash or partition depends on how long
/// the moves around it take, so those are left out the same way.
fn compared_wire(events: Vec<String>, timing_varies: bool) -> Vec<String> {
    if !timing_varies {
        return events;
    }
    let timed = |e: &String| {
        ["data (bulk)", "probe (", "retransmission", "retransmitted"]
            .iter()
            .any(|w| e.contains(w))
    };
    let mut wire: Vec<String> = events.into_iter().filter(|e| !timed(e)).collect();
    // "client > server: RST" and "... RST-ACK": a reset, from that end.
    let reset_from = |e: &str| {
        e.strip_suffix(": RST")
            .or_else(|| e.strip_suffix(": RST-ACK"))
            .map(String::from)
    };
    wire.dedup_by(|e, prev| reset_from(e).is_some() && reset_from(e) == reset_from(prev));
    wire
}

/// The `n` scripts that `seed` generates: the same on every machine and every run (proptest's
/// ChaCha generator, seeded with the seed's bytes), so a corpus is reproducible from its seed.
pub fn generate(n: u32, seed: u64) -> Vec<Script> {
    generate_from(moves(), n, seed)
}

/// `generate` with the lab's faults among the moves (`explore --faults`).
pub fn generate_with_faults(n: u32, seed: u64) -> Vec<Script> {
    generate_from(moves_with_faults(), n, seed)
}

fn generate_from(strategy: impl Strategy<Value = Script>, n: u32, seed: u64) -> Vec<Script> {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut gen = TestRunner::new_with_rng(Config::default(), rng);
    (0..n)
        .map(|_| {
            strategy
                .new_tree(&mut gen)
                .expect("the move strategy never rejects")
                .current()
        })
        .collect()
}

/// Run each script `runs` times on this machine, `jobs` runs at once; over ::1 with `ipv6`.
pub fn run_batch(
    scripts: &[Script],
    cfg: &RunConfig,
    ipv6: bool,
    jobs: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Vec<Observed> {
    const RUNS: usize = 2;
    let total = scripts.len() * RUNS;
    type Runs = Vec<Option<Result<RunLines, Unrun>>>;
    let results: Vec<Mutex<Runs>> = scripts
        .iter()
        .map(|_| Mutex::new(vec![None; RUNS]))
        .collect();
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, total.max(1)) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= total {
                    break;
                }
                // Both runs of one script are apart in time: the first runs of all scripts come
                // first, so a race is not hidden by two runs sharing the same moment.
                let (run_no, i) = (k / scripts.len(), k % scripts.len());
                let mut case = script(&scripts[i]);
                if ipv6 {
                    let intent = case.intent;
                    case = case.over_ipv6(intent);
                }
                let r = run_once(&case, cfg);
                results[i].lock().unwrap()[run_no] = Some(r);
                progress(finished.fetch_add(1, Ordering::SeqCst) + 1, total);
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            let runs = m.into_inner().unwrap().into_iter();
            observed(runs.map(|r| r.unwrap_or_else(|| Err(Unrun::Error("not run".into())))))
        })
        .collect()
}

/// What a stack observed of a script from its runs: an error if any run failed, else "cannot
/// run here" if any stopped at a knob not implemented here, else the runs.
fn observed(runs: impl IntoIterator<Item = Result<RunLines, Unrun>>) -> Observed {
    let mut seen = Vec::new();
    let mut cannot_run = None;
    for r in runs {
        match r {
            Ok(s) => seen.push(s),
            Err(Unrun::Error(e)) => return Observed::Error(e),
            Err(Unrun::CannotRun(why)) => cannot_run = cannot_run.or(Some(why)),
        }
    }
    match cannot_run {
        Some(why) => Observed::CannotRun(why),
        None => Observed::Runs(seen),
    }
}

/// Script runs at once on this machine when not told: the runner's choice for a catalog of
/// this size, at most 16 (every run is two processes and a namespace; more only queue).
fn default_jobs(cfg: &RunConfig, runs: usize) -> usize {
    cfg.table_jobs(runs).0.min(16)
}

/// A batch handed to a stack, and what it hands back.
#[derive(Serialize, Deserialize)]
struct BatchIn {
    scripts: Vec<Script>,
    /// Record the scripts as these corpus cases (ids, intents) into `record_into`.
    #[serde(default)]
    record: Vec<(String, String)>,
    #[serde(default)]
    record_into: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct BatchOut {
    platform: String,
    observed: Vec<Observed>,
    /// Recorded corpus cases not written, with why.
    #[serde(default)]
    left_out: Vec<String>,
}

/// `sockconform explore-batch [--jobs N] IN OUT` (hidden; run inside a stack): run every script
/// of IN twice and write the observations to OUT.
pub fn batch_main(args: &[String]) -> i32 {
    let (mut jobs, mut files) = (None, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--jobs" => jobs = it.next().and_then(|v| v.parse::<usize>().ok()),
            other => files.push(PathBuf::from(other)),
        }
    }
    let [input, output] = files.as_slice() else {
        eprintln!("usage: sockconform explore-batch [--jobs N] IN OUT");
        return 2;
    };
    let batch: BatchIn = match std::fs::read_to_string(input)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", input.display());
            return 2;
        }
    };
    let cfg = RunConfig::probe(crate::paths::agent_exe());
    let runs = batch.scripts.len() * 2;
    let jobs = jobs.unwrap_or_else(|| default_jobs(&cfg, runs));
    let platform = platforms::id::detect();
    println!(
        "{platform}: {} script(s), twice each, {jobs} at once",
        batch.scripts.len()
    );
    let started = Instant::now();
    let step = (runs / 5).max(50);
    let observed = run_batch(&batch.scripts, &cfg, false, jobs, &|done, total| {
        if done % step == 0 && done < total {
            println!(
                "{done}/{total} runs ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    });
    let took = started.elapsed().as_secs_f64();
    println!(
        "{runs} runs in {took:.1} s ({:.1} runs/s)",
        runs as f64 / took.max(1e-9)
    );
    let mut left_out = Vec::new();
    if let Some(into) = &batch.record_into {
        let (ids, intents): (Vec<String>, Vec<String>) = batch.record.iter().cloned().unzip();
        match write_corpus(into, &ids, &intents, &observed) {
            Ok(l) => left_out = l,
            Err(e) => {
                eprintln!(
                    "error: cannot write the corpus into {}: {e}",
                    into.display()
                );
                return 2;
            }
        }
    }
    let out = BatchOut {
        platform,
        observed,
        left_out,
    };
    match std::fs::write(output, serde_json::to_string(&out).expect("serializes")) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", output.display());
            2
        }
    }
}

/// This machine over IPv4 and (where ::1 exists) over IPv6, in this process.
struct Local {
    cfg: RunConfig,
    jobs: Option<usize>,
    ipv6: bool,
}

impl Stacks for Local {
    fn names(&self) -> Vec<String> {
        let mut n = vec!["IPv4".to_string()];
        if self.ipv6 {
            n.push("IPv6".into());
        }
        n
    }

    fn run(&mut self, batches: Vec<(usize, Vec<Script>)>) -> Vec<Result<Vec<Observed>, String>> {
        batches
            .into_iter()
            .map(|(s, scripts)| {
                let jobs = self
                    .jobs
                    .unwrap_or_else(|| default_jobs(&self.cfg, scripts.len() * 2));
                Ok(run_batch(&scripts, &self.cfg, s == 1, jobs, &|_, _| {}))
            })
            .collect()
    }
}

/// Stacks of `conform --on`: each batch is a file in the stack's folder under target/explore/,
/// run by `sockconform explore-batch` inside the stack, the stacks at once.
struct OnStacks {
    stacks: Vec<Stack>,
    bin_dir: PathBuf,
    root: PathBuf,
    dir: PathBuf,
    jobs: Option<u32>,
    round: usize,
    /// The platform id each stack reported (filled after its first batch).
    platforms: Vec<Option<String>>,
    /// Corpus cases (id, intent) each batch records as snapshots into its folder.
    record: Vec<(String, String)>,
}

/// How long one batch may take inside a stack (200 scripts twice in a software-emulated guest
/// take about ten minutes).
const BATCH_DEADLINE: Duration = Duration::from_secs(40 * 60);

impl OnStacks {
    /// One batch per (stack, scripts) at once, each on its own launcher thread; the answers in
    /// the order of `jobs`.
    fn run_all(&self, jobs: &[(usize, &[Script])]) -> Vec<Result<BatchOut, String>> {
        std::thread::scope(|sc| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|&(s, scripts)| {
                    let ticket = launch::ticket();
                    sc.spawn(move || self.run_one(s, scripts, ticket))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the launcher panicked".into()))
                })
                .collect()
        })
    }

    fn run_one(
        &self,
        s: usize,
        scripts: &[Script],
        ticket: launch::Ticket,
    ) -> Result<BatchOut, String> {
        let stack = &self.stacks[s];
        let out = self
            .dir
            .join(stack.name())
            .join(format!("round-{}", self.round));
        std::fs::create_dir_all(&out)
            .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        let (input, output) = (out.join("in.json"), out.join("out.json"));
        let _ = std::fs::remove_file(&output);
        let text = serde_json::to_string(&BatchIn {
            scripts: scripts.to_vec(),
            record: self.record.clone(),
            record_into: (!self.record.is_empty()).then(|| out.clone()),
        })
        .expect("serializes");
        std::fs::write(&input, text)
            .map_err(|e| format!("cannot write {}: {e}", input.display()))?;
        let mut args = vec!["explore-batch".to_string()];
        if let Some(j) = self.jobs.map(|j| j as usize).or(stack.default_jobs()) {
            args.extend(["--jobs".to_string(), j.to_string()]);
        }
        args.extend([input.display().to_string(), output.display().to_string()]);
        let launch = Launch {
            bin_dir: self.bin_dir.clone(),
            root: self.root.clone(),
            out: out.clone(),
            cache: crate::stacks::cache_dir(),
            args,
        };
        let name = stack.name();
        let print = |line: &str| {
            println!("  [{name}] {line}");
            let _ = std::io::stdout().flush();
        };
        let status = match launch::run(stack, &launch, BATCH_DEADLINE, ticket, &print)?.ended {
            Ended::Exited(code) => code,
            Ended::Deadline(d) => {
                return Err(format!("the batch did not finish within {} s", d.as_secs()))
            }
            Ended::Interrupted => return Err("interrupted".into()),
        };
        let text = std::fs::read_to_string(&output)
            .map_err(|e| format!("no observations ({e}; exit {status})"))?;
        let out: BatchOut = serde_json::from_str(&text)
            .map_err(|e| format!("unreadable {}: {e}", output.display()))?;
        if out.observed.len() != scripts.len() {
            return Err(format!(
                "{} observations for {} scripts",
                out.observed.len(),
                scripts.len()
            ));
        }
        Ok(out)
    }
}

impl Stacks for OnStacks {
    fn platforms(&self) -> Vec<Option<String>> {
        self.platforms.clone()
    }

    fn names(&self) -> Vec<String> {
        self.stacks
            .iter()
            .zip(&self.platforms)
            .map(|(s, p)| match p {
                Some(p) => format!("{} ({p})", s.name()),
                None => s.name(),
            })
            .collect()
    }

    fn run(&mut self, batches: Vec<(usize, Vec<Script>)>) -> Vec<Result<Vec<Observed>, String>> {
        self.round += 1;
        let jobs: Vec<(usize, &[Script])> =
            batches.iter().map(|(s, b)| (*s, b.as_slice())).collect();
        let answers = self.run_all(&jobs);
        batches
            .iter()
            .zip(answers)
            .map(|((s, _), a)| {
                a.map(|out| {
                    self.platforms[*s] = Some(out.platform);
                    out.observed
                })
            })
            .collect()
    }
}

/// `sockconform explore`: exit 0 when it ran to its end (findings are results), 1 when a script
/// raced or a run failed, 2 on bad input or a stack that could not run. With `--record`: 0 when
/// every script ran (those that differ from run to run are listed, not recorded), 1 when a run
/// failed.
pub fn run(opts: &Options) -> i32 {
    if opts.on.is_empty() {
        // Before any thread starts, as `conform` does: a user who is not root runs the scripts as
        // root of a user namespace of its own (isolation and capture included).
        if let Some(how) = platforms::enter_user_namespace().describe() {
            println!("{how}");
        }
    }
    if let Some(n) = opts.record {
        return record(opts, n);
    }
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let cases = opts.cases.max(1);
    let mut stacks = match stacks_of(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let names = stacks.names();
    println!(
        "sockconform explore: {cases} generated script(s), seed {seed}, each run twice on {}",
        names.join(", ")
    );
    let start = Instant::now();
    let scripts = if opts.faults {
        generate_with_faults(cases, seed)
    } else {
        generate(cases, seed)
    };
    let mut log = |l: &str| {
        println!("{l} ({:.0} s)", start.elapsed().as_secs_f64());
        let _ = std::io::stdout().flush();
    };
    let report = match explore(stacks.as_mut(), &scripts, &mut log) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: a stack could not run its batch: {e}");
            return 2;
        }
    };
    let names = stacks.names();
    let took = start.elapsed().as_secs_f64();
    let mut on = if opts.on.is_empty() {
        String::new()
    } else {
        format!(" --on {}", opts.on.join(","))
    };
    if opts.faults {
        on.push_str(" --faults");
    }
    let known = known_findings(&report, &stacks.platforms());
    print_report(
        &report,
        &names,
        &scripts,
        &known,
        &format!("cargo xtask explore{on} --cases {cases} --seed {seed}"),
    );
    println!("{}", summary_line(&report, &known, took));
    if report.races.is_empty() && report.errors.is_empty() {
        0
    } else {
        1
    }
}

/// The stacks an exploration compares: those of `--on`, else this machine over IPv4 and IPv6.
fn stacks_of(opts: &Options) -> Result<Box<dyn Stacks>, String> {
    if !opts.on.is_empty() {
        return Ok(Box::new(on_stacks(opts)?));
    }
    let cfg = RunConfig::probe(crate::paths::agent_exe());
    if let (true, Err(why)) = (opts.faults, &cfg.lab) {
        return Err(format!(
            "--faults needs the fault lab, which this machine cannot build: {why}"
        ));
    }
    let ipv6 = match &cfg.ipv6 {
        // The lab's hosts have IPv4 addresses only: IPv6 would run the same scripts again.
        Ok(()) if opts.faults => {
            println!("--faults: the lab is IPv4 only, so each script runs twice over IPv4 (races only; --on compares stacks)");
            false
        }
        Ok(()) => true,
        Err(why) => {
            println!("no IPv6 here ({why}): each script runs twice over IPv4 only");
            false
        }
    };
    Ok(Box::new(Local {
        cfg,
        jobs: opts.jobs.map(|j| j as usize),
        ipv6,
    }))
}

/// For each finding, the catalog cases that already show it (see `known`): none where a
/// stack's platform is not known (the local IPv4 and IPv6 runs are one platform).
fn known_findings(report: &Report, platforms: &[Option<String>]) -> Vec<Vec<String>> {
    let root = crate::snapshot::find_repo_root();
    report
        .findings
        .iter()
        .map(|f| {
            let (Judgement::Finding { stacks, lines, .. }, Some(root)) = (&f.judgement, &root)
            else {
                return Vec::new();
            };
            let ids = stacks.map(|s| platforms.get(s).cloned().flatten());
            match ids {
                [Some(a), Some(b)] => known::cases_showing(root, [&a, &b], lines),
                _ => Vec::new(),
            }
        })
        .collect()
}

/// The exploration's closing line: how each script ended, and what it cost.
fn summary_line(report: &Report, known: &[Vec<String>], took: f64) -> String {
    let new = known.iter().filter(|k| k.is_empty()).count();
    format!(
        "{} script(s) in {took:.1} s: {} agreed, {} finding(s) ({} new, {} shown by a catalog case), {} race(s), {} error(s), {} cannot run here; {} round(s), {} batch(es)",
        report.scripts,
        report.agreed,
        report.findings.len(),
        new,
        report.findings.len() - new,
        report.races.len(),
        report.errors.len(),
        report.cannot_run.len(),
        report.rounds,
        report.batches
    )
}

fn on_stacks(opts: &Options) -> Result<OnStacks, String> {
    let stacks = crate::stacks::expand(&opts.on, &crate::stacks::cache_dir())?;
    if opts.faults {
        if let Some(s) = stacks.iter().find(|s| !s.has_lab()) {
            return Err(format!(
                "--faults needs the fault lab on every stack, and {} has none (no veth, nftables \
                 or per-namespace sysctl there); leave it out of --on",
                s.name()
            ));
        }
    }
    let root = crate::snapshot::find_repo_root()
        .and_then(|r| r.canonicalize().ok())
        .ok_or("run this from inside the sockconform repository")?;
    let bin_dir = crate::paths::bin_dir()?;
    // A folder of this run's own: two explorations at once must not remove each other's
    // batches. Those of runs that are gone are removed.
    let base = root.join("target").join("explore");
    for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().parse::<u32>().ok();
        if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let dir = base.join(std::process::id().to_string());
    Ok(OnStacks {
        platforms: vec![None; stacks.len()],
        stacks,
        bin_dir,
        root,
        dir,
        jobs: opts.jobs,
        round: 0,
        record: Vec::new(),
    })
}

/// `explore --record N`: run the first N scripts of the seed (default `CORPUS_SEED`) twice on
/// each platform and write the stable ones as that platform's snapshots under `explore/`.
fn record(opts: &Options, n: u32) -> i32 {
    let seed = opts.seed.unwrap_or(CORPUS_SEED);
    let generated = generate(n, seed);
    let scripts: Vec<Script> = generated.iter().map(|m| valid_moves(m)).collect();
    let cases: Vec<(String, String)> = generated
        .iter()
        .enumerate()
        .map(|(i, m)| (corpus_id(seed, i), corpus_intent(seed, i, m)))
        .collect();
    let Some(target) = opts
        .artifact
        .clone()
        .or_else(|| crate::snapshot::find_repo_root().and_then(|r| r.canonicalize().ok()))
    else {
        eprintln!("error: run this from inside the sockconform repository, or give --artifact");
        return 2;
    };
    println!("sockconform explore --record: {n} script(s) of seed {seed}, each run twice");
    let started = Instant::now();
    let recorded = if opts.on.is_empty() {
        record_here(opts, &target, &scripts, cases)
    } else {
        record_on(opts, &target, &scripts, cases)
    };
    let left_out = match recorded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    for l in &left_out {
        println!("not recorded: {l}");
    }
    println!(
        "{} left out ({:.1} s); `cargo xtask diff` compares the corpus across platforms",
        left_out.len(),
        started.elapsed().as_secs_f64()
    );
    // A script that observes differently from run to run on a platform is a result about that
    // platform (it has no snapshot there, and says why); a run that failed is not.
    if left_out.iter().any(|l| l.contains(": failed (")) {
        1
    } else {
        0
    }
}

/// `--record` on this machine, into `target`; the scripts left out, with why.
fn record_here(
    opts: &Options,
    target: &std::path::Path,
    scripts: &[Script],
    cases: Vec<(String, String)>,
) -> Result<Vec<String>, String> {
    let cfg = RunConfig::probe(crate::paths::agent_exe());
    let jobs = opts
        .jobs
        .map(|j| j as usize)
        .unwrap_or_else(|| default_jobs(&cfg, scripts.len() * 2));
    let observed = run_batch(scripts, &cfg, false, jobs, &|_, _| {});
    let (ids, intents): (Vec<String>, Vec<String>) = cases.into_iter().unzip();
    let left_out = write_corpus(target, &ids, &intents, &observed)
        .map_err(|e| format!("cannot write the corpus: {e}"))?;
    println!(
        "{}: recorded into {}",
        platforms::id::detect(),
        crate::snapshot::platform_dir(target, &platforms::id::detect()).display()
    );
    Ok(left_out)
}

/// `--record --on`: one batch per stack, at once; each stack's corpus copied into the checkout,
/// or into one artifact folder per stack (as `diff --artifacts` and `import --check` read them).
fn record_on(
    opts: &Options,
    target: &std::path::Path,
    scripts: &[Script],
    cases: Vec<(String, String)>,
) -> Result<Vec<String>, String> {
    let mut on = on_stacks(opts)?;
    on.record = cases;
    on.round = 1;
    let jobs: Vec<(usize, &[Script])> = (0..on.stacks.len()).map(|s| (s, scripts)).collect();
    let answers = on.run_all(&jobs);
    let mut left_out = Vec::new();
    for (stack, a) in on.stacks.iter().zip(answers) {
        let out = on.dir.join(stack.name()).join("round-1");
        let b = a.map_err(|e| format!("{}: {e}", stack.name()))?;
        let from = crate::snapshot::platform_dir(&out, &b.platform).join("explore");
        let into = match &opts.artifact {
            Some(a) => a.join(stack.name()),
            None => target.to_path_buf(),
        };
        let to = crate::snapshot::platform_dir(&into, &b.platform).join("explore");
        copy_files(&from, &to).map_err(|e| {
            format!(
                "{}: cannot copy {} to {}: {e}",
                stack.name(),
                from.display(),
                to.display()
            )
        })?;
        println!("{}: recorded into {}", b.platform, to.display());
        left_out.extend(
            b.left_out
                .into_iter()
                .map(|x| format!("{}: {x}", stack.name())),
        );
    }
    Ok(left_out)
}

/// Replace the folder `to` by a copy of the files of `from` (a corpus family: files only).
fn copy_files(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Each finding side by side and as a catalog case; each race with both runs; each error.
pub fn print_report(
    r: &Report,
    names: &[String],
    scripts: &[Script],
    known: &[Vec<String>],
    reproduce: &str,
) {
    for (n, f) in r.findings.iter().enumerate() {
        print_finding(
            n,
            f,
            names,
            known.get(n).map_or(&[][..], Vec::as_slice),
            reproduce,
        );
    }
    for (n, race) in r.races.iter().enumerate() {
        let Judgement::Race { stack, runs, .. } = &race.judgement else {
            continue;
        };
        println!(
            "\n=== race {}: two runs on {} differ ({} move(s): {}); a catalog case needs an await step here",
            n + 1,
            names[*stack],
            race.script.len(),
            describe(&race.script)
        );
        print_side_by_side(
            Rule::SamePlatform,
            "first run",
            &runs[0],
            "second run",
            &runs[1],
        );
    }
    for (i, stack, reason) in &r.errors {
        println!(
            "\n=== error: script {} ({}) on {}: {reason}",
            i + 1,
            describe(&valid_moves(&scripts[*i])),
            names[*stack]
        );
    }
    for (i, stack, reason) in &r.cannot_run {
        println!(
            "\n=== cannot run here: script {} ({}) on {}: {reason}",
            i + 1,
            describe(&valid_moves(&scripts[*i])),
            names[*stack]
        );
    }
    println!("\nreproduce: {reproduce}");
}

/// One finding: both observations side by side, what differs, and either the catalog cases that
/// already show it or the catalog case to paste.
fn print_finding(n: usize, f: &Shrunk, names: &[String], known: &[String], reproduce: &str) {
    let Judgement::Finding {
        stacks,
        seen,
        lines,
    } = &f.judgement
    else {
        return;
    };
    let (a, b) = (&names[stacks[0]], &names[stacks[1]]);
    println!(
        "\n=== finding {}: {a} and {b} differ ({} move(s); {} generated script(s) shrank to it)",
        n + 1,
        f.script.len(),
        f.from.len()
    );
    print_side_by_side(Rule::AcrossPlatforms, a, &seen[0], b, &seen[1]);
    println!("  differing: ");
    for l in lines {
        println!("    {l}");
    }
    if !known.is_empty() {
        println!(
            "  already shown by the catalog: {} (the same difference in its snapshots)",
            known.join(", ")
        );
        return;
    }
    let intent = format!(
        "Verify: {} (found by `{reproduce}`: {a} and {b} differ).",
        describe(&f.script)
    );
    println!("  as a catalog case:\n");
    for l in rust_case(&f.script, &intent).lines() {
        println!("    {l}");
    }
}

/// "server close, client write".
pub fn describe(m: &[(crate::script::Side, Move)]) -> String {
    if m.is_empty() {
        return "the idle connection".into();
    }
    m.iter()
        .map(|(s, mv)| moves::move_words(*s, *mv).join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Two observations side by side, the differing lines marked by `rule` (the one that judged them).
fn print_side_by_side(rule: Rule, a_name: &str, a: &RunLines, b_name: &str, b: &RunLines) {
    let rows = side_by_side(rule, a, b);
    let width = rows
        .iter()
        .filter_map(|r| r.cells[0].as_ref().map(|c| c.chars().count()))
        .max()
        .unwrap_or(0)
        .clamp(a_name.len(), 70);
    println!("  {:<width$}   {b_name}", a_name);
    for r in rows {
        let cell = |c: &Option<String>| c.clone().unwrap_or_else(|| "-".into());
        let mark = if r.differs { "≠" } else { " " };
        println!(
            "  {:<width$} {mark} {}",
            cell(&r.cells[0]),
            cell(&r.cells[1])
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fill_keeps_one_reset_of_a_run_and_no_timed_segment() {
        let ev = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let seen = ev(&[
            "client > server: SYN",
            "server > client: data (bulk)",
            "client > server: RST-ACK",
            "client > server: RST",
            "client > server: RST",
            "server > client: FIN",
            "client > server: RST",
        ]);
        assert_eq!(
            compared_wire(seen.clone(), true),
            ev(&[
                "client > server: SYN",
                "client > server: RST-ACK",
                "server > client: FIN",
                "client > server: RST",
            ])
        );
        // A script with no fill and no fault keeps every segment.
        assert_eq!(compared_wire(seen.clone(), false), seen);
    }

    #[test]
    fn faults_are_refused_where_a_stack_has_no_lab() {
        let opts = Options {
            on: vec!["host".into(), "gvisor".into()],
            faults: true,
            ..Options::default()
        };
        let e = on_stacks(&opts).err().expect("gvisor has no lab");
        assert!(
            e.contains("--faults needs the fault lab on every stack, and gvisor has none"),
            "{e}"
        );
        let opts = Options {
            on: vec!["host".into(), "linux-6.1".into()],
            faults: true,
            ..Options::default()
        };
        assert!(on_stacks(&opts).is_ok());
    }

    #[test]
    fn a_run_stopped_by_a_knob_not_implemented_is_cannot_run_and_an_error_wins() {
        let seen = || RunLines {
            lines: vec!["client: close -> ok".into()],
        };
        let why = "not implemented on windows: the default SIGPIPE action";
        let cannot = || Err(Unrun::CannotRun(why.into()));
        assert_eq!(
            observed([Ok(seen()), Ok(seen())]),
            Observed::Runs(vec![seen(), seen()])
        );
        assert_eq!(
            observed([Ok(seen()), cannot()]),
            Observed::CannotRun(why.into())
        );
        assert_eq!(
            observed([cannot(), Err(Unrun::Error("runner error: hung".into()))]),
            Observed::Error("runner error: hung".into())
        );
        assert_eq!(
            Unrun::CannotRun(why.into()).to_string(),
            format!("cannot run here: {why}")
        );
    }

    #[test]
    fn faults_make_other_scripts_than_the_corpus_and_the_same_for_a_seed() {
        let plain = generate(50, 1);
        let with = generate_with_faults(50, 1);
        assert_eq!(with, generate_with_faults(50, 1));
        assert!(plain.iter().flatten().all(|(_, m)| !m.is_fault()));
        let faulty = with
            .iter()
            .filter(|m| valid_moves(m).iter().any(|(_, mv)| mv.is_fault()))
            .count();
        assert!(faulty >= 20, "{faulty} of 50 scripts hold a fault");
    }
}
