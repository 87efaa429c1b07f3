//! `cargo xtask diff`: the cross-platform matrix built from fixture snapshot sets
//! (suite/tests/fixtures/diff/), in all three formats, through the library and the CLI.

use platforms::id::{compare_releases, release_of, stack_of};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use suite::diff::claims::Verdict;
use suite::diff::load::{Cell, PlatformData, Seen};
use suite::diff::matrix::{self, Matrix};
use suite::diff::{self, markdown, Format, Options};
use suite::observe::{Observation, Wire};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("suite/tests/fixtures/diff")
}

/// A scratch directory, unique per test, emptied on creation.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sc-diff-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[derive(serde::Deserialize)]
struct FixtureCase {
    steps: Vec<String>,
    #[serde(default)]
    timing: Vec<String>,
    #[serde(default)]
    wire: Option<Vec<String>>,
}

/// Write `observations.json` as insta snapshot files under `root/snapshots/<platform-id>/`, with
/// `ext` appended to each file name ("" for accepted snapshots, ".new" for pending ones).
fn write_snapshots(root: &Path, platforms: &[&str], ext: &str) {
    let text = std::fs::read_to_string(fixtures().join("observations.json")).unwrap();
    let all: BTreeMap<String, BTreeMap<String, FixtureCase>> = serde_json::from_str(&text).unwrap();
    for (os, cases) in all {
        if !platforms.contains(&os.as_str()) {
            continue;
        }
        let dir = suite::snapshot::platform_dir(root, &os);
        for (id, c) in cases {
            let case = suite::catalog::find(&id).expect("fixture cases are catalog cases");
            let obs = Observation {
                case: id.clone(),
                intent: case.intent.to_string(),
                steps: c.steps,
                timing: c.timing,
            };
            let (obs_path, wire_path) = suite::snapshot::case_paths(&dir, &id);
            let with = |p: PathBuf| PathBuf::from(format!("{}{ext}", p.display()));
            write_file(&with(obs_path), &os, &obs.render());
            if let Some(events) = c.wire {
                let body = Wire::Captured { events }.render(&id).unwrap();
                write_file(&with(wire_path), &os, &body);
            }
        }
    }
}

/// A file in insta's format (header, then the body). Linux files name their platform and kernel in
/// the header, as runs do from now on; the others do not (their absence is tolerated).
fn write_file(path: &Path, platform: &str, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let extra = match platform.strip_prefix("linux-") {
        Some(r) => format!("  kernel: \"{r}.44-fixture\"\n  platform: \"{platform}\"\n"),
        None => String::new(),
    };
    let text = format!(
        "---\nsource: {}\ninfo:\n{extra}  os: fixture\n---\n{body}",
        suite::snapshot::ASSERTION_SOURCE
    );
    std::fs::write(path, text).unwrap();
}

const LINUX: &str = "linux-6.18";
const MACOS: &str = "macos-15";
const WINDOWS: &str = "windows-10.0.26100";

/// A repository root holding the fixture snapshots of linux-6.18, macos-15 and windows-10.0.26100.
fn fixture_root(name: &str) -> PathBuf {
    let root = scratch(name);
    write_snapshots(&root, &[LINUX, MACOS, WINDOWS], "");
    root
}

/// Copy a platform's snapshot folder to another platform id (the same observations under another
/// release: enough to test columns and claims, which never look inside).
fn copy_platform(root: &Path, from: &str, to: &str) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let dst = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy(&p, &dst);
            } else {
                std::fs::copy(&p, &dst).unwrap();
            }
        }
    }
    copy(
        &root.join("snapshots").join(from),
        &root.join("snapshots").join(to),
    );
}

fn names(m: &Matrix) -> Vec<&str> {
    m.columns.iter().map(|c| c.name.as_str()).collect()
}

fn options(root: &Path) -> Options {
    Options {
        root: Some(root.to_path_buf()),
        claims: Some(fixtures().join("claims.toml")),
        ..Default::default()
    }
}

fn fixture_matrix(name: &str) -> (Matrix, PathBuf) {
    let root = fixture_root(name);
    (diff::load_matrix(&options(&root)).unwrap(), root)
}

fn col(m: &Matrix, name: &str) -> usize {
    m.columns.iter().position(|c| c.name == name).unwrap()
}

fn row<'a>(m: &'a Matrix, case: &str) -> &'a matrix::Row {
    m.rows.iter().find(|r| r.case == case).unwrap()
}

#[test]
fn columns_are_the_platform_ids_and_a_missing_case_is_not_run_with_its_claims() {
    let (m, root) = fixture_matrix("missing");
    // gVisor and FreeBSD have no platform: one "not run" column each, named by the stack.
    assert_eq!(names(&m), [LINUX, "gvisor", MACOS, WINDOWS, "freebsd"]);
    // The catalog and the explorer's recorded corpus.
    assert_eq!(
        m.rows.len(),
        suite::catalog::all().len() + suite::explore::corpus().len()
    );

    // macos ran other cases but not this one.
    let r = row(&m, "shutdown/read_then_peer_sends");
    assert_eq!(r.cells[col(&m, MACOS)], Cell::NotRun);
    assert!(matches!(r.cells[col(&m, LINUX)], Cell::Observed(_)));
    assert!(!r.differs, "one observed platform cannot disagree");
    // The claim stays beside the empty cell and does not fill it.
    let macos_claims = &r.claims[col(&m, MACOS)];
    assert_eq!(macos_claims.len(), 1);
    assert!(matches!(macos_claims[0].verdict, Verdict::NoObservation(_)));
    // The linux claim needs the wire, which linux captured: it holds.
    assert_eq!(r.claims[col(&m, LINUX)][0].verdict, Verdict::Holds);

    // freebsd has no data at all: every cell is "not run", its claims are still shown.
    let fb = col(&m, "freebsd");
    assert!(m.rows.iter().all(|r| r.cells[fb] == Cell::NotRun));
    let r = row(&m, "close/with_unread_data");
    assert_eq!(r.claims[fb].len(), 1);
    for format in [Format::Terminal, Format::Markdown, Format::Html] {
        let text = diff::render(&m, format, false);
        assert!(text.contains("not run"), "{format:?}");
        assert!(text.contains("fixture: FIN, not RST"), "{format:?}");
    }
    // A claim for a case the catalog does not have is listed apart.
    assert_eq!(m.orphan_claims.len(), 1);
    assert_eq!(m.orphan_claims[0].case, "fixture/not_in_the_catalog");
    let md = diff::render(&m, Format::Markdown, false);
    assert!(md.contains("Claims without a case yet"));
    assert!(md.contains("fixture/not_in_the_catalog"));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn columns_are_ordered_by_stack_then_release_and_a_missing_stack_keeps_a_not_run_column() {
    let root = fixture_root("order");
    copy_platform(&root, LINUX, "linux-6.1");
    copy_platform(&root, LINUX, "linux-6.9");
    copy_platform(&root, MACOS, "gvisor-20221219");
    // Folders that are not platform ids are not platforms.
    copy_platform(&root, MACOS, "solaris-11");
    std::fs::create_dir_all(root.join("snapshots/notes")).unwrap();
    let m = diff::load_matrix(&options(&root)).unwrap();
    assert_eq!(
        names(&m),
        [
            "linux-6.1",
            "linux-6.9",
            LINUX,
            "gvisor-20221219",
            MACOS,
            WINDOWS,
            "freebsd"
        ]
    );
    let fb = col(&m, "freebsd");
    assert_eq!(m.columns[fb].origin, "no snapshots");
    assert!(m.rows.iter().all(|r| r.cells[fb] == Cell::NotRun));
    // The release detail comes from the snapshots' `kernel:` header line when there is one.
    let linux = &m.columns[col(&m, LINUX)];
    assert_eq!(linux.detail.as_deref(), Some("6.18.44-fixture"));
    assert_eq!(
        m.columns[col(&m, MACOS)].detail,
        None,
        "no kernel line: tolerated"
    );
    for format in [Format::Terminal, Format::Markdown, Format::Html] {
        let text = diff::render(&m, format, false);
        assert!(text.contains("6.18.44-fixture"), "{format:?}");
        assert!(!text.contains("solaris"), "{format:?}");
    }
    let md = diff::render(&m, Format::Markdown, false);
    assert!(
        md.contains("| linux-6.18<br><sub>6.18.44-fixture</sub> |"),
        "{md}"
    );
    let html = diff::render(&m, Format::Html, false);
    assert!(html.contains("<th>linux-6.18<div class=\"detail\">6.18.44-fixture</div></th>"));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_claim_with_a_release_range_stands_beside_the_linux_columns_in_range_only() {
    let root = fixture_root("range");
    copy_platform(&root, LINUX, "linux-6.1");
    let m = diff::load_matrix(&options(&root)).unwrap();
    let r = row(&m, "connect/closed_port");
    let texts =
        |i: usize| -> Vec<&str> { r.claims[i].iter().map(|c| c.claim.claim.as_str()).collect() };
    let (new, old) = (col(&m, LINUX), col(&m, "linux-6.1"));
    assert_eq!(texts(new), ["fixture: refused at once, from 6.5 on"]);
    assert_eq!(texts(old), ["fixture: a timeout before 6.5"]);
    assert_eq!(r.claims[new][0].verdict, Verdict::Holds);
    // Checked per column: the same observation contradicts the claim for releases before 6.5.
    assert!(matches!(r.claims[old][0].verdict, Verdict::Contradicted(_)));
    assert_eq!(r.claims[old][0].column, "linux-6.1");
    // A claim without a range stands beside every column of its stack, checked against each.
    let r = row(&m, "process_exit/killed_idle");
    assert_eq!(r.claims[new].len(), 1);
    assert_eq!(r.claims[old].len(), 1);
    assert!(m.unmatched_claims.is_empty());
    let term = diff::render(&m, Format::Terminal, false);
    assert!(
        term.contains("✗ connect/closed_port on linux-6.1: [doc] fixture: a timeout before 6.5"),
        "{term}"
    );
    assert!(term.contains("(fixture) [linux <6.5]"), "{term}");
    let md = diff::render(&m, Format::Markdown, false);
    assert!(md.contains("<sub>[doc, linux &gt;=6.5]</sub>"), "{md}");
    let _ = std::fs::remove_dir_all(&root);

    // With 6.18 only, the claim for releases before 6.5 has no column: it is listed apart.
    let (m, root) = fixture_matrix("range-unmatched");
    assert_eq!(m.unmatched_claims.len(), 1);
    assert_eq!(m.unmatched_claims[0].claim, "fixture: a timeout before 6.5");
    for format in [Format::Terminal, Format::Markdown, Format::Html] {
        let text = diff::render(&m, format, false);
        assert!(
            text.contains("Claims of releases not in the matrix"),
            "{format:?}"
        );
        assert!(
            text.contains("linux &lt;6.5") || text.contains("linux <6.5"),
            "{format:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);

    // A bare stack folder (the release unknown) shows a ranged claim without checking it.
    let root = scratch("range-bare");
    write_snapshots(&root, &[LINUX], "");
    std::fs::rename(
        root.join("snapshots").join(LINUX),
        root.join("snapshots/linux"),
    )
    .unwrap();
    let m = diff::load_matrix(&options(&root)).unwrap();
    let r = row(&m, "connect/closed_port");
    let bare = &r.claims[col(&m, "linux")];
    assert_eq!(bare.len(), 2, "{bare:?}");
    assert!(bare
        .iter()
        .all(|c| matches!(&c.verdict, Verdict::Unchecked(why) if why.contains("release of linux is unknown"))));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_gvisor_artifact_is_a_column_of_its_own_with_its_claims_and_release() {
    let root = fixture_root("gvisor");
    let mut o = options(&root);
    o.artifacts = Some(fixtures().join("artifacts"));
    let m = diff::load_matrix(&o).unwrap();
    // gVisor sits between Linux and macOS; its "not run" placeholder is gone.
    assert_eq!(
        names(&m),
        [LINUX, "gvisor-20221219", MACOS, WINDOWS, "freebsd"]
    );
    let gv = col(&m, "gvisor-20221219");
    let c = &m.columns[gv];
    assert!(c.origin.contains("conform-gvisor-20221219"), "{c:?}");
    assert_eq!(c.detail.as_deref(), Some("gVisor release-20221219.0"));
    // results.json's kernel release stands beside the OS version, in every format.
    assert_eq!(
        m.columns[col(&m, MACOS)].detail.as_deref(),
        Some("15.5, Darwin 24.5.0")
    );
    for format in [Format::Terminal, Format::Markdown, Format::Html] {
        let text = diff::render(&m, format, false);
        assert!(text.contains("Darwin 24.5.0"), "{format:?}");
    }
    let r = row(&m, "close/with_unread_data");
    let seen = r.cells[gv].seen().expect("observed in the artifact");
    assert_eq!(seen.note.as_deref(), Some("no committed snapshot yet"));
    let gclaims = &r.claims[gv];
    assert_eq!(gclaims.len(), 1);
    assert_eq!(gclaims[0].verdict, Verdict::Holds);
    // Linux claims stay beside Linux: the gVisor column has its stack's claims only.
    assert!(gclaims.iter().all(|c| c.claim.platform == "gvisor"));
    assert_eq!(
        row(&m, "process_exit/killed_idle").cells[gv],
        Cell::Skipped("needs isolation: no network namespaces inside gVisor".into())
    );
    // gVisor and Linux agree on close/with_unread_data; closed_port differs only where Windows does.
    assert!(!r.differs);
    let text = diff::render(&m, Format::Terminal, false);
    assert!(
        text.contains(
            "gvisor-20221219 (gVisor release-20221219.0): artifact conform-gvisor-20221219"
        ),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(root);

    // An artifact whose results.json names no platform id is refused, named.
    let artifacts = scratch("gvisor-bad");
    let art = artifacts.join("conform-gvisor");
    std::fs::create_dir_all(&art).unwrap();
    std::fs::write(
        art.join("results.json"),
        r#"{"platform": "runsc", "cases": []}"#,
    )
    .unwrap();
    let root = fixture_root("gvisor-bad-root");
    let mut o = options(&root);
    o.artifacts = Some(artifacts.clone());
    let e = diff::load_matrix(&o).unwrap_err().to_string();
    assert!(
        e.contains("results.json") && e.contains("not a platform id"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(root);
    let _ = std::fs::remove_dir_all(artifacts);
}

#[test]
fn an_artifact_replaces_its_platform_and_shows_skipped_cases_with_the_reason() {
    let root = fixture_root("artifact");
    let mut o = options(&root);
    o.artifacts = Some(fixtures().join("artifacts"));
    let m = diff::load_matrix(&o).unwrap();
    let mac = col(&m, MACOS);
    assert!(
        m.columns[mac].origin.contains("conform-macos-15"),
        "{:?}",
        m.columns[mac]
    );

    let r = row(&m, "close/with_unread_data");
    assert_eq!(
        r.cells[mac],
        Cell::Skipped("needs capture: no packet capture backend on macos yet".into())
    );
    let (text, _) = diff::cell_text(&r.cells[mac]);
    assert_eq!(
        text,
        "skipped: needs capture: no packet capture backend on macos yet"
    );
    // A skipped platform does not take part in the comparison: linux and windows agree.
    assert!(!r.differs);

    // The artifact's observation overrides the committed macos snapshot.
    let r = row(&m, "process_exit/killed_idle");
    let seen = r.cells[mac].seen().unwrap();
    assert!(seen
        .observation
        .steps
        .last()
        .unwrap()
        .contains("ECONNRESET"));
    assert_eq!(
        seen.note.as_deref(),
        Some("changed from the committed snapshot")
    );
    // Cases the artifact does not have keep the committed snapshot, marked as such.
    let r = row(&m, "connect/closed_port");
    assert_eq!(
        r.cells[mac].seen().unwrap().note.as_deref(),
        Some("committed snapshot (not in the artifact)")
    );
    for format in [Format::Terminal, Format::Markdown, Format::Html] {
        let text = diff::render(&m, format, false);
        assert!(text.contains("skipped: needs capture"), "{format:?}");
    }
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn pending_snapshots_of_an_artifact_fill_its_platform() {
    // An artifact without results.json: only pending snapshots (`.snap.new`), as `cargo xtask
    // conform` leaves them. Written here rather than kept as fixtures, so that `cargo insta review`
    // never offers them for review.
    let root = scratch("pending-root");
    write_snapshots(&root, &[LINUX], "");
    let artifacts = scratch("pending-artifacts");
    let art = artifacts.join("conform-freebsd-14.3");
    write_snapshots(&art, &[MACOS], ".new");
    // The fixture's macos snapshots, filed as freebsd's.
    std::fs::rename(
        art.join("snapshots").join(MACOS),
        art.join("snapshots/freebsd-14.3"),
    )
    .unwrap();
    let mut o = options(&root);
    o.artifacts = Some(artifacts.clone());
    let m = diff::load_matrix(&o).unwrap();
    // The artifact's platform replaces the "not run" freebsd column.
    assert_eq!(
        names(&m),
        [LINUX, "gvisor", "macos", "windows", "freebsd-14.3"]
    );
    let fb = col(&m, "freebsd-14.3");
    let r = row(&m, "process_exit/killed_idle");
    let seen = r.cells[fb].seen().expect("read from the pending snapshot");
    assert_eq!(
        seen.note.as_deref(),
        Some("pending snapshot from the artifact")
    );
    assert!(!r.differs, "linux and the pending freebsd snapshot agree");
    let _ = std::fs::remove_dir_all(root);
    let _ = std::fs::remove_dir_all(artifacts);
}

#[test]
fn a_disagreement_is_marked_with_its_aligned_steps() {
    let (m, root) = fixture_matrix("disagree");
    let r = row(&m, "process_exit/killed_idle");
    assert!(r.differs);
    let d = r.diff.as_ref().unwrap();
    let names: Vec<&str> = d
        .columns
        .iter()
        .map(|&i| m.columns[i].name.as_str())
        .collect();
    assert_eq!(names, [LINUX, MACOS, WINDOWS]);
    let steps = d.sections.iter().find(|s| s.title == "steps").unwrap();
    // Same script, so one row per step; the equal steps are not highlighted.
    assert_eq!(steps.lines.len(), 6);
    assert!(!steps.lines[0].differs);
    let last = steps.lines.last().unwrap();
    assert!(last.differs);
    assert_eq!(last.cells[0].as_deref(), Some("client: read(100) -> eof"));
    assert_eq!(
        last.cells[2].as_deref(),
        Some("client: read(100) -> error(ConnectionReset, WSAECONNRESET)")
    );
    // Only linux captured the wire, so the wire is shown but not compared.
    let wire = d.sections.iter().find(|s| s.title == "wire").unwrap();
    assert!(wire.note.is_some());
    assert!(wire.lines.iter().all(|l| !l.differs));

    // WSAECONNRESET is Windows' spelling of ECONNRESET: not a disagreement.
    assert!(!row(&m, "close/with_unread_data").differs);
    // A timing bucket alone makes a difference.
    let r = row(&m, "connect/closed_port");
    assert!(r.differs);
    let timing = r
        .diff
        .as_ref()
        .unwrap()
        .sections
        .iter()
        .find(|s| s.title == "timing")
        .unwrap();
    assert!(timing.lines[0].differs);
    assert_eq!(m.differing(), 2);

    let term = diff::render(&m, Format::Terminal, false);
    assert!(term.contains("Where the platforms disagree"));
    assert!(term.contains("≠ process_exit/killed_idle"));
    assert!(term.contains("  ≠ client: read(100) -> eof"), "{term}");
    let md = diff::render(&m, Format::Markdown, false);
    assert!(
        md.contains("<code>process_exit/killed_idle</code>: 3 line(s) differ"),
        "{md}"
    );
    assert!(md.contains(
        "**<code>client: read(100) -&gt; error(ConnectionReset, WSAECONNRESET)</code>**"
    ));
    let html = diff::render(&m, Format::Html, false);
    assert!(html.contains(
        "data-case=\"process_exit/killed_idle\" data-family=\"process_exit\" data-differs=\"1\""
    ));
    assert!(html.contains("<tr class=\"d\"><td class=\"m\">≠</td>"));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_contradicted_claim_is_flagged_beside_its_cell() {
    let (m, root) = fixture_matrix("contradiction");
    let r = row(&m, "process_exit/killed_idle");
    let win = &r.claims[col(&m, WINDOWS)][0];
    assert!(
        matches!(&win.verdict, Verdict::Contradicted(why) if why.contains("client: read(100) -> eof")),
        "{:?}",
        win.verdict
    );
    assert_eq!(r.claims[col(&m, LINUX)][0].verdict, Verdict::Holds);
    let contradicted = m.contradicted();
    assert_eq!(contradicted.len(), 1);
    assert_eq!(contradicted[0].0.case, "process_exit/killed_idle");

    let term = diff::render(&m, Format::Terminal, false);
    assert!(
        term.contains("✗ [unsourced] fixture: killed → FIN"),
        "{term}"
    );
    assert!(term.contains("CONTRADICTED: expected `client: read(100) -> eof` not observed"));
    assert!(term.contains("Claims contradicted by an observation"));
    let md = diff::render(&m, Format::Markdown, false);
    assert!(md.contains("### ✗ Claims contradicted by an observation"));
    assert!(md.contains("**✗ fixture: killed → FIN"));
    let html = diff::render(&m, Format::Html, false);
    assert!(html.contains("<li class=\"contradicted\""));
    assert!(html.contains("CONTRADICTED: expected `client: read(100) -&gt; eof` not observed"));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_corrupt_snapshot_names_the_file_and_the_cli_exits_2() {
    let root = fixture_root("corrupt");
    let bad = root.join("snapshots/windows-10.0.26100/connect/closed_port.snap");
    std::fs::write(
        &bad,
        "---\nsource: x\n---\n{ \"case\": \"connect/closed_port\", ",
    )
    .unwrap();
    let e = diff::load_matrix(&options(&root)).unwrap_err().to_string();
    assert!(
        e.contains("snapshots/windows-10.0.26100/connect/closed_port.snap")
            && e.contains("corrupt"),
        "{e}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_sockconform"))
        .args(["diff", "--root"])
        .arg(&root)
        .arg("--claims")
        .arg(fixtures().join("claims.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("snapshots/windows-10.0.26100/connect/closed_port.snap"),
        "{stderr}"
    );

    // Valid JSON that is not an observation is corrupt too.
    std::fs::write(&bad, "---\nsource: x\n---\n{\"wrong\": true}\n").unwrap();
    let e = diff::load_matrix(&options(&root)).unwrap_err().to_string();
    assert!(e.contains("closed_port.snap"), "{e}");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn the_cli_writes_each_format_and_colors_only_a_terminal() {
    let root = fixture_root("cli");
    for (format, file) in [
        ("terminal", "m.txt"),
        ("markdown", "m.md"),
        ("html", "m.html"),
    ] {
        let path = root.join(file);
        let out = Command::new(env!("CARGO_BIN_EXE_sockconform"))
            .args(["diff", "--format", format, "--root"])
            .arg(&root)
            .arg("--claims")
            .arg(fixtures().join("claims.toml"))
            .arg("--out")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("process_exit/killed_idle"));
        assert!(!text.contains('\x1b'), "{format}: no escapes in a file");
    }
    // Piped stdout is not a terminal: plain.
    let out = Command::new(env!("CARGO_BIN_EXE_sockconform"))
        .args(["diff", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'));
    // The renderer colors when asked to.
    let m = diff::load_matrix(&options(&root)).unwrap();
    assert!(diff::render(&m, Format::Terminal, true).contains("\x1b[1;31m✗"));
    let out = Command::new(env!("CARGO_BIN_EXE_sockconform"))
        .args(["diff", "--format", "pdf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(root);
}

/// Every catalog case observed on linux-6.18 and macos-15 with `steps` lines each, all different.
fn synthetic(steps: usize) -> Matrix {
    let cases = suite::catalog::all();
    let platforms: Vec<PlatformData> = [LINUX, "gvisor", MACOS, WINDOWS, "freebsd"]
        .iter()
        .enumerate()
        .map(|(p, name)| {
            let mut data = PlatformData {
                name: name.to_string(),
                origin: "synthetic".into(),
                ..Default::default()
            };
            if p == 0 || p == 2 {
                for c in &cases {
                    let lines = (0..steps)
                        .map(|i| {
                            format!(
                                "client: write({i}, MSG_NOSIGNAL) -> error(Uncategorized, E{name}{i}) {}",
                                "x".repeat(80)
                            )
                        })
                        .collect();
                    let seen = Seen {
                        observation: Observation {
                            case: c.id(),
                            intent: c.intent.into(),
                            steps: lines,
                            timing: vec![],
                        },
                        wire: None,
                        note: None,
                    };
                    data.cells.insert(c.id(), Cell::Observed(seen));
                }
            }
            data
        })
        .collect();
    let claims = suite::diff::claims::load(&fixtures().join("claims.toml")).unwrap();
    matrix::build(&cases, &platforms, &claims, Some("fixture".into()))
}

#[test]
fn markdown_stays_under_the_job_summary_limit() {
    let m = synthetic(3000);
    assert_eq!(m.differing(), m.rows.len());
    let md = markdown::render(&m);
    const { assert!(markdown::BUDGET < 1024 * 1024) };
    assert!(
        md.len() <= markdown::BUDGET,
        "{} bytes over the budget",
        md.len()
    );
    assert!(md.contains("**Truncated:**"), "the cut is said");
    // The matrix itself is whole: every case has its row.
    for r in &m.rows {
        assert!(md.contains(&format!("| `{}` |", r.case)), "{}", r.case);
    }
    // A long difference is shortened within its row, with a note.
    assert!(md.contains("more line(s) not shown here"));

    // Small input: nothing is cut.
    let (m, root) = fixture_matrix("md-small");
    let md = markdown::render(&m);
    assert!(!md.contains("Truncated"));
    let _ = std::fs::remove_dir_all(root);
}

/// Every `src=` and `href=` value of the page.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=", "href="] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let quote = rest.chars().next().unwrap_or(' ');
            let value: String = if quote == '"' || quote == '\'' {
                rest[1..].chars().take_while(|c| *c != quote).collect()
            } else {
                rest.chars()
                    .take_while(|c| !c.is_whitespace() && *c != '>')
                    .collect()
            };
            out.push(value);
        }
    }
    out
}

#[test]
fn html_is_one_self_contained_file() {
    let (m, root) = fixture_matrix("html");
    let html = diff::render(&m, Format::Html, false);
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<style>") && html.contains("<script>"));
    for l in links(&html) {
        let lower = l.to_ascii_lowercase();
        assert!(
            !(lower.starts_with("http://")
                || lower.starts_with("https://")
                || lower.starts_with("//")),
            "external asset {l}"
        );
    }
    assert!(!html.contains("<link"), "no stylesheet links");
    assert!(!html.contains("@import"));
    // The real snapshots render the same way.
    let real = diff::load_matrix(&Options {
        root: Some(Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let html = diff::render(&real, Format::Html, false);
    assert!(links(&html).iter().all(|l| l.starts_with('#')));
    let _ = std::fs::remove_dir_all(root);
}

/// The `<tr class="case ...">` tags of a page: (case, differs, hidden).
fn case_rows(dom: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    for part in dom.split("<tr ").skip(1) {
        let tag = &part[..part.find('>').unwrap_or(part.len())];
        if !tag.contains("class=\"case") {
            continue;
        }
        let attr = |name: &str| {
            let key = format!("{name}=\"");
            tag.find(&key).map(|i| {
                tag[i + key.len()..]
                    .chars()
                    .take_while(|c| *c != '"')
                    .collect::<String>()
            })
        };
        let hidden = tag
            .split_whitespace()
            .any(|a| a == "hidden" || a.starts_with("hidden="));
        out.push((
            attr("data-case").unwrap_or_default(),
            attr("data-differs").as_deref() == Some("1"),
            hidden,
        ));
    }
    out
}

fn chromium() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/chromium");
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!("chromium is missing: install chromium (apt-get install -y chromium) to run the HTML report's browser test in CI");
    }
    println!("skipped: chromium not installed");
    None
}

/// Run headless chromium with `extra` arguments and the page URL; returns its stdout.
fn run_chromium(exe: &Path, profile: &Path, extra: &[String], url: &str) -> String {
    let mut child = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

#[test]
fn html_filters_rows_from_the_url_fragment_in_a_headless_browser() {
    let Some(exe) = chromium() else { return };
    let (m, root) = fixture_matrix("browser");
    let page = root.join("report.html");
    std::fs::write(&page, diff::render(&m, Format::Html, false)).unwrap();
    let url = format!("file://{}", page.display());
    let profile = root.join("profile");

    let dom = run_chromium(
        &exe,
        &profile,
        &["--dump-dom".into()],
        &format!("{url}#differs"),
    );
    let rows = case_rows(&dom);
    assert_eq!(rows.len(), m.rows.len(), "every case row is in the DOM");
    let differing: Vec<&String> = rows.iter().filter(|r| r.1).map(|r| &r.0).collect();
    assert_eq!(
        differing,
        ["process_exit/killed_idle", "connect/closed_port"],
        "{rows:?}"
    );
    for (case, differs, hidden) in &rows {
        assert_eq!(
            *hidden, !differs,
            "{case}: hidden must be the opposite of differs"
        );
    }
    assert!(dom.contains(&format!("2 of {} cases shown", m.rows.len())));

    let dom = run_chromium(
        &exe,
        &profile,
        &["--dump-dom".into()],
        &format!("{url}#family=close"),
    );
    for (case, _, hidden) in case_rows(&dom) {
        assert_eq!(hidden, !case.starts_with("close/"), "{case}");
    }

    let png = root.join("m.png");
    run_chromium(
        &exe,
        &profile,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,900".into(),
        ],
        &url,
    );
    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        bytes.len() > 20_000,
        "a real page, not a blank: {} bytes",
        bytes.len()
    );
    let _ = std::fs::remove_dir_all(root);
}

/// The matrix of the committed snapshots with the repository's claims.
fn repository_matrix() -> Matrix {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    diff::load_matrix(&Options {
        root: Some(root.to_path_buf()),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn the_repository_claims_stand_beside_the_columns_of_their_stack_and_release() {
    let m = repository_matrix();
    assert_eq!(m.claims_origin.as_deref(), Some("suite/claims.toml"));
    // Claims of platforms without an observation never fill a cell.
    for r in &m.rows {
        for (cell, claims) in r.cells.iter().zip(&r.claims) {
            if *cell == Cell::NotRun {
                assert!(claims
                    .iter()
                    .all(|c| matches!(c.verdict, Verdict::NoObservation(_))));
            }
        }
    }
    // Every case PLATFORM-CLAIMS.md speaks to has claims for linux, macos and windows.
    for case in [
        "close/with_unread_data",
        "linger/zero_abortive_close",
        "linger/positive_nonblocking",
        "shutdown/write_half_close",
        "shutdown/write_after_own_shutdown",
        "shutdown/read_then_peer_sends",
        "process_exit/killed_idle",
        "process_exit/exit_with_open_socket",
        "process_exit/killed_with_unread_data",
        "after_close/killed_write_read_write",
        "after_close/read_twice_after_reset",
        "after_close/write_after_reset_sigpipe_suppressed",
        "connect/closed_port",
        "connect/backlog_full_not_accepting",
        "connect/reset_before_accept",
        "timeouts/read_timeout_idle",
        "time_wait/rebind_without_reuseaddr",
        "time_wait/rebind_with_reuseaddr",
    ] {
        let r = row(&m, case);
        for p in ["linux", "macos", "windows"] {
            // Every column of the stack (linux-6.18, or the "not run" macos column) shows them.
            let cols: Vec<usize> = (0..m.columns.len())
                .filter(|&i| stack_of(&m.columns[i].name) == Some(p))
                .collect();
            assert!(!cols.is_empty(), "no {p} column");
            for i in cols {
                assert!(!r.claims[i].is_empty(), "{case} has no {p} claim");
            }
        }
    }
    // gVisor claims stand beside the gVisor column (a "not run" one until a gVisor run is
    // committed), and the linear SYN timeouts of Linux 6.5+ beside every Linux column from 6.5 on.
    let gv = (0..m.columns.len())
        .find(|&i| stack_of(&m.columns[i].name) == Some("gvisor"))
        .expect("a gvisor column");
    assert!(!row(&m, "close/with_unread_data").claims[gv].is_empty());
    let linear = |c: &suite::diff::claims::Claim| {
        c.case == "host_crash/connect_syn_retries" && c.releases.as_deref() == Some(">=6.5")
    };
    for (i, c) in m.columns.iter().enumerate() {
        let Some(r) = release_of(&c.name).filter(|_| stack_of(&c.name) == Some("linux")) else {
            continue;
        };
        let shown = row(&m, "host_crash/connect_syn_retries").claims[i]
            .iter()
            .any(|k| linear(&k.claim));
        let from_6_5 = compare_releases(r, "6.5") != std::cmp::Ordering::Less;
        assert_eq!(shown, from_6_5, "{}", c.name);
    }
    // The Berkeley-derived "about 9 minutes" of the background articles is kept whether or not the
    // catalog has its case yet: beside the row if it has, in the list of claims without a case if not.
    let berkeley = |c: &suite::diff::claims::Claim| {
        c.case == "host_crash/sending_platform_default" && c.claim.contains("about 9 minutes")
    };
    let beside_rows = m.all_checked().filter(|(_, c)| berkeley(&c.claim)).count();
    let apart = m.orphan_claims.iter().filter(|c| berkeley(c)).count();
    assert_eq!(beside_rows + apart, 2, "macos and freebsd");
    let orphans: Vec<&str> = m.orphan_claims.iter().map(|c| c.case.as_str()).collect();
    assert!(orphans.contains(&"time_wait/duration"), "{orphans:?}");
}

#[test]
fn every_contradicted_claim_is_marked_known_and_every_known_contradiction_is_observed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let m = repository_matrix();
    // Every platform with committed snapshots (at least those committed when this test was
    // written) is a column with observations, so every claim of its stack is checked against it.
    let recorded = suite::snapshot::recorded_platforms(root);
    for p in ["linux-6.18", "linux-6.1", "gvisor-20221219"] {
        assert!(recorded.iter().any(|r| r == p), "{p} not in {recorded:?}");
    }
    for p in &recorded {
        let i = col(&m, p);
        let observed = m
            .rows
            .iter()
            .filter(|r| matches!(r.cells[i], Cell::Observed(_)))
            .count();
        assert!(observed > 0, "{p}: no observation in the matrix");
    }
    let contradicted = m.contradicted();
    let unknown: Vec<String> = contradicted
        .iter()
        .filter(|(_, c)| c.claim.known_contradiction.is_none())
        .map(|(r, c)| {
            format!(
                "{} on {}: {}",
                r.case,
                c.column,
                c.verdict.why().unwrap_or("")
            )
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "observations contradict claims not marked known: run `cargo xtask diff`, then either fix \
         the claim's check in suite/claims.toml (the case changed what it records) or give the \
         claim a known_contradiction that says why:\n{}",
        unknown.join("\n")
    );
    let claims = suite::diff::claims::load(&root.join("suite/claims.toml")).unwrap();
    let stale: Vec<String> = claims
        .iter()
        .filter(|c| c.known_contradiction.is_some())
        .filter(|c| !contradicted.iter().any(|(_, k)| k.claim == **c))
        .map(|c| format!("{} on {}: {}", c.case, c.scope(), c.claim))
        .collect();
    assert!(
        stale.is_empty(),
        "claims marked known_contradiction that no committed snapshot contradicts (the behavior \
         or the check changed): remove the mark or fix the check:\n{}",
        stale.join("\n")
    );
}
