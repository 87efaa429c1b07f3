//! Rootless runs: a user that is not root enters a new user namespace in which it is root, with a
//! network namespace of its own, so network namespaces, veth pairs, nftables, per-namespace
//! sysctls and AF_PACKET capture work as under root (they need capabilities only over namespaces
//! the run owns). Agents and lab tools are children and inherit it.
//!
//! Why in-process (`unshare(2)` and the uid/gid maps written by the process itself, as
//! `unshare --map-root-user` does) rather than shelling out to `unshare` or re-executing: no
//! wrapper process to forward signals and exit codes through, no dependency on util-linux, and the
//! failing step and errno are ours to explain. `unshare(CLONE_NEWUSER)` demands a single-threaded
//! caller, so it is called first thing in `conform`.
//!
//! A step that fails after `unshare(CLONE_NEWUSER)` succeeded would leave the process half inside
//! (no uid map: every file it creates would fail). So the whole sequence is first tried in a
//! forked child, which reports its failing step and errno over a pipe; only when the child got
//! all the way does the process itself go through the same sequence.
//!
//! What only real root sees stays unseen: `/proc/slabinfo` belongs to root of the initial user
//! namespace, so a rootless run reads it as not visible (see `host::tcp_socket_slab_bytes`).

use crate::{names, Os, Privileges, Unavailable};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The steps of entering, in order; a failure names one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// unshare(CLONE_NEWUSER)
    NewUser,
    /// writing /proc/self/setgroups, uid_map or gid_map
    Map,
    /// unshare(CLONE_NEWNET) inside the new user namespace (needs its CAP_SYS_ADMIN)
    NewNet,
    /// bringing loopback up in the new network namespace (needs its CAP_NET_ADMIN)
    Loopback,
}

impl Step {
    fn text(self) -> &'static str {
        match self {
            Step::NewUser => "unshare(CLONE_NEWUSER)",
            Step::Map => "writing the user namespace's uid/gid map",
            Step::NewNet => "unshare(CLONE_NEWNET) inside the user namespace",
            Step::Loopback => "bringing loopback up inside the user namespace",
        }
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(c: u8) -> Option<Step> {
        [Step::NewUser, Step::Map, Step::NewNet, Step::Loopback]
            .into_iter()
            .find(|s| s.code() == c)
    }
}

/// The kernel settings that decide whether an unprivileged user may use user namespaces, as read
/// from /proc/sys (None: the file does not exist on this kernel).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `user.max_user_namespaces` (every kernel since 4.9; 0 turns user namespaces off).
    pub max_user_namespaces: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian's and Arch's patch; 0 = root only).
    pub unprivileged_userns_clone: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10+; 1 = the namespace is
    /// created but the process has no capabilities in it).
    pub apparmor_restrict: Option<u64>,
}

impl Settings {
    pub fn read() -> Settings {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        Settings {
            max_user_namespaces: read("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restrict: read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        }
    }
}

/// Why entering failed, in words a user can act on: the setting that forbids it and the command
/// that changes it. `threads` > 1 means the caller broke the single-thread rule.
pub fn explain(step: Step, errno: i32, s: &Settings) -> Unavailable {
    let err = names::error_name(Os::Linux, errno).unwrap_or("an unnamed error");
    let failed = format!("{} failed with {err}", step.text());
    let fix = if s.max_user_namespaces == Some(0) {
        "user namespaces are turned off (user.max_user_namespaces = 0); \
         `sudo sysctl -w user.max_user_namespaces=15000` turns them on"
            .to_string()
    } else if s.unprivileged_userns_clone == Some(0) {
        "user namespaces are reserved to root (kernel.unprivileged_userns_clone = 0); \
         `sudo sysctl -w kernel.unprivileged_userns_clone=1` allows them"
            .to_string()
    } else if s.apparmor_restrict == Some(1) {
        "AppArmor gives unprivileged user namespaces no capabilities \
         (kernel.apparmor_restrict_unprivileged_userns = 1); \
         `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` lifts that, \
         or an AppArmor profile with `userns,` for this binary"
            .to_string()
    } else if step == Step::NewUser && errno == libc::ENOSPC {
        match s.max_user_namespaces {
            Some(n) => format!(
                "the limit on user namespaces is used up (user.max_user_namespaces = {n} here, \
                 or a parent namespace's, or 32 levels of nesting); \
                 `sudo sysctl -w user.max_user_namespaces=15000` raises it"
            ),
            None => "the limit on user namespaces is used up".to_string(),
        }
    } else {
        "no known setting forbids it here (user.max_user_namespaces, \
         kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns), \
         so a seccomp filter or a container runtime probably does (Docker's default profile \
         refuses unshare)"
            .to_string()
    };
    format!("not root, and no user namespace: {failed}: {fix}; or run as root")
}

/// Called first thing by `conform`: see the module docs.
pub fn enter() -> Privileges {
    let uid = unsafe { libc::geteuid() };
    if uid == 0 || holds_namespace_capabilities() {
        return Privileges::Unchanged;
    }
    let gid = unsafe { libc::getegid() };
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1);
    if threads > 1 {
        return Privileges::Refused(format!(
            "not root, and no user namespace: this process already runs {threads} threads, and unshare(CLONE_NEWUSER) needs a single-threaded caller (enter it before any thread starts); or run as root"
        ));
    }
    if let Err((step, errno)) = try_in_child(uid, gid) {
        return Privileges::Refused(explain(step, errno, &Settings::read()));
    }
    match try_enter(uid, gid) {
        Ok(()) => Privileges::UserNamespace { outer_uid: uid },
        Err((step, errno)) => Privileges::Refused(explain(step, errno, &Settings::read())),
    }
}

/// Whether this process already holds CAP_SYS_ADMIN and CAP_NET_RAW (a binary given them with
/// setcap, or ambient capabilities): it makes its namespaces and captures as it is, like root.
fn holds_namespace_capabilities() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    capabilities_allow_namespaces(&status)
}

/// From the text of /proc/self/status: the effective set (CapEff, hex) has both capabilities.
fn capabilities_allow_namespaces(status: &str) -> bool {
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    // linux/capability.h: CAP_NET_RAW 13, CAP_SYS_ADMIN 21 (libc does not name them).
    let need = (1u64 << 21) | (1u64 << 13);
    effective & need == need
}

/// The whole sequence, in the calling (single-threaded) process: new user namespace, this
/// user mapped to root in it, new network namespace, loopback up.
pub fn try_enter(uid: u32, gid: u32) -> Result<(), (Step, i32)> {
    let errno = |step: Step| (step, io::Error::last_os_error().raw_os_error().unwrap_or(0));
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return Err(errno(Step::NewUser));
    }
    // An unprivileged process may map exactly its own ids, and its gid only after giving up
    // setgroups (user_namespaces(7)).
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| (Step::Map, e.raw_os_error().unwrap_or(0)))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1"))?;
    write("gid_map", format!("0 {gid} 1"))?;
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(errno(Step::NewNet));
    }
    super::set_interface_up("lo").map_err(|e| (Step::Loopback, e.raw_os_error().unwrap_or(0)))
}

/// Run `try_enter` in a forked child and report how far it got. The caller is single-threaded,
/// so the child may allocate; it never returns, only `_exit`s.
pub fn try_in_child(uid: u32, gid: u32) -> Result<(), (Step, i32)> {
    let answer = in_child(move || encode(try_enter(uid, gid)))
        .map_err(|e| (Step::NewUser, e.raw_os_error().unwrap_or(libc::EIO)))?;
    decode(&answer).unwrap_or(Err((Step::NewUser, libc::EIO)))
}

/// A child's answer: 0 = got all the way, else the failed step's code and the errno.
fn encode(r: Result<(), (Step, i32)>) -> Vec<u8> {
    match r {
        Ok(()) => vec![0; 5],
        Err((step, errno)) => {
            let e = errno.to_ne_bytes();
            vec![step.code(), e[0], e[1], e[2], e[3]]
        }
    }
}

/// None: not an answer `encode` makes (anything after its 5 bytes is ignored).
fn decode(a: &[u8]) -> Option<Result<(), (Step, i32)>> {
    match a {
        [0, _, _, _, _, ..] => Some(Ok(())),
        [code, e0, e1, e2, e3, ..] => {
            let errno = i32::from_ne_bytes([*e0, *e1, *e2, *e3]);
            Step::from_code(*code).map(|step| Err((step, errno)))
        }
        _ => None,
    }
}

/// Fork; the child runs `f` and writes its answer to a pipe, read until the child's end. Bounded:
/// a child that has not finished within 10 s is killed.
fn in_child(f: impl FnOnce() -> Vec<u8>) -> io::Result<Vec<u8>> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let answer = f();
        let mut at = 0;
        while at < answer.len() {
            let n = unsafe {
                libc::write(
                    wr.as_raw_fd(),
                    answer[at..].as_ptr().cast(),
                    answer.len() - at,
                )
            };
            if n <= 0 {
                break;
            }
            at += n as usize;
        }
        unsafe { libc::_exit(0) }
    }
    drop(wr);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut file = std::fs::File::from(rd);
    let mut got = Vec::new();
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            0 => break Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in 10 s")),
            r if r < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break Err(e);
            }
            _ => {}
        }
        let mut buf = [0u8; 4096];
        match file.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    if result.is_err() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    result.map(|()| got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: Option<u64>, clone: Option<u64>, apparmor: Option<u64>) -> Settings {
        Settings {
            max_user_namespaces: max,
            unprivileged_userns_clone: clone,
            apparmor_restrict: apparmor,
        }
    }

    #[test]
    fn each_forbidding_setting_is_named_with_its_command() {
        let t = explain(Step::NewUser, libc::ENOSPC, &settings(Some(0), None, None));
        assert!(t.contains("user.max_user_namespaces = 0"), "{t}");
        assert!(
            t.contains("`sudo sysctl -w user.max_user_namespaces=15000`"),
            "{t}"
        );
        assert!(
            t.contains("unshare(CLONE_NEWUSER) failed with ENOSPC"),
            "{t}"
        );

        let t = explain(
            Step::NewUser,
            libc::EPERM,
            &settings(Some(63000), Some(0), None),
        );
        assert!(t.contains("kernel.unprivileged_userns_clone = 0"), "{t}");
        assert!(
            t.contains("`sudo sysctl -w kernel.unprivileged_userns_clone=1`"),
            "{t}"
        );

        // Ubuntu 24.04: the namespace is made, the capabilities in it are denied.
        let t = explain(
            Step::Map,
            libc::EPERM,
            &settings(Some(63000), None, Some(1)),
        );
        assert!(
            t.contains("kernel.apparmor_restrict_unprivileged_userns = 1"),
            "{t}"
        );
        assert!(
            t.contains("`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"),
            "{t}"
        );
        assert!(t.contains("uid/gid map failed with EPERM"), "{t}");
    }

    #[test]
    fn a_process_with_both_capabilities_stays_as_it_is() {
        let status = |eff: &str| format!("Name:\tx\nCapInh:\t0\nCapEff:\t{eff}\nCapBnd:\t0\n");
        assert!(capabilities_allow_namespaces(&status("000001ffffffffff")));
        // CAP_SYS_ADMIN (21) and CAP_NET_RAW (13) only.
        assert!(capabilities_allow_namespaces(&status("0000000000202000")));
        assert!(!capabilities_allow_namespaces(&status("0000000000200000")));
        assert!(!capabilities_allow_namespaces(&status("0000000000000000")));
        assert!(!capabilities_allow_namespaces("Name:\tx\n"));
    }

    #[test]
    fn an_allowing_configuration_blames_no_setting() {
        // The settings allow it, so the text must not send the user to change them.
        let t = explain(
            Step::NewUser,
            libc::EPERM,
            &settings(Some(63000), Some(1), Some(0)),
        );
        assert!(t.contains("no known setting forbids it"), "{t}");
        assert!(!t.contains("sysctl -w"), "{t}");
        let t = explain(Step::NewUser, libc::ENOSPC, &settings(Some(5), None, None));
        assert!(t.contains("used up (user.max_user_namespaces = 5"), "{t}");
    }

    fn forbidden_here() -> bool {
        let s = Settings::read();
        s.max_user_namespaces == Some(0)
            || s.unprivileged_userns_clone == Some(0)
            || s.apparmor_restrict == Some(1)
    }

    /// As root: a forked child becomes `nobody`, then enters the way a user run does. As a user:
    /// the child enters directly. Either way the child then proves what the suite needs: root
    /// inside, a nested network namespace with loopback up, an AF_PACKET socket. Skipped
    /// (printed) only where a setting forbids user namespaces.
    #[test]
    fn an_unprivileged_process_enters_and_gets_namespaces_and_capture() {
        const SETUID_FAILED: u8 = 9;
        const MISSING: u8 = 8;
        let answer = in_child(|| {
            if unsafe { libc::geteuid() } == 0 {
                let nobody = 65534;
                if unsafe { libc::setgid(nobody) } != 0 || unsafe { libc::setuid(nobody) } != 0 {
                    return vec![SETUID_FAILED];
                }
                // A changed uid makes the process non-dumpable, which hands its /proc files to
                // root: it could not write its own uid_map.
                unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1) };
            }
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            if let Err(e) = try_enter(uid, gid) {
                return encode(Err(e));
            }
            let root_inside = unsafe { libc::geteuid() } == 0;
            let nested = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0
                && crate::sys::set_interface_up("lo").is_ok();
            let packet = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    (libc::ETH_P_ALL as u16).to_be() as i32,
                )
            } >= 0;
            match (root_inside, nested, packet) {
                (true, true, true) => vec![0; 5],
                _ => vec![MISSING, root_inside as u8, nested as u8, packet as u8],
            }
        })
        .unwrap();
        assert_ne!(answer[0], SETUID_FAILED, "could not become nobody");
        assert_ne!(
            answer[0],
            MISSING,
            "entered, but (root inside, nested netns, AF_PACKET) = {:?}",
            &answer[1..4]
        );
        match decode(&answer).expect("a step's answer") {
            Ok(()) => {}
            Err((step, errno)) => {
                let why = explain(step, errno, &Settings::read());
                assert!(forbidden_here(), "entering failed though allowed: {why}");
                eprintln!("skipped: {why}");
            }
        }
    }

    /// A real refusal: inside a user namespace, `user.max_user_namespaces` is set to 0 (a limit
    /// of that namespace alone, gone with it); a second entry there must fail with ENOSPC, and the
    /// explanation, made in there from the settings as the refused process reads them, must name
    /// the setting and the command.
    #[test]
    fn a_namespace_limit_of_zero_is_named_in_the_refusal() {
        const OUTER_FAILED: u8 = 7;
        const LIMIT_NOT_WRITTEN: u8 = 6;
        let answer = in_child(|| {
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            if try_enter(uid, gid).is_err() {
                return vec![OUTER_FAILED];
            }
            if std::fs::write("/proc/sys/user/max_user_namespaces", "0").is_err() {
                return vec![LIMIT_NOT_WRITTEN];
            }
            let r = try_enter(0, 0);
            let mut out = encode(r);
            if let Err((step, errno)) = r {
                out.extend_from_slice(explain(step, errno, &Settings::read()).as_bytes());
            }
            out
        })
        .unwrap();
        if answer.first() == Some(&OUTER_FAILED) && forbidden_here() {
            eprintln!("skipped: user namespaces are not allowed here");
            return;
        }
        assert_ne!(
            answer[0], OUTER_FAILED,
            "could not enter the outer namespace"
        );
        assert_ne!(
            answer[0], LIMIT_NOT_WRITTEN,
            "root of a user namespace could not set its user.max_user_namespaces to 0"
        );
        match decode(&answer).expect("a step's answer") {
            Ok(()) => panic!("a second user namespace was created under a limit of 0"),
            Err(failure) => {
                assert_eq!(failure, (Step::NewUser, libc::ENOSPC));
                let t = String::from_utf8_lossy(&answer[5..]);
                assert!(
                    t.contains("unshare(CLONE_NEWUSER) failed with ENOSPC")
                        && t.contains("user.max_user_namespaces = 0")
                        && t.contains("`sudo sysctl -w user.max_user_namespaces=15000`"),
                    "{t}"
                );
            }
        }
    }
}
