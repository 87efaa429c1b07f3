//! macOS backend: netstat for the TCP table, TCP_CONNECTION_INFO for a socket's state,
//! TCP_RXT_CONNDROPTIME for the user timeout, SO_NOSIGPIPE per send, and a kqueue watch on the
//! runner so agents never outlive it. No isolation and no capture (reasons below).

#[path = "bsd.rs"]
mod bsd;
#[path = "no_capture.rs"]
mod no_capture;
#[path = "unix.rs"]
mod unix;

pub use bsd::{is_blocked, tcp_table};
pub use no_capture::Capture;
pub use unix::{
    adopt_inherited, close_inherited_descriptors, exit_description, poll, set_fd_limit,
    sigpipe_default, spawn_inheriting, terminate, wait_stdin_hangup,
};

use crate::{names, Os, TcpState, Unavailable};
use socket2::Socket;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;
use unix::cvt;

const CAPTURE_UNAVAILABLE: &str = "packet capture is not implemented on macOS \
     (it would need BPF through /dev/bpf*, which needs root or the access_bpf group)";

pub fn isolate_thread() -> Result<(), Unavailable> {
    Err(
        "per-case network isolation is implemented only on Linux (network namespaces); \
         macOS has no per-process network stack, so cases share the host's loopback"
            .into(),
    )
}

// --- processes -----------------------------------------------------------------------------------

/// The variable through which the runner tells an agent which process to outlive no longer
/// than: macOS has no parent-death signal, so the agent watches the runner itself
/// (see `watch_parent`).
const WATCH_PID: &str = "SOCKCONFORM_WATCH_PID";

pub fn prepare_agent(cmd: &mut Command) {
    cmd.env(WATCH_PID, std::process::id().to_string());
}

/// In an agent: end this process as soon as the runner that started it ends. A detached thread
/// waits in kqueue for EVFILT_PROC/NOTE_EXIT on the runner's pid (from `prepare_agent`, so that a
/// holder child started by an agent watches the runner too, not the agent, just as on Linux where
/// only the runner's agents get the death signal). If the runner is already gone, registering the
/// filter fails with ESRCH and the agent ends at once.
pub fn watch_parent() {
    let Some(pid) = std::env::var(WATCH_PID)
        .ok()
        .and_then(|p| p.parse::<libc::pid_t>().ok())
    else {
        return;
    };
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        eprintln!(
            "agent: cannot watch the runner: {}",
            io::Error::last_os_error()
        );
        return;
    }
    let mut change: libc::kevent = unsafe { std::mem::zeroed() };
    change.ident = pid as usize;
    change.filter = libc::EVFILT_PROC;
    change.flags = libc::EV_ADD | libc::EV_ONESHOT;
    change.fflags = libc::NOTE_EXIT;
    let registered =
        unsafe { libc::kevent(kq, &change, 1, std::ptr::null_mut(), 0, std::ptr::null()) };
    if registered < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            die();
        }
        eprintln!("agent: cannot watch the runner (pid {pid}): {e}");
        return;
    }
    std::thread::spawn(move || loop {
        let mut event: libc::kevent = unsafe { std::mem::zeroed() };
        let n = unsafe { libc::kevent(kq, std::ptr::null(), 0, &mut event, 1, std::ptr::null()) };
        if n > 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            die();
        }
    });
}

/// End like an agent on Linux whose runner died: by SIGKILL, with no cleanup.
fn die() -> ! {
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
        libc::_exit(137)
    }
}

// --- knobs -----------------------------------------------------------------------------------------

/// `TCP_RXT_CONNDROPTIME` from xnu `bsd/netinet/tcp.h` ("time after which tcp retransmissions will
/// be stopped and the connection will be dropped"), an int in seconds (`tcp_usrreq.c` stores
/// `optval * TCP_RETRANSHZ`). The libc crate does not define it.
const TCP_RXT_CONNDROPTIME: libc::c_int = 0x80;

pub fn set_user_timeout(s: &Socket, timeout: Duration) -> io::Result<()> {
    let secs = libc::c_int::try_from(crate::parse::whole_seconds_up(timeout))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "user timeout too long"))?;
    cvt(unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_RXT_CONNDROPTIME,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Send with or without SIGPIPE on a broken connection. macOS has no per-call flag in its public
/// API (MSG_NOSIGNAL is private to xnu), only the per-socket SO_NOSIGPIPE, which socket2 and std
/// switch ON for every socket they create (accepted sockets inherit it from the listener). So the
/// option is set to match `nosignal` before each send; otherwise a send without `nosignal` could
/// never raise SIGPIPE here, a silent difference from Linux.
pub fn send(s: &Socket, buf: &[u8], nosignal: bool) -> io::Result<usize> {
    s.set_nosigpipe(nosignal)?;
    s.send(buf)
}

/// The leading part of xnu's `struct tcp_connection_info` (`bsd/netinet/tcp.h`): only the state
/// is read. The kernel copies min(our length, its length) bytes (`sooptcopyout`), so a prefix is
/// a valid buffer. (libc's definition lays out the TFO bit-fields of the C struct as separate
/// u32 fields, a different size; nothing after the first bytes is used.)
#[repr(C)]
struct TcpConnectionInfoHead {
    tcpi_state: u8,
    _tcpi_wscales_and_pad: [u8; 3],
    _tcpi_options: u32,
}

pub fn socket_state(s: &Socket) -> io::Result<TcpState> {
    let mut info = TcpConnectionInfoHead {
        tcpi_state: 0,
        _tcpi_wscales_and_pad: [0; 3],
        _tcpi_options: 0,
    };
    let mut len = std::mem::size_of::<TcpConnectionInfoHead>() as libc::socklen_t;
    cvt(unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONNECTION_INFO,
            (&mut info as *mut TcpConnectionInfoHead).cast(),
            &mut len,
        )
    })?;
    names::tcp_state(Os::Macos, info.tcpi_state as i32)
        .ok_or_else(|| io::Error::other(format!("unknown tcpi_state {}", info.tcpi_state)))
}
