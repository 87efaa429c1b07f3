//! Linux backend: /proc/net/tcp for the TCP table, network namespaces for isolation, AF_PACKET for
//! capture, prctl(PR_SET_PDEATHSIG) so agents never outlive the runner. The POSIX rest is shared
//! with macOS and FreeBSD in `sys/unix.rs`.

pub mod capture;
pub mod lab;
pub use capture::Capture;

#[path = "../unix.rs"]
mod unix;

pub use unix::{
    adopt_inherited, close_inherited_descriptors, exit_description, poll, set_fd_limit,
    sigpipe_default, spawn_inheriting, terminate, wait_stdin_hangup,
};

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
        return Err(format!(
            "cannot create a network namespace: {e} (run as root, or with CAP_SYS_ADMIN)"
        ));
    }
    set_interface_up("lo")
        .map_err(|e| format!("cannot bring loopback up in the case namespace: {e}"))
}

/// Bring an interface of the calling thread's namespace up (SIOCSIFFLAGS |= IFF_UP).
pub fn set_interface_up(name: &str) -> io::Result<()> {
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
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
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
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

pub fn is_blocked(pid: u32) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state letter follows the parenthesized command name, which may itself hold spaces.
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    Some(state == "S" || state == "D")
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
