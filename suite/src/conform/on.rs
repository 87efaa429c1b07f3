//! `conform --on STACK,...`: run the selection on every stack, one stack per core at a time (see
//! `stacks::launch`), each writing a CI-style artifact under target/stacks/<stack>/, follow their
//! progress, then import the artifacts into the checkout (pending snapshots, or accepted ones
//! with --bless) and print one line per stack.

use super::progress::{counter, left_text};
use super::Options;
use crate::results::{Progress, RunResults};
use crate::stacks::launch::{self, Ended, Finished};
use crate::stacks::{cache_dir, Launch, Stack};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one stack's run may take (the whole catalog in a software-emulated guest takes about
/// 3 minutes; a run of gVisor under --repeat 5 about 2).
const STACK_DEADLINE: Duration = Duration::from_secs(40 * 60);

/// What every stack's run shares.
struct Setup {
    stacks: Vec<Stack>,
    root: PathBuf,
    bin_dir: PathBuf,
    /// target/stacks/: one artifact folder per stack.
    stacks_dir: PathBuf,
    /// Cases each stack finishes (the selection times --repeat).
    per_stack: usize,
}

/// One stack's run: its artifact folder and how it ended (Err: it could not start).
struct StackRun {
    stack: Stack,
    out: PathBuf,
    result: Result<Finished, String>,
}

pub(super) fn run(o: &Options) -> i32 {
    let setup = match setup(o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    // Artifacts of an earlier run must not be imported as this run's.
    let _ = std::fs::remove_dir_all(&setup.stacks_dir);
    let started = Instant::now();
    let runs = launch_all(o, &setup);
    let interrupted: Vec<&StackRun> = runs
        .iter()
        .filter(|r| {
            matches!(
                r.result,
                Ok(Finished {
                    ended: Ended::Interrupted,
                    ..
                })
            )
        })
        .collect();
    if !interrupted.is_empty() {
        eprintln!("interrupted: ended {} stack(s)", interrupted.len());
        for r in interrupted {
            eprintln!("[{}] ended", r.stack.name());
        }
        return 130;
    }
    let code = report(&runs, &setup, o.bless, started.elapsed());
    if let Some(dir) = &o.pcap {
        copy_pcaps(&setup, dir);
    }
    code
}

fn setup(o: &Options) -> Result<Setup, String> {
    let stacks = crate::stacks::expand(&o.on, &cache_dir())?;
    if o.on.iter().any(|n| n == crate::stacks::ALL) {
        for (stack, why) in crate::stacks::all_here(&cache_dir()).1 {
            println!("[{stack}] not run by --on all: {why}");
        }
    }
    let cases = crate::select::select(crate::catalog::all(), &o.filters)?;
    let root = crate::snapshot::find_repo_root()
        .and_then(|r| r.canonicalize().ok())
        .ok_or("run this from inside the sockconform repository")?;
    Ok(Setup {
        stacks,
        stacks_dir: root.join("target").join("stacks"),
        root,
        bin_dir: crate::paths::bin_dir()?,
        per_stack: cases.len() * o.repeat as usize,
    })
}

/// The arguments of the run inside one stack: the user's selection, its artifact folder, and
/// progress as JSON lines for this run to follow.
fn inner_args(o: &Options, stack: &Stack, out: &Path) -> Vec<String> {
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
    args.push("--progress-json".into());
    args
}

/// Launch every stack, each on a thread of its own that waits for its turn (one stack per core),
/// and print their lines here as they come (progress lines made readable and counted).
fn launch_all(o: &Options, setup: &Setup) -> Vec<StackRun> {
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut follow = Follow::new(setup);
    std::thread::scope(|s| {
        let handles: Vec<_> = setup
            .stacks
            .iter()
            .enumerate()
            .map(|(i, stack)| {
                let tx = tx.clone();
                let out = setup.stacks_dir.join(stack.name());
                let l = Launch {
                    bin_dir: setup.bin_dir.clone(),
                    root: setup.root.clone(),
                    out: out.clone(),
                    cache: cache_dir(),
                    args: inner_args(o, stack, &out),
                };
                println!("[{}] to run: {}", stack.name(), l.args.join(" "));
                let ticket = launch::ticket();
                s.spawn(move || {
                    let send = |line: &str| {
                        let _ = tx.send((i, line.to_string()));
                    };
                    let result = launch::run(stack, &l, STACK_DEADLINE, ticket, &send);
                    StackRun {
                        stack: stack.clone(),
                        out,
                        result,
                    }
                })
            })
            .collect();
        drop(tx);
        // Ends when every launcher (and its readers) has ended.
        for (i, line) in rx {
            follow.line(i, &line);
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("a stack's launcher does not panic"))
            .collect()
    })
}

/// The stacks' lines as they come: each prefixed by its stack; a progress line made readable and,
/// on a terminal, with how far all stacks are and the time left for the slowest one.
struct Follow {
    names: Vec<String>,
    per_stack: usize,
    done: Vec<usize>,
    started: Instant,
    tty: bool,
}

impl Follow {
    fn new(setup: &Setup) -> Follow {
        use std::io::IsTerminal;
        Follow {
            names: setup.stacks.iter().map(Stack::name).collect(),
            per_stack: setup.per_stack,
            done: vec![0; setup.stacks.len()],
            started: Instant::now(),
            tty: std::io::stdout().is_terminal(),
        }
    }

    fn line(&mut self, i: usize, line: &str) {
        let text = match Progress::parse(line) {
            Some(p) => {
                self.done[i] += 1;
                let mut text = p.human();
                if self.tty {
                    text += &counter(
                        self.done.iter().sum(),
                        self.per_stack * self.names.len(),
                        self.left(),
                    );
                }
                text
            }
            None => line.to_string(),
        };
        println!("[{}] {text}", self.names[i]);
        let _ = std::io::stdout().flush();
    }

    /// The time left for the slowest stack, from each one's pace so far.
    fn left(&self) -> Option<String> {
        let secs = self.started.elapsed().as_secs_f64();
        let left = self
            .done
            .iter()
            .filter(|n| **n > 0)
            .map(|n| secs / *n as f64 * self.per_stack.saturating_sub(*n) as f64)
            .fold(0.0, f64::max);
        (left > 0.0).then(|| left_text(left))
    }
}

/// The per-stack summary, then the import of every artifact a stack handed back.
fn report(runs: &[StackRun], setup: &Setup, bless: bool, wall: Duration) -> i32 {
    println!("\nstack        platform             exit  wall      summary");
    let mut worst = 0;
    for r in runs {
        let results = RunResults::read(&r.out.join(crate::results::FILE)).ok();
        let (code, summary) = stack_line(r, results.as_ref());
        worst = worst.max(code);
        let wall = r.result.as_ref().map_or(Duration::ZERO, |f| f.wall);
        println!(
            "{:<12} {:<20} {:<5} {:>6.1} s  {summary}",
            r.stack.name(),
            results.as_ref().map_or("-", |r| r.platform.as_str()),
            code,
            wall.as_secs_f64()
        );
    }
    println!(
        "wall time {:.1} s for {} stack(s)",
        wall.as_secs_f64(),
        runs.len()
    );
    // Bring what the stacks handed back into the checkout, as `import` does with CI artifacts.
    if runs
        .iter()
        .any(|r| r.out.join(crate::results::FILE).is_file())
    {
        let mut out = std::io::stdout().lock();
        if let Err(e) = crate::import::import(&setup.stacks_dir, &setup.root, bless, &mut out) {
            let _ = out.flush();
            eprintln!("error: importing the stacks' results: {e}");
            worst = worst.max(e.exit_code());
        }
    }
    worst
}

/// A stack's exit code and summary: its results' counts, or why there are none.
fn stack_line(r: &StackRun, results: Option<&RunResults>) -> (i32, String) {
    match (&r.result, results) {
        (Err(e), _) => (2, format!("did not run: {e}")),
        (Ok(f), _) if matches!(f.ended, Ended::Deadline(_)) => (
            2,
            format!(
                "did not finish: ended after {} s (its deadline)",
                STACK_DEADLINE.as_secs()
            ),
        ),
        (
            Ok(Finished {
                ended: Ended::Exited(code),
                ..
            }),
            Some(results),
        ) => (*code, results.summary()),
        (Ok(f), None) => (
            match f.ended {
                Ended::Exited(code) => code.max(2),
                _ => 2,
            },
            "no results.json: the run inside the stack did not finish (see its lines above)".into(),
        ),
        (Ok(_), Some(results)) => (2, results.summary()),
    }
}

fn copy_pcaps(setup: &Setup, dir: &Path) {
    for stack in &setup.stacks {
        let from = setup.stacks_dir.join(stack.name()).join("pcap");
        let to = dir.join(stack.name());
        match copy_files(&from, &to) {
            Ok(n) => println!("pcap: {n} file(s) of {} in {}", stack.name(), to.display()),
            Err(e) => eprintln!("pcap: {} not copied: {e}", stack.name()),
        }
    }
}

/// Copy the files of `from` into `to` (created); returns how many.
fn copy_files(from: &Path, to: &Path) -> std::io::Result<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_runs_get_the_selection_their_artifact_and_json_progress() {
        let o = Options {
            filters: vec!["close/".into()],
            repeat: 3,
            ..Default::default()
        };
        let a = inner_args(&o, &Stack::Linux("6.1".into()), Path::new("/o"));
        assert_eq!(
            a.join(" "),
            "conform --artifact /o --filter close/ --repeat 3 --jobs 1 --progress-json"
        );
        let a = inner_args(&o, &Stack::Host, Path::new("/o"));
        assert!(!a.contains(&"--jobs".to_string()));
    }
}
