//! The conformance test: one rstest case per catalog case, each asserting its observation (and, when
//! the wire was captured, its wire events) against `snapshots/<os>/<family>/` with insta.
//!
//! `cargo insta review` reviews what changed; `cargo xtask conform` runs the same cases in parallel
//! and reads and writes the same files.

use rstest::rstest;
use std::path::PathBuf;
use std::sync::OnceLock;
use suite::runner::{self, RunConfig};

fn config() -> &'static RunConfig {
    static CFG: OnceLock<RunConfig> = OnceLock::new();
    CFG.get_or_init(|| RunConfig::probe(PathBuf::from(env!("CARGO_BIN_EXE_sockconform-agent"))))
}

fn check_case(family: &str, name: &str) {
    let id = format!("{family}/{name}");
    let case = suite::catalog::find(&id).expect("the catalog has every tested case");
    if let Some(why) = suite::cli::unmet_needs(&case, config()) {
        eprintln!("skipped {id}: {why}");
        return;
    }
    let run = runner::run_case(&case, config());
    assert!(
        run.error.is_none(),
        "{id} did not run to the end: {}",
        run.error.unwrap()
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let base = suite::cli::Baseline::choose(&root, platforms::platform_id(), None);
    if base.is_fallback() || !base.compared_dir.is_dir() {
        // No snapshots of this platform yet (a new kernel release on a CI runner): show how it
        // differs from the nearest recorded platform, but do not fail for that alone.
        // `cargo xtask conform --bless` records this platform under its own id.
        let (old, _) = suite::snapshot::case_paths(&base.compared_dir, &id);
        let new = run.observation.render();
        match suite::snapshot::read_body(&old) {
            Ok(Some(old)) if old != new => eprintln!(
                "{id}: no snapshots of {} yet; differs from {}:\n{}",
                base.id,
                base.compared,
                suite::snapshot::diff(&old, &new)
            ),
            _ => eprintln!("{id}: no snapshots of {} yet; not compared", base.id),
        }
        return;
    }
    let dir = base.compared_dir.join(family);
    let meta = suite::snapshot::header_meta();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_info(&meta);
    settings.bind(|| {
        insta::assert_snapshot!(name.to_string(), run.observation.render());
        // The wire is compared only when this run could capture it.
        if let Some(wire) = run.wire.render(&id) {
            insta::assert_snapshot!(format!("{name}.wire"), wire);
        }
    });
}

macro_rules! family_tests {
    ($($family:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        $(
            #[rstest]
            $( #[case::$case(stringify!($case))] )*
            fn $family(#[case] name: &str) {
                check_case(stringify!($family), name)
            }
        )*
    };
}

suite::with_catalog!(family_tests);
