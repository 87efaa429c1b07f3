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
        // A Windows checkout may turn line ends into CRLF (.gitattributes asks it not to): the
        // comparison is of lines, not of line ends.
        Ok(t) => t.replace("\r\n", "\n"),
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

/// The OS as `os_info` names it, read once per process: `os_info::get()` runs programs
/// (`lsb_release`, a Python script, and `getconf`), which took 2 s per snapshot file written in a
/// software-emulated guest (measured on linux-6.12: 12.8 s of a 14.9 s run of six cases went to
/// writing their 12 files).
pub fn os() -> &'static os_info::Info {
    static OS: std::sync::OnceLock<os_info::Info> = std::sync::OnceLock::new();
    OS.get_or_init(os_info::get)
}

/// Metadata recorded in the header (never compared): the OS as `os_info` names it, the platform
/// id, and the kernel release (on Linux `os_info` says only "Debian 12").
pub fn header_meta() -> std::collections::BTreeMap<&'static str, String> {
    let info = os();
    std::collections::BTreeMap::from([
        ("os", info.os_type().to_string()),
        ("version", info.version().to_string()),
        ("arch", info.architecture().unwrap_or("unknown").to_string()),
        ("platform", platforms::platform_id().to_string()),
        ("kernel", platforms::kernel_release().to_string()),
    ])
}

/// The header's `info:` block, keys in the order insta writes a map (sorted), each value quoted
/// exactly when insta's YAML emitter quotes it, so `cargo insta accept` rewrites nothing.
pub fn header_info() -> String {
    info_block(&header_meta())
}

fn info_block(meta: &std::collections::BTreeMap<&str, String>) -> String {
    let mut s = String::from("info:\n");
    for (k, v) in meta {
        s += &format!("  {}: {}\n", yaml_scalar(k), yaml_scalar(v));
    }
    s
}

/// A string as insta's vendored YAML emitter writes it (`insta/src/content/yaml/vendored/emitter.rs`,
/// `need_quotes` and `escape_str`): plain when YAML would read it back as the same string, else
/// double-quoted with JSON-like escapes. `tests::headers_are_what_insta_writes` holds this to
/// insta's own parse and save.
fn yaml_scalar(v: &str) -> String {
    let needs_quotes = v.is_empty()
        || v.starts_with(' ')
        || v.ends_with(' ')
        || v.starts_with(['&', '*', '?', '|', '-', '<', '>', '=', '!', '%', '@', '.'])
        || v.contains(|c: char| {
            matches!(c, ':' | '{' | '}' | '[' | ']' | ',' | '#' | '`' | '"' | '\'' | '\\'
                | '\0'..='\x06' | '\t' | '\n' | '\r' | '\x0e'..='\x1a' | '\x1c'..='\x1f')
        })
        || [
            "yes", "Yes", "YES", "no", "No", "NO", "True", "TRUE", "true", "False", "FALSE",
            "false", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
        ]
        .contains(&v)
        || v.starts_with("0x")
        || v.parse::<i64>().is_ok()
        || v.parse::<f64>().is_ok();
    if !needs_quotes {
        return v.to_string();
    }
    let mut s = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\x08' => s.push_str("\\b"),
            '\t' => s.push_str("\\t"),
            '\n' => s.push_str("\\n"),
            '\x0c' => s.push_str("\\f"),
            '\r' => s.push_str("\\r"),
            '\0'..='\x1f' | '\x7f' => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// The platforms with snapshots in this checkout: every folder of `snapshots/` named by a
/// platform id that holds at least one accepted snapshot (pending `.snap.new` files alone are not
/// a record).
pub fn recorded_platforms(root: &Path) -> Vec<String> {
    fn holds_snapshot(dir: &Path) -> bool {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let p = e.path();
                if p.is_dir() {
                    holds_snapshot(&p)
                } else {
                    p.extension().is_some_and(|x| x == "snap")
                }
            })
    }
    let mut ids: Vec<String> = std::fs::read_dir(root.join("snapshots"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| holds_snapshot(&e.path()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| platforms::id::is_platform_id(n))
        .collect();
    ids.sort();
    ids
}

fn file_text(body: &str) -> String {
    file_text_with(&header_meta(), body)
}

/// A snapshot file as insta writes it: the YAML header (`source`, then `info`), `---`, the body
/// with trailing whitespace trimmed and one newline.
fn file_text_with(meta: &std::collections::BTreeMap<&str, String>, body: &str) -> String {
    format!(
        "---\nsource: {}\n{}---\n{}",
        yaml_scalar(ASSERTION_SOURCE),
        info_block(meta),
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

/// Whether the accepted snapshot at `path` is not byte for byte what this run would write for
/// `body` (its header is another run's, or in an older format): `--bless` rewrites such files even
/// when the observation is unchanged, so the record names the run that last confirmed it.
pub fn differs_from_this_run(path: &Path, body: &str) -> bool {
    std::fs::read_to_string(path).ok() != Some(file_text(body))
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

/// A value of a snapshot's metadata header (`  kernel: "6.18.44-fc-v1045"` in the `info:` block),
/// unquoted; None when the file has no header or no such key.
pub fn header_value(text: &str, key: &str) -> Option<String> {
    let body = split_body(text)?;
    let header = &text[..text.len() - body.len()];
    header.lines().find_map(|l| {
        let v = l.trim_start().strip_prefix(key)?.strip_prefix(':')?.trim();
        let v = v.trim_matches('"').trim();
        (!v.is_empty()).then(|| v.to_string())
    })
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
        // The same snapshot as a Windows checkout without .gitattributes would write it.
        let crlf = std::fs::read_to_string(&p).unwrap().replace('\n', "\r\n");
        std::fs::write(&p, crlf).unwrap();
        assert_eq!(read_body(&p).unwrap().unwrap(), "{\"ok\": true}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_folders_with_accepted_snapshots_are_recorded_platforms() {
        let dir = std::env::temp_dir().join(format!("sc-recorded-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (p, file) in [
            ("snapshots/linux-6.18/close", "a.snap"),
            ("snapshots/linux-6.1/close", "a.snap.new"),
            ("snapshots/notaplatform/close", "a.snap"),
            ("snapshots/gvisor/x", "b.wire.snap"),
        ] {
            std::fs::create_dir_all(dir.join(p)).unwrap();
            std::fs::write(dir.join(p).join(file), "").unwrap();
        }
        assert_eq!(recorded_platforms(&dir), ["gvisor", "linux-6.18"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What `cargo insta accept` does to a file: insta's own parser reads it and insta's own writer
    /// saves it. Our files must come out byte-identical, or every review would rewrite headers.
    fn insta_rewrite(path: &Path) -> String {
        let snap = insta::Snapshot::from_file(path).expect("insta reads our file");
        let again = path.with_extension("resaved.snap");
        snap.save(&again).expect("insta saves it");
        let text = std::fs::read_to_string(&again).unwrap();
        std::fs::remove_file(&again).unwrap();
        text
    }

    #[test]
    fn headers_are_what_insta_writes() {
        let dir = std::env::temp_dir().join(format!("sc-insta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("real.snap");
        // This machine's own metadata, the header every run writes.
        write_accepted(&p, "{\n  \"a\": 1\n}\n\n").unwrap();
        let ours = std::fs::read_to_string(&p).unwrap();
        assert_eq!(insta_rewrite(&p), ours);
        // Values that YAML would misread unquoted, and ones it reads plain; each must be quoted
        // exactly when insta quotes it.
        let values = [
            "Debian",
            "12.0.0",
            "12",
            "6.1",
            "6.18.44-fc-v1045",
            "gVisor 20221219",
            "x86_64",
            "",
            " lead",
            "trail ",
            "a: b",
            "a:b",
            "yes",
            "No",
            "on",
            "null",
            "~",
            "0x1f",
            "-1",
            "-x",
            ".x",
            "1e5",
            "inf",
            "NaN",
            "[x]",
            "{x}",
            "a,b",
            "#x",
            "a#b",
            "`x`",
            "say \"hi\"",
            "it's",
            "back\\slash",
            "tab\there",
            "line\nbreak",
            "cr\rx",
            "\u{1b}[0m",
            "del\u{7f}",
            "ünïcode",
            "10.0.26100",
            "Mac OS",
            "Windows 11 Pro",
            "?x",
            "!x",
            "%x",
            "@x",
            "&x",
            "*x",
            "|x",
            ">x",
            "<x",
            "=x",
            "Darwin 24.1.0",
            "(release not visible inside)",
        ];
        for (i, v) in values.iter().enumerate() {
            let meta =
                std::collections::BTreeMap::from([("kernel", v.to_string()), ("os", "y".into())]);
            let p = dir.join(format!("v{i}.snap"));
            std::fs::write(&p, file_text_with(&meta, "{}")).unwrap();
            let ours = std::fs::read_to_string(&p).unwrap();
            assert_eq!(insta_rewrite(&p), ours, "value {v:?}");
            // And insta reads the value back as written.
            let snap = insta::Snapshot::from_file(&p).unwrap();
            let info = format!("{:?}", snap.metadata().private_info());
            assert!(
                info.contains(&format!("{v:?}")),
                "{v:?} read back as {info}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn case_paths_use_family_directories() {
        let (o, w) = case_paths(Path::new("/s/linux"), "close/orderly_idle");
        assert_eq!(o, Path::new("/s/linux/close/orderly_idle.snap"));
        assert_eq!(w, Path::new("/s/linux/close/orderly_idle.wire.snap"));
    }
}
