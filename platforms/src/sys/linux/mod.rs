//! Linux backend: /proc/net/tcp for the TCP table, network namespaces for isolation, AF_PACKET for
//! capture, prctl(PR_SET_PDEATHSIG) so agents never outlive the runner. The POSIX rest is shared
//! with macOS and FreeBSD in `sys/unix.rs`.

pub mod capture;
pub mod lab;
pub mod userns;
pub use capture::Capture;

#[path = "../unix.rs"]
mod unix;

pub use unix::{
    abort, adopt_inherited, close, close_inherited_descriptors, exit_description, poll,
    raise_fd_limit, recv, set_fd_limit, sigpipe_default, spawn_inheriting, terminate,
    wait_readable, wait_stdin_hangup,
};
pub use unix::{poll_writable, set_reuse_port};

/// Nothing to mark: the kernel's wait channel tells a blocked agent from an idle one.
pub fn mark_operation(_on: bool) {}

use crate::{names, Os, TcpEntry, TcpState, Unavailable};
use socket2::Socket;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;
use unix::cvt;

// --- TCP table -------------------------------------------------------------------------------

pub fn tcp_table() -> io::Result<Vec<TcpEntry>> {
    // thread-self, not self: the namespace that matters is the calling thread's (a case thread).
    let mut out = Vec::new();
    for file in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        match std::fs::read_to_string(file) {
            Ok(text) => out.extend(parse_proc_net_tcp(&text)),
            // IPv6 may be disabled; the IPv4 table always exists.
            Err(e) if e.kind() == io::ErrorKind::NotFound && file.ends_with('6') => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Parse the text of /proc/net/tcp or /proc/net/tcp6 (the kernel prints addresses as the raw
/// network-order words in host byte order, ports in hex).
pub(crate) fn parse_proc_net_tcp(text: &str) -> Vec<TcpEntry> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 {
                return None;
            }
            let local = parse_addr(f[1])?;
            let remote = parse_addr(f[2])?;
            let st = i32::from_str_radix(f[3], 16).ok()?;
            let state = names::tcp_state(Os::Linux, st)?;
            let (tx, rx) = f[4].split_once(':')?;
            Some(TcpEntry {
                local,
                remote,
                state,
                send_queue: u64::from_str_radix(tx, 16).ok()?,
                recv_queue: u64::from_str_radix(rx, 16).ok()?,
            })
        })
        .collect()
}

fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).ok();
    match ip.len() {
        8 => Some(SocketAddr::new(
            Ipv4Addr::from(word(0)?.to_ne_bytes()).into(),
            port,
        )),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?.to_ne_bytes());
            }
            Some(SocketAddr::new(Ipv6Addr::from(b).into(), port))
        }
        _ => None,
    }
}

// --- isolation ---------------------------------------------------------------------------------

pub fn isolate_thread() -> Result<(), Unavailable> {
    // CLONE_NEWNET moves only the calling thread; the namespace lives as long as a thread, process
    // or socket refers to it, so it vanishes by itself after the case, a failure or a Ctrl-C.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        // A user whose attempt at a user namespace was refused: that refusal is the reason.
        if let Some(crate::Privileges::Refused(why)) = crate::privileges() {
            return Err(format!("cannot create a network namespace: {why}"));
        }
        return Err(format!(
            "cannot create a network namespace: {e} (run as root, or with CAP_SYS_ADMIN)"
        ));
    }
    set_interface_up("lo")
        .map_err(|e| format!("cannot bring loopback up in the case namespace: {e}"))
}

/// Bring an interface of the calling thread's namespace up. Nothing to do when it already is (a
/// new namespace in gVisor starts with `lo` up, and gVisor has no SIOCSIFFLAGS); otherwise
/// SIOCSIFFLAGS |= IFF_UP, and where that ioctl is not supported (ENOTTY, EINVAL) an RTM_NEWLINK
/// request over NETLINK_ROUTE. Either way the flags are read back: success means IFF_UP is set.
pub fn set_interface_up(name: &str) -> io::Result<()> {
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq(name)?;
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    if unsafe { req.ifr_ifru.ifru_flags } & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    if let Err(e) = cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }) {
        if !matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) {
            return Err(e);
        }
        let mut index = ifreq(name)?;
        cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut index) })?;
        set_link_up_netlink(unsafe { index.ifr_ifru.ifru_ifindex })
            .map_err(|n| io::Error::new(n.kind(), format!("SIOCSIFFLAGS: {e}; netlink: {n}")))?;
    }
    let mut check = ifreq(name)?;
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut check) })?;
    if unsafe { check.ifr_ifru.ifru_flags } & libc::IFF_UP as libc::c_short == 0 {
        return Err(io::Error::other(format!(
            "{name} is still down after the kernel accepted bringing it up"
        )));
    }
    Ok(())
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

/// RTM_NEWLINK { ifi_index, ifi_flags = ifi_change = IFF_UP } with NLM_F_ACK on a NETLINK_ROUTE
/// socket of the calling thread's namespace; the kernel's acknowledgement carries the result.
fn set_link_up_netlink(index: libc::c_int) -> io::Result<()> {
    const NLMSG_HDRLEN: usize = 16;
    const IFINFOMSG_LEN: usize = 16;
    const RTM_NEWLINK: u16 = 16;
    const NLMSG_ERROR: u16 = 2;
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let seq: u32 = 1;
    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + IFINFOMSG_LEN);
    // struct nlmsghdr: len, type, flags, seq, pid (0: the kernel).
    msg.extend_from_slice(&((NLMSG_HDRLEN + IFINFOMSG_LEN) as u32).to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifinfomsg: family (AF_UNSPEC), pad, type, index, flags, change.
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    msg.extend_from_slice(&index.to_ne_bytes());
    msg.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    msg.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1024];
    // Every wait has a deadline: an acknowledgement that never comes is an error, not a hang
    // (poll, not SO_RCVTIMEO, which gVisor's netlink sockets do not support).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        match unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) } {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no netlink acknowledgement within 2 s",
                ))
            }
            r if r < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            _ => {}
        }
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR | libc::EAGAIN) => continue,
                _ => return Err(e),
            }
        }
        let reply = &buf[..n as usize];
        let mut at = 0;
        while reply.len() >= at + NLMSG_HDRLEN {
            let word = |i: usize| u32::from_ne_bytes(reply[i..i + 4].try_into().unwrap());
            let len = word(at) as usize;
            let typ = u16::from_ne_bytes([reply[at + 4], reply[at + 5]]);
            if len < NLMSG_HDRLEN || at + len > reply.len() {
                return Err(io::Error::other("malformed netlink reply"));
            }
            if word(at + 8) == seq && typ == NLMSG_ERROR {
                if len < NLMSG_HDRLEN + 4 {
                    return Err(io::Error::other("short netlink acknowledgement"));
                }
                // struct nlmsgerr: error (0 = ack, else -errno), then the request's header.
                let errno = -(word(at + NLMSG_HDRLEN) as i32);
                return match errno {
                    0 => Ok(()),
                    e => Err(io::Error::from_raw_os_error(e)),
                };
            }
            at += (len + 3) & !3;
        }
    }
}

// --- processes -----------------------------------------------------------------------------------

pub fn prepare_agent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            cvt(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
            ))?;
            Ok(())
        });
    }
}

/// Whether every thread of the process is asleep in the kernel. An agent's main thread is asleep
/// both inside a blocking call and while it waits for its next command, so the runner asks only
/// after sending one; a call the agent runs in a second thread (a blocked accept while the main
/// thread closes its listener) counts once that thread sleeps too. An agent that never starts a
/// thread has one, and is asked exactly as before.
pub fn is_blocked(pid: u32) -> Option<bool> {
    let asleep = |stat: &str| {
        // The state letter follows the parenthesized command name, which may itself hold spaces.
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        Some(state == "S" || state == "D")
    };
    let main = asleep(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Some(main);
    };
    // A thread that ended between listing and reading is no longer running: it counts as asleep.
    let all = tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|stat| asleep(&stat))
            .unwrap_or(true)
    });
    Some(main && all)
}

/// Nothing to do: the kernel delivers SIGKILL when the runner's spawning thread ends
/// (see `prepare_agent`).
pub fn watch_parent() {}

// --- knobs -----------------------------------------------------------------------------------------

pub fn set_user_timeout(s: &Socket, timeout: Duration) -> io::Result<()> {
    s.set_tcp_user_timeout(Some(timeout))
}

pub fn send(s: &Socket, buf: &[u8], nosignal: bool) -> io::Result<usize> {
    let flags = if nosignal { libc::MSG_NOSIGNAL } else { 0 };
    s.send_with_flags(buf, flags)
}

pub fn socket_state(s: &Socket) -> io::Result<TcpState> {
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    cvt(unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    })?;
    // A socket that never connected reports state 7 (TCP_CLOSE) like a closed one.
    names::tcp_state(Os::Linux, info.tcpi_state as i32)
        .ok_or_else(|| io::Error::other(format!("unknown tcpi_state {}", info.tcpi_state)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_proc_net_tcp_lines() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 0100007F:C350 06 00000000:00000005 03:000016F2 00000000     0        0 0 3 0000000000000000\n";
        let t = parse_proc_net_tcp(text);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t[0].remote, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(t[0].state, TcpState::TimeWait);
        assert_eq!(t[0].recv_queue, 5);
    }

    #[test]
    fn parses_ipv6_loopback() {
        let text = "hdr\n   0: 00000000000000000000000001000000:0050 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000 0 0 1 1\n";
        let t = parse_proc_net_tcp(text);
        assert_eq!(t[0].local, "[::1]:80".parse().unwrap());
        assert_eq!(t[0].state, TcpState::Established);
    }

    /// Run `f` on a fresh thread moved into a new network namespace (lo down, as Linux makes
    /// it); None without the privilege, said past libtest's capture (which hides `eprintln!` of
    /// a passing test). Under CI as root the privilege is expected: its absence fails.
    fn in_fresh_namespace<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        std::thread::spawn(move || {
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let why = io::Error::last_os_error();
                let ci =
                    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
                assert!(
                    !(ci && unsafe { libc::geteuid() } == 0),
                    "CI runs as root and expects network namespaces: unshare(CLONE_NEWNET): {why}"
                );
                let _ = writeln!(
                    io::stderr().lock(),
                    "skipped: cannot unshare(CLONE_NEWNET): {why}"
                );
                return None;
            }
            Some(f())
        })
        .join()
        .unwrap()
    }

    fn lo_is_up() -> bool {
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut req = ifreq("lo").unwrap();
        cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) }).unwrap();
        unsafe { req.ifr_ifru.ifru_flags & libc::IFF_UP as libc::c_short != 0 }
    }

    #[test]
    fn isolation_brings_loopback_up_and_connects() {
        let Some(r) = in_fresh_namespace(|| {
            isolate_thread()?;
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            std::net::TcpStream::connect(l.local_addr().unwrap()).map_err(|e| e.to_string())?;
            // Idempotent: already up is success.
            set_interface_up("lo").map_err(|e| e.to_string())?;
            Ok::<bool, String>(lo_is_up())
        }) else {
            return;
        };
        assert_eq!(r, Ok(true));
    }

    /// gVisor's netstack answers some netlink requests with EOPNOTSUPP; a Linux kernel never does.
    fn on_gvisor() -> bool {
        crate::id::stack_of(crate::platform_id()) == Some("gvisor")
    }

    #[test]
    fn netlink_brings_loopback_up_on_linux() {
        // The fallback path on its own, where the ioctl would also work (a Linux host).
        let Some((before, done, after)) = in_fresh_namespace(|| {
            let before = lo_is_up();
            let index = unsafe { libc::if_nametoindex(c"lo".as_ptr()) } as libc::c_int;
            let done = set_link_up_netlink(index);
            (before, done, lo_is_up())
        }) else {
            return;
        };
        match done {
            // A new namespace's lo is down until this request brings it up.
            Ok(()) => assert_eq!((before, after), (false, true)),
            // gVisor answers RTM_NEWLINK without attributes with EOPNOTSUPP (isolation brings
            // its lo up with the ioctl instead).
            Err(e) if on_gvisor() => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}"),
            Err(e) => panic!("netlink did not bring lo up on Linux: {e}"),
        }
    }

    #[test]
    fn netlink_reports_a_missing_interface() {
        let Some(r) = in_fresh_namespace(|| set_link_up_netlink(4242)) else {
            return;
        };
        let e = r.unwrap_err();
        let want = if on_gvisor() {
            libc::EOPNOTSUPP
        } else {
            libc::ENODEV
        };
        assert_eq!(e.raw_os_error(), Some(want), "{e}");
    }

    #[test]
    fn reads_own_listener_from_the_table() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = tcp_table().unwrap();
        assert!(
            t.iter()
                .any(|e| e.local == addr && e.state == TcpState::Listen),
            "{t:?}"
        );
    }
}
