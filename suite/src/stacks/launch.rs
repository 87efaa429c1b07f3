//! The one way a stack is launched, for `conform --on` and `explore --on` alike: `sockconform
//! <args>` inside the stack, in a process group of its own, every line of its output handed on
//! as it comes, and the whole group ended at its deadline or on Ctrl-C (the stack's group does
//! not see the terminal's signal).

use super::{Launch, Stack};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
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
    ticket: Ticket,
    line: &(dyn Fn(&str) + Sync),
) -> Result<Finished, String> {
    watch_interrupts();
    // Every stack waits for a core of its own before it starts (see `Turn`).
    let Some(_turn) = Turn::take(ticket, line) else {
        return Ok(Finished {
            ended: Ended::Interrupted,
            wall: Duration::ZERO,
        });
    };
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

/// A stack's turn to run: at most one stack per core of this machine runs at once; the others
/// wait, in the order they were launched (`--on all`: host, gVisor, then the kernels by
/// version). A software-emulated guest's one virtual CPU is a host thread that is busy whenever
/// the guest is (measured: each QEMU at 94% of a core while its cases ran), so more guests than
/// cores starve each other, and a starved guest's timings (a heal after a SYN retransmission, a
/// step deadline) are false lab timing; gVisor, starved, finishes its work after a call has
/// returned later still, which the explorer sees as races. SOCKCONFORM_STACKS_AT_ONCE overrides
/// the count (to measure what sharing costs).
struct Turn;

/// The queue of turns: turns are served in the order the tickets were issued.
struct Queue {
    running: usize,
    issued: u64,
    /// The next ticket to be served.
    next: u64,
    /// Tickets given up before their turn (a launch that failed first, an interrupt): skipped
    /// when their turn comes, so nobody waits on them.
    given_up: BTreeSet<u64>,
}

impl Queue {
    /// The ticket at the head is served or given up: the next one comes up.
    fn advance(&mut self) {
        self.next += 1;
        while self.given_up.remove(&self.next) {
            self.next += 1;
        }
    }

    fn give_up(&mut self, n: u64) {
        if self.next == n {
            self.advance();
        } else {
            self.given_up.insert(n);
        }
        TURN_ENDED.notify_all();
    }
}

static TURNS: Mutex<Queue> = Mutex::new(Queue {
    running: 0,
    issued: 0,
    next: 0,
    given_up: BTreeSet::new(),
});
static TURN_ENDED: Condvar = Condvar::new();

fn queue() -> std::sync::MutexGuard<'static, Queue> {
    TURNS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A place in the queue for turns: take them in the order the stacks should start, before
/// launching them on their threads (whose start order is the scheduler's). A ticket dropped
/// unused (its launch failed before it started) is given up, so the tickets behind it are still
/// served.
pub struct Ticket {
    n: u64,
    used: bool,
}

/// The next place in the queue for turns.
pub fn ticket() -> Ticket {
    let mut q = queue();
    q.issued += 1;
    Ticket {
        n: q.issued - 1,
        used: false,
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.used {
            queue().give_up(self.n);
        }
    }
}

/// How many stacks run at once (see `Turn`).
pub fn stacks_at_once() -> usize {
    std::env::var("SOCKCONFORM_STACKS_AT_ONCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Turn {
    /// Wait for a turn (saying so once); None when interrupted while waiting. Each look is
    /// bounded (POLL), so an interrupt is seen within it.
    fn take(ticket: Ticket, line: &(dyn Fn(&str) + Sync)) -> Option<Turn> {
        Turn::take_of(stacks_at_once(), ticket, line)
    }

    fn take_of(at_once: usize, mut ticket: Ticket, line: &(dyn Fn(&str) + Sync)) -> Option<Turn> {
        ticket.used = true;
        let n = ticket.n;
        let mut q = queue();
        let mine = |q: &Queue| q.running < at_once && q.next == n;
        if !mine(&q) {
            line(&format!(
                "waiting for a turn: {at_once} stack(s) at once, one per core of this machine"
            ));
        }
        while !mine(&q) {
            if interrupted() {
                q.give_up(n);
                return None;
            }
            q = TURN_ENDED
                .wait_timeout(q, POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        q.running += 1;
        q.advance();
        TURN_ENDED.notify_all();
        Some(Turn)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut q = queue();
        q.running -= 1;
        TURN_ENDED.notify_all();
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
        let e = run(&Stack::Host, &l, Duration::from_secs(5), ticket(), &|_| {}).unwrap_err();
        assert!(e.contains("cannot start the host stack"), "{e}");
        let _ = std::fs::remove_dir_all(&l.out);
    }

    #[test]
    fn stacks_take_turns_beyond_the_cores() {
        use std::sync::atomic::AtomicUsize;
        let (now, most, waited) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        std::thread::scope(|s| {
            for _ in 0..5 {
                s.spawn(|| {
                    let said = |_: &str| {
                        waited.fetch_add(1, Ordering::SeqCst);
                    };
                    let slot = Turn::take_of(2, ticket(), &said).expect("not interrupted");
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    now.fetch_sub(1, Ordering::SeqCst);
                    drop(slot);
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2);
        // A ticket dropped unused does not hold up the ones behind it.
        let (unused, next) = (ticket(), ticket());
        drop(unused);
        drop(Turn::take_of(1, next, &|_| {}).expect("served"));
        assert!(
            waited.load(Ordering::SeqCst) >= 3,
            "the others said they wait"
        );
        assert_eq!(queue().running, 0);
    }
}
