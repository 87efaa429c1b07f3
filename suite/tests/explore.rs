//! Generated scripts against real agents: whatever the explorer generates runs to its end within
//! its deadlines, with no runner error. (Whether two runs agree is the explorer's question, asked
//! by `cargo xtask explore`; an answer about the kernel does not belong in a pass/fail test.)

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::io::Write;
use std::path::PathBuf;
use suite::explore::{moves, moves_with_faults, run_once as run, script, Script};
use suite::runner::RunConfig;

/// Twelve scripts of one fixed seed, not every script: the explorer's own runs cover more.
#[test]
fn twelve_generated_scripts_run_to_their_end() {
    assert_eq!(runs_to_its_end(moves(), 12, |_| true), 12);
}

/// With the lab's faults among the moves (crash, reboot, partition, heal), where the lab can be
/// built: of twelve generated scripts (one fixed seed), at least six hold a fault, and each of
/// those runs to its end through the lab.
#[test]
fn generated_scripts_with_faults_run_to_their_end_through_the_lab() {
    let cfg = RunConfig::probe(PathBuf::from(env!("CARGO_BIN_EXE_sockconform-agent")));
    if let Err(why) = &cfg.lab {
        // Past libtest's capture, which hides eprintln! of a passing test: a skip is seen.
        let _ = writeln!(std::io::stderr().lock(), "skipped: {why}");
        return;
    }
    let n = runs_to_its_end(moves_with_faults(), 12, |m| {
        m.iter().any(|(_, mv)| mv.is_fault())
    });
    assert!(n >= 6, "only {n} of 12 generated scripts made a fault");
}

/// Run `n` generated scripts that `keep` accepts; returns how many ran.
fn runs_to_its_end(
    strategy: impl Strategy<Value = Script>,
    n: usize,
    keep: impl Fn(&Script) -> bool,
) -> usize {
    let cfg = RunConfig::probe(PathBuf::from(env!("CARGO_BIN_EXE_sockconform-agent")));
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut gen = TestRunner::new_with_rng(Config::default(), rng);
    let mut ran = 0;
    for _ in 0..n {
        let m = strategy.new_tree(&mut gen).unwrap().current();
        if !keep(&suite::explore::valid_moves(&m)) {
            continue;
        }
        let case = script(&m);
        let seen = run(&case, &cfg).unwrap_or_else(|e| panic!("{m:?}: {e}"));
        let last = seen.lines.iter().rfind(|l| !l.starts_with("wire: "));
        assert!(
            last.is_some_and(|l| l.starts_with("checkpoint end: ")),
            "{m:?} did not reach its last step:\n{seen}"
        );
        ran += 1;
    }
    ran
}

/// The wait for quiet before each move, made on this machine as if its stack were asynchronous
/// (the table view says so; the kernel is this one): twelve generated scripts (one fixed seed)
/// observe what they observe without it, and the wait writes nothing, since every wait is met
/// here (a wait that failed to see its acknowledgments or FINs would write a line); without
/// a capture it says once that it cannot see segments in flight.
#[test]
fn the_wait_for_quiet_between_moves_is_met_and_changes_no_observation() {
    let quick = RunConfig::probe(PathBuf::from(env!("CARGO_BIN_EXE_sockconform-agent")));
    let mut settling = quick.clone();
    settling.table.synchronous = false;
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut gen = TestRunner::new_with_rng(Config::default(), rng);
    for _ in 0..12 {
        let m = moves().new_tree(&mut gen).unwrap().current();
        let case = script(&m);
        assert!(case.settle_between_moves, "a generated script settles");
        let plain = run(&case, &quick).unwrap_or_else(|e| panic!("{m:?}: {e}"));
        let settled = run(&case, &settling).unwrap_or_else(|e| panic!("{m:?}: {e}"));
        let said: Vec<&String> = settled
            .lines
            .iter()
            .filter(|l| l.contains("quiet") || l.contains("segments in flight"))
            .collect();
        if quick.capture.is_ok() {
            assert!(said.is_empty(), "{m:?}: {said:?}");
            assert_eq!(plain, settled, "{m:?}");
        } else {
            assert_eq!(said.len(), 1, "{m:?} said it {} times", said.len());
        }
    }
}
