//! Generated scripts against real agents: whatever the explorer generates runs to its end within
//! its deadlines, with no runner error. (Whether two runs agree is the explorer's question, asked
//! by `cargo xtask explore`; an answer about the kernel does not belong in a pass/fail test.)

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::path::PathBuf;
use suite::explore::{moves, run_once as run, script};
use suite::runner::RunConfig;

#[test]
fn every_generated_script_runs_to_its_end() {
    let cfg = RunConfig::probe(PathBuf::from(env!("CARGO_BIN_EXE_sockconform-agent")));
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut gen = TestRunner::new_with_rng(Config::default(), rng);
    for _ in 0..12 {
        let m = moves().new_tree(&mut gen).unwrap().current();
        let case = script(&m);
        let seen = run(&case, &cfg).unwrap_or_else(|e| panic!("{m:?}: {e}"));
        let last = seen.lines.iter().rfind(|l| !l.starts_with("wire: "));
        assert!(
            last.is_some_and(|l| l.starts_with("checkpoint end: ")),
            "{m:?} did not reach its last step:\n{seen}"
        );
    }
}
