//! `sockconform import`: bring another platform's CI results into this checkout for review.
//!
//! CI uploads one artifact per platform (`conform-<platform-id>`: `results.json` plus the pending
//! snapshots `snapshots/<platform-id>/<family>/*.snap.new` its run wrote), and a stack run on this
//! machine (gVisor, a QEMU guest) hands back the same folder. `cargo xtask import ARTIFACTS_DIR`
//! copies those pending files into `snapshots/<platform-id>/` of this checkout, byte for byte, so
//! `cargo insta review` offers them to accept or reject; `--accept` writes them as accepted `.snap`
//! files instead.
//!
//! Import only moves files a real run wrote; it never makes or edits an observation. So it refuses,
//! before writing anything:
//! - an artifact whose `results.json` names no platform id (`platforms::id::is_platform_id`), or two
//!   artifacts naming the same one (the platform comes from `results.json`, never from a folder
//!   name);
//! - a pending file outside `snapshots/<platform-id>/<family>/`, whose path or header names another
//!   platform, or whose case the run's `results.json` does not report as new, changed, unstable or
//!   failed;
//! - a pending file that is not a snapshot with a JSON body (named in the error).

mod check;

use crate::results::{self, RunResults, Status};
use crate::snapshot;
use platforms::id::{is_platform_id, stack_of, STACKS};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Why an import did not happen (or stopped).
#[derive(Debug)]
pub enum ImportError {
    /// Bad input: nothing was written (exit 2).
    Refused(String),
    /// Writing into the checkout failed part way (exit 1).
    Write(String),
}

impl ImportError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ImportError::Refused(_) => 2,
            ImportError::Write(_) => 1,
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Refused(m) | ImportError::Write(m) => f.write_str(m),
        }
    }
}

fn refuse<T>(msg: impl Into<String>) -> Result<T, ImportError> {
    Err(ImportError::Refused(msg.into()))
}

/// What was imported for one platform.
#[derive(Debug, Default)]
pub struct Imported {
    pub platform: String,
    /// The artifact folder it came from.
    pub artifact: PathBuf,
    /// Files written (pending `.snap.new`, or `.snap` with `--accept`), under the root.
    pub written: Vec<PathBuf>,
    /// Written files with no accepted snapshot yet.
    pub new: usize,
    /// Written files that differ from the accepted snapshot.
    pub changed: usize,
    /// Pending files whose body equals the accepted snapshot already: not written.
    pub unchanged: usize,
    /// With --accept, files whose body equals the accepted snapshot but whose header does not
    /// (another run's kernel, an older format): written, so the record names this run.
    pub refreshed: usize,
    /// Pending files of this platform left in the checkout that this import did not write.
    pub other_pending: usize,
}

/// One pending file of an artifact, validated and mapped into the checkout.
struct Pending {
    /// The accepted snapshot it belongs to: `<root>/snapshots/<platform>/<family>/<name>.snap`.
    accepted: PathBuf,
    /// The file as the run wrote it (header and body).
    bytes: Vec<u8>,
    /// The normalized body, for comparing with the accepted snapshot.
    body: String,
}

/// An artifact folder and what its results.json says.
struct Source {
    dir: PathBuf,
    platform: String,
    os: String,
    /// results.json's `platform_detail` (the full kernel release...), if any; shown only.
    detail: Option<String>,
    /// Case id to status.
    status: BTreeMap<String, Status>,
}

/// An artifact whose pending files were all validated and mapped into the checkout.
struct Validated {
    run: Source,
    pending: Vec<Pending>,
}

/// The flags of `cargo xtask import`: copy the pending snapshots of CI artifacts or stack runs
/// (one folder per artifact, each with a results.json, as `gh run download RUN_ID -D
/// ARTIFACTS_DIR` lays them out) into snapshots/<platform-id>/ for `cargo insta review`. The
/// platform is the id results.json names; its pending files must sit in
/// snapshots/<that id>/<family>/.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// The downloaded artifacts: one folder per artifact, each with its results.json
    #[arg(value_name = "ARTIFACTS_DIR")]
    pub artifacts: PathBuf,
    /// Write them as accepted .snap files instead of pending .snap.new files
    #[arg(long, conflicts_with = "check")]
    pub accept: bool,
    /// Write nothing: compare the artifacts' snapshots (pending or accepted) with the committed
    /// ones of their platforms and exit 1 when a committed observation differs (what CI checks
    /// of the explorer's corpus recorded on each stack)
    #[arg(long)]
    pub check: bool,
}

/// Entry point of `cargo xtask import`; returns the exit code (0 ok, 1 write failed, 2 refused).
pub fn run(opts: &Options) -> i32 {
    // Checked before the root, so a wrong path gets the message about the path.
    if let Err(e) = check_artifacts_dir(&opts.artifacts) {
        eprintln!("error: {e}");
        return e.exit_code();
    }
    let Some(root) = repo_root() else {
        eprintln!(
            "error: run this from inside the sockconform repository (no directory with snapshots/ \
             and Cargo.toml above the current one; SOCKCONFORM_ROOT overrides)"
        );
        return 2;
    };
    let mut out = std::io::stdout().lock();
    if opts.check {
        return match check::check(&opts.artifacts, &root, &mut out) {
            Ok(differs) => i32::from(differs),
            Err(e) => {
                let _ = out.flush();
                eprintln!("error: {e}");
                e.exit_code()
            }
        };
    }
    match import(&opts.artifacts, &root, opts.accept, &mut out) {
        Ok(_) => 0,
        Err(e) => {
            let _ = out.flush();
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn repo_root() -> Option<PathBuf> {
    crate::snapshot::find_repo_root()
}

fn check_artifacts_dir(dir: &Path) -> Result<(), ImportError> {
    if dir.is_dir() {
        return Ok(());
    }
    let what = if dir.exists() {
        "is not a directory"
    } else {
        "does not exist"
    };
    refuse(format!(
        "artifacts directory {} {what}; download a CI run's artifacts first: \
         gh run download RUN_ID -D {}",
        dir.display(),
        dir.display()
    ))
}

/// Import the artifacts under `artifacts` into the checkout at `root`, reporting to `out`.
/// Everything is validated before the first file is written.
pub fn import(
    artifacts: &Path,
    root: &Path,
    accept: bool,
    out: &mut dyn Write,
) -> Result<Vec<Imported>, ImportError> {
    check_artifacts_dir(artifacts)?;
    let (dirs, ignored) = find_artifacts(artifacts)?;
    // The platforms first, so a duplicate is reported as such; then every pending file.
    let mut runs: Vec<Source> = Vec::new();
    for dir in dirs {
        let run = read_results(&dir)?;
        if let Some(other) = runs.iter().find(|o| o.platform == run.platform) {
            return refuse(format!(
                "{} and {} both hold results of platform {:?}: import one run per platform",
                other.dir.display(),
                run.dir.display(),
                run.platform
            ));
        }
        runs.push(run);
    }
    let mut found = Vec::new();
    for run in runs {
        found.push(read_pending(run, root)?);
    }
    let io = |e: std::io::Error| ImportError::Write(format!("cannot write the report: {e}"));
    for (dir, pending) in &ignored {
        let note = if *pending > 0 {
            format!(", so its {pending} pending file(s) were not imported")
        } else {
            String::new()
        };
        writeln!(out, "ignored {}: no results.json{note}", dir.display()).map_err(io)?;
    }
    let mut done = Vec::new();
    for a in &found {
        let imported = write_artifact(a, root, accept)?;
        report(out, a, &imported, accept).map_err(io)?;
        done.push(imported);
    }
    let total: usize = done.iter().map(|i| i.written.len()).sum();
    if accept {
        if total > 0 {
            writeln!(
                out,
                "next: git diff --stat -- snapshots/   (read what changed, then commit)"
            )
            .map_err(io)?;
        }
    } else if total > 0 {
        writeln!(out, "next: cargo insta review").map_err(io)?;
        writeln!(
            out,
            "      (from the repository root; `cargo install cargo-insta` if you don't have it)"
        )
        .map_err(io)?;
    } else {
        writeln!(out, "nothing to review").map_err(io)?;
    }
    Ok(done)
}

fn report(out: &mut dyn Write, a: &Validated, i: &Imported, accept: bool) -> std::io::Result<()> {
    let detail = a
        .run
        .detail
        .as_deref()
        .map(|d| format!(", {d}"))
        .unwrap_or_default();
    let head = format!(
        "{} ({}{detail}, from {})",
        a.run.platform,
        a.run.os,
        a.run.dir.display()
    );
    if i.written.is_empty() && i.unchanged == 0 {
        writeln!(
            out,
            "{head}: nothing pending (every case matched its snapshot or was skipped)"
        )?;
    } else {
        let verb = if accept {
            "accepted"
        } else {
            "imported for review"
        };
        let mut line = format!(
            "{head}: {verb} {} snapshot(s) into snapshots/{}/: {} new, {} changed",
            i.written.len(),
            a.run.platform,
            i.new,
            i.changed
        );
        if i.refreshed > 0 {
            line += &format!(
                ", {} with the same observation and this run's header",
                i.refreshed
            );
        }
        if i.unchanged > 0 {
            line += &format!(
                "; {} already equal to the accepted snapshot, left alone",
                i.unchanged
            );
        }
        writeln!(out, "{line}")?;
    }
    if i.other_pending > 0 {
        writeln!(
            out,
            "  note: {} other pending file(s) under snapshots/{}/ are not from this artifact (left as they are)",
            i.other_pending, a.run.platform
        )?;
    }
    Ok(())
}

/// Artifact folders with a results.json, and the folders ignored (another artifact without one,
/// or no artifact at all) with how many pending files each holds.
type Found = (Vec<PathBuf>, Vec<(PathBuf, usize)>);

/// The artifacts to import, found by `results::find_artifacts`'s rule; only those holding a
/// results.json can be imported (it names their platform and the cases that wrote files).
fn find_artifacts(dir: &Path) -> Result<Found, ImportError> {
    let (artifacts, others) = results::find_artifacts(dir)
        .or_else(|e| refuse(format!("cannot read {}: {e}", dir.display())))?;
    let (found, without): (Vec<PathBuf>, Vec<PathBuf>) = artifacts
        .into_iter()
        .partition(|a| a.join(results::FILE).is_file());
    let mut ignored = Vec::new();
    for entry in without.into_iter().chain(others) {
        let mut pending = Vec::new();
        pending_files(&entry, &entry, &mut pending)?;
        ignored.push((entry, pending.len()));
    }
    ignored.sort();
    if found.is_empty() {
        return refuse(format!(
            "no artifact in {} holds a results.json (expected {}/conform-<platform-id>/results.json, as \
             `gh run download RUN_ID -D {}` lays them out)",
            dir.display(),
            dir.display(),
            dir.display()
        ));
    }
    Ok((found, ignored))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let rd = std::fs::read_dir(dir)
        .or_else(|e| refuse(format!("cannot read {}: {e}", dir.display())))?;
    let mut entries = Vec::new();
    for e in rd {
        let e = e.or_else(|e| refuse(format!("cannot read {}: {e}", dir.display())))?;
        entries.push(e.path());
    }
    entries.sort();
    Ok(entries)
}

fn is_symlink(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// Every `*.snap.new` under `dir` (recursively); a folder with its own results.json inside an
/// artifact, or a symlink, is refused (artifacts hold plain files, one run each).
fn pending_files(top: &Path, dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    for p in sorted_entries(dir)? {
        if is_symlink(&p) {
            return refuse(format!(
                "{} is a symlink; artifacts hold plain files only",
                p.display()
            ));
        }
        if p.is_dir() {
            if p.join("results.json").is_file() && top.join("results.json").is_file() {
                return refuse(format!(
                    "{} holds another results.json inside the artifact {}: one run per artifact folder",
                    p.display(),
                    top.display()
                ));
            }
            pending_files(top, &p, found)?;
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".snap.new"))
        {
            found.push(p);
        }
    }
    Ok(())
}

/// Read an artifact's results.json.
fn read_results(dir: &Path) -> Result<Source, ImportError> {
    let path = dir.join(results::FILE);
    let run = RunResults::read(&path).or_else(|e| refuse(e.to_string()))?;
    if !is_platform_id(&run.platform) {
        return refuse(format!(
            "{} names the platform {:?}, which is not a platform id (a stack, one of {}, \
             optionally followed by -release, e.g. linux-6.18)",
            path.display(),
            run.platform,
            STACKS.join(", ")
        ));
    }
    let os = if run.os.is_empty() {
        "os unknown".to_string()
    } else {
        run.os.clone()
    };
    let detail = Some(run.platform_detail.trim())
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    Ok(Source {
        dir: dir.to_path_buf(),
        platform: run.platform,
        os,
        detail,
        status: run.cases.into_iter().map(|c| (c.case, c.status)).collect(),
    })
}

/// Validate and map every pending file of one artifact.
fn read_pending(run: Source, root: &Path) -> Result<Validated, ImportError> {
    let mut files = Vec::new();
    pending_files(&run.dir, &run.dir, &mut files)?;
    let mut pending = Vec::new();
    let mut seen = BTreeSet::new();
    for source in files {
        let p = map_pending(&run, &source, root)?;
        if !seen.insert(p.accepted.clone()) {
            return refuse(format!(
                "{} holds two pending files for {}",
                run.dir.display(),
                p.accepted.display()
            ));
        }
        pending.push(p);
    }
    Ok(Validated { run, pending })
}

/// Map `source` (a pending file of the artifact of `run`) into the checkout, validating that it
/// is a snapshot of ours written for that platform by that run.
fn map_pending(run: &Source, source: &Path, root: &Path) -> Result<Pending, ImportError> {
    let (dir, platform) = (run.dir.as_path(), run.platform.as_str());
    let rel = source.strip_prefix(dir).unwrap_or(source);
    let parts: Vec<&str> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let shown = source.display();
    let misplaced = || {
        refuse(format!(
            "{shown}: a pending snapshot must sit in its family's folder under the platform's \
             (snapshots/{platform}/<family>/<case>.snap.new)"
        ))
    };
    let [prefix @ .., family, file] = parts.as_slice() else {
        return misplaced();
    };
    if let Some(other) = prefix
        .iter()
        .copied()
        .chain([*family])
        .find(|c| is_platform_id(c) && *c != platform)
    {
        return refuse(format!(
            "{shown}: its path says platform {other:?}, but {} says this run was on {platform:?}",
            dir.join("results.json").display()
        ));
    }
    if prefix != ["snapshots", platform] || is_platform_id(family) {
        return misplaced();
    }
    let stem = file.strip_suffix(".snap.new").unwrap_or(file);
    let name = stem.strip_suffix(".wire").unwrap_or(stem);
    let case = format!("{family}/{name}");
    let refresh_only = written_by_run(run, &shown.to_string(), &case)?;
    // A corrupt file (no header, or a body that is not JSON) is refused, named.
    let body = match snapshot::read_body(source) {
        Ok(Some(b)) => b,
        Ok(None) => return refuse(format!("{shown}: vanished while importing")),
        Err(e) => return refuse(format!("{e} (nothing was imported)")),
    };
    let bytes = std::fs::read(source).or_else(|e| refuse(format!("cannot read {shown}: {e}")))?;
    let text = String::from_utf8_lossy(&bytes);
    header_fits(run, &shown.to_string(), &text)?;
    let accepted = snapshot::platform_dir(root, platform)
        .join(family)
        .join(format!("{stem}.snap"));
    if refresh_only && !matches!(snapshot::read_body(&accepted), Ok(Some(b)) if b == body) {
        return refuse(format!(
            "{shown}: {} reports case {case} as passed, yet the file differs from {} \
             (the file is not from this run)",
            dir.join("results.json").display(),
            accepted.display()
        ));
    }
    Ok(Pending {
        accepted,
        bytes,
        body,
    })
}

/// Whether the run's results.json says it wrote a pending file for `case`; Ok(true) when only a
/// refreshed header can be (a passed case under `conform --bless`), refused when not at all.
fn written_by_run(run: &Source, shown: &str, case: &str) -> Result<bool, ImportError> {
    let results = run.dir.join(results::FILE);
    match run.status.get(case) {
        Some(s) if s.writes_pending() => Ok(false),
        // `conform --bless` into an artifact also writes a passed case whose accepted snapshot
        // has another run's header; its body must then be the accepted one (checked after).
        Some(Status::Passed) => Ok(true),
        Some(s) => refuse(format!(
            "{shown}: {} reports case {case} as {s}, so that run wrote no pending file for it \
             (the file is not from this run)",
            results.display()
        )),
        None => refuse(format!(
            "{shown}: case {case} is not in {} (the file is not from this run)",
            results.display()
        )),
    }
}

/// A pending file's header must name the run's OS and platform, where it names them.
fn header_fits(run: &Source, shown: &str, text: &str) -> Result<(), ImportError> {
    let platform = run.platform.as_str();
    if let Some(os) = header_value(text, "os") {
        if !os_matches(&os, platform) {
            return refuse(format!(
                "{shown}: its header says it was recorded on {os:?}, not on {platform}"
            ));
        }
    }
    if let Some(other) = header_value(text, "platform") {
        if other != platform {
            return refuse(format!(
                "{shown}: its header says platform {other:?}, but {} says this run was on {platform:?}",
                run.dir.join(results::FILE).display()
            ));
        }
    }
    Ok(())
}

/// A value recorded in a snapshot's header (`info: os: "..."`, `platform: "linux-6.18"`), if any.
fn header_value(text: &str, key: &str) -> Option<String> {
    crate::snapshot::header_value(text, key)
}

/// Whether an `os_info` OS name fits a platform id's stack. Linux has many names (its
/// distributions), and so has gVisor: inside it os_info reads the image's distribution ("Debian").
fn os_matches(os: &str, platform: &str) -> bool {
    const NAMED: [(&str, &str); 3] = [
        ("macos", "Mac OS"),
        ("windows", "Windows"),
        ("freebsd", "FreeBSD"),
    ];
    let stack = stack_of(platform).unwrap_or(platform);
    match NAMED.iter().find(|(p, _)| *p == stack) {
        Some((_, name)) => os == *name,
        None => !NAMED.iter().any(|(_, name)| os == *name),
    }
}

/// Write one validated artifact into the checkout.
fn write_artifact(a: &Validated, root: &Path, accept: bool) -> Result<Imported, ImportError> {
    let mut done = Imported {
        platform: a.run.platform.clone(),
        artifact: a.run.dir.clone(),
        ..Default::default()
    };
    let fail = |p: &Path, e: std::io::Error| {
        ImportError::Write(format!(
            "cannot write {}: {e} (files written before it stay)",
            p.display()
        ))
    };
    for p in &a.pending {
        match snapshot::read_body(&p.accepted) {
            Ok(Some(old)) if old == p.body => {
                // The same observation: only --accept writes it, and only when its header is
                // not the run's (the kernel that last confirmed it, insta's exact format).
                let same_bytes = std::fs::read(&p.accepted).is_ok_and(|b| b == p.bytes);
                if !accept || same_bytes {
                    done.unchanged += 1;
                    continue;
                }
                done.refreshed += 1;
            }
            Ok(None) => done.new += 1,
            // Differs, or the accepted one is unreadable: either way the run's file replaces it.
            _ => done.changed += 1,
        }
        let target = if accept {
            p.accepted.clone()
        } else {
            snapshot::pending_path(&p.accepted)
        };
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(parent, e))?;
        }
        // Byte for byte: the header records the machine that ran the case, not this one.
        std::fs::write(&target, &p.bytes).map_err(|e| fail(&target, e))?;
        if accept {
            // As snapshot::write_accepted does: an accepted snapshot has no pending one beside it.
            let _ = std::fs::remove_file(snapshot::pending_path(&p.accepted));
        }
        done.written
            .push(target.strip_prefix(root).unwrap_or(&target).to_path_buf());
    }
    let mut others = Vec::new();
    let platform_dir = snapshot::platform_dir(root, &a.run.platform);
    if platform_dir.is_dir() {
        // Best effort: only a count for a note.
        let _ = pending_files(&platform_dir, &platform_dir, &mut others);
    }
    done.other_pending = others
        .iter()
        .filter(|o| {
            let rel = o.strip_prefix(root).unwrap_or(o);
            !done.written.iter().any(|w| w == rel)
        })
        .count();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A temporary checkout (`root`) and artifacts folder, removed when dropped.
    struct Fixture {
        dir: PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Fixture {
        fn root(&self) -> PathBuf {
            self.dir.join("repo")
        }
        fn artifacts(&self) -> PathBuf {
            self.dir.join("artifacts")
        }
        fn put(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    fn snap(os: &str, body: &str) -> String {
        format!(
            "---\nsource: suite/tests/conform.rs\ninfo:\n  os: \"{os}\"\n  version: \"1.0\"\n  arch: \"x86_64\"\n---\n{body}\n"
        )
    }

    /// A snapshot whose header names its platform and kernel, as runs write them from now on.
    fn snap_on(os: &str, platform: &str, body: &str) -> String {
        format!(
            "---\nsource: suite/tests/conform.rs\ninfo:\n  arch: \"x86_64\"\n  kernel: \"4.4.0\"\n  os: \"{os}\"\n  platform: \"{platform}\"\n  version: \"12\"\n---\n{body}\n"
        )
    }

    fn results(platform: &str, cases: &[(&str, &str)]) -> String {
        let cases: Vec<serde_json::Value> = cases
            .iter()
            .map(|(c, s)| serde_json::json!({"case": c, "status": s}))
            .collect();
        serde_json::json!({"platform": platform, "os": format!("{platform} 1.0"), "cases": cases})
            .to_string()
    }

    /// A checkout with a Linux snapshot and a Windows one, and the artifacts of a CI run for
    /// macOS (two new files) and Windows (one changed file), plus the matrix artifact.
    fn fixture() -> Fixture {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sc-import-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let f = Fixture { dir };
        f.put("repo/Cargo.toml", "[package]\n");
        f.put(
            "repo/snapshots/linux-6.18/close/orderly_idle.snap",
            &snap("Debian", r#"{"case": "close/orderly_idle", "linux": true}"#),
        );
        f.put(
            "repo/snapshots/windows-10.0.26100/connect/closed_port.snap",
            &snap("Windows", r#"{"case": "connect/closed_port", "old": true}"#),
        );
        f.put(
            "artifacts/conform-macos-15/results.json",
            &results(
                "macos-15",
                &[
                    ("close/orderly_idle", "new"),
                    ("connect/closed_port", "passed"),
                ],
            ),
        );
        f.put(
            "artifacts/conform-macos-15/snapshots/macos-15/close/orderly_idle.snap.new",
            &snap("Mac OS", r#"{"case": "close/orderly_idle", "macos": true}"#),
        );
        f.put(
            "artifacts/conform-macos-15/snapshots/macos-15/close/orderly_idle.wire.snap.new",
            &snap("Mac OS", r#"{"wire": ["SYN"]}"#),
        );
        f.put(
            "artifacts/conform-windows-10.0.26100/results.json",
            &results("windows-10.0.26100", &[("connect/closed_port", "changed")]),
        );
        f.put(
            "artifacts/conform-windows-10.0.26100/snapshots/windows-10.0.26100/connect/closed_port.snap.new",
            &snap("Windows", r#"{"case": "connect/closed_port", "new": true}"#),
        );
        f.put(
            "artifacts/conform-matrix/conform-matrix.html",
            "<html></html>",
        );
        f
    }

    fn run(f: &Fixture, accept: bool) -> (Result<Vec<Imported>, ImportError>, String) {
        let mut out = Vec::new();
        let r = import(&f.artifacts(), &f.root(), accept, &mut out);
        (r, String::from_utf8(out).unwrap())
    }

    fn refused(f: &Fixture) -> String {
        match run(f, false).0 {
            Err(e @ ImportError::Refused(_)) => {
                assert_eq!(e.exit_code(), 2);
                e.to_string()
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Every pending or accepted file under the checkout's snapshots/, relative to it.
    fn snapshot_files(f: &Fixture) -> Vec<String> {
        let mut all = Vec::new();
        fn walk(d: &Path, all: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, all)
                } else {
                    all.push(p)
                }
            }
        }
        let mut paths = Vec::new();
        walk(&f.root().join("snapshots"), &mut paths);
        for p in paths {
            let rel = p.strip_prefix(f.root()).unwrap();
            all.push(rel.to_string_lossy().replace('\\', "/"));
        }
        all.sort();
        all
    }

    const BEFORE: [&str; 2] = [
        "snapshots/linux-6.18/close/orderly_idle.snap",
        "snapshots/windows-10.0.26100/connect/closed_port.snap",
    ];

    #[test]
    fn pending_files_land_under_their_platform_byte_for_byte() {
        let f = fixture();
        let (r, out) = run(&f, false);
        let done = r.unwrap();
        assert_eq!(
            snapshot_files(&f),
            [
                "snapshots/linux-6.18/close/orderly_idle.snap",
                "snapshots/macos-15/close/orderly_idle.snap.new",
                "snapshots/macos-15/close/orderly_idle.wire.snap.new",
                "snapshots/windows-10.0.26100/connect/closed_port.snap",
                "snapshots/windows-10.0.26100/connect/closed_port.snap.new",
            ]
        );
        let src = f
            .artifacts()
            .join("conform-macos-15/snapshots/macos-15/close/orderly_idle.snap.new");
        let dst = f
            .root()
            .join("snapshots/macos-15/close/orderly_idle.snap.new");
        assert_eq!(std::fs::read(src).unwrap(), std::fs::read(dst).unwrap());
        let mac = done.iter().find(|i| i.platform == "macos-15").unwrap();
        assert_eq!((mac.written.len(), mac.new, mac.changed), (2, 2, 0));
        let win = done
            .iter()
            .find(|i| i.platform == "windows-10.0.26100")
            .unwrap();
        assert_eq!((win.written.len(), win.new, win.changed), (1, 0, 1));
        // The accepted Windows snapshot is untouched until reviewed.
        assert!(std::fs::read_to_string(
            f.root()
                .join("snapshots/windows-10.0.26100/connect/closed_port.snap")
        )
        .unwrap()
        .contains("\"old\""));
        assert!(out.contains("macos-15 (macos-15 1.0, from "), "{out}");
        assert!(
            out.contains("2 snapshot(s) into snapshots/macos-15/: 2 new, 0 changed"),
            "{out}"
        );
        assert!(
            out.contains("1 snapshot(s) into snapshots/windows-10.0.26100/: 0 new, 1 changed"),
            "{out}"
        );
        assert!(
            out.contains("ignored ") && out.contains("conform-matrix"),
            "{out}"
        );
        assert!(out.contains("next: cargo insta review"), "{out}");
        // Importing again writes the same files again; nothing else changes.
        run(&f, false).0.unwrap();
        assert_eq!(snapshot_files(&f).len(), 5);
    }

    #[test]
    fn accept_writes_snap_files_keeping_the_runs_header() {
        let f = fixture();
        // A pending file left by an earlier import is replaced by the accepted snapshot.
        f.put(
            "repo/snapshots/windows-10.0.26100/connect/closed_port.snap.new",
            &snap("Windows", "{}"),
        );
        let (r, out) = run(&f, true);
        r.unwrap();
        assert_eq!(
            snapshot_files(&f),
            [
                "snapshots/linux-6.18/close/orderly_idle.snap",
                "snapshots/macos-15/close/orderly_idle.snap",
                "snapshots/macos-15/close/orderly_idle.wire.snap",
                "snapshots/windows-10.0.26100/connect/closed_port.snap",
            ]
        );
        let mac = f.root().join("snapshots/macos-15/close/orderly_idle.snap");
        assert_eq!(
            snapshot::read_body(&mac).unwrap().unwrap(),
            "{\"case\": \"close/orderly_idle\", \"macos\": true}\n"
        );
        assert!(std::fs::read_to_string(&mac)
            .unwrap()
            .contains("os: \"Mac OS\""));
        let win = f
            .root()
            .join("snapshots/windows-10.0.26100/connect/closed_port.snap");
        assert!(snapshot::read_body(&win)
            .unwrap()
            .unwrap()
            .contains("\"new\""));
        assert!(
            out.contains("accepted 2 snapshot(s) into snapshots/macos-15/"),
            "{out}"
        );
        assert!(!out.contains("cargo insta review"), "{out}");
    }

    #[test]
    fn the_platform_comes_from_results_json_not_the_folder_name() {
        let f = fixture();
        std::fs::rename(
            f.artifacts().join("conform-macos-15"),
            f.artifacts().join("conform-linux-6.18"),
        )
        .unwrap();
        run(&f, false).0.unwrap();
        assert!(f
            .root()
            .join("snapshots/macos-15/close/orderly_idle.snap.new")
            .is_file());
        assert!(!f
            .root()
            .join("snapshots/linux-6.18/close")
            .join("orderly_idle.snap.new")
            .exists());
    }

    #[test]
    fn a_pending_file_of_another_platform_is_refused_before_anything_is_written() {
        let f = fixture();
        f.put(
            "artifacts/conform-windows-10.0.26100/snapshots/macos-15/connect/closed_port.snap.new",
            &snap("Windows", "{}"),
        );
        let e = refused(&f);
        assert!(
            e.contains("closed_port.snap.new") && e.contains("says platform \"macos-15\""),
            "{e}"
        );
        assert_eq!(snapshot_files(&f), BEFORE);
    }

    #[test]
    fn a_header_recorded_on_another_os_is_refused() {
        let f = fixture();
        f.put(
            "artifacts/conform-macos-15/snapshots/macos-15/close/orderly_idle.snap.new",
            &snap("Windows", "{}"),
        );
        let e = refused(&f);
        assert!(
            e.contains("recorded on \"Windows\", not on macos-15"),
            "{e}"
        );
        assert_eq!(snapshot_files(&f), BEFORE);
        assert!(os_matches("Ubuntu", "linux") && !os_matches("Mac OS", "linux"));
    }

    #[test]
    fn a_gvisor_run_is_imported_under_its_id_though_its_header_names_a_distribution() {
        let f = fixture();
        let results = serde_json::json!({
            "platform": "gvisor-20221219",
            "platform_detail": "gVisor 20221219",
            "os": "Debian 12 [64-bit]",
            "cases": [{"case": "close/orderly_idle", "status": "new"}],
        });
        f.put("artifacts/gvisor/results.json", &results.to_string());
        let gv = f.put(
            "artifacts/gvisor/snapshots/gvisor-20221219/close/orderly_idle.snap.new",
            &snap_on(
                "Debian",
                "gvisor-20221219",
                r#"{"case": "close/orderly_idle", "gvisor": true}"#,
            ),
        );
        let (r, out) = run(&f, false);
        let done = r.unwrap();
        let g = done
            .iter()
            .find(|i| i.platform == "gvisor-20221219")
            .unwrap();
        assert_eq!((g.written.len(), g.new), (1, 1));
        let dst = f
            .root()
            .join("snapshots/gvisor-20221219/close/orderly_idle.snap.new");
        assert_eq!(std::fs::read(gv).unwrap(), std::fs::read(dst).unwrap());
        assert!(
            out.contains("gvisor-20221219 (Debian 12 [64-bit], gVisor 20221219, from "),
            "{out}"
        );
        assert!(
            out.contains("1 snapshot(s) into snapshots/gvisor-20221219/: 1 new"),
            "{out}"
        );
        // gVisor is Linux for the header check: a distribution fits, another OS does not.
        assert!(os_matches("Debian", "gvisor-20221219") && os_matches("Ubuntu", "gvisor"));
        assert!(!os_matches("Mac OS", "gvisor-20221219") && !os_matches("Windows", "gvisor"));
        assert!(os_matches("Mac OS", "macos-15") && !os_matches("Debian", "macos-15"));
    }

    #[test]
    fn a_pending_file_of_another_release_or_outside_its_platform_folder_is_refused() {
        // The same stack, another release: the path names another platform.
        let f = fixture();
        f.put(
            "artifacts/conform-macos-15/snapshots/macos-14/close/orderly_idle.snap.new",
            &snap("Mac OS", "{}"),
        );
        let e = refused(&f);
        assert!(e.contains("its path says platform \"macos-14\""), "{e}");
        assert_eq!(snapshot_files(&f), BEFORE);
        // A family folder that is not under snapshots/<id>/.
        let f = fixture();
        f.put(
            "artifacts/conform-macos-15/close/orderly_idle.snap.new",
            &snap("Mac OS", "{}"),
        );
        let e = refused(&f);
        assert!(e.contains("snapshots/macos-15/<family>/"), "{e}");
        // A header that names another platform.
        let f = fixture();
        f.put(
            "artifacts/conform-macos-15/snapshots/macos-15/close/orderly_idle.snap.new",
            &snap_on("Mac OS", "macos-14", "{}"),
        );
        let e = refused(&f);
        assert!(e.contains("its header says platform \"macos-14\""), "{e}");
        assert_eq!(snapshot_files(&f), BEFORE);
    }

    #[test]
    fn unknown_or_duplicate_platforms_are_refused() {
        let f = fixture();
        f.put(
            "artifacts/conform-windows-10.0.26100/results.json",
            &results("darwin", &[]),
        );
        let e = refused(&f);
        assert!(
            e.contains("\"darwin\"") && e.contains("results.json"),
            "{e}"
        );
        for bad in ["linux-", "solaris-11", "linux 6.18"] {
            let f = fixture();
            f.put(
                "artifacts/conform-windows-10.0.26100/results.json",
                &results(bad, &[]),
            );
            assert!(refused(&f).contains("not a platform id"), "{bad}");
        }
        // Two releases of one stack are two platforms; the legacy bare stack name is one too.
        let f = fixture();
        f.put(
            "artifacts/conform-linux/results.json",
            &results("linux", &[]),
        );
        run(&f, false).0.unwrap();

        let f = fixture();
        f.put(
            "artifacts/conform-windows-10.0.26100/results.json",
            &results("macos-15", &[("connect/closed_port", "changed")]),
        );
        let e = refused(&f);
        assert!(
            e.contains("conform-macos-15")
                && e.contains("conform-windows-10.0.26100")
                && e.contains("\"macos-15\""),
            "{e}"
        );
        assert_eq!(snapshot_files(&f), BEFORE);
    }

    #[test]
    fn a_pending_file_the_run_did_not_write_is_refused() {
        let f = fixture();
        f.put(
            "artifacts/conform-macos-15/snapshots/macos-15/connect/closed_port.snap.new",
            &snap("Mac OS", "{}"),
        );
        let e = refused(&f);
        assert!(e.contains("as passed"), "{e}");
        let f = fixture();
        f.put(
            "artifacts/conform-macos-15/snapshots/macos-15/close/made_up.snap.new",
            &snap("Mac OS", "{}"),
        );
        assert!(refused(&f).contains("close/made_up is not in"));
        let f = fixture();
        f.put(
            "artifacts/conform-macos-15/orderly_idle.snap.new",
            &snap("Mac OS", "{}"),
        );
        assert!(refused(&f).contains("family's folder"));
    }

    #[test]
    fn a_corrupt_pending_file_is_refused_naming_it() {
        let f = fixture();
        let bad = f.put(
            "artifacts/conform-windows-10.0.26100/snapshots/windows-10.0.26100/connect/closed_port.snap.new",
            &snap("Windows", "{ \"truncated\": "),
        );
        let e = refused(&f);
        assert!(
            e.contains(&bad.display().to_string()) && e.contains("corrupt"),
            "{e}"
        );
        // Not even the valid macOS files were written.
        assert_eq!(snapshot_files(&f), BEFORE);

        let f = fixture();
        f.put(
            "artifacts/conform-macos-15/snapshots/macos-15/close/orderly_idle.snap.new",
            "no header at all",
        );
        assert!(refused(&f).contains("orderly_idle.snap.new"));
        let f = fixture();
        f.put("artifacts/conform-macos-15/results.json", "{ nope");
        assert!(refused(&f).contains("results.json is not valid JSON"));
    }

    #[test]
    fn a_single_artifact_folder_and_a_pending_file_equal_to_the_snapshot() {
        let f = fixture();
        // The Windows run's file equals what is accepted already: nothing to review.
        f.put(
            "repo/snapshots/windows-10.0.26100/connect/closed_port.snap",
            &snap("Windows", r#"{"case": "connect/closed_port", "new": true}"#),
        );
        let mut out = Vec::new();
        let done = import(
            &f.artifacts().join("conform-windows-10.0.26100"),
            &f.root(),
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].written.len(), done[0].unchanged), (0, 1));
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("nothing to review"));
    }

    #[test]
    fn accept_refreshes_the_header_of_an_unchanged_observation() {
        let f = fixture();
        let accepted = "repo/snapshots/windows-10.0.26100/connect/closed_port.snap";
        let old = snap("Windows", r#"{"case": "connect/closed_port", "new": true}"#)
            .replace("version: \"1.0\"", "version: \"0.9\"");
        f.put(accepted, &old);
        let artifact = f.artifacts().join("conform-windows-10.0.26100");
        let mut out = Vec::new();
        let done = import(&artifact, &f.root(), false, &mut out).unwrap();
        assert_eq!(
            (done[0].written.len(), done[0].unchanged),
            (0, 1),
            "review: left alone"
        );
        let done = import(&artifact, &f.root(), true, &mut out).unwrap();
        assert_eq!((done[0].written.len(), done[0].refreshed), (1, 1));
        let now = std::fs::read_to_string(f.dir.join(accepted)).unwrap();
        assert!(now.contains("1.0") && now != old, "{now}");
        // Once refreshed, nothing more to write.
        let done = import(&artifact, &f.root(), true, &mut out).unwrap();
        assert_eq!((done[0].written.len(), done[0].unchanged), (0, 1));
    }

    #[test]
    fn missing_folders_exit_2() {
        let opts = |p: &str| Options {
            artifacts: PathBuf::from(p),
            accept: false,
            check: false,
        };
        assert_eq!(super::run(&opts("/nonexistent/sockconform-artifacts")), 2);
        let f = fixture();
        std::fs::create_dir_all(f.dir.join("empty")).unwrap();
        let mut out = Vec::new();
        let e = import(&f.dir.join("empty"), &f.root(), false, &mut out).unwrap_err();
        assert!(e.to_string().contains("no artifact in"), "{e}");
        let e = import(&f.dir.join("nope"), &f.root(), false, &mut out).unwrap_err();
        assert!(e.to_string().contains("gh run download RUN_ID -D"), "{e}");
    }
}
