//! The fallback backend for operating systems without one yet. Every capability answers
//! "unavailable" with the reason; sockets still work through socket2, so the portable parts of a
//! case run and only the platform-specific observations are reported as missing.

use crate::{TcpEntry, TcpState, Unavailable};
use socket2::Socket;
use std::io;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// Everything here is missing because no backend implements it for this OS yet: a case that
/// needs it is skipped as "not implemented on <os>: <what>" (see `crate::NotImplemented`).
fn unsupported<T>(what: &str) -> io::Result<T> {
    Err(crate::not_implemented(what))
}

#[path = "no_capture.rs"]
mod no_capture;
pub use no_capture::Capture;

const CAPTURE_UNAVAILABLE: &str = "packet capture is not implemented on this operating system";

pub fn tcp_table() -> io::Result<Vec<TcpEntry>> {
    unsupported("reading the TCP table")
}

pub fn isolate_thread() -> Result<(), Unavailable> {
    Err(format!(
        "network isolation is not implemented for {} yet",
        std::env::consts::OS
    ))
}

pub fn prepare_agent(_cmd: &mut Command) {}

/// Nothing watches the runner here: an agent may outlive a runner that crashed.
/// Nothing to do: no descriptor limit is set or counted on this platform.
pub fn close_inherited_descriptors(_keep: Option<&str>) {}

pub fn watch_parent() {}

pub fn terminate(_pid: u32) -> io::Result<()> {
    unsupported("graceful termination")
}

pub fn is_blocked(_pid: u32) -> Option<bool> {
    None
}

pub fn exit_description(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit {code}"),
        None => "terminated".into(),
    }
}

pub fn set_user_timeout(_s: &Socket, _t: Duration) -> io::Result<()> {
    unsupported("the per-socket user timeout")
}

pub fn send(s: &Socket, buf: &[u8], _nosignal: bool) -> io::Result<usize> {
    s.send(buf)
}

pub fn sigpipe_default() -> io::Result<()> {
    unsupported("the SIGPIPE disposition")
}

pub fn set_fd_limit(_limit: u64) -> io::Result<()> {
    unsupported("lowering the descriptor limit")
}

pub fn poll(_s: &Socket, _t: Duration) -> io::Result<Vec<&'static str>> {
    unsupported("readiness polling")
}

pub fn socket_state(_s: &Socket) -> io::Result<TcpState> {
    unsupported("reading a socket's TCP state")
}

pub fn spawn_inheriting(_s: &Socket, _cmd: &mut Command) -> io::Result<Child> {
    unsupported("passing a socket to a child process")
}

pub fn adopt_inherited(_raw: &str) -> io::Result<Socket> {
    unsupported("adopting an inherited socket")
}

/// Dropping closes, but std and socket2 give no portable close that reports its result: the
/// close happened, and its result is reported as not observed.
pub fn close(s: Socket) -> Result<(), (io::Error, Option<Socket>)> {
    drop(s);
    Err((
        unsupported::<()>("reporting the result of close").unwrap_err(),
        None,
    ))
}

pub fn recv(s: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    (&*s).read(buf)
}

pub fn wait_readable(_s: &Socket, _t: Duration) -> io::Result<bool> {
    unsupported("waiting for readability")
}

pub fn poll_writable(_s: &Socket, _t: Duration) -> io::Result<Vec<&'static str>> {
    unsupported("polling for writability")
}

pub fn set_reuse_port(_s: &Socket, _on: bool) -> io::Result<()> {
    unsupported("SO_REUSEPORT")
}

pub fn raise_fd_limit() -> io::Result<u64> {
    unsupported("raising the descriptor limit")
}

pub fn abort() -> ! {
    std::process::abort()
}

/// Nothing to mark: `is_blocked` cannot observe anything here.
pub fn mark_operation(_on: bool) {}

pub fn wait_stdin_hangup() {
    // Without a hang-up notification, reading to the end of standard input is the portable wait.
    let _ = io::copy(&mut io::stdin(), &mut io::sink());
}
