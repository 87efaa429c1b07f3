//! Where things are: the repository root, the binaries next to this one, and the checks that a
//! file or folder the run will write can be written (made when the flags are read, so a run of
//! minutes does not fail only at its end).

use std::path::PathBuf;

/// The repository root (see `snapshot::find_repo_root`), else the current directory.
pub fn repo_root() -> PathBuf {
    crate::snapshot::find_repo_root().unwrap_or_else(|| PathBuf::from("."))
}

/// The agent binary next to this one.
pub fn agent_exe() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    me.with_file_name(format!("sockconform-agent{}", std::env::consts::EXE_SUFFIX))
}

/// The folder holding this binary (and the agent beside it).
pub fn bin_dir() -> Result<PathBuf, String> {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(PathBuf::from))
        .ok_or_else(|| "cannot tell where the sockconform binaries are".to_string())
}

/// A file the run will write: its folder must exist and be writable. The file itself is left as
/// it was.
pub fn writable_file(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if p.is_dir() {
        return Err(format!("{s} is a directory"));
    }
    let existed = p.exists();
    match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&p)
    {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(&p);
            }
            Ok(p)
        }
        Err(e) => Err(format!("cannot write {s}: {e}")),
    }
}

/// A folder the run will write into: created if missing, and a file is written and removed in it.
pub fn writable_dir(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    std::fs::create_dir_all(&p).map_err(|e| format!("cannot create the folder {s}: {e}"))?;
    let probe = p.join(format!(".sockconform-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("cannot write into {s}: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(p)
}
