//! Stacks: other TCP implementations that run on this machine (gVisor's netstack, another Linux
//! kernel in a QEMU guest) next to the host's own. Each stack runs the same `sockconform` binary
//! inside it and hands back exactly what a CI job hands back: an artifact folder with
//! `results.json` and the pending snapshots `snapshots/<platform>/**/*.snap.new`.
//!
//! `launch` starts a stack's run and follows it, for `conform --on` and `explore --on` alike.

pub mod gvisor;
pub mod launch;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a stack launcher needs to run the suite inside its stack.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The folder holding the built `sockconform` and `sockconform-agent` binaries (absolute).
    pub bin_dir: PathBuf,
    /// The repository root (absolute): the committed snapshots are read from there (read-only).
    pub root: PathBuf,
    /// The artifact folder this stack's run writes into (absolute, created by the caller).
    pub out: PathBuf,
    /// A cache folder the launcher may keep downloads or unpacked packages in (absolute).
    pub cache: PathBuf,
    /// The arguments of `sockconform` to run inside, e.g. `conform --artifact OUT --filter close`.
    pub args: Vec<String>,
}

/// A TCP implementation `conform --on` can run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stack {
    /// This machine's own kernel, run directly.
    Host,
    /// gVisor's netstack: the suite runs inside a `runsc` sandbox.
    Gvisor,
    /// A Debian Linux kernel of this series ("6.1") booted under QEMU with virtme-ng.
    Linux(String),
}

/// What `--on all` runs: every stack this machine can run.
pub const ALL: &str = "all";

/// The stacks `--on` names, in the order given: `all` stands for every stack this machine can run
/// (see `all_here`), each named once. Err: an unknown name, or `all` where nothing but the host
/// can run (it then says why of each other stack).
pub fn expand(names: &[String], cache: &Path) -> Result<Vec<Stack>, String> {
    let mut stacks: Vec<Stack> = Vec::new();
    for name in names {
        let more = if name == ALL {
            all_here(cache).0
        } else {
            vec![Stack::parse(name)?]
        };
        for s in more {
            if !stacks.contains(&s) {
                stacks.push(s);
            }
        }
    }
    Ok(stacks)
}

/// Every stack this machine can run, in the matrix's order: the host, gVisor where `runsc` is,
/// then each Linux series with a kernel unpacked in the cache, by version. Beside them, the
/// stacks left out and why (shown by `--on all`).
pub fn all_here(cache: &Path) -> (Vec<Stack>, Vec<(String, String)>) {
    let mut here = vec![Stack::Host];
    let mut left_out = Vec::new();
    match gvisor::release() {
        Ok(_) => here.push(Stack::Gvisor),
        Err(why) => left_out.push(("gvisor".to_string(), why)),
    }
    let series = vm::series_in_cache(cache);
    if series.is_empty() {
        left_out.push((
            "linux-<series>".to_string(),
            format!(
                "no kernel unpacked in {} (`.ci/stacks-install` as root)",
                cache.display()
            ),
        ));
    }
    here.extend(series.into_iter().map(Stack::Linux));
    (here, left_out)
}

impl Stack {
    /// `host`, `gvisor` or `linux-<major>.<minor>`.
    pub fn parse(name: &str) -> Result<Stack, String> {
        match name {
            "host" => Ok(Stack::Host),
            "gvisor" => Ok(Stack::Gvisor),
            other => match other.strip_prefix("linux-") {
                Some(series) if platforms::id::linux_release(series).as_deref() == Some(series) => {
                    Ok(Stack::Linux(series.to_string()))
                }
                _ => Err(format!(
                    "unknown stack {other:?} (stacks: host, gvisor, linux-<major>.<minor> such as \
                     linux-6.1, or all)"
                )),
            },
        }
    }

    /// Whether the fault lab (veth, nftables, per-namespace sysctl) exists inside this stack: not
    /// in gVisor's sandbox (measured: no veth, no nftables). The host's and a guest's run probe
    /// it again and skip what needs it where it is missing.
    pub fn has_lab(&self) -> bool {
        !matches!(self, Stack::Gvisor)
    }

    pub fn name(&self) -> String {
        match self {
            Stack::Host => "host".into(),
            Stack::Gvisor => "gvisor".into(),
            Stack::Linux(series) => format!("linux-{series}"),
        }
    }

    /// The command that runs `sockconform <args>` on this stack.
    pub(crate) fn command(&self, l: &Launch) -> Result<Command, String> {
        match self {
            Stack::Host => {
                let mut cmd = Command::new(l.bin_dir.join(exe("sockconform")));
                cmd.args(&l.args).env("SOCKCONFORM_ROOT", &l.root);
                Ok(cmd)
            }
            Stack::Gvisor => gvisor::command(l),
            Stack::Linux(series) => vm::command(l, &vm::find_kernel(&l.cache, series)?),
        }
    }

    /// Cases at once inside this stack when the user did not say: the host and gVisor decide for
    /// themselves (see `RunConfig::default_jobs`); a software-emulated guest runs one, on its one
    /// virtual CPU (see `vm::CPUS`): two cases at once in a guest starved by the host made the
    /// emulated nft steps and step replies late (a heal landing after a SYN retransmission, a
    /// step deadline missed), which is false lab timing.
    pub(crate) fn default_jobs(&self) -> Option<usize> {
        match self {
            Stack::Linux(_) => Some(1),
            _ => None,
        }
    }
}

fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// Whether this process runs as root (runsc and unshare then need no rootless mode). The stacks
/// are Linux-only, so /proc is there: "Uid: real effective saved fs".
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The cache for stack downloads: $SOCKCONFORM_STACKS_CACHE, else ~/.cache/sockconform-stacks.
pub fn cache_dir() -> PathBuf {
    if let Ok(p) = std::env::var("SOCKCONFORM_STACKS_CACHE") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home)
        .join(".cache")
        .join("sockconform-stacks")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_parse_by_name() {
        assert_eq!(Stack::parse("host"), Ok(Stack::Host));
        assert_eq!(Stack::parse("gvisor"), Ok(Stack::Gvisor));
        assert_eq!(Stack::parse("linux-6.1"), Ok(Stack::Linux("6.1".into())));
        assert!(Stack::parse("linux-6").is_err());
        assert!(Stack::parse("linux-6.1.2").is_err());
        assert!(Stack::parse("qemu").unwrap_err().contains("host, gvisor"));
    }

    #[test]
    fn all_is_every_stack_here_each_named_once() {
        let empty = std::env::temp_dir().join(format!("sc-no-stacks-{}", std::process::id()));
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = expand(&names(&["host", "all"]), &empty).unwrap();
        assert_eq!(all[0], Stack::Host);
        assert_eq!(all.iter().filter(|s| **s == Stack::Host).count(), 1);
        // With no kernel unpacked, `all` runs no guest, and says so.
        assert!(!all.iter().any(|s| matches!(s, Stack::Linux(_))));
        let (_, left_out) = all_here(&empty);
        assert!(left_out
            .iter()
            .any(|(s, why)| s == "linux-<series>" && why.contains("stacks-install")));
        assert!(expand(&names(&["hots"]), &empty).is_err());
    }
}
