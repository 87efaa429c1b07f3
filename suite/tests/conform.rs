//! The conformance test: one rstest case per catalog case, each asserting its observation (and, when
//! the wire was captured, its wire events) against `snapshots/<platform>/<family>/` with insta.
//!
//! `cargo insta review` reviews what changed; `cargo xtask conform` runs the same cases in parallel
//! and reads and writes the same files.
//!
//! A platform with no snapshots of its own (another kernel release, another OS) is compared with
//! the nearest recorded release of its stack, as `conform` does: a difference is shown, not failed
//! (a new release is a new column). What must be seen although the test passes (a skip, such a
//! difference, a wire not compared) is written past libtest's output capture, which hides
//! `eprintln!` of a passing test.
//!
//! Under CI the capabilities this machine must have are explicit: SOCKCONFORM_REQUIRE (as
//! `conform --require`), by default all of them on Linux as root (what `.ci/run` provides). A case
//! skipped for a required capability fails, and so does a wire that was not captured whole while
//! capture is required. A case skipped because a knob is not implemented on this platform ("not
//! implemented on windows: ...") does not: no capability of the machine is missing.

use rstest::rstest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use suite::conform::Baseline;
use suite::observe::Wire;
use suite::runner::{self, RunConfig};
use suite::script::Case;
use suite::select::NEEDS;

fn config() -> &'static RunConfig {
    static CFG: OnceLock<RunConfig> = OnceLock::new();
    CFG.get_or_init(|| RunConfig::probe(PathBuf::from(env!("CARGO_BIN_EXE_sockconform-agent"))))
}

/// Write a line that libtest's capture does not hide: it captures `eprintln!`, not writes to the
/// stderr handle itself, so a skip or a difference shows even when its test passes.
fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

fn check_case(family: &str, name: &str) {
    let id = format!("{family}/{name}");
    let case = suite::catalog::find(&id).expect("the catalog has every tested case");
    let required = required();
    if let Some(why) = suite::select::unmet_needs(&case, config()) {
        if let Some(failure) = skip_failure(&case, &required, config()) {
            panic!("{failure}");
        }
        note(&format!("skipped {id}: {why}"));
        return;
    }
    let run = runner::run_case(&case, config());
    assert!(
        run.error.is_none(),
        "{id} did not run to the end: {}",
        run.error.unwrap()
    );
    // An op needed a knob this platform's backend does not implement: the case stopped there,
    // and is skipped. Not a failure even under CI: no capability of this machine is missing.
    if let Some(why) = &run.skipped {
        note(&format!("skipped {id}: {why}"));
        return;
    }
    // A case with no wire by its nature (Unix-domain sockets cross no interface) says why in
    // its wire; that is no capture lost.
    let lost = match case.no_wire {
        Some(_) => None,
        None => wire_lost(&id, &run.wire, config()),
    };
    if let Some(lost) = lost {
        assert!(
            !required.caps.iter().any(|c| c == "capture"),
            "{lost} ({})",
            required.source
        );
        note(&lost);
    }
    let base = Baseline::choose(&repo_root(), platforms::platform_id(), None);
    if base.is_fallback() || !base.compared_dir.is_dir() {
        let found = compare_with_nearest(
            &base,
            &id,
            &run.observation.render(),
            run.wire.render(&id).as_deref(),
        );
        note(&found.unwrap_or_else(|e| panic!("{e}")).describe(&id));
        return;
    }
    assert_snapshots(&base.compared_dir.join(family), &id, name, &run);
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// This platform's own snapshots, asserted with insta (pending `.snap.new` files on a change).
fn assert_snapshots(dir: &Path, id: &str, name: &str, run: &runner::CaseRun) {
    let meta = suite::snapshot::header_meta();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_info(&meta);
    settings.bind(|| {
        insta::assert_snapshot!(name.to_string(), run.observation.render());
        // The wire is compared only when this run could capture it.
        if let Some(wire) = run.wire.render(id) {
            insta::assert_snapshot!(format!("{name}.wire"), wire);
        }
    });
}

// --- the nearest recorded release -----------------------------------------------------------------

/// What comparing a run with the nearest recorded release of its stack found.
#[derive(Debug, PartialEq)]
enum Nearest {
    /// No release of this platform's stack is recorded at all: nothing to compare with.
    NoRelease { platform: String },
    /// Compared with `release`'s snapshots under `observe::agrees`: how many files were compared,
    /// each difference (the file, then the diff), and the files that release does not have.
    Compared {
        release: String,
        compared: usize,
        differences: Vec<String>,
        unrecorded: Vec<String>,
    },
}

impl Nearest {
    fn describe(&self, case: &str) -> String {
        match self {
            Nearest::NoRelease { platform } => format!(
                "{case}: no snapshots of {platform}, and no recorded release of its stack: \
                 not compared (`cargo xtask conform --bless` records it)"
            ),
            Nearest::Compared {
                release,
                compared,
                differences,
                unrecorded,
            } => {
                let mut s = format!(
                    "{case}: compared with {release}, the nearest recorded release: {compared} \
                     file(s), {} differ (shown, not a failure)",
                    differences.len()
                );
                for u in unrecorded {
                    s += &format!("\n  {u}: not recorded there, not compared");
                }
                for d in differences {
                    s += &format!("\n{d}");
                }
                s
            }
        }
    }
}

/// Compare a run's observation (and its wire, when captured) with the snapshots `base` compares
/// with, by the rule `conform` uses for "the same" (`observe::agrees`). A corrupt snapshot is an
/// error that names its file.
fn compare_with_nearest(
    base: &Baseline,
    case: &str,
    observation: &str,
    wire: Option<&str>,
) -> Result<Nearest, suite::snapshot::SnapshotError> {
    if !base.compared_dir.is_dir() {
        return Ok(Nearest::NoRelease {
            platform: base.id.clone(),
        });
    }
    let (obs_path, wire_path) = suite::snapshot::case_paths(&base.compared_dir, case);
    let (mut compared, mut differences, mut unrecorded) = (0, Vec::new(), Vec::new());
    for (path, new) in [(obs_path, Some(observation)), (wire_path, wire)] {
        let Some(new) = new else { continue };
        match suite::snapshot::read_body(&path)? {
            None => unrecorded.push(path.display().to_string()),
            Some(old) => {
                compared += 1;
                if !suite::observe::agrees(&old, new) {
                    let diff = suite::snapshot::diff(&old, new);
                    differences.push(format!("{}\n{diff}", path.display()));
                }
            }
        }
    }
    Ok(Nearest::Compared {
        release: base.compared.clone(),
        compared,
        differences,
        unrecorded,
    })
}

// --- what this machine must be able to do ---------------------------------------------------------

/// The capabilities this run must have, and where that expectation comes from.
#[derive(Debug, PartialEq)]
struct Required {
    caps: Vec<String>,
    source: String,
}

fn required() -> Required {
    let var = |k| std::env::var(k).ok();
    let linux_root = platforms::id::stack_of(platforms::platform_id()) == Some("linux")
        && platforms::runs_as_root();
    required_from(
        var("SOCKCONFORM_REQUIRE").as_deref(),
        var("CI").as_deref(),
        linux_root,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// SOCKCONFORM_REQUIRE (comma-separated capabilities, as `conform --require`; empty: none) decides;
/// without it, CI on Linux as root requires every capability, and anything else none.
fn required_from(
    explicit: Option<&str>,
    ci: Option<&str>,
    linux_root: bool,
) -> Result<Required, String> {
    if let Some(list) = explicit {
        let caps: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        if let Some(bad) = caps.iter().find(|c| !NEEDS.contains(&c.as_str())) {
            return Err(format!(
                "SOCKCONFORM_REQUIRE: {bad:?} is not a capability (one of {})",
                NEEDS.join(", ")
            ));
        }
        return Ok(Required {
            caps,
            source: format!("SOCKCONFORM_REQUIRE={list}"),
        });
    }
    let under_ci = ci.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    Ok(if under_ci && linux_root {
        Required {
            caps: NEEDS.iter().map(|c| c.to_string()).collect(),
            source: "CI on Linux as root expects every capability; SOCKCONFORM_REQUIRE= \
                     (empty) or a list overrides"
                .into(),
        }
    } else {
        Required {
            caps: Vec::new(),
            source: "nothing required (no SOCKCONFORM_REQUIRE, not CI on Linux as root)".into(),
        }
    })
}

/// Why skipping this case fails the test: it needs a capability that is required and missing.
fn skip_failure(case: &Case, required: &Required, cfg: &RunConfig) -> Option<String> {
    let needed: Vec<String> = case
        .needs
        .iter()
        .map(|n| n.to_string())
        .filter(|n| required.caps.contains(n))
        .collect();
    let why = suite::select::missing_requirement(&needed, cfg)?;
    Some(format!(
        "{} would be skipped: {why} ({})",
        case.id(),
        required.source
    ))
}

/// Capture was available, yet this run's wire was not captured whole (capture failed to start,
/// or the kernel dropped packets): its wire snapshot is not compared. None when it was captured,
/// or when this machine cannot capture at all (then the capability says why).
fn wire_lost(case: &str, wire: &Wire, cfg: &RunConfig) -> Option<String> {
    match wire {
        Wire::NotCaptured { reason } if cfg.capture.is_ok() => Some(format!(
            "{case}: capture is available, yet the wire was not compared: {reason}"
        )),
        _ => None,
    }
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

// --- the promises above, held ---------------------------------------------------------------------

/// A scratch repository root holding, as `to`, the committed snapshots of `from` for `cases`.
fn root_with_release(test: &str, from: &str, to: &str, cases: &[&str]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("sc-conform-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (src, dst) = (
        suite::snapshot::platform_dir(&repo_root(), from),
        suite::snapshot::platform_dir(&root, to),
    );
    for case in cases {
        let (obs, wire) = suite::snapshot::case_paths(&src, case);
        let (obs_to, wire_to) = suite::snapshot::case_paths(&dst, case);
        std::fs::create_dir_all(obs_to.parent().unwrap()).unwrap();
        std::fs::copy(&obs, &obs_to).unwrap();
        if wire.is_file() {
            std::fs::copy(&wire, &wire_to).unwrap();
        }
    }
    root
}

/// The committed observation and wire of a case, as a run renders them.
fn committed(platform: &str, case: &str) -> (String, Option<String>) {
    let dir = suite::snapshot::platform_dir(&repo_root(), platform);
    let (obs, wire) = suite::snapshot::case_paths(&dir, case);
    let read = |p: &Path| suite::snapshot::read_body(p).unwrap();
    (read(&obs).expect("committed"), read(&wire))
}

#[test]
fn a_platform_without_snapshots_is_compared_with_the_nearest_release_of_its_stack() {
    const CASE: &str = "ports/capacity_10k_idle";
    let root = root_with_release("nearest", "linux-6.18", "linux-6.0", &[CASE]);
    // linux-6.19 has no folder there: linux-6.0 is the nearest release of its stack.
    let base = Baseline::choose(&root, "linux-6.19", None);
    assert!(base.is_fallback() && base.compared == "linux-6.0");
    let (obs, wire) = committed("linux-6.18", CASE);
    assert!(wire.is_some(), "{CASE} has a committed wire");
    let agree = |n: usize| Nearest::Compared {
        release: "linux-6.0".into(),
        compared: n,
        differences: vec![],
        unrecorded: vec![],
    };
    let same = compare_with_nearest(&base, CASE, &obs, wire.as_deref()).unwrap();
    assert_eq!(same, agree(2));
    // The comparison is conform's agreement rule: what this run cannot measure agrees...
    let measured = "TCP slab caches): 4 KiB to 8 KiB";
    assert!(obs.contains(measured));
    let rootless = obs.replace(measured, "TCP slab caches): not visible (only real root)");
    assert_eq!(
        compare_with_nearest(&base, CASE, &rootless, None).unwrap(),
        agree(1)
    );
    // ...and any other difference is found, shown with its file and its diff.
    let changed = obs.replace(measured, "TCP slab caches): 8 KiB to 16 KiB");
    let Nearest::Compared { differences, .. } =
        compare_with_nearest(&base, CASE, &changed, wire.as_deref()).unwrap()
    else {
        panic!("compared");
    };
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert!(differences[0].contains("linux-6.0/ports/capacity_10k_idle.snap"));
    assert!(
        differences[0].contains("8 KiB to 16 KiB"),
        "{}",
        differences[0]
    );
    // A case that release never recorded is named, not counted as compared.
    let other = compare_with_nearest(&base, "close/orderly_idle", &obs, None).unwrap();
    assert!(
        matches!(&other, Nearest::Compared { compared: 0, unrecorded, .. }
            if unrecorded.len() == 1 && unrecorded[0].ends_with("orderly_idle.snap")),
        "{other:?}"
    );
    // A stack with no recorded release at all says so.
    let freebsd = Baseline::choose(&root, "freebsd-14.3", None);
    assert_eq!(
        compare_with_nearest(&freebsd, CASE, &obs, None).unwrap(),
        Nearest::NoRelease {
            platform: "freebsd-14.3".into()
        }
    );
    assert!(other.describe("x/y").contains("not recorded there"));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_real_run_on_a_release_without_snapshots_is_compared_with_the_nearest() {
    const CASE: &str = "close/orderly_idle";
    let case = suite::catalog::find(CASE).unwrap();
    if let Some(why) = suite::select::unmet_needs(&case, config()) {
        assert!(
            skip_failure(&case, &required(), config()).is_none(),
            "{why}"
        );
        return note(&format!("skipped the real run of {CASE}: {why}"));
    }
    let run = runner::run_case(&case, config());
    assert!(run.error.is_none(), "{:?}", run.error);
    // The host's own release stands in for the nearest one (the linux-6.18 files elsewhere).
    let own = platforms::platform_id();
    let from = if suite::snapshot::platform_dir(&repo_root(), own).is_dir() {
        own
    } else {
        "linux-6.18"
    };
    let stack = platforms::id::stack_of(own).unwrap_or("linux");
    let root = root_with_release("real", from, &format!("{stack}-0.1"), &[CASE]);
    let base = Baseline::choose(&root, &format!("{stack}-999"), None);
    let wire = run.wire.render(CASE);
    let found = compare_with_nearest(&base, CASE, &run.observation.render(), wire.as_deref());
    let Nearest::Compared {
        compared,
        differences,
        unrecorded,
        ..
    } = found.unwrap()
    else {
        panic!("a release of {stack} was recorded");
    };
    // The observation was compared; a wire that release did not capture is named instead.
    assert!(compared >= 1, "{unrecorded:?}");
    assert!(!unrecorded.iter().any(|u| u.ends_with("orderly_idle.snap")));
    if from == own {
        // This very platform recorded it: the run agrees, or `conform` would report a change.
        assert!(differences.is_empty(), "{differences:?}");
    }
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn the_requirement_is_explicit_or_every_capability_under_ci_on_linux_as_root() {
    let caps = |r: Result<Required, String>| r.unwrap().caps;
    assert_eq!(caps(required_from(None, Some("true"), true)), NEEDS);
    assert_eq!(caps(required_from(None, Some("1"), true)), NEEDS);
    assert!(caps(required_from(None, Some("true"), false)).is_empty());
    assert!(caps(required_from(None, Some("false"), true)).is_empty());
    assert!(caps(required_from(None, None, true)).is_empty());
    assert_eq!(
        caps(required_from(Some("lab, capture"), None, false)),
        ["lab", "capture"]
    );
    assert!(caps(required_from(Some(""), Some("true"), true)).is_empty());
    let e = required_from(Some("root"), None, false).unwrap_err();
    assert!(e.contains("\"root\" is not a capability"), "{e}");
}

#[test]
fn a_skip_for_a_required_capability_fails_and_names_the_requirement() {
    let case = suite::catalog::all()
        .into_iter()
        .find(|c| c.needs.iter().any(|n| n.to_string() == "lab"))
        .expect("a case needs the lab");
    let mut cfg = config().clone();
    cfg.lab = Err("no lab on this test's machine".into());
    let required = required_from(None, Some("true"), true).unwrap();
    let failure = skip_failure(&case, &required, &cfg).expect("a required capability is missing");
    assert!(failure.contains("lab is required"), "{failure}");
    assert!(
        failure.contains("no lab on this test's machine"),
        "{failure}"
    );
    assert!(failure.contains("CI on Linux as root"), "{failure}");
    // Not required: the skip is shown, not failed.
    let lenient = required_from(Some("isolation"), None, false).unwrap();
    assert_eq!(skip_failure(&case, &lenient, &cfg), None);
}

#[test]
fn a_wire_not_captured_while_capture_was_available_is_named() {
    let mut cfg = config().clone();
    let lost = Wire::NotCaptured {
        reason: "incomplete: the kernel dropped 3 captured packet(s) (capture buffer full)".into(),
    };
    cfg.capture = Ok(());
    let text = wire_lost("close/orderly_idle", &lost, &cfg).expect("named");
    assert!(text.contains("dropped 3 captured packet(s)"), "{text}");
    let captured = Wire::Captured { events: vec![] };
    assert_eq!(wire_lost("close/orderly_idle", &captured, &cfg), None);
    // Without capture at all, the capability says why; the wire is not a loss.
    cfg.capture = Err("not root".into());
    assert_eq!(wire_lost("close/orderly_idle", &lost, &cfg), None);
}
