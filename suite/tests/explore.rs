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
