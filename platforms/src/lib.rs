//! Everything that differs per operating system, behind one small portable API.
//!
//! Architecture invariant: this crate is the only place in the workspace with `cfg(target_os)`.
//! The backend is chosen once below; a platform without a backend gets `sys/unsupported.rs`, which
//! answers "unavailable: why" for every capability instead of a silent wrong answer.

pub mod bpf_frames;
// Only the backends that capture packets use the shared capture core; the others have
// `no_capture` and would leave it unused.
#[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
mod capture_core;
pub mod group;
pub mod host;
pub mod id;
pub mod lab;
pub mod names;
pub mod parse;
pub mod procs;
pub mod sockopt;
pub mod udp;
pub mod unix_domain;
pub mod wire;

#[cfg_attr(target_os = "linux", path = "sys/linux/mod.rs")]
#[cfg_attr(target_os = "macos", path = "sys/macos.rs")]
#[cfg_attr(target_os = "freebsd", path = "sys/freebsd.rs")]
#[cfg_attr(windows, path = "sys/windows.rs")]
#[cfg_attr(
    not(any(
        target_os = "linux",
        target_os = "macos",
        target_os = "freebsd",
        windows
    )),
    path = "sys/unsupported.rs"
)]
mod sys;

use std::io;
use std::net::SocketAddr;
use std::process::{Command, ExitStatus};
use std::time::Duration;

pub use names::{Os, TcpState};
pub use sys::Capture;

/// The operating system this binary was built for, or None where the names tables do not know it.
pub const CURRENT_OS: Option<Os> = if cfg!(target_os = "linux") {
    Some(Os::Linux)
} else if cfg!(target_os = "macos") {
    Some(Os::Macos)
} else if cfg!(target_os = "windows") {
    Some(Os::Windows)
} else if cfg!(target_os = "freebsd") {
    Some(Os::Freebsd)
} else {
    None
};

/// This run's platform id (`linux-6.18`, `gvisor-20221219`, `macos-15`...; see `id`): it names
/// the snapshot folder `snapshots/<id>/`, `results.json`, the CI artifact and the matrix column.
pub fn platform_id() -> &'static str {
    &platform().0
}

/// The raw text the platform id was read from (the full kernel release, the OS build), shown in
/// metadata and never compared.
pub fn platform_detail() -> &'static str {
    &platform().1
}

/// The kernel release this run saw, recorded in every snapshot header and results.json, shown by
/// `diff` and never compared: the full `uname` release on Linux and FreeBSD, the Darwin release on
/// macOS (the OS version alone does not name it), the build on Windows; on gVisor, whose `uname`
/// says 4.4.0 on every release, gVisor's own release.
pub fn kernel_release() -> &'static str {
    static K: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    K.get_or_init(|| id::kernel_release(platform_detail()))
}

fn platform() -> &'static (String, String) {
    static P: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    P.get_or_init(id::detect_parts)
}

/// A file anyone can open, to spend descriptors with.
pub fn null_device() -> &'static str {
    if cfg!(windows) {
        "NUL"
    } else {
        "/dev/null"
    }
}

/// Symbolic name of the OS error inside `err` ("ECONNRESET", "WSAECONNABORTED"); never a bare number.
/// An error that carries no OS code (a std-made error) is named "none".
pub fn error_name(err: &io::Error) -> String {
    match (err.raw_os_error(), CURRENT_OS) {
        (Some(code), Some(os)) => names::error_name(os, code)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("UNNAMED_OS_ERROR_{code}")),
        (Some(code), None) => format!("UNNAMED_OS_ERROR_{code}"),
        (None, _) => "none".to_owned(),
    }
}

/// A knob (or a capability an agent uses) that this backend does not implement on this OS, as
/// opposed to a call the OS made and failed. A case that needs it cannot be set up here, so it is
/// skipped ("not implemented on windows: what") rather than run on as a different scenario whose
/// outcomes the matrix would show as differences. It travels inside an `io::Error` of kind
/// `Unsupported` (see [`not_implemented`]), so callers that only look at the kind still see an
/// unsupported operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotImplemented {
    /// The OS it is missing on, as `std::env::consts::OS` names it ("windows", "freebsd").
    pub os: &'static str,
    /// What is missing, and why, in words (never an error number).
    pub what: String,
}

impl std::fmt::Display for NotImplemented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not implemented on {}: {}", self.os, self.what)
    }
}

impl std::error::Error for NotImplemented {}

/// The error a backend returns for a knob it does not implement on this OS (see
/// [`NotImplemented`]).
pub fn not_implemented(what: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        NotImplemented {
            os: std::env::consts::OS,
            what: what.into(),
        },
    )
}

/// The marker inside `err`, when it is one that [`not_implemented`] made.
pub fn not_implemented_in(err: &io::Error) -> Option<&NotImplemented> {
    err.get_ref()?.downcast_ref::<NotImplemented>()
}

/// A feature this OS does not have at all (datagram AF_UNIX on Windows, the abstract namespace off
/// Linux, IP_RECVERR off Linux), as opposed to a knob the backend has not implemented: it is the
/// platform's behavior, so a case records it as that step's outcome ("not supported (why)") and
/// runs on; it never skips the case and never stands for a made-up value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotSupported {
    /// Why, in words (never an error number): "no abstract socket namespace on macos".
    pub why: String,
}

impl std::fmt::Display for NotSupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not supported ({})", self.why)
    }
}

impl std::error::Error for NotSupported {}

/// The error a backend returns for a feature its OS lacks (see [`NotSupported`]).
pub fn not_supported(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, NotSupported { why: why.into() })
}

/// The marker inside `err`, when it is one that [`not_supported`] made.
pub fn not_supported_in(err: &io::Error) -> Option<&NotSupported> {
    err.get_ref()?.downcast_ref::<NotSupported>()
}

/// One socket of the kernel's TCP table: open ones and those no process holds anymore
/// (TIME_WAIT, orphaned FIN_WAIT2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    /// Bytes queued for sending and not yet acknowledged (0 where the OS does not say).
    pub send_queue: u64,
    /// Bytes received and not yet read by the application (0 where the OS does not say).
    pub recv_queue: u64,
}

/// The TCP table of the calling thread's network stack (on Linux: its network namespace).
pub fn tcp_table() -> io::Result<Vec<TcpEntry>> {
    sys::tcp_table()
}

/// Why a capability is missing, in words a user can act on.
pub type Unavailable = String;

/// Move the calling thread (only it) into a fresh private network stack with loopback up, so a case's
/// traffic, TCP table and capture are its own. Processes this thread spawns afterwards live there too.
/// The namespace disappears with the last process or thread in it: nothing to clean up by hand.
pub fn isolate_thread() -> Result<(), Unavailable> {
    sys::isolate_thread()
}

/// How this run holds the privileges that isolation, capture and the lab need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Privileges {
    /// Root already, or a platform without user namespaces: nothing changed.
    Unchanged,
    /// This process moved into a new user namespace in which it is root, with a network namespace
    /// of its own; `outer_uid` is the user it is outside. What only real root may read (the
    /// kernel's slab caches) is recorded as not visible.
    UserNamespace { outer_uid: u32 },
    /// Not root, and no user namespace could be entered: why, naming the setting that forbids
    /// it and the command that changes it.
    Refused(Unavailable),
}

impl Privileges {
    /// One line for the run's header; None when nothing changed.
    pub fn describe(&self) -> Option<String> {
        match self {
            Privileges::Unchanged => None,
            Privileges::UserNamespace { outer_uid } => Some(format!(
                "not root (uid {outer_uid}): running as root of a user namespace of its own"
            )),
            Privileges::Refused(why) => Some(why.clone()),
        }
    }
}

/// Where the process is not root, enter a user namespace in which it is (Linux; see
/// `sys/linux/userns.rs`), so every capability below is there as under root. Must be called
/// before the process starts any thread; the first call decides, later ones return its answer.
pub fn enter_user_namespace() -> &'static Privileges {
    privileges_cell().get_or_init(enter_sys)
}

/// What `enter_user_namespace` decided, if it was called.
pub fn privileges() -> Option<&'static Privileges> {
    privileges_cell().get()
}

/// Whether this process runs as root (effective uid 0). Windows has no uid: false there. `cargo
/// test` under CI expects every capability of a Linux machine run as root (`suite/tests/conform.rs`).
pub fn runs_as_root() -> bool {
    #[cfg(unix)]
    let root = unsafe { libc::geteuid() } == 0;
    #[cfg(not(unix))]
    let root = false;
    root
}

fn privileges_cell() -> &'static std::sync::OnceLock<Privileges> {
    static P: std::sync::OnceLock<Privileges> = std::sync::OnceLock::new();
    &P
}

#[cfg(target_os = "linux")]
use sys::userns::enter as enter_sys;

#[cfg(not(target_os = "linux"))]
fn enter_sys() -> Privileges {
    Privileges::Unchanged
}

/// Can this run isolate each case in its own network namespace?
pub fn probe_isolation() -> Result<(), Unavailable> {
    std::thread::spawn(isolate_thread)
        .join()
        .unwrap_or_else(|_| Err("the probe thread panicked".into()))
}

/// Whether a capture sees the loopback interface the whole machine shares (BPF on lo0: macOS and
/// FreeBSD, which have no network namespace per case) rather than the namespace of one case
/// (Linux). On a shared loopback a capture also sees every case running at the same time, so a
/// case keeps its own segments by its ports (`wire::keep_ports`), and the capture does not need
/// isolation to be meaningful.
pub const CAPTURE_SHARES_LOOPBACK: bool = cfg!(any(target_os = "macos", target_os = "freebsd"));

/// What to do when starting a capture fails for want of privileges.
#[cfg(any(target_os = "macos", target_os = "freebsd"))]
use sys::CAPTURE_HINT;
#[cfg(not(any(target_os = "macos", target_os = "freebsd")))]
const CAPTURE_HINT: &str = "run as root or grant CAP_NET_RAW";

/// Can this run capture packets? Inside an isolated case where cases are isolated (Linux); on
/// the shared loopback where the platform has no isolation but captures there (see
/// [`CAPTURE_SHARES_LOOPBACK`]). A backend without capture answers with its own reason.
pub fn probe_capture() -> Result<(), Unavailable> {
    std::thread::spawn(|| {
        // A backend without capture says why itself, rather than that isolation is missing.
        if !cfg!(any(
            target_os = "linux",
            target_os = "macos",
            target_os = "freebsd"
        )) {
            return Capture::start().map(drop).map_err(|e| e.to_string());
        }
        if !CAPTURE_SHARES_LOOPBACK {
            isolate_thread()?;
        }
        Capture::start().map(drop).map_err(|e| match e.kind() {
            io::ErrorKind::Unsupported => e.to_string(),
            _ => format!("packet capture failed: {e} ({CAPTURE_HINT})"),
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the probe thread panicked".into()))
}

/// Prepare an agent command: on Linux the agent is killed if the thread that spawned it goes away,
/// so a crashed or interrupted runner leaves no agent behind.
pub fn prepare_agent(cmd: &mut Command) {
    sys::prepare_agent(cmd)
}

/// Called first thing by an agent, before anything else opens a descriptor: close every
/// descriptor it inherited beyond stdin, stdout and stderr, except `keep` (the socket a holder was
/// handed). A shell or CI runner may leave descriptors open without close-on-exec; they would
/// pass through the runner into every agent, and a count the agent reports (connections until
/// EMFILE) would then depend on who started the run rather than on the platform.
pub fn close_inherited_descriptors(keep: Option<&str>) {
    sys::close_inherited_descriptors(keep)
}

/// Called first thing by an agent: make sure it does not outlive the runner that started it, on
/// platforms where `prepare_agent` cannot arrange that by itself. Linux and FreeBSD: nothing to do
/// (the kernel's parent-death signal). macOS: a thread waits in kqueue for the runner to exit.
/// Windows: a thread waits on a handle of the runner process. Either then ends the agent at once.
pub fn watch_parent() {
    sys::watch_parent()
}

/// Graceful termination with the default action (SIGTERM on Unix).
pub fn terminate(pid: u32) -> io::Result<()> {
    sys::terminate(pid)
}

/// Whether the process is asleep in the kernel (blocked in a call), if the platform can tell.
pub fn is_blocked(pid: u32) -> Option<bool> {
    sys::is_blocked(pid)
}

/// How a process ended, portably: "exit 0", "signal SIGPIPE", "signal SIGKILL".
pub fn exit_description(status: ExitStatus) -> String {
    sys::exit_description(status)
}

/// Knobs applied by an agent to its own sockets and process.
pub mod knobs {
    use super::*;
    use socket2::Socket;

    /// Per-socket user timeout: TCP_USER_TIMEOUT (Linux).
    pub fn set_user_timeout(s: &Socket, timeout: Duration) -> io::Result<()> {
        sys::set_user_timeout(s, timeout)
    }
    /// Send, optionally asking the kernel not to raise SIGPIPE for this call (MSG_NOSIGNAL).
    pub fn send(s: &Socket, buf: &[u8], nosignal: bool) -> io::Result<usize> {
        sys::send(s, buf, nosignal)
    }
    /// Restore the default SIGPIPE disposition (Rust's runtime ignores SIGPIPE at startup).
    pub fn sigpipe_default() -> io::Result<()> {
        sys::sigpipe_default()
    }
    /// Lower this process's file-descriptor limit.
    pub fn set_fd_limit(limit: u64) -> io::Result<()> {
        sys::set_fd_limit(limit)
    }
    /// Poll one socket for readiness; returns the names of the reported events ("IN", "RDHUP", "HUP", "ERR", "OUT").
    pub fn poll(s: &Socket, timeout: Duration) -> io::Result<Vec<&'static str>> {
        sys::poll(s, timeout)
    }
    /// Poll one socket for writability alone (POLLOUT; POLLWRNORM on Windows), as a runtime waits
    /// for a non-blocking connect; returns the names of the reported events, the ones the OS adds
    /// unasked (ERR, HUP) included.
    pub fn poll_writable(s: &Socket, timeout: Duration) -> io::Result<Vec<&'static str>> {
        sys::poll_writable(s, timeout)
    }
    /// SO_REUSEPORT on or off; `not_supported` where the OS has no such option (Windows).
    pub fn set_reuse_port(s: &Socket, on: bool) -> io::Result<()> {
        sys::set_reuse_port(s, on)
    }
    /// The TCP state of an open socket as its own kernel reports it (TCP_INFO on Linux).
    pub fn socket_state(s: &Socket) -> io::Result<TcpState> {
        sys::socket_state(s)
    }
    /// Spawn `cmd` so that it inherits `s`; the child gets the socket's descriptor number as an argument
    /// appended after `args`.
    pub fn spawn_inheriting(s: &Socket, cmd: &mut Command) -> io::Result<std::process::Child> {
        sys::spawn_inheriting(s, cmd)
    }
    /// In a child spawned by `spawn_inheriting`: adopt the inherited descriptor.
    pub fn adopt_inherited(raw: &str) -> io::Result<Socket> {
        sys::adopt_inherited(raw)
    }
    /// Block until standard input is closed by every writer (the runner and the parent agent).
    pub fn wait_stdin_hangup() {
        sys::wait_stdin_hangup()
    }
    /// Close a socket and report what the close itself returned, which dropping it hides: a
    /// lingering close of a non-blocking socket fails with WSAEWOULDBLOCK on Windows (and the
    /// socket stays open), and may report EWOULDBLOCK or EINPROGRESS on the BSDs. On failure the
    /// socket is handed back if it is still open (Windows), so it can be closed again later;
    /// on Unix a failed close(2) has released the descriptor all the same.
    pub fn close(s: Socket) -> Result<(), (io::Error, Option<Socket>)> {
        knob_sys::close(s)
    }
    /// Receive into `buf` with the OS's own answer: on Windows socket2 (and std) turn
    /// WSAESHUTDOWN, the error of a read after shutdown(SD_RECEIVE), into Ok(0), which would
    /// record an end of file Winsock never reported.
    pub fn recv(s: &Socket, buf: &mut [u8]) -> io::Result<usize> {
        knob_sys::recv(s, buf)
    }
    /// Wait up to `timeout` for the socket to be readable (a listener: a connection to accept),
    /// with poll(2) or WSAPoll. Unlike SO_RCVTIMEO on a listener, which only Linux applies to
    /// accept(), this bounds the wait on every platform.
    pub fn wait_readable(s: &Socket, timeout: Duration) -> io::Result<bool> {
        knob_sys::wait_readable(s, timeout)
    }
    /// Raise the soft descriptor limit as far as this platform lets a process (the hard limit,
    /// clamped to `kern.maxfilesperproc` on macOS, which refuses an infinite limit); returns the
    /// new soft limit.
    pub fn raise_fd_limit() -> io::Result<u64> {
        knob_sys::raise_fd_limit()
    }
    /// End the process the way this platform's C `abort()` does (SIGABRT on Unix; a fast fail,
    /// STATUS_STACK_BUFFER_OVERRUN, on Windows), without handing it to a crash reporter first:
    /// on Windows, Windows Error Reporting could otherwise keep the process alive while it writes
    /// a report, past any deadline.
    pub fn abort() -> ! {
        knob_sys::abort()
    }
}

/// Called by an agent around each operation (`on` before it starts, off when it returned), so the
/// runner can tell an agent blocked inside the call from one waiting for its next command where
/// the process's own state cannot (`is_blocked`): the calling thread's name says which (macOS,
/// Windows; see `parse::THREAD_IN_CALL`). Elsewhere the kernel's wait channel tells, and this does
/// nothing.
pub fn mark_operation(on: bool) {
    sys::mark_operation(on);
}

// The knobs `close`, `recv`, `wait_readable`, `raise_fd_limit` and `abort` live in each backend.
use sys as knob_sys;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_knob_not_implemented_is_told_apart_from_an_unsupported_call() {
        let e = not_implemented("passing a socket to a child process");
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        let marker = not_implemented_in(&e).expect("the marker survives in the io::Error");
        assert_eq!(marker.os, std::env::consts::OS);
        assert_eq!(marker.what, "passing a socket to a child process");
        assert_eq!(
            e.to_string(),
            format!(
                "not implemented on {}: passing a socket to a child process",
                std::env::consts::OS
            )
        );
        // An OS that refused, or an unsupported error without the marker, is not one.
        let plain = io::Error::new(io::ErrorKind::Unsupported, "no such option");
        assert_eq!(not_implemented_in(&plain), None);
        assert_eq!(not_implemented_in(&io::Error::from_raw_os_error(92)), None);
    }
}
