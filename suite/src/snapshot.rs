//! Snapshot files in insta's format, so `cargo test` (insta's assertions) and `cargo xtask conform`
//! read and write the same files, and `cargo insta review` reviews pending ones.
//!
//! Layout: `snapshots/<os>/<family>/<name>.snap` holds the observation and
//! `snapshots/<os>/<family>/<name>.wire.snap` the wire events (compared only when captured).
//! The header (between the `---` lines) carries metadata such as the OS version; it never takes part
//! in a comparison.

use std::fmt;
use std::path::{Path, PathBuf};

/// The source file whose insta assertions own these snapshots (insta records it in the header).
pub const ASSERTION_SOURCE: &str = "suite/tests/conform.rs";

/// The repository root: SOCKCONFORM_ROOT, or the nearest directory at or above the current one
/// that holds `snapshots/` and `Cargo.toml` (cargo starts the runner from the root). None rather
/// than a guess, for callers that write into it.
pub fn find_repo_root() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SOCKCONFORM_ROOT") {
        return Some(PathBuf::from(p));
    }
    let mut dir = std::env::current_dir().ok()?;
    loop {
        if dir.join("snapshots").is_dir() && dir.join("Cargo.toml").is_file() {
            return Some(dir);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// Where the snapshots of one platform live.
pub fn platform_dir(root: &Path, os_dir: &str) -> PathBuf {
    root.join("snapshots").join(os_dir)
}

/// The two snapshot names of a case, relative to the platform directory.
pub fn case_paths(platform: &Path, case_id: &str) -> (PathBuf, PathBuf) {
    let (family, name) = case_id.split_once('/').unwrap_or(("misc", case_id));
    let dir = platform.join(family);
    (
        dir.join(format!("{name}.snap")),
        dir.join(format!("{name}.wire.snap")),
    )
}

/// A snapshot file that could not be used, with the file named.
#[derive(Debug)]
pub struct SnapshotError {
    pub path: PathBuf,
    pub why: String,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snapshot {}: {}", self.path.display(), self.why)
    }
}

/// Read the body of a snapshot: Ok(None) if it does not exist, an error naming the file if it is
/// unreadable or not a snapshot of ours.
pub fn read_body(path: &Path) -> Result<Option<String>, SnapshotError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SnapshotError {
                path: path.into(),
                why: format!("unreadable: {e}"),
            })
        }
    };
    let body = split_body(&text).ok_or_else(|| SnapshotError {
        path: path.into(),
        why: "corrupt: no insta header (a `---` block) before the body".into(),
    })?;
    // Every body we write is a JSON document; anything else was damaged by hand or by a merge.
    serde_json::from_str::<serde_json::Value>(body).map_err(|e| SnapshotError {
        path: path.into(),
        why: format!("corrupt: the body is not valid JSON ({e})"),
    })?;
    Ok(Some(body.trim_end().to_string() + "\n"))
}

/// The body of an insta snapshot (the text after the metadata header).
pub fn split_body(text: &str) -> Option<&str> {
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let end = rest
        .find("\n---\n")
        .map(|i| i + 5)
        .or_else(|| rest.find("\r\n---\r\n").map(|i| i + 7))?;
    Some(&rest[end..])
}

/// Metadata recorded in the header; never compared.
pub fn header_info() -> String {
    let info = os_info::get();
    format!(
        "info:\n  os: \"{}\"\n  version: \"{}\"\n  arch: \"{}\"\n",
        info.os_type(),
        info.version(),
        info.architecture().unwrap_or("unknown")
    )
}

fn file_text(body: &str) -> String {
    format!(
        "---\nsource: {ASSERTION_SOURCE}\n{}---\n{}",
        header_info(),
        body.trim_end().to_string() + "\n"
    )
}

/// Write an accepted snapshot.
pub fn write_accepted(path: &Path, body: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(pending_path(path));
    std::fs::write(path, file_text(body))
}

/// Write a pending snapshot (`.snap.new`) for `cargo insta review` to accept or reject.
pub fn write_pending(path: &Path, body: &str) -> std::io::Result<PathBuf> {
    let p = pending_path(path);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&p, file_text(body))?;
    Ok(p)
}

pub fn pending_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".new");
    PathBuf::from(s)
}

/// A readable unified diff from the snapshot to the new observation.
pub fn diff(old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header("snapshot", "this run")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_follows_the_header() {
        let t = "---\nsource: x\ninfo:\n  os: y\n---\n{\"a\": 1}\n";
        assert_eq!(split_body(t), Some("{\"a\": 1}\n"));
        assert_eq!(split_body("{\"a\": 1}"), None);
    }

    #[test]
    fn corrupt_snapshots_name_the_file() {
        let dir = std::env::temp_dir().join(format!("sc-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.snap");
        std::fs::write(&p, "---\nsource: x\n---\n{ not json").unwrap();
        let e = read_body(&p).unwrap_err();
        assert!(
            e.to_string().contains("bad.snap") && e.to_string().contains("corrupt"),
            "{e}"
        );
        std::fs::write(&p, "garbage").unwrap();
        assert!(read_body(&p).is_err());
        assert_eq!(read_body(&dir.join("missing.snap")).unwrap(), None);
        write_accepted(&p, "{\"ok\": true}").unwrap();
        assert_eq!(read_body(&p).unwrap().unwrap(), "{\"ok\": true}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn case_paths_use_family_directories() {
        let (o, w) = case_paths(Path::new("/s/linux"), "close/orderly_idle");
        assert_eq!(o, Path::new("/s/linux/close/orderly_idle.snap"));
        assert_eq!(w, Path::new("/s/linux/close/orderly_idle.wire.snap"));
    }
}
