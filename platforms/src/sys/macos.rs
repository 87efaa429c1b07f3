//! macOS backend: netstat for the TCP table, TCP_CONNECTION_INFO for a socket's state,
//! TCP_RXT_CONNDROPTIME for the user timeout, SO_NOSIGPIPE per send, the agent's marked thread
//! for "blocked in a call", a kqueue watch on the runner so agents never outlive it, and BPF
//! on lo0 for the wire (`bpf.rs`; root or the access_bpf group). No isolation (reason below).

#[path = "bpf.rs"]
mod bpf;
#[path = "bsd.rs"]
mod bsd;
#[path = "unix.rs"]
mod unix;

pub use bpf::Capture;
pub use unix::{
    abort, adopt_inherited, close, close_inherited_descriptors, exit_description, poll,
    raise_fd_limit, recv, set_fd_limit, sigpipe_default, spawn_inheriting, terminate,
    wait_readable, wait_stdin_hangup,
};
pub use unix::{poll_writable, set_reuse_port};

use crate::{names, parse, Os, TcpEntry, TcpState, Unavailable};
use socket2::Socket;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;
use unix::cvt;

pub fn tcp_table() -> io::Result<Vec<TcpEntry>> {
    bsd::tcp_table(Os::Macos)
}

/// What a failed capture start should tell the user to do.
pub const CAPTURE_HINT: &str = "BPF on lo0 needs /dev/bpf*: run as root (sudo), or be in the \
     access_bpf group (Wireshark's ChmodBPF installs it)";

/// The BPF record layout of xnu (`bsd/net/bpf.h`): user space gets `struct timeval32` time
/// stamps (libc's `bpf_hdr` for 64-bit macOS), records aligned to `sizeof(int32_t)`
/// (BPF_ALIGNMENT, which the libc crate does not define for macOS).
const BPF_LAYOUT: crate::bpf_frames::Layout = crate::bpf_frames::Layout {
    stamp_field: std::mem::size_of::<libc::timeval32>() / 2,
    align: std::mem::size_of::<i32>(),
    af_inet: libc::AF_INET as u32,
    af_inet6: libc::AF_INET6 as u32,
};

/// `struct bpf_insn`, `struct bpf_program` and `struct bpf_stat` of xnu `bsd/net/bpf.h`: the
/// libc crate defines them for FreeBSD, not for macOS.
#[repr(C)]
struct BpfInsn {
    code: libc::c_ushort,
    jt: libc::c_uchar,
    jf: libc::c_uchar,
    k: u32,
}

#[repr(C)]
struct BpfProgram {
    bf_len: libc::c_uint,
    bf_insns: *mut BpfInsn,
}

#[repr(C)]
struct BpfStat {
    _bs_recv: libc::c_uint,
    bs_drop: libc::c_uint,
}

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

/// Whether the agent `pid` is blocked in a call. `ps` cannot tell: its state `S` is as true of an
/// agent waiting for its next command as of one blocked in recv, and macOS keeps no wait channel
/// name that `ps -o wchan` could show. So the agent names its operating thread while it is in a
/// call (`mark_operation`), and the thread list (proc_pidinfo PROC_PIDLISTTHREADS, then
/// PROC_PIDTHREADINFO for each: name and run state) shows whether that thread waits. The decision
/// is `parse::agent_blocked_in_call`; without a readable thread list, None.
pub fn is_blocked(pid: u32) -> Option<bool> {
    let mut ids = vec![0u64; 64];
    let bytes = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            PROC_PIDLISTTHREADS,
            0,
            ids.as_mut_ptr().cast(),
            (ids.len() * 8) as libc::c_int,
        )
    };
    if bytes <= 0 {
        return None;
    }
    ids.truncate(bytes as usize / 8);
    let waits: Vec<parse::ThreadWait> = ids
        .iter()
        .filter_map(|&id| {
            let mut info: libc::proc_threadinfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::proc_threadinfo>() as libc::c_int;
            let got = unsafe {
                libc::proc_pidinfo(
                    pid as libc::c_int,
                    libc::PROC_PIDTHREADINFO,
                    id,
                    (&mut info as *mut libc::proc_threadinfo).cast(),
                    size,
                )
            };
            if got != size {
                return None;
            }
            let name: Vec<u8> = info
                .pth_name
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            let waiting = matches!(
                info.pth_run_state,
                libc::TH_STATE_WAITING | libc::TH_STATE_UNINTERRUPTIBLE
            );
            Some(parse::ThreadWait {
                name: (!name.is_empty()).then(|| String::from_utf8_lossy(&name).into_owned()),
                waiting,
                call_wait: waiting,
            })
        })
        .collect();
    parse::agent_blocked_in_call(&waits)
}

/// `sys/proc_info.h`: the thread handles of a process, one uint64_t each (not in the libc crate).
const PROC_PIDLISTTHREADS: libc::c_int = 6;

/// Name the calling thread (the agent's operating thread) by whether it is in a call; another
/// process of the same user reads it with PROC_PIDTHREADINFO.
pub fn mark_operation(on: bool) {
    let name = if on {
        parse::THREAD_IN_CALL
    } else {
        parse::THREAD_IDLE
    };
    if let Ok(name) = std::ffi::CString::new(name) {
        unsafe { libc::pthread_setname_np(name.as_ptr()) };
    }
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
