//! The explorer (`cargo xtask explore`): proptest generates scripts in the case language, runs each
//! against real agents, and shrinks any divergence to a minimal script.
//!
//! A generated script opens one connection, gives both ends a short read timeout (so no read waits
//! long), then performs up to eight moves on either side: write, read, shutdown, SO_LINGER 0, close,
//! hard kill. Each script runs twice over IPv4 and, where the run has IPv6, once over ::1. The
//! property is that all three observe the same (steps, TCP states and wire events):
//! - two IPv4 runs that differ mean the script races with the kernel: a sequence that the catalog
//!   could only keep with an await step, which the explorer's minimal script names;
//! - IPv4 and IPv6 that differ is a finding about the platform.
//!
//! The runner's own promises hold for every generated script too: each run ends within its
//! deadlines, without a runner error, and (tested in `tests/runner.rs`) leaves no process behind.

use crate::runner::{self, RunConfig};
use crate::script::ops::{linger, read, shutdown, write};
use crate::script::{client, connected, server, Case, How, Op, Side, Step};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::collections::BTreeSet;
use std::fmt;

/// One move of a generated script. Moves a side can no longer make (after its close or its
/// kill) are dropped when the script is built, so shrinking can remove any move freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    Write,
    Read,
    ShutdownWrite,
    ShutdownRead,
    Linger0,
    Close,
    Kill,
}

/// The read timeout both ends get, so that a read with nothing to read returns WouldBlock soon.
pub const READ_TIMEOUT_MS: u64 = 50;

/// Sequences of up to eight moves, each by the client or the server.
pub fn moves() -> impl Strategy<Value = Vec<(Side, Move)>> {
    let side = prop_oneof![Just(Side::Client), Just(Side::Server)];
    let mv = prop_oneof![
        3 => Just(Move::Write),
        3 => Just(Move::Read),
        1 => Just(Move::ShutdownWrite),
        1 => Just(Move::ShutdownRead),
        1 => Just(Move::Linger0),
        2 => Just(Move::Close),
        1 => Just(Move::Kill),
    ];
    prop::collection::vec((side, mv), 1..=8)
}

/// The case a list of moves stands for.
pub fn script(moves: &[(Side, Move)]) -> Case {
    let act = |side: Side, op: Op| match side {
        Side::Client => client(op),
        Side::Server => server(op),
    };
    let mut steps = connected();
    for side in [Side::Client, Side::Server] {
        steps.push(act(
            side,
            Op::SetReadTimeout {
                ms: READ_TIMEOUT_MS,
            },
        ));
    }
    let mut gone = BTreeSet::new();
    for &(side, m) in moves {
        if gone.contains(&side) {
            continue;
        }
        steps.push(match m {
            Move::Write => act(side, write(5)),
            Move::Read => act(side, read(100)),
            Move::ShutdownWrite => act(side, shutdown(How::Write)),
            Move::ShutdownRead => act(side, shutdown(How::Read)),
            Move::Linger0 => act(side, linger(Some(0))),
            Move::Close => {
                gone.insert(side);
                act(side, Op::Close)
            }
            Move::Kill => {
                gone.insert(side);
                Step::Kill(side)
            }
        });
    }
    steps.push(Step::Checkpoint("end"));
    let mut case = Case::new(
        "Verify: a generated script observes the same on every run and over IPv4 and IPv6.",
        steps,
    );
    case.family = "explore";
    case.name = "generated";
    case
}

/// What one run of a script observed, in the form that is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub lines: Vec<String>,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "    {l}")?;
        }
        Ok(())
    }
}

/// Run a case once; a runner error (a hang, a broken agent) fails the property outright.
pub fn run_script(case: &Case, cfg: &RunConfig) -> Result<Seen, String> {
    let r = runner::run_case(case, cfg);
    if let Some(e) = r.error {
        return Err(format!("runner error: {e}"));
    }
    let mut lines = r.observation.steps;
    if let crate::observe::Wire::Captured { events } = r.wire {
        lines.extend(events.into_iter().map(|e| format!("wire: {e}")));
    }
    Ok(Seen { lines })
}

/// A minimal script whose runs diverged, and what each run saw.
#[derive(Debug)]
pub struct Divergence {
    pub moves: Vec<(Side, Move)>,
    pub reason: String,
}

/// The property for one script.
pub fn check(moves: &[(Side, Move)], cfg: &RunConfig) -> Result<(), String> {
    let case = script(moves);
    let first = run_script(&case, cfg)?;
    let again = run_script(&case, cfg)?;
    if first != again {
        return Err(format!(
            "two runs over IPv4 differ (the script races with the kernel)\n  first run:\n{first}  second run:\n{again}"
        ));
    }
    if cfg.ipv6.is_ok() {
        let v6 = run_script(&case.clone().over_ipv6(case.intent), cfg)?;
        if first != v6 {
            return Err(format!(
                "IPv4 and IPv6 observe differently\n  IPv4:\n{first}  IPv6:\n{v6}"
            ));
        }
    }
    Ok(())
}

/// Explore `cases` generated scripts from `seed`; Err is the shrunk divergence.
pub fn explore(cfg: &RunConfig, cases: u32, seed: u64) -> Result<(), Divergence> {
    search(cases, seed, |m| check(m, cfg))
}

/// Generate move lists from `seed` until `property` fails, then shrink the failure.
pub fn search(
    cases: u32,
    seed: u64,
    property: impl Fn(&[(Side, Move)]) -> Result<(), String>,
) -> Result<(), Divergence> {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        // Each shrinking step reruns real processes; 64 is enough to reach a short script.
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    match runner.run(&moves(), |m| property(&m).map_err(TestCaseError::fail)) {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, moves)) => Err(Divergence {
            moves,
            reason: reason.to_string(),
        }),
        Err(TestError::Abort(reason)) => Err(Divergence {
            moves: Vec::new(),
            reason: format!("exploration aborted: {reason}"),
        }),
    }
}

/// The flags of `cargo xtask explore`.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// How many scripts to generate
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub cases: u32,
    /// The generator's seed, to reproduce an exploration (default: from the clock)
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// `sockconform explore`: exit 0 when every script agreed with itself, 1 with a divergence.
pub fn run(opts: &Options) -> i32 {
    let (cases, seed) = (opts.cases, opts.seed);
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    let cfg = RunConfig::probe(crate::cli::agent_exe());
    let families = match &cfg.ipv6 {
        Ok(()) => "IPv4 twice and IPv6 once".to_string(),
        Err(why) => format!("IPv4 twice (no IPv6: {why})"),
    };
    println!("sockconform explore: {cases} generated script(s), seed {seed}, each run {families}");
    let start = std::time::Instant::now();
    let outcome = explore(&cfg, cases, seed);
    let took = start.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => {
            println!("all {cases} scripts observed the same on every run ({took:.1} s)");
            0
        }
        Err(d) => {
            println!("divergence after {took:.1} s; the smallest script found:");
            for (side, m) in &d.moves {
                println!("  {side}: {m:?}");
            }
            println!("{}", d.reason);
            println!("reproduce: cargo xtask explore --seed {seed} --cases {cases}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest! {
        #[test]
        fn a_script_never_acts_on_a_side_that_closed_or_died(m in moves()) {
            let case = script(&m);
            let mut gone = BTreeSet::new();
            for s in &case.steps {
                match s {
                    Step::Do(a) => {
                        prop_assert!(!gone.contains(&a.side), "{:?} acts after it ended", a.side);
                        if a.op == Op::Close {
                            gone.insert(a.side);
                        }
                    }
                    Step::Kill(side) => {
                        prop_assert!(gone.insert(*side), "{side:?} killed after it ended");
                    }
                    _ => {}
                }
            }
            prop_assert!(matches!(case.steps.last(), Some(Step::Checkpoint("end"))));
        }
    }

    #[test]
    fn a_divergence_is_shrunk_to_the_moves_that_cause_it() {
        // A stand-in property that fails whenever the server is killed after a client write.
        let property = |m: &[(Side, Move)]| {
            let write = m.iter().position(|x| *x == (Side::Client, Move::Write));
            let kill = m.iter().rposition(|x| *x == (Side::Server, Move::Kill));
            match (write, kill) {
                (Some(w), Some(k)) if w < k => Err("diverged".to_string()),
                _ => Ok(()),
            }
        };
        let d = search(500, 3, property).expect_err("500 scripts include such a pair");
        assert_eq!(
            d.moves,
            [(Side::Client, Move::Write), (Side::Server, Move::Kill)]
        );
        assert!(search(50, 3, |_| Ok(())).is_ok());
    }

    #[test]
    fn a_script_starts_connected_with_read_timeouts() {
        let case = script(&[(Side::Client, Move::Read)]);
        let ops: Vec<String> = case
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Do(a) => Some(format!("{}: {}", a.side, a.op)),
                _ => None,
            })
            .collect();
        assert_eq!(
            ops,
            [
                "server: listen(backlog 16)",
                "client: connect",
                "server: accept",
                "client: read timeout 50 ms",
                "server: read timeout 50 ms",
                "client: read(100)",
            ]
        );
    }
}
