//! gVisor: the suite runs inside a `runsc` sandbox, so every socket call is answered by gVisor's
//! netstack (a TCP/IP stack in Go, in user space) instead of the host kernel.
//!
//! The sandbox is started with `runsc run` on an OCI bundle written here, not with `runsc do`,
//! because `do` offers only two file systems: the host root behind an in-memory overlay (so
//! `results.json` and the pending snapshots would vanish with the sandbox) or, with
//! `-force-overlay=false`, the host root WRITABLE as a whole. The bundle gives the least the run
//! needs (measured with runsc 20221219):
//!
//! * the host root read-only (`root.readonly`, `--overlay2=none`: a stray write fails with EROFS
//!   rather than vanishing), with one writable bind mount: the artifact folder `out`; and a
//!   `/tmp` in the sandbox's own memory (tmpfs, nothing of the host) for the socket files of the
//!   Unix-domain cases, which bind paths in a temporary directory;
//! * no network of the host: `--network=none` (the default mode would create a veth and NAT
//!   rules on the host), plus a network namespace of the sandbox's own; `--net-raw` so the packet
//!   capture (AF_PACKET) works inside; each case still makes its own namespace inside;
//! * every capability, as `runsc do` grants: they are the sandbox kernel's, not the host's;
//! * `--ignore-cgroups`: nothing to limit, and a runsc killed with SIGKILL leaves its cgroup
//!   directories behind (`runsc do` does: /sys/fs/cgroup/*/runsc-NNNNNN); without cgroups only
//!   the bundle folder can be left behind, and the next launch removes it;
//! * `--rootless` only when not run as root: runsc 20221219 then runs `run` (and `do`) as an
//!   ordinary user with `--network=none`; as root the sandbox and gofer drop privileges
//!   themselves, which `--rootless` would skip.
//!
//! Processes: `runsc run` is attached, so the sandbox and gofer processes get PR_SET_PDEATHSIG
//! (SIGKILL) from runsc and end with it, also when runsc itself is killed; the caller gives runsc
//! the same from its spawning thread. The environment inside is written into the bundle: the
//! `Command`'s own environment does not reach the sandbox.

use super::Launch;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// runsc's release as `runsc --version` prints it ("20221219"), or why runsc is unusable.
pub fn release() -> Result<String, String> {
    let out = Command::new("runsc")
        .arg("--version")
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "runsc is not installed (Debian: `apt-get install \
                 runsc`, or run .ci/stacks-install)"
                .to_string(),
            _ => format!("cannot run `runsc --version`: {e}"),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "`runsc --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_release(&text).ok_or_else(|| {
        format!(
            "cannot read runsc's release from `runsc --version`: {:?}",
            text.lines().next().unwrap_or("")
        )
    })
}

/// "runsc version 0.0~20221219.0" (Debian) or "runsc version release-20231009.0" (upstream):
/// the date, with ".N" when a point release N is not 0.
fn parse_release(text: &str) -> Option<String> {
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("runsc version "))?
        .trim();
    let start = version.char_indices().map(|(i, _)| i).find(|&i| {
        version.len() >= i + 8 && version[i..i + 8].bytes().all(|b| b.is_ascii_digit())
    })?;
    let date = &version[start..start + 8];
    let rest = &version[start + 8..];
    if rest.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        return None;
    }
    let point = rest
        .strip_prefix('.')
        .map(|r| r.split(|c: char| !c.is_ascii_digit()).next().unwrap_or(""))
        .filter(|p| !p.is_empty() && p.bytes().any(|b| b != b'0'));
    Some(match point {
        Some(p) => format!("{date}.{p}"),
        None => date.to_string(),
    })
}

/// The command running `bin_dir/sockconform <args>` in a gVisor sandbox: `runsc --network=none
/// --net-raw ... run` on a bundle written under `cache`, with SOCKCONFORM_ROOT=<root>,
/// SOCKCONFORM_GVISOR_RELEASE=<release()> in its environment, the folder `out` writable on the
/// host, the rest of the host's files read-only, and no network of the host visible.
pub fn command(l: &Launch) -> Result<Command, String> {
    let release = release()?;
    let exe = l.bin_dir.join("sockconform");
    for (what, path) in [
        ("the sockconform binary", &exe),
        ("the repository root", &l.root),
        ("the artifact folder", &l.out),
    ] {
        if !path.is_absolute() || !path.exists() {
            return Err(format!(
                "{what} {} must exist and be absolute",
                path.display()
            ));
        }
    }
    let base = l.cache.join("gvisor");
    remove_stale_bundles(&base);
    let id = container_id();
    let bundle = base.join(&id);
    let state = bundle.join("state");
    std::fs::create_dir_all(&state)
        .map_err(|e| format!("cannot create {}: {e}", state.display()))?;
    let spec = bundle_spec(l, &exe, &release, &inherited_env());
    let text = serde_json::to_string_pretty(&spec).expect("a JSON value serializes");
    let config = bundle.join("config.json");
    std::fs::write(&config, text).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let mut cmd = Command::new("runsc");
    cmd.arg(format!("--root={}", state.display()))
        .args(runsc_flags(super::is_root()))
        .arg("run")
        .arg(format!("--bundle={}", bundle.display()))
        .arg(&id)
        // Not seen inside (the bundle carries the sandbox's environment); for whoever inspects
        // the command.
        .env("SOCKCONFORM_ROOT", &l.root)
        .env("SOCKCONFORM_GVISOR_RELEASE", &release)
        .current_dir(&l.root);
    Ok(cmd)
}

/// runsc's global flags: no host network ever, raw sockets for the capture, a read-only root.
fn runsc_flags(root: bool) -> Vec<&'static str> {
    let mut flags = vec![
        "--network=none",
        "--net-raw",
        "--overlay2=none",
        "--ignore-cgroups",
    ];
    if !root {
        flags.push("--rootless");
    }
    flags
}

/// Unique among the bundles of this cache: the launching process's pid and a counter.
fn container_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "sockconform-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Bundles (with runsc's state) of launching processes that are gone: their sandboxes went with
/// them (parent-death signals), so nothing uses these folders anymore.
fn remove_stale_bundles(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("sockconform-"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// What of this process's environment the run inside sees: the basics and the suite's own
/// settings, nothing else (runsc do would pass everything, credentials included).
fn inherited_env() -> Vec<(String, String)> {
    const KEEP: &[&str] = &[
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TERM",
        "NO_COLOR",
        "RUST_BACKTRACE",
        "RUST_LIB_BACKTRACE",
    ];
    std::env::vars()
        .filter(|(k, _)| KEEP.contains(&k.as_str()) || k.starts_with("SOCKCONFORM_"))
        .filter(|(k, _)| k != "SOCKCONFORM_ROOT" && k != "SOCKCONFORM_GVISOR_RELEASE")
        .collect()
}

/// Every capability runsc 20221219 knows (`runsc do` grants them all); they exist only in the
/// sandbox's kernel.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
];

/// The OCI runtime spec (config.json) of the run.
fn bundle_spec(
    l: &Launch,
    exe: &Path,
    release: &str,
    inherited: &[(String, String)],
) -> serde_json::Value {
    let mut env: Vec<String> = inherited.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !inherited.iter().any(|(k, _)| k == "PATH") {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    env.push(format!("SOCKCONFORM_ROOT={}", l.root.display()));
    env.push(format!("SOCKCONFORM_GVISOR_RELEASE={release}"));
    let mut args = vec![exe.display().to_string()];
    args.extend(l.args.iter().cloned());
    let out = l.out.display().to_string();
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": env,
            "cwd": l.root.display().to_string(),
            "capabilities": {
                "bounding": CAPABILITIES,
                "effective": CAPABILITIES,
                "inheritable": CAPABILITIES,
                "permitted": CAPABILITIES,
            },
        },
        "root": { "path": "/", "readonly": true },
        "hostname": "sockconform-gvisor",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": out, "type": "bind", "source": out, "options": ["rbind", "rw"] },
            { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs" },
        ],
        "linux": { "namespaces": [ { "type": "network" } ] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_is_read_from_runsc_version() {
        let debian = "runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n";
        assert_eq!(parse_release(debian).as_deref(), Some("20221219"));
        let upstream = "runsc version release-20231009.0\nspec: 1.1.0\n";
        assert_eq!(parse_release(upstream).as_deref(), Some("20231009"));
        let point = "runsc version release-20230925.1\n";
        assert_eq!(parse_release(point).as_deref(), Some("20230925.1"));
        assert_eq!(parse_release("runsc version dev\n"), None);
        assert_eq!(parse_release("something else 20221219\n"), None);
        assert_eq!(parse_release("runsc version 202212190\n"), None);
    }

    #[test]
    fn never_the_host_network_and_root_only_as_root() {
        let f = runsc_flags(true);
        assert!(f.contains(&"--network=none") && f.contains(&"--net-raw"));
        assert!(!f
            .iter()
            .any(|x| x.starts_with("--network=") && *x != "--network=none"));
        assert!(!f.contains(&"--rootless"));
        assert!(runsc_flags(false).contains(&"--rootless"));
    }

    #[test]
    fn the_bundle_writes_only_out() {
        let l = Launch {
            bin_dir: "/repo/target/debug".into(),
            root: "/repo".into(),
            out: "/repo/target/stacks/gvisor".into(),
            cache: "/cache".into(),
            args: vec![
                "conform".into(),
                "--artifact".into(),
                "/repo/target/stacks/gvisor".into(),
            ],
        };
        let inherited = vec![("PATH".to_string(), "/usr/bin".to_string())];
        let s = bundle_spec(
            &l,
            Path::new("/repo/target/debug/sockconform"),
            "20221219",
            &inherited,
        );
        assert_eq!(s["root"]["readonly"], true);
        let mounts = s["mounts"].as_array().unwrap();
        let writable: Vec<&serde_json::Value> =
            mounts.iter().filter(|m| m["type"] == "bind").collect();
        assert_eq!(writable.len(), 1);
        assert_eq!(writable[0]["source"], "/repo/target/stacks/gvisor");
        assert_eq!(writable[0]["destination"], "/repo/target/stacks/gvisor");
        assert_eq!(s["process"]["args"][0], "/repo/target/debug/sockconform",);
        assert_eq!(s["process"]["args"][1], "conform");
        let env: Vec<&str> = s["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(env.contains(&"SOCKCONFORM_ROOT=/repo"));
        assert!(env.contains(&"SOCKCONFORM_GVISOR_RELEASE=20221219"));
        assert!(env.contains(&"PATH=/usr/bin"));
        assert_eq!(s["linux"]["namespaces"][0]["type"], "network");
    }

    #[test]
    fn stale_bundles_of_gone_launchers_are_removed() {
        let base = std::env::temp_dir().join(format!("sc-gvisor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // A pid above the kernel's maximum (4194304) never runs.
        let gone = base.join("sockconform-4999999-0");
        let mine = base.join(format!("sockconform-{}-7", std::process::id()));
        let other = base.join("something-else");
        for d in [&gone, &mine, &other] {
            std::fs::create_dir_all(d.join("state")).unwrap();
        }
        remove_stale_bundles(&base);
        assert!(!gone.exists() && mine.exists() && other.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
