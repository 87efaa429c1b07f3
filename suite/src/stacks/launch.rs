//! The one way a stack is launched, for `conform --on` and `explore --on` alike: `sockconform
//! <args>` inside the stack, in a process group of its own, every line of its output handed on
//! as it comes, and the whole group ended at its deadline or on Ctrl-C (the stack's group does
//! not see the terminal's signal).

use super::{Launch, Stack};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How a launch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The run inside exited with this code (1 when a signal ended it).
    Exited(i32),
    /// Still running at its deadline: its group was ended.
    Deadline(Duration),
    /// Ctrl-C or SIGTERM: its group was ended.
    Interrupted,
}

/// What a launch handed back: how it ended, after how long.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    pub ended: Ended,
    pub wall: Duration,
}

/// How long the group has to end after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// How often the launcher looks at the child, the deadline and the interrupt flag.
const POLL: Duration = Duration::from_millis(100);

/// Run `sockconform <l.args>` on `stack`, handing each line of its stdout and stderr to `line`;
/// Err when it could not start. Blocks until it ends (call it on a thread of its own per stack:
/// the launcher's parent-death signal is tied to the thread that spawned it).
pub fn run(
    stack: &Stack,
    l: &Launch,
    deadline: Duration,
    line: &(dyn Fn(&str) + Sync),
) -> Result<Finished, String> {
    watch_interrupts();
    std::fs::create_dir_all(&l.out)
        .map_err(|e| format!("cannot create {}: {e}", l.out.display()))?;
    let mut cmd = stack.command(l)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = platforms::group::spawn_group_leader(&mut cmd)
        .map_err(|e| format!("cannot start the {} stack: {e}", stack.name()))?;
    let pipes: Vec<Box<dyn Read + Send>> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for pipe in pipes {
            s.spawn(move || {
                for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                    line(&l);
                }
            });
        }
        // The readers end when the group's last holder of the pipes is gone.
        let ended = wait(&mut child, t0, deadline)?;
        Ok(Finished {
            ended,
            wall: t0.elapsed(),
        })
    })
}

/// Wait for the child to exit, or end its group at the deadline or on an interrupt.
fn wait(child: &mut Child, t0: Instant, deadline: Duration) -> Result<Ended, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Ended::Exited(status.code().unwrap_or(1))),
            Ok(None) if interrupted() => {
                platforms::group::end_group(child, GRACE);
                return Ok(Ended::Interrupted);
            }
            Ok(None) if t0.elapsed() > deadline => {
                platforms::group::end_group(child, GRACE);
                return Ok(Ended::Deadline(deadline));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                platforms::group::end_group(child, GRACE);
                return Err(format!("cannot wait for it: {e}"));
            }
        }
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C (or SIGTERM) came since the first launch.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// From the first launch on, Ctrl-C and SIGTERM set a flag the launchers end their groups on,
/// instead of ending this process and leaving the stacks running.
fn watch_interrupts() {
    static HANDLER: OnceLock<()> = OnceLock::new();
    HANDLER.get_or_init(|| {
        if let Err(e) = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)) {
            eprintln!(
                "warning: cannot handle Ctrl-C ({e}); an interrupt may leave a stack running"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_that_cannot_start_says_why() {
        let l = Launch {
            bin_dir: "/nonexistent-sockconform-bin".into(),
            root: "/".into(),
            out: std::env::temp_dir().join(format!("sc-launch-{}", std::process::id())),
            cache: "/nonexistent-sockconform-cache".into(),
            args: vec!["list".into()],
        };
        let e = run(&Stack::Host, &l, Duration::from_secs(5), &|_| {}).unwrap_err();
        assert!(e.contains("cannot start the host stack"), "{e}");
        let _ = std::fs::remove_dir_all(&l.out);
    }
}
