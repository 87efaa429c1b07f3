//! `conform`'s promises, held by running the real `sockconform` binary against a temporary root
//! (SOCKCONFORM_ROOT) that holds a copy of a few committed snapshots, changed or moved as each
//! test needs: a changed observation is reported with its diff and exits 1, a case with no
//! snapshot is new and exits 0, `--bless` records it, and a platform with no snapshots of its own
//! is compared with the nearest release of its stack and not failed.
//!
//! The case is `close/orderly_idle` over loopback: cheap, and stable on every kernel we record.
//! Where this machine cannot run it (no isolation), the run skips it: the test then checks the
//! exit code a skip must give, says why it could not check more, and passes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const CASE: &str = "close/orderly_idle";

/// A temporary repository root, removed when dropped.
struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Root {
    fn new() -> Root {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sc-conform-cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("snapshots")).unwrap();
        Root(dir)
    }

    /// Copy the committed snapshots of CASE (observation and wire) into `snapshots/<platform>/`.
    fn copy_case(&self, platform: &str) -> PathBuf {
        let from = committed_dir().join("close");
        let to = self.0.join("snapshots").join(platform).join("close");
        std::fs::create_dir_all(&to).unwrap();
        for f in ["orderly_idle.snap", "orderly_idle.wire.snap"] {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
        to.join("orderly_idle.snap")
    }

    fn conform(&self, extra: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_sockconform"))
            .args(["conform", "--filter", CASE])
            .args(extra)
            .env("SOCKCONFORM_ROOT", &self.0)
            .current_dir(&self.0)
            .output()
            .expect("the sockconform binary runs");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The case's row in the summary table.
    fn row(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| l.starts_with(CASE))
            .unwrap_or_else(|| panic!("no summary row for {CASE}:\n{self}"))
    }

    /// Whether the run skipped the case (this machine cannot run it); the reason is printed, and
    /// a skip must exit 0 whatever the snapshots hold.
    fn skipped(&self) -> bool {
        if !self.row().contains("skipped") {
            return false;
        }
        eprintln!(
            "{CASE} cannot run here, only its exit code is checked: {}",
            self.row()
        );
        assert_eq!(self.code, Some(0), "{self}");
        true
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The committed snapshot folder this machine is compared with (its own, else the nearest).
fn committed_dir() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let recorded = suite::snapshot::recorded_platforms(repo);
    let refs: Vec<&str> = recorded.iter().map(String::as_str).collect();
    let id = platforms::platform_id();
    let platform = platforms::id::nearest(id, &refs).unwrap_or(id);
    suite::snapshot::platform_dir(repo, platform)
}

#[test]
fn a_changed_snapshot_is_reported_with_its_diff_and_exits_1() {
    let root = Root::new();
    let snap = root.copy_case(platforms::platform_id());
    let text = std::fs::read_to_string(&snap).unwrap();
    let changed = text.replace("server: read(100) -> eof", "server: read(100) -> ok(5)");
    assert_ne!(
        text, changed,
        "the committed snapshot still holds the line this test changes"
    );
    std::fs::write(&snap, &changed).unwrap();
    let run = root.conform(&[]);
    if run.skipped() {
        return;
    }
    assert!(run.row().ends_with("changed"), "{run}");
    assert!(
        run.stdout.contains("-    \"server: read(100) -> ok(5)\""),
        "the diff: {run}"
    );
    assert!(
        run.stdout.contains("+    \"server: read(100) -> eof\""),
        "the diff: {run}"
    );
    assert_eq!(run.code, Some(1), "{run}");
    // The committed file is left as it was; the run's observation waits beside it for review.
    assert_eq!(std::fs::read_to_string(&snap).unwrap(), changed);
    assert!(snap.with_extension("snap.new").is_file(), "{run}");
}

#[test]
fn an_unchanged_snapshot_passes_and_exits_0() {
    let root = Root::new();
    root.copy_case(platforms::platform_id());
    let run = root.conform(&[]);
    if run.skipped() {
        return;
    }
    assert!(run.row().ends_with("passed"), "{run}");
    assert!(run.stdout.contains("1 passed, 0 changed"), "{run}");
    // What was not compared is counted in one line, for CI's log.
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("skipped 0; wire not compared for ")),
        "{run}"
    );
    assert_eq!(run.code, Some(0), "{run}");
}

#[test]
fn a_case_without_a_snapshot_is_new_exits_0_and_bless_records_it() {
    let root = Root::new();
    let run = root.conform(&[]);
    if run.skipped() {
        return;
    }
    assert!(run.row().ends_with("new"), "{run}");
    assert_eq!(run.code, Some(0), "{run}");
    let dir = root
        .0
        .join("snapshots")
        .join(platforms::platform_id())
        .join("close");
    assert!(
        dir.join("orderly_idle.snap.new").is_file(),
        "a pending file: {run}"
    );
    assert!(!dir.join("orderly_idle.snap").exists(), "{run}");

    let run = root.conform(&["--bless"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        dir.join("orderly_idle.snap").is_file(),
        "--bless writes: {run}"
    );
    assert!(!dir.join("orderly_idle.snap.new").exists(), "{run}");

    let run = root.conform(&[]);
    assert!(
        run.row().ends_with("passed"),
        "the blessed snapshot holds: {run}"
    );
    assert_eq!(run.code, Some(0), "{run}");
}

#[test]
fn a_platform_without_snapshots_is_compared_with_the_nearest_release_and_passes() {
    let root = Root::new();
    let id = platforms::platform_id();
    let stack = platforms::id::stack_of(id).expect("this machine's id names its stack");
    // Another release of the same stack, as a new kernel on a CI runner would find it.
    let other = format!("{stack}-0.1");
    let snap = root.copy_case(&other);
    // Even a difference from that release is shown, not failed.
    let text = std::fs::read_to_string(&snap).unwrap();
    std::fs::write(
        &snap,
        text.replace("server: read(100) -> eof", "server: read(100) -> ok(5)"),
    )
    .unwrap();
    let run = root.conform(&[]);
    if run.skipped() {
        return;
    }
    assert!(
        run.stdout.contains(&format!(
            "no snapshots of {id} yet: comparing with the nearest recorded platform, snapshots/{other}/"
        )),
        "{run}"
    );
    assert!(run.row().ends_with("new"), "{run}");
    assert!(
        run.stdout.contains(&format!("(of {other})")),
        "the difference is shown: {run}"
    );
    assert!(
        run.stdout
            .contains(&format!("1 case(s) differ from {other}")),
        "{run}"
    );
    assert_eq!(run.code, Some(0), "{run}");
    // Nothing is written into the other release's folder.
    assert!(!snap.with_extension("snap.new").exists(), "{run}");
}

#[test]
fn a_knob_not_implemented_here_skips_the_case_where_it_stops_and_exits_0() {
    // The client's connect fails as a knob this backend does not implement (the agent's test
    // variable, through the same marker error the Windows and FreeBSD backends return). Were the
    // case run on, the server's accept would wait for a connection that never comes and fail the
    // case at the step deadline; stopped there, it is skipped with the reason, and nothing of it is
    // compared or written although a changed snapshot waits.
    let root = Root::new();
    let snap = root.copy_case(platforms::platform_id());
    let text = std::fs::read_to_string(&snap).unwrap();
    std::fs::write(
        &snap,
        text.replace("client: connect -> ok", "client: connect -> eof"),
    )
    .unwrap();
    let json = root.0.join("results.json");
    let out = Command::new(env!("CARGO_BIN_EXE_sockconform"))
        .args(["conform", "--filter", CASE, "--json"])
        .arg(&json)
        .env("SOCKCONFORM_ROOT", &root.0)
        .env("SOCKCONFORM_TEST_AGENT_NOT_IMPLEMENTED", "connect")
        .env("SOCKCONFORM_STEP_DEADLINE_MS", "2000")
        .current_dir(&root.0)
        .output()
        .expect("the sockconform binary runs");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if run.row().contains("skipped: needs ") {
        eprintln!("{CASE} cannot run on this machine at all: {}", run.row());
        return;
    }
    let reason = format!(
        "not implemented on {}: connect (SOCKCONFORM_TEST_AGENT_NOT_IMPLEMENTED)",
        std::env::consts::OS
    );
    assert!(run.row().ends_with(&format!("skipped: {reason}")), "{run}");
    assert_eq!(run.code, Some(0), "a skip is no failure: {run}");
    let results: suite::results::RunResults =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = &results.cases[0];
    assert_eq!(r.status, suite::results::Status::Skipped, "{run}");
    assert_eq!(r.skip_reason.as_deref(), Some(reason.as_str()), "{run}");
    assert!(r.error.is_none() && r.observation.is_none(), "{run}");
    assert!(!snap.with_extension("snap.new").exists(), "{run}");
}
