//! Host-level facts and process dispositions used by the fault-lab cases: keepalive knobs, what a
//! process does on SIGTERM, descriptor limits, the kernel's defaults for dead-peer detection, and the
//! kernel memory held by TCP sockets. Each answers "unsupported here" rather than pretending.

use socket2::{Socket, TcpKeepalive};
use std::io;
use std::time::Duration;

fn unsupported<T>(what: &str) -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} is not available on {}", std::env::consts::OS),
    ))
}

/// Keepalive on, with idle time, probe interval and probe count. Every backend's OS sets all three:
/// TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT on Linux and FreeBSD, TCP_KEEPALIVE/TCP_KEEPINTVL/
/// TCP_KEEPCNT on macOS, and on Windows SIO_KEEPALIVE_VALS for the times plus TCP_KEEPCNT for the
/// count (Windows 10 1703 and later; before, the count was fixed at 10 and the option is refused,
/// an error the case records).
pub fn set_keepalive(s: &Socket, idle: Duration, interval: Duration, count: u32) -> io::Result<()> {
    let ka = TcpKeepalive::new().with_time(idle).with_interval(interval);
    #[cfg(any(
        target_os = "linux",
        target_os = "macos",
        target_os = "freebsd",
        windows
    ))]
    let ka = ka.with_retries(count);
    #[cfg(not(any(
        target_os = "linux",
        target_os = "macos",
        target_os = "freebsd",
        windows
    )))]
    {
        let _ = (s, ka, count);
        return unsupported("setting the keepalive probe count");
    }
    s.set_tcp_keepalive(&ka)?;
    s.set_keepalive(true)
}

/// What the process does when asked to terminate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTerminate {
    /// Ignore it (SIG_IGN): only the hard kill after the grace period ends the process.
    Ignore,
    /// Close every descriptor it holds and exit with status 0, like a server that shuts down cleanly.
    CloseAndExit,
}

/// Set the disposition of the termination request (SIGTERM on Unix).
pub fn on_terminate(what: OnTerminate) -> io::Result<()> {
    #[cfg(unix)]
    {
        extern "C" fn close_and_exit(_: libc::c_int) {
            // Only async-signal-safe calls here: close every descriptor above stdio, then _exit.
            // close_range is one call (Linux 5.9+, FreeBSD 13+); where it is missing, one close
            // per descriptor (gVisor spends about 1 s on 4096 of them, eating a grace period).
            unsafe {
                if !close_range_above_stdio() {
                    for fd in 3..4096 {
                        libc::close(fd);
                    }
                }
                libc::_exit(0);
            }
        }
        let handler = match what {
            OnTerminate::Ignore => libc::SIG_IGN,
            OnTerminate::CloseAndExit => {
                close_and_exit as extern "C" fn(libc::c_int) as libc::sighandler_t
            }
        };
        if unsafe { libc::signal(libc::SIGTERM, handler) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    // Windows' graceful termination (`terminate`) is a CTRL_BREAK to the process group; a handler
    // for it would need SetConsoleCtrlHandler, which is not implemented. A case that relies on its
    // handler (a server that closes and exits, or ignores the request) is skipped rather than
    // run with the default action, which would be another scenario.
    #[cfg(not(unix))]
    {
        let _ = what;
        Err(crate::not_implemented(
            "a handler for graceful termination (terminate sends CTRL_BREAK there; handling \
             it would need SetConsoleCtrlHandler)",
        ))
    }
}

/// Close every descriptor from 3 up in one call, where the kernel has close_range.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
unsafe fn close_range_above_stdio() -> bool {
    #[cfg(target_os = "linux")]
    let r = libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) as libc::c_int;
    #[cfg(target_os = "freebsd")]
    let r = libc::close_range(3, u32::MAX, 0);
    r == 0
}

#[cfg(all(unix, not(any(target_os = "linux", target_os = "freebsd"))))]
unsafe fn close_range_above_stdio() -> bool {
    false
}

/// Set the soft descriptor limit (keeping the hard one).
pub fn set_soft_fd_limit(n: u64) -> io::Result<()> {
    update_fd_limit(|_soft, _hard| n).map(drop)
}

/// Read RLIMIT_NOFILE, set its soft value to `f(soft, hard)`, return the new soft value.
fn update_fd_limit(f: impl FnOnce(u64, u64) -> u64) -> io::Result<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // rlim_t is u64 on Linux and macOS but i64 on FreeBSD: the casts are needed there.
        #[allow(clippy::unnecessary_cast)]
        let soft = f(lim.rlim_cur as u64, lim.rlim_max as u64);
        lim.rlim_cur = soft as libc::rlim_t;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(soft)
    }
    // No RLIMIT_NOFILE: a case about a process at its descriptor limit cannot be set up.
    #[cfg(not(unix))]
    {
        let _ = f;
        Err(crate::not_implemented(
            "a per-process descriptor limit (no RLIMIT_NOFILE to lower for its sockets)",
        ))
    }
}

/// The kernel's default for how long a silent peer is retried while data is outstanding, as a
/// sentence with its source setting (read, not waited for).
pub fn retransmission_default() -> io::Result<String> {
    if cfg!(target_os = "linux") {
        let v = read_proc_sys("net/ipv4/tcp_retries2")?;
        // ip-sysctl.rst: with the default of 15 and RTO_MIN 200 ms the "hypothetical timeout" is 924.6 s.
        let n: u32 = v
            .parse()
            .map_err(|_| io::Error::other(format!("tcp_retries2 is {v:?}")))?;
        let secs = linux_retries_timeout(n, 0.2, 120.0);
        return Ok(format!("net.ipv4.tcp_retries2 = {n}: gives up after about {secs:.1} s at the minimum RTO of 200 ms"));
    }
    unsupported("reading the retransmission default")
}

/// The default keepalive timing (idle, interval, probes) that a fresh socket gets, asked of the
/// socket itself (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT) rather than of settings files: gVisor's
/// /proc/sys says interval 0 and 0 probes while its sockets use 75 s and 9.
pub fn keepalive_default() -> io::Result<String> {
    #[cfg(unix)]
    {
        let s = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        let idle = s.tcp_keepalive_time()?.as_secs();
        let intvl = s.tcp_keepalive_interval()?.as_secs();
        let probes = s.tcp_keepalive_retries()?;
        Ok(format!(
            "keepalive idle {idle} s, interval {intvl} s, {probes} probes"
        ))
    }
    #[cfg(not(unix))]
    unsupported("reading the keepalive default")
}

/// The SYN retry default of a fresh socket (Linux TCP_SYNCNT, which falls back to
/// net.ipv4.tcp_syn_retries), with the setting that makes the first retries linear on newer
/// kernels (absent on 6.1 and on gVisor).
pub fn syn_retries_default() -> io::Result<String> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let s = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: TCP_SYNCNT writes one int into v.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_SYNCNT,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let linear = read_proc_sys("net/ipv4/tcp_syn_linear_timeouts")
            .map(|l| format!(", tcp_syn_linear_timeouts = {l}"))
            .unwrap_or_default();
        Ok(format!("net.ipv4.tcp_syn_retries = {v}{linear}"))
    }
    #[cfg(not(target_os = "linux"))]
    unsupported("reading the SYN retry default")
}

/// Linux's "hypothetical timeout" for `retries` retransmissions (tcp_timer.c retransmits_timed_out):
/// the backoff doubles from `rto_base` and is capped at `rto_max`.
pub fn linux_retries_timeout(retries: u32, rto_base: f64, rto_max: f64) -> f64 {
    let linear_backoff_thresh = (rto_max / rto_base).log2().floor() as u32;
    if retries <= linear_backoff_thresh {
        rto_base * (((1u64 << (retries + 1)) - 1) as f64)
    } else {
        rto_base * (((1u64 << (linear_backoff_thresh + 1)) - 1) as f64)
            + f64::from(retries - linear_backoff_thresh) * rto_max
    }
}

/// Set a `net.*` sysctl for the network namespace of the calling thread. The caller must be in a
/// namespace of its own (an isolated case thread): run on the host's namespace it would change the
/// machine, which sockconform never does.
pub fn set_net_sysctl_here(key: &str, value: &str) -> io::Result<()> {
    if !key.starts_with("net.") || key.contains("..") || key.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a per-namespace net.* sysctl: {key}"),
        ));
    }
    if !cfg!(target_os = "linux") {
        return unsupported("per-namespace sysctls");
    }
    // The process's main thread stays in the namespace the run started in; the case thread must
    // have left it.
    let in_own_namespace =
        std::fs::read_link("/proc/thread-self/ns/net")? != std::fs::read_link("/proc/self/ns/net")?;
    if !in_own_namespace {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "refusing to change a sysctl of the host's own namespace",
        ));
    }
    std::fs::write(format!("/proc/sys/{}", key.replace('.', "/")), value)
}

fn read_proc_sys(key: &str) -> io::Result<String> {
    // /proc/sys/net answers for the network namespace of the calling thread (a case's own, when
    // isolated), so a default read here is the kernel's default for a fresh namespace.
    Ok(std::fs::read_to_string(format!("/proc/sys/{key}"))?
        .trim()
        .to_string())
}

/// Bytes received and not yet read on this socket, as the socket itself reports them (FIONREAD):
/// the one receive-queue figure every platform gives, where tables may not (Windows never does).
pub fn unread_bytes(s: &Socket) -> io::Result<usize> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n.max(0) as usize)
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsRawSocket;
        use windows_sys::Win32::Networking::WinSock::{ioctlsocket, WSAGetLastError, FIONREAD};
        let mut n: u32 = 0;
        // SAFETY: FIONREAD writes one u32 through the pointer.
        if unsafe { ioctlsocket(s.as_raw_socket() as usize, FIONREAD, &mut n) } != 0 {
            return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
        }
        Ok(n as usize)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = s;
        unsupported("FIONREAD")
    }
}

/// Bytes of kernel memory held in the slab caches of TCP sockets (the socket, its inode and its
/// request socket), summed over the whole machine. Compare two readings around an action to get
/// the memory it took; other activity on the machine adds noise, small against thousands of sockets.
pub fn tcp_socket_slab_bytes() -> io::Result<u64> {
    if !cfg!(target_os = "linux") {
        return unsupported("reading kernel slab usage");
    }
    let text = std::fs::read_to_string("/proc/slabinfo").map_err(|e| match e.kind() {
        // Mode 0400, owned by root of the initial user namespace: root of any other user
        // namespace (a rootless run) is refused too.
        io::ErrorKind::PermissionDenied => io::Error::new(
            e.kind(),
            "the kernel shows /proc/slabinfo only to real root",
        ),
        _ => e,
    })?;
    Ok(parse_slabinfo(
        &text,
        &["TCP", "TCPv6", "sock_inode_cache", "request_sock_TCP"],
    ))
}

/// Sum of active_objs x objsize over the named caches of a /proc/slabinfo text.
pub fn parse_slabinfo(text: &str, caches: &[&str]) -> u64 {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || !caches.contains(&f[0]) {
                return None;
            }
            Some(f[1].parse::<u64>().ok()? * f[3].parse::<u64>().ok()?)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_default_hypothetical_timeout_is_924_6_s() {
        // Documentation/networking/ip-sysctl.rst: tcp_retries2 = 15 -> 924.6 s.
        let t = linux_retries_timeout(15, 0.2, 120.0);
        assert!((t - 924.6).abs() < 0.01, "{t}");
        assert!((linux_retries_timeout(3, 0.2, 120.0) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn slabinfo_sums_the_named_caches() {
        let text = "slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> ...\nTCP 104 104 2368 13 8 : tunables 0 0 0\nfilp 816 840 192 21 1\nsock_inode_cache 10 19 832 19 4\n";
        assert_eq!(
            parse_slabinfo(text, &["TCP", "sock_inode_cache"]),
            104 * 2368 + 10 * 832
        );
    }
}
