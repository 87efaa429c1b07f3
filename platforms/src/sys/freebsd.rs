//! FreeBSD backend: netstat for the TCP table, TCP_INFO for a socket's state, TCP_MAXUNACKTIME for
//! the user timeout (on the stacks that enforce it), MSG_NOSIGNAL, ps's wait channel for "blocked
//! in a call", procctl(PROC_PDEATHSIG_CTL) so agents never outlive the runner, and BPF on lo0 for
//! the wire (`bpf.rs`, as root). No isolation (reason below).

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
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;
use unix::cvt;

pub fn tcp_table() -> io::Result<Vec<TcpEntry>> {
    bsd::tcp_table(Os::Freebsd)
}

/// What a failed capture start should tell the user to do.
pub const CAPTURE_HINT: &str =
    "BPF on lo0 needs /dev/bpf, which devfs gives to root only: run as root";

/// FreeBSD's BPF record layout (`sys/net/bpf.h`): `struct timeval` time stamps (libc's
/// `bpf_hdr`) and records aligned to `sizeof(long)` (libc's BPF_ALIGNMENT).
const BPF_LAYOUT: crate::bpf_frames::Layout = crate::bpf_frames::Layout {
    stamp_field: std::mem::size_of::<libc::timeval>() / 2,
    align: libc::BPF_ALIGNMENT,
    af_inet: libc::AF_INET as u32,
    af_inet6: libc::AF_INET6 as u32,
};

// The libc crate has FreeBSD's BPF structures.
use libc::{bpf_insn as BpfInsn, bpf_program as BpfProgram, bpf_stat as BpfStat};

pub fn isolate_thread() -> Result<(), Unavailable> {
    Err(
        "per-case network isolation is implemented only on Linux (network namespaces); \
         FreeBSD could give each case a VNET jail, which is not implemented yet"
            .into(),
    )
}

// --- processes -----------------------------------------------------------------------------------

pub fn prepare_agent(cmd: &mut Command) {
    // The FreeBSD counterpart of PR_SET_PDEATHSIG (procctl(2), FreeBSD 11.2+), with one
    // difference: it fires when the parent *process* exits, not the thread that spawned the child.
    // SAFETY: procctl is a plain system call; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut sig: libc::c_int = libc::SIGKILL;
            cvt(libc::procctl(
                libc::P_PID,
                0,
                libc::PROC_PDEATHSIG_CTL,
                (&mut sig as *mut libc::c_int).cast(),
            ))?;
            Ok(())
        });
    }
}

/// Nothing to do: the kernel delivers SIGKILL when the runner exits (see `prepare_agent`).
pub fn watch_parent() {}

/// Whether the process sleeps on a socket's wait channel (`ps -o state= -o wchan=`): sleeping
/// alone would also be true of an agent waiting for its next command (on its stdin pipe,
/// `piperd`). See `parse::freebsd_ps_blocked_in_socket`. (Two `-o`: in `-o state=,wchan=` the
/// text after `=` up to the end would be state's header.)
pub fn is_blocked(pid: u32) -> Option<bool> {
    let out = Command::new("ps")
        .args(["-o", "state=", "-o", "wchan=", "-p", &pid.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse::freebsd_ps_blocked_in_socket(&String::from_utf8_lossy(&out.stdout))
}

/// Nothing to mark: the wait channel tells a socket call from a wait for the next command.
pub fn mark_operation(_on: bool) {}

// --- knobs -----------------------------------------------------------------------------------------

/// TCP_MAXUNACKTIME (tcp(4), FreeBSD 14+): the connection is reset if no byte is acknowledged
/// for that many seconds, FreeBSD's nearest match to Linux's TCP_USER_TIMEOUT (its Linux ABI maps
/// TCP_USER_TIMEOUT onto it). Every stack stores the option, but only the RACK and BBR stacks
/// check it (`ctf_progress_timeout_check`); the default stack accepts it and never acts on it. So
/// the socket's stack is asked first (TCP_FUNCTION_BLK), and on any other stack the user timeout
/// is not implemented: the case is skipped ("not implemented on freebsd: ...") rather than run on
/// without a timeout, which would be another scenario than the one it compares. Kernels without
/// the option refuse it (ENOPROTOOPT), which the case then records.
pub fn set_user_timeout(s: &Socket, timeout: Duration) -> io::Result<()> {
    let stack = tcp_stack(s)?;
    if !parse::freebsd_stack_enforces_maxunacktime(&stack) {
        return Err(crate::not_implemented(format!(
            "a user timeout on the {stack} TCP stack, which ignores TCP_MAXUNACKTIME; only the \
             rack and bbr stacks enforce it (net.inet.tcp.functions_default)"
        )));
    }
    let secs = libc::c_uint::try_from(crate::parse::whole_seconds_up(timeout))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "user timeout too long"))?;
    cvt(unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXUNACKTIME,
            (&secs as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// The name of the TCP stack serving this socket (TCP_FUNCTION_BLK, tcp(4)): `freebsd` for the
/// default stack, `rack`, `bbr`.
fn tcp_stack(s: &Socket) -> io::Result<String> {
    let mut fs: libc::tcp_function_set = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_function_set>() as libc::socklen_t;
    cvt(unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_FUNCTION_BLK,
            (&mut fs as *mut libc::tcp_function_set).cast(),
            &mut len,
        )
    })?;
    let name: Vec<u8> = fs
        .function_set_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&name).into_owned())
}

pub fn send(s: &Socket, buf: &[u8], nosignal: bool) -> io::Result<usize> {
    let flags = if nosignal { libc::MSG_NOSIGNAL } else { 0 };
    s.send_with_flags(buf, flags)
}

pub fn socket_state(s: &Socket) -> io::Result<TcpState> {
    // The struct grows between releases (libc's follows one of them); the kernel copies at most
    // the length it is given, and tcpi_state is the first byte of every version.
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
    names::tcp_state(Os::Freebsd, info.tcpi_state as i32)
        .ok_or_else(|| io::Error::other(format!("unknown tcpi_state {}", info.tcpi_state)))
}
