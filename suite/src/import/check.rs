//! `import --check ARTIFACTS_DIR`: compare what the artifacts observed with the committed
//! snapshots of their platforms, without writing anything; a committed observation that the run
//! observed differently (by `observe::agrees`, the rule `conform` uses) fails. CI runs it on the
//! explorer's corpus recorded on each stack (`explore --record --artifact DIR`).
//!
//! What cannot be compared is listed, never failed: a snapshot the checkout does not hold (a
//! script that raced when the corpus was recorded, a platform not committed yet), and, in an
//! artifact without results.json (a recorded corpus holds every script that was stable on this
//! run), a committed snapshot the run did not write (the script raced on this run).

use super::{refuse, sorted_entries, ImportError};
use crate::results;
use crate::snapshot;
use platforms::id::is_platform_id;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One platform folder of one artifact, compared.
#[derive(Debug, Default)]
pub struct Checked {
    pub platform: String,
    pub agree: usize,
    /// Committed snapshots the run observed differently, with the difference.
    pub differ: Vec<(PathBuf, String)>,
    /// The artifact's snapshots with no committed counterpart.
    pub not_committed: Vec<String>,
    /// Committed snapshots of the artifact's families that the run did not write.
    pub not_in_run: Vec<String>,
}

/// Compare every artifact under `artifacts` with the snapshots committed under `root`; report to
/// `out`. Ok(true) when something committed differs.
pub fn check(artifacts: &Path, root: &Path, out: &mut dyn Write) -> Result<bool, ImportError> {
    let (found, _) = results::find_artifacts(artifacts)
        .or_else(|e| refuse(format!("cannot read {}: {e}", artifacts.display())))?;
    if found.is_empty() {
        return refuse(format!(
            "no artifact in {} (folders holding results.json or snapshots/)",
            artifacts.display()
        ));
    }
    let io = |e: std::io::Error| ImportError::Write(format!("cannot write the report: {e}"));
    let mut differs = false;
    for dir in found {
        let complete = !dir.join(results::FILE).is_file();
        for p in platform_dirs(&dir)? {
            let c = check_platform(&p, root, complete)?;
            differs |= !c.differ.is_empty();
            report(out, &dir, &c).map_err(io)?;
        }
    }
    Ok(differs)
}

/// The `snapshots/<platform-id>/` folders of an artifact.
fn platform_dirs(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let snaps = dir.join("snapshots");
    if !snaps.is_dir() {
        return Ok(Vec::new());
    }
    Ok(sorted_entries(&snaps)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_platform_id)
        })
        .collect())
}

/// Compare one platform folder of an artifact; `complete` when the run wrote every snapshot it
/// observed stably (so a committed one it lacks is worth listing).
fn check_platform(dir: &Path, root: &Path, complete: bool) -> Result<Checked, ImportError> {
    let platform = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let committed_dir = snapshot::platform_dir(root, &platform);
    let mut c = Checked {
        platform,
        ..Default::default()
    };
    for family in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let fam = family.file_name().unwrap_or_default().to_owned();
        let mut seen = Vec::new();
        for file in sorted_entries(&family)? {
            let name = file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let Some(stem) = name
                .strip_suffix(".snap.new")
                .or(name.strip_suffix(".snap"))
            else {
                continue;
            };
            let committed = committed_dir.join(&fam).join(format!("{stem}.snap"));
            seen.push(committed.clone());
            compare_file(&mut c, &file, &committed)?;
        }
        if complete {
            for committed in sorted_entries(&committed_dir.join(&fam)).unwrap_or_default() {
                if committed.extension().is_some_and(|x| x == "snap") && !seen.contains(&committed)
                {
                    c.not_in_run.push(shown(&committed, root));
                }
            }
        }
    }
    Ok(c)
}

fn compare_file(c: &mut Checked, file: &Path, committed: &Path) -> Result<(), ImportError> {
    let read = |p: &Path| snapshot::read_body(p).or_else(|e| refuse(e.to_string()));
    let run = read(file)?.unwrap_or_default();
    match read(committed)? {
        None => c.not_committed.push(file.display().to_string()),
        Some(stored) if crate::observe::agrees(&stored, &run) => c.agree += 1,
        Some(stored) => c
            .differ
            .push((committed.to_path_buf(), snapshot::diff(&stored, &run))),
    }
    Ok(())
}

fn shown(p: &Path, root: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn report(out: &mut dyn Write, dir: &Path, c: &Checked) -> std::io::Result<()> {
    writeln!(
        out,
        "{} ({}): {} agree with the committed snapshots, {} differ, {} not committed, {} committed not in this run",
        c.platform,
        dir.display(),
        c.agree,
        c.differ.len(),
        c.not_committed.len(),
        c.not_in_run.len()
    )?;
    for (path, diff) in &c.differ {
        writeln!(out, "  differs: {}\n{diff}", path.display())?;
    }
    for p in &c.not_committed {
        writeln!(out, "  not committed (not compared): {p}")?;
    }
    for p in &c.not_in_run {
        writeln!(
            out,
            "  not in this run (it differed between its two runs, or failed): {p}"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(body: &str) -> String {
        format!("---\nsource: suite/tests/conform.rs\ninfo:\n  os: Debian\n---\n{body}\n")
    }

    fn put(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_committed_observation_seen_differently_fails_and_the_rest_is_listed() {
        let dir = std::env::temp_dir().join(format!("sc-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (root, art) = (dir.join("repo"), dir.join("corpus"));
        let committed = root.join("snapshots/linux-6.18/explore");
        put(
            &committed.join("seed1_00.snap"),
            &snap(r#"{"steps": ["client: close -> ok"]}"#),
        );
        put(
            &committed.join("seed1_01.snap"),
            &snap(r#"{"steps": ["a"]}"#),
        );
        put(
            &committed.join("seed1_02.snap"),
            &snap(r#"{"steps": ["raced here"]}"#),
        );
        let ran = art.join("host/snapshots/linux-6.18/explore");
        put(
            &ran.join("seed1_00.snap"),
            &snap(r#"{"steps": ["client: close -> ok"]}"#),
        );
        put(&ran.join("seed1_01.snap"), &snap(r#"{"steps": ["b"]}"#));
        put(&ran.join("seed1_03.snap"), &snap(r#"{"steps": ["new"]}"#));
        let mut out = Vec::new();
        assert!(check(&art, &root, &mut out).unwrap(), "seed1_01 differs");
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("linux-6.18 (") && out.contains(": 1 agree with the committed snapshots, 1 differ, 1 not committed, 1 committed not in this run"),
            "{out}"
        );
        assert!(
            out.contains("differs: ") && out.contains("seed1_01.snap"),
            "{out}"
        );
        assert!(
            out.contains("not in this run") && out.contains("seed1_02.snap"),
            "{out}"
        );
        // Agreeing once the difference is gone.
        put(&ran.join("seed1_01.snap"), &snap(r#"{"steps": ["a"]}"#));
        assert!(!check(&art, &root, &mut Vec::new()).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
