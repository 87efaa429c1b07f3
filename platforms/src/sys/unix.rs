//! The POSIX half shared by the Linux, macOS and FreeBSD backends: signals, descriptors, poll(2),
//! passing a socket to a child process. Each of those backends includes this file as its `unix`
//! module and re-exports what it does not do differently.

use crate::parse;
use socket2::Socket;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

// --- processes -----------------------------------------------------------------------------------

pub fn terminate(pid: u32) -> io::Result<()> {
    cvt(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }).map(drop)
}

pub fn exit_description(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit {code}");
    }
    match (status.signal(), crate::CURRENT_OS) {
        (Some(sig), Some(os)) => format!("signal {}", parse::signal_name(os, sig)),
        (Some(sig), None) => format!("signal SIG#{sig}"),
        (None, _) => "unknown".into(),
    }
}

// --- knobs -----------------------------------------------------------------------------------------

pub fn sigpipe_default() -> io::Result<()> {
    if unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn set_fd_limit(limit: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: limit as libc::rlim_t,
        rlim_max: limit as libc::rlim_t,
    };
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }).map(drop)
}

/// POLLRDHUP (the peer shut down its sending side) exists on Linux and, since 14.0, FreeBSD; macOS
/// has no such event, so there the bit is 0: never asked for, never reported.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
const POLLRDHUP: libc::c_short = libc::POLLRDHUP;
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
const POLLRDHUP: libc::c_short = 0;

pub fn poll(s: &Socket, timeout: Duration) -> io::Result<Vec<&'static str>> {
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN | libc::POLLOUT | POLLRDHUP | libc::POLLPRI,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    cvt(unsafe { libc::poll(&mut pfd, 1, ms) })?;
    let table = [
        (libc::POLLIN, "IN"),
        (libc::POLLPRI, "PRI"),
        (libc::POLLOUT, "OUT"),
        (POLLRDHUP, "RDHUP"),
        (libc::POLLERR, "ERR"),
        (libc::POLLHUP, "HUP"),
        (libc::POLLNVAL, "NVAL"),
    ];
    Ok(table
        .iter()
        .filter(|(bit, _)| pfd.revents & bit != 0)
        .map(|(_, n)| *n)
        .collect())
}

/// poll(2) for POLLOUT alone, as a runtime waits for a non-blocking connect: what it reports
/// for a failed connect differs (Linux adds ERR and HUP; the BSDs report writable and leave the
/// rest to SO_ERROR). POLLERR, POLLHUP and POLLNVAL come unasked.
pub fn poll_writable(s: &Socket, timeout: Duration) -> io::Result<Vec<&'static str>> {
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    cvt(unsafe { libc::poll(&mut pfd, 1, ms) })?;
    let table = [
        (libc::POLLIN, "IN"),
        (libc::POLLOUT, "OUT"),
        (libc::POLLERR, "ERR"),
        (libc::POLLHUP, "HUP"),
        (libc::POLLNVAL, "NVAL"),
    ];
    Ok(table
        .iter()
        .filter(|(bit, _)| pfd.revents & bit != 0)
        .map(|(_, n)| *n)
        .collect())
}

/// SO_REUSEPORT: every Unix backend here has it, with different meanings (Linux balances
/// connections between the sockets; FreeBSD needs SO_REUSEPORT_LB for that; macOS gives one
/// socket everything), which is what a case observes.
pub fn set_reuse_port(s: &Socket, on: bool) -> io::Result<()> {
    s.set_reuse_port(on)
}

// The five knobs below (close .. abort): Linux's backend does not re-export them yet and reaches
// them through lib.rs's `unix_knobs`, so its own inclusion of this file leaves them unused.

/// Close the descriptor and report close(2)'s own result. Whatever it returns, the descriptor is
/// released (Linux, macOS and FreeBSD free it before the protocol's close can fail), so nothing
/// is handed back.
pub fn close(s: Socket) -> Result<(), (io::Error, Option<Socket>)> {
    let fd = s.into_raw_fd();
    cvt(unsafe { libc::close(fd) })
        .map(drop)
        .map_err(|e| (e, None))
}

pub fn recv(s: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// poll(2) for POLLIN, resumed after a signal with the time left. An error or hang-up counts as
/// readable: the call that follows reports it.
pub fn wait_readable(s: &Socket, timeout: Duration) -> io::Result<bool> {
    let end = std::time::Instant::now() + timeout;
    loop {
        let mut pfd = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let left = end.saturating_duration_since(std::time::Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        match cvt(unsafe { libc::poll(&mut pfd, 1, ms) }) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard one; on macOS to at most `kern.maxfilesperproc`
/// (see `parse::macos_fd_limit`). Returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    // rlim_t is u64 on Linux and macOS but i64 on FreeBSD: the casts are needed there.
    #[allow(clippy::unnecessary_cast)]
    let hard = lim.rlim_max as u64;
    #[cfg(target_os = "macos")]
    let soft = parse::macos_fd_limit(hard, maxfilesperproc()?);
    #[cfg(not(target_os = "macos"))]
    let soft = hard;
    lim.rlim_cur = soft as libc::rlim_t;
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    Ok(soft)
}

/// `kern.maxfilesperproc`: the most descriptors one process may have open on macOS.
#[cfg(target_os = "macos")]
fn maxfilesperproc() -> io::Result<u64> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>();
    cvt(unsafe {
        libc::sysctlbyname(
            c"kern.maxfilesperproc".as_ptr(),
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    })?;
    u64::try_from(v).map_err(|_| io::Error::other(format!("kern.maxfilesperproc is {v}")))
}

/// abort(3) semantics: SIGABRT, no crash reporter in the way (a core dump, if enabled, is the
/// kernel's and does not delay the process's end for the peer).
pub fn abort() -> ! {
    std::process::abort()
}

pub fn spawn_inheriting(s: &Socket, cmd: &mut Command) -> io::Result<Child> {
    let fd: RawFd = s.as_raw_fd();
    cmd.arg(fd.to_string());
    // Clear close-on-exec only in the child, so no other concurrently spawned process inherits it.
    unsafe {
        cmd.pre_exec(move || {
            let flags = cvt(libc::fcntl(fd, libc::F_GETFD))?;
            cvt(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC))?;
            Ok(())
        });
    }
    cmd.spawn()
}

/// Close every descriptor above stderr except `keep` (see `crate::close_inherited_descriptors`).
/// Linux (5.9+) and FreeBSD (13+) close a whole range in one call; elsewhere, or when the kernel
/// lacks close_range, each descriptor below the table size is closed in turn.
pub fn close_inherited_descriptors(keep: Option<&str>) {
    let keep: Option<RawFd> = keep.and_then(|k| k.parse().ok()).filter(|k| *k > 2);
    let ranges = match keep {
        Some(k) => vec![(3, k - 1), (k + 1, RawFd::MAX)],
        None => vec![(3, RawFd::MAX)],
    };
    for (low, high) in ranges.into_iter().filter(|(low, high)| low <= high) {
        if close_range(low, high).is_err() {
            let table = unsafe { libc::getdtablesize() }.min(1 << 20);
            for fd in low..=high.min(table - 1) {
                unsafe { libc::close(fd) };
            }
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn close_range(low: RawFd, high: RawFd) -> io::Result<()> {
    cvt(unsafe { libc::close_range(low as libc::c_uint, high as libc::c_uint, 0) }).map(drop)
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn close_range(_low: RawFd, _high: RawFd) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

pub fn adopt_inherited(raw: &str) -> io::Result<Socket> {
    let fd: RawFd = raw
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not a descriptor number"))?;
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    Ok(unsafe { Socket::from_raw_fd(fd) })
}

/// Block until standard input is closed by every writer, without reading from it (it may be
/// shared with a parent agent that reads its commands from the same pipe).
#[cfg(target_os = "linux")]
pub fn wait_stdin_hangup() {
    // events = 0: only POLLHUP/POLLERR wake us, so unread commands in the pipe do not.
    let mut pfd = libc::pollfd {
        fd: 0,
        events: 0,
        revents: 0,
    };
    loop {
        let r = unsafe { libc::poll(&mut pfd, 1, -1) };
        if r > 0 || (r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted) {
            return;
        }
    }
}

/// Block until standard input is closed by every writer, without reading from it.
///
/// poll(2) with no events cannot do this on the BSDs: macOS translates poll into kqueue filters and
/// registers none for `events = 0`, so nothing would ever wake the call. A kqueue read filter with
/// EV_CLEAR wakes on each change (new data, or the last writer closing) without consuming the data,
/// and reports the close as EV_EOF.
#[cfg(not(target_os = "linux"))]
pub fn wait_stdin_hangup() {
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return;
    }
    let kq = unsafe { std::os::fd::OwnedFd::from_raw_fd(kq) };
    let mut change: libc::kevent = unsafe { std::mem::zeroed() };
    change.ident = 0;
    change.filter = libc::EVFILT_READ;
    change.flags = libc::EV_ADD | libc::EV_CLEAR;
    let registered = unsafe {
        libc::kevent(
            kq.as_raw_fd(),
            &change,
            1,
            std::ptr::null_mut(),
            0,
            std::ptr::null(),
        )
    };
    if registered < 0 {
        return;
    }
    loop {
        let mut event: libc::kevent = unsafe { std::mem::zeroed() };
        let n = unsafe {
            libc::kevent(
                kq.as_raw_fd(),
                std::ptr::null(),
                0,
                &mut event,
                1,
                std::ptr::null(),
            )
        };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n < 0 || event.flags & (libc::EV_EOF | libc::EV_ERROR) != 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signal tables of parse.rs agree with this OS's libc.
    #[test]
    fn signal_table_matches_libc() {
        let os = crate::CURRENT_OS.expect("a Unix backend knows its OS");
        for (sig, name) in [
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGQUIT, "SIGQUIT"),
            (libc::SIGILL, "SIGILL"),
            (libc::SIGTRAP, "SIGTRAP"),
            (libc::SIGABRT, "SIGABRT"),
            (libc::SIGBUS, "SIGBUS"),
            (libc::SIGFPE, "SIGFPE"),
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGSEGV, "SIGSEGV"),
            (libc::SIGPIPE, "SIGPIPE"),
            (libc::SIGALRM, "SIGALRM"),
            (libc::SIGTERM, "SIGTERM"),
        ] {
            assert_eq!(parse::signal_name(os, sig), name);
        }
    }

    #[test]
    fn describes_a_killed_child() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(exit_description(status), "signal SIGKILL");
    }
}
