//! Stacks: other TCP implementations that run on this machine (gVisor's netstack, another Linux
//! kernel in a QEMU guest) next to the host's own. Each stack runs the same `sockconform` binary
//! inside it and hands back exactly what a CI job hands back: an artifact folder with
//! `results.json` and the pending snapshots `snapshots/<platform>/**/*.snap.new`.

pub mod gvisor;
pub mod vm;

use std::path::PathBuf;
use std::process::Command;

/// What a stack launcher needs to run the suite inside its stack.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The folder holding the built `sockconform` and `sockconform-agent` binaries (absolute).
    pub bin_dir: PathBuf,
    /// The repository root (absolute): the committed snapshots are read from there (read-only).
    pub root: PathBuf,
    /// The artifact folder this stack's run writes into (absolute, created by the caller).
    pub out: PathBuf,
    /// A cache folder the launcher may keep downloads or unpacked packages in (absolute).
    pub cache: PathBuf,
    /// The arguments of `sockconform` to run inside, e.g. `conform --artifact OUT --filter close`.
    pub args: Vec<String>,
}

use crate::cli::ConformOptions;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A TCP implementation `conform --on` can run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stack {
    /// This machine's own kernel, run directly.
    Host,
    /// gVisor's netstack: the suite runs inside a `runsc` sandbox.
    Gvisor,
    /// A Debian Linux kernel of this series ("6.1") booted under QEMU with virtme-ng.
    Linux(String),
}

impl Stack {
    /// `host`, `gvisor` or `linux-<major>.<minor>`.
    pub fn parse(name: &str) -> Result<Stack, String> {
        match name {
            "host" => Ok(Stack::Host),
            "gvisor" => Ok(Stack::Gvisor),
            other => match other.strip_prefix("linux-") {
                Some(series)
                    if platforms::id::linux_release(series).as_deref() == Some(series) =>
                {
                    Ok(Stack::Linux(series.to_string()))
                }
                _ => Err(format!(
                    "unknown stack {other:?} (stacks: host, gvisor, linux-<major>.<minor> such as linux-6.1)"
                )),
            },
        }
    }

    /// Whether the fault lab (veth, nftables, per-namespace sysctl) exists inside this stack: not
    /// in gVisor's sandbox (measured: no veth, no nftables). The host's and a guest's run probe
    /// it again and skip what needs it where it is missing.
    pub fn has_lab(&self) -> bool {
        !matches!(self, Stack::Gvisor)
    }

    pub fn name(&self) -> String {
        match self {
            Stack::Host => "host".into(),
            Stack::Gvisor => "gvisor".into(),
            Stack::Linux(series) => format!("linux-{series}"),
        }
    }

    /// The command that runs `sockconform <args>` on this stack.
    pub(crate) fn command(&self, l: &Launch) -> Result<Command, String> {
        match self {
            Stack::Host => {
                let mut cmd = Command::new(l.bin_dir.join(exe("sockconform")));
                cmd.args(&l.args).env("SOCKCONFORM_ROOT", &l.root);
                Ok(cmd)
            }
            Stack::Gvisor => gvisor::command(l),
            Stack::Linux(series) => vm::command(l, &vm::find_kernel(&l.cache, series)?),
        }
    }

    /// Cases at once inside this stack when the user did not say: the host and gVisor decide for
    /// themselves (see `RunConfig::default_jobs`); a software-emulated guest runs one, on its one
    /// virtual CPU (see `vm::CPUS`): two cases at once in a guest starved by the host made the
    /// emulated nft steps and step replies late (a heal landing after a SYN retransmission, a
    /// step deadline missed), which is false lab timing.
    pub(crate) fn default_jobs(&self) -> Option<usize> {
        match self {
            Stack::Linux(_) => Some(1),
            _ => None,
        }
    }
}

fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// Whether this process runs as root (runsc and unshare then need no rootless mode). The stacks
/// are Linux-only, so /proc is there: "Uid: real effective saved fs".
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The cache for stack downloads: $SOCKCONFORM_STACKS_CACHE, else ~/.cache/sockconform-stacks.
pub fn cache_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SOCKCONFORM_STACKS_CACHE") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home)
        .join(".cache")
        .join("sockconform-stacks")
}

/// The arguments of the run inside one stack: the user's selection, its artifact folder.
fn inner_args(o: &ConformOptions, stack: &Stack, out: &std::path::Path) -> Vec<String> {
    let mut args = vec!["conform".to_string(), "--artifact".into()];
    args.push(out.display().to_string());
    for f in &o.filters {
        args.extend(["--filter".to_string(), f.clone()]);
    }
    if o.pcap.is_some() {
        // Into the artifact, which every stack can write; copied to the asked folder afterwards.
        args.extend(["--pcap".to_string(), out.join("pcap").display().to_string()]);
    }
    if o.bless {
        // The artifact then also holds the snapshots whose observation is unchanged but whose
        // header is not this run's, for the import to refresh.
        args.push("--bless".into());
    }
    if o.repeat > 1 {
        args.extend(["--repeat".to_string(), o.repeat.to_string()]);
    }
    if let Some(j) = o.jobs.or(stack.default_jobs()) {
        args.extend(["--jobs".to_string(), j.to_string()]);
    }
    args
}

/// How long one stack's run may take (the whole catalog in a software-emulated guest takes about
/// 3 minutes; a run of gVisor under --repeat 5 about 2).
const STACK_DEADLINE: Duration = Duration::from_secs(40 * 60);

/// What one stack's run handed back.
struct Finished {
    stack: Stack,
    out: PathBuf,
    code: i32,
    wall: Duration,
    error: Option<String>,
}

/// `conform --on STACK,...`: run the selection on every stack at once, each writing a CI-style
/// artifact under target/stacks/<stack>/, then import the artifacts into the checkout (pending
/// snapshots, or accepted ones with --bless) and print one line per stack.
pub fn conform_on(o: &ConformOptions) -> i32 {
    let stacks: Vec<Stack> = match o.on.iter().map(|s| Stack::parse(s)).collect() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if let Err(e) = crate::cli::select(crate::catalog::all(), &o.filters) {
        eprintln!("error: {e}");
        return 2;
    }
    let Some(root) = crate::snapshot::find_repo_root().and_then(|r| r.canonicalize().ok()) else {
        eprintln!("error: run this from inside the sockconform repository");
        return 2;
    };
    let bin_dir = match std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
    {
        Some(d) => d,
        None => {
            eprintln!("error: cannot tell where the sockconform binaries are");
            return 2;
        }
    };
    let stacks_dir = root.join("target").join("stacks");
    // Artifacts of an earlier run must not be imported as this run's.
    let _ = std::fs::remove_dir_all(&stacks_dir);
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut running: Vec<(usize, Stack, PathBuf, Child, Instant)> = Vec::new();
    let mut finished: Vec<Finished> = Vec::new();
    for (i, stack) in stacks.iter().enumerate() {
        let out = stacks_dir.join(stack.name());
        let launch = Launch {
            bin_dir: bin_dir.clone(),
            root: root.clone(),
            out: out.clone(),
            cache: cache_dir(),
            args: inner_args(o, stack, &out),
        };
        let spawned = std::fs::create_dir_all(&out)
            .map_err(|e| format!("cannot create {}: {e}", out.display()))
            .and_then(|()| stack.command(&launch))
            .and_then(|mut cmd| {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                // A process group of its own, ended whole on Ctrl-C (below); the launcher also
                // ends with this process if it is killed (Linux: parent-death signal).
                platforms::group::spawn_group_leader(&mut cmd)
                    .map_err(|e| format!("cannot start the {} stack: {e}", stack.name()))
            });
        match spawned {
            Ok(mut child) => {
                let name = stack.name();
                for pipe in [
                    child
                        .stdout
                        .take()
                        .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
                    child
                        .stderr
                        .take()
                        .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
                ]
                .into_iter()
                .flatten()
                {
                    let tx = tx.clone();
                    let name = name.clone();
                    std::thread::spawn(move || {
                        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                            let _ = tx.send((i, format!("[{name}] {line}")));
                        }
                    });
                }
                println!("[{name}] started: {}", launch.args.join(" "));
                running.push((i, stack.clone(), out, child, Instant::now()));
            }
            Err(e) => finished.push(Finished {
                stack: stack.clone(),
                out,
                code: 2,
                wall: Duration::ZERO,
                error: Some(e),
            }),
        }
    }
    drop(tx);
    // Ctrl-C or SIGTERM: the stacks' groups do not see the terminal's signal; end them here.
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = interrupted.clone();
    if let Err(e) =
        ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))
    {
        eprintln!("warning: cannot handle Ctrl-C ({e}); an interrupt may leave a stack running");
    }
    let tty = std::io::stdout().is_terminal();
    let per_stack = crate::cli::select(crate::catalog::all(), &o.filters)
        .map(|c| c.len())
        .unwrap_or(0)
        * o.repeat as usize;
    let mut finished_cases = vec![0usize; stacks.len()];
    // Print lines as they come; reap each stack as it ends, or end it at its deadline (a guest
    // stuck at boot must not hang the run).
    while !running.is_empty() {
        for (_, stack, out, child, t0) in &mut running {
            if t0.elapsed() > STACK_DEADLINE {
                eprintln!(
                    "[{}] still running after {} s: ending it",
                    stack.name(),
                    STACK_DEADLINE.as_secs()
                );
                platforms::group::end_group(child, Duration::from_secs(5));
                let _ = std::fs::write(
                    out.join("deadline"),
                    format!("ended after {} s", STACK_DEADLINE.as_secs()),
                );
            }
        }
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("interrupted: ending {} stack(s)", running.len());
            for (_, stack, _, child, _) in &mut running {
                platforms::group::end_group(child, Duration::from_secs(5));
                eprintln!("[{}] ended", stack.name());
            }
            return 130;
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((i, mut line)) => {
                // On a terminal: how far each stack is, and the time left for the slowest one.
                if tty
                    && [" done ", " skip ", " FAIL "]
                        .iter()
                        .any(|w| line.contains(w))
                {
                    finished_cases[i] += 1;
                    let done: usize = finished_cases.iter().sum();
                    let left = running
                        .iter()
                        .filter_map(|(k, _, _, _, t0)| {
                            let n = finished_cases[*k];
                            (n > 0).then(|| {
                                t0.elapsed().as_secs_f64() / n as f64
                                    * per_stack.saturating_sub(n) as f64
                            })
                        })
                        .fold(0.0, f64::max);
                    line += &format!("  [{done}/{}", per_stack * stacks.len());
                    if left > 0.0 {
                        line += &format!(", {}", crate::cli::left_text(left));
                    }
                    line.push(']');
                }
                println!("{line}");
                let _ = std::io::stdout().flush();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        let mut k = 0;
        while k < running.len() {
            match running[k].3.try_wait() {
                Ok(Some(status)) => {
                    let (_, stack, out, _, t0) = running.remove(k);
                    finished.push(Finished {
                        stack,
                        out,
                        code: status.code().unwrap_or(1),
                        wall: t0.elapsed(),
                        error: None,
                    });
                }
                Ok(None) => k += 1,
                Err(e) => {
                    let (_, stack, out, _, t0) = running.remove(k);
                    finished.push(Finished {
                        stack,
                        out,
                        code: 2,
                        wall: t0.elapsed(),
                        error: Some(format!("cannot wait for it: {e}")),
                    });
                }
            }
        }
    }
    // Lines still in the pipes after the last exit.
    for (_, line) in rx.try_iter() {
        println!("{line}");
    }
    let code = report(
        &stacks,
        finished,
        &root,
        &stacks_dir,
        o.bless,
        started.elapsed(),
    );
    if let Some(dir) = &o.pcap {
        for stack in &stacks {
            let (from, to) = (
                stacks_dir.join(stack.name()).join("pcap"),
                dir.join(stack.name()),
            );
            match copy_files(&from, &to) {
                Ok(n) => println!("pcap: {n} file(s) of {} in {}", stack.name(), to.display()),
                Err(e) => eprintln!("pcap: {} not copied: {e}", stack.name()),
            }
        }
    }
    code
}

/// Copy the files of `from` into `to` (created); returns how many.
fn copy_files(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// The per-stack summary, then the import of every artifact a stack handed back.
fn report(
    stacks: &[Stack],
    mut finished: Vec<Finished>,
    root: &std::path::Path,
    stacks_dir: &std::path::Path,
    bless: bool,
    wall: Duration,
) -> i32 {
    finished.sort_by_key(|f| stacks.iter().position(|s| *s == f.stack));
    println!("\nstack        platform             exit  wall      summary");
    let mut worst = 0;
    for f in &finished {
        let results = std::fs::read_to_string(f.out.join("results.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let platform = results
            .as_ref()
            .and_then(|r| r["platform"].as_str().map(String::from))
            .unwrap_or_else(|| "-".into());
        let ended = std::fs::read_to_string(f.out.join("deadline")).ok();
        let summary = match (&f.error, &results) {
            (None, _) if ended.is_some() => format!(
                "did not finish: {} (its deadline)",
                ended.unwrap_or_default()
            ),
            (Some(e), _) => format!("did not run: {e}"),
            (None, Some(r)) => summary_of(r),
            (None, None) => {
                "no results.json: the run inside the stack did not finish (see its lines above)"
                    .into()
            }
        };
        let code = if f.error.is_none() && results.is_none() {
            2.max(f.code)
        } else {
            f.code
        };
        worst = worst.max(code);
        println!(
            "{:<12} {:<20} {:<5} {:>6.1} s  {summary}",
            f.stack.name(),
            platform,
            code,
            f.wall.as_secs_f64()
        );
    }
    println!(
        "wall time {:.1} s for {} stack(s)",
        wall.as_secs_f64(),
        finished.len()
    );
    // Bring what the stacks handed back into the checkout, as `import` does with CI artifacts.
    let any = finished
        .iter()
        .any(|f| f.out.join("results.json").is_file());
    if any {
        let mut out = std::io::stdout().lock();
        if let Err(e) = crate::import::import(stacks_dir, root, bless, &mut out) {
            let _ = out.flush();
            eprintln!("error: importing the stacks' results: {e}");
            worst = worst.max(e.exit_code());
        }
    }
    worst
}

/// "52 passed, 3 new, 2 skipped (compared with linux-6.18)".
fn summary_of(r: &serde_json::Value) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for c in r["cases"].as_array().into_iter().flatten() {
        let s = c["status"].as_str().unwrap_or("?").to_string();
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    let order = ["passed", "changed", "new", "skipped", "unstable", "failed"];
    counts.sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(9));
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut s = parts.join(", ");
    let differ = r["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c.get("differs_from").is_some())
        .count();
    if let Some(base) = r["compared_with"].as_str() {
        if r["platform"].as_str() != Some(base) {
            s += &format!(" (no snapshots of its own: {differ} differ from {base})");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_parse_by_name() {
        assert_eq!(Stack::parse("host"), Ok(Stack::Host));
        assert_eq!(Stack::parse("gvisor"), Ok(Stack::Gvisor));
        assert_eq!(Stack::parse("linux-6.1"), Ok(Stack::Linux("6.1".into())));
        assert!(Stack::parse("linux-6").is_err());
        assert!(Stack::parse("linux-6.1.2").is_err());
        assert!(Stack::parse("qemu").unwrap_err().contains("host, gvisor"));
    }

    #[test]
    fn inner_runs_get_the_selection_and_their_artifact() {
        let o = ConformOptions {
            filters: vec!["close/".into()],
            repeat: 3,
            ..Default::default()
        };
        let a = inner_args(&o, &Stack::Linux("6.1".into()), std::path::Path::new("/o"));
        assert_eq!(
            a.join(" "),
            "conform --artifact /o --filter close/ --repeat 3 --jobs 1"
        );
        let a = inner_args(&o, &Stack::Host, std::path::Path::new("/o"));
        assert!(!a.contains(&"--jobs".to_string()));
    }
}
