//! Windows backend: GetTcpTable2/GetTcp6Table2 for the TCP table, SIO_TCP_INFO for a socket's
//! state, TCP_MAXRT for the user timeout, WSAPoll, CTRL_BREAK for graceful termination, the
//! system's thread list for "blocked in a call", and a thread watching the runner so agents never
//! outlive it. No isolation, no wire capture (why: CAPTURE_UNAVAILABLE), no SIGPIPE, no
//! descriptor limit, no socket inheritance (reasons below).

#[path = "no_capture.rs"]
mod no_capture;

pub use no_capture::Capture;

use crate::{names, parse, Os, TcpEntry, TcpState, Unavailable};
use socket2::Socket;
use std::ffi::c_void;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::windows::io::{AsRawHandle, AsRawSocket, FromRawSocket, IntoRawSocket};
use std::os::windows::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;
use windows_sys::core::PWSTR;
use windows_sys::Win32::Foundation::{
    CloseHandle, LocalFree, ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_PARAMETER,
    ERROR_NOT_SUPPORTED, FILETIME, HANDLE, INVALID_HANDLE_VALUE, NO_ERROR,
    STATUS_INFO_LENGTH_MISMATCH,
};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetTcp6Table2, GetTcpTable2, MIB_TCP6ROW2, MIB_TCP6TABLE2, MIB_TCPROW2, MIB_TCPTABLE2,
};
use windows_sys::Win32::Networking::WinSock::{
    closesocket, setsockopt, TCP_INFO_v0, WSAGetLastError, WSAIoctl, WSAPoll, IPPROTO_TCP, POLLERR,
    POLLHUP, POLLNVAL, POLLRDBAND, POLLRDNORM, POLLWRNORM, SIO_TCP_INFO, SOCKET, SOCKET_ERROR,
    TCP_MAXRT, WSAPOLLFD,
};
use windows_sys::Win32::System::Console::{
    AllocConsole, GenerateConsoleCtrlEvent, GetStdHandle, SetStdHandle, CTRL_BREAK_EVENT,
    STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::Pipes::PeekNamedPipe;
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentThread, GetProcessTimes, GetThreadDescription, OpenProcess,
    OpenThread, SetThreadDescription, TerminateProcess, WaitForSingleObject,
    CREATE_NEW_PROCESS_GROUP, INFINITE, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
    THREAD_QUERY_LIMITED_INFORMATION,
};

// Functions of features this crate does not enable in windows-sys (Wdk_System_SystemInformation,
// Win32_System_Diagnostics_Debug, Win32_System_ErrorReporting), linked the way windows-sys links
// its own: by DLL name, with no import library.
#[cfg_attr(
    target_arch = "x86",
    link(
        name = "ntdll.dll",
        kind = "raw-dylib",
        modifiers = "+verbatim",
        import_name_type = "undecorated"
    )
)]
#[cfg_attr(
    not(target_arch = "x86"),
    link(name = "ntdll.dll", kind = "raw-dylib", modifiers = "+verbatim")
)]
extern "system" {
    fn NtQuerySystemInformation(class: u32, info: *mut c_void, len: u32, returned: *mut u32)
        -> i32;
}
#[cfg_attr(
    target_arch = "x86",
    link(
        name = "kernel32.dll",
        kind = "raw-dylib",
        modifiers = "+verbatim",
        import_name_type = "undecorated"
    )
)]
#[cfg_attr(
    not(target_arch = "x86"),
    link(name = "kernel32.dll", kind = "raw-dylib", modifiers = "+verbatim")
)]
extern "system" {
    fn GetErrorMode() -> u32;
    fn SetErrorMode(mode: u32) -> u32;
    fn WerSetFlags(flags: u32) -> i32;
}
/// `SYSTEM_INFORMATION_CLASS` SystemProcessInformation.
const SYSTEM_PROCESS_INFORMATION: u32 = 5;
/// `errhandlingapi.h`: no critical-error message box; do not invoke Windows Error Reporting.
const SEM_FAILCRITICALERRORS: u32 = 0x0001;
const SEM_NOGPFAULTERRORBOX: u32 = 0x0002;
/// `werapi.h`: no heap in a report, queue it, show no UI.
const WER_FAULT_REPORTING_FLAG_NOHEAP: u32 = 1;
const WER_FAULT_REPORTING_FLAG_QUEUE: u32 = 2;
const WER_FAULT_REPORTING_NO_UI: u32 = 32;

/// A knob this backend does not implement on Windows: the case that needs it is skipped as
/// "not implemented on windows: <what>" (see `crate::NotImplemented`), never run on without it.
fn not_implemented<T>(what: &str) -> io::Result<T> {
    Err(crate::not_implemented(what))
}

/// The error of the last failed Winsock call.
fn wsa_error() -> io::Error {
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

fn raw(s: &Socket) -> SOCKET {
    s.as_raw_socket() as SOCKET
}

/// Why Windows has no wire, from what was read (not tried on a runner):
/// - Loopback TCP never reaches NDIS: tcpip.sys hands it from its send path to its receive path
///   (the WinpkFilter authors in wiresock/ndisapi-rs#22; Npcap ships a WFP callout driver of its
///   own for loopback, nmap/npcap docs). pktmon's capture points are NDIS components (adapters,
///   filter drivers, the vSwitch: Microsoft's "Packet Monitor" docs), and `pktmon start
///   --capture --comp nics` names adapters, which loopback has none of.
/// - The Microsoft-Windows-TCPIP and Microsoft-Windows-Kernel-Network ETW providers report
///   connections and byte counts (connect, accept, N bytes sent or received, retransmit,
///   disconnect), not segments with their SYN, FIN and RST flags, so they cannot give the wire
///   events other platforms record; a guess from them would be a claim, not an observation.
/// - Not tried: a raw socket bound to 127.0.0.1 with SIO_RCVALL (how RawCap reads loopback), as
///   Administrator and IPv4 only.
const CAPTURE_UNAVAILABLE: &str = "not captured on Windows: loopback TCP never reaches NDIS \
     (tcpip.sys short-circuits it), where pktmon and packet filter drivers see packets; the \
     TCPIP ETW events name connections and byte counts, not segments with SYN/FIN/RST \
     (see CAPTURE_UNAVAILABLE in platforms/src/sys/windows.rs)";

// --- TCP table -------------------------------------------------------------------------------

/// Call an IP Helper table function until the buffer is large enough (the table may grow between
/// the size query and the read). The buffer is zeroed and u64-aligned, enough for the table
/// structs, and never empty: with an empty first buffer, a call that succeeded at once on an empty
/// table (as Wine's GetTcp6Table2 may) left a header to be read out of bounds; now such a call
/// need not write anything and reads as a count of 0 (see `parse::ip_helper_rows`).
fn ip_helper_table(get: impl Fn(*mut c_void, *mut u32) -> u32) -> io::Result<Option<Vec<u64>>> {
    let mut buf: Vec<u64> = vec![0; 2048];
    loop {
        let mut size = u32::try_from(buf.len() * 8).unwrap_or(u32::MAX);
        match get(buf.as_mut_ptr().cast(), &mut size) {
            NO_ERROR => return Ok(Some(buf)),
            ERROR_INSUFFICIENT_BUFFER => {
                buf = vec![0; (size as usize).div_ceil(8).max(buf.len() + 1)]
            }
            // GetTcp6Table2 on a machine without an IPv6 stack.
            ERROR_NOT_SUPPORTED => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e as i32)),
        }
    }
}

/// The rows of a table `ip_helper_table` returned: the count it claims, clamped to the buffer.
/// SAFETY: `buf` holds a table whose DWORD count is followed by rows of `R` at `rows_at`.
unsafe fn table_rows<R>(buf: &[u64], rows_at: usize) -> &[R] {
    let bytes = std::mem::size_of_val(buf);
    let claimed = unsafe { *buf.as_ptr().cast::<u32>() };
    let n = parse::ip_helper_rows(bytes, claimed, rows_at, std::mem::size_of::<R>());
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>().add(rows_at).cast::<R>(), n) }
}

pub fn tcp_table() -> io::Result<Vec<TcpEntry>> {
    // Windows does not report queue sizes in these tables: they stay 0 (see TcpEntry).
    let mut out = Vec::new();
    if let Some(buf) = ip_helper_table(|p, size| unsafe { GetTcpTable2(p.cast(), size, 0) })? {
        // SAFETY: the call filled the buffer with a MIB_TCPTABLE2.
        let rows: &[MIB_TCPROW2] =
            unsafe { table_rows::<MIB_TCPROW2>(&buf, std::mem::offset_of!(MIB_TCPTABLE2, table)) };
        out.extend(rows.iter().filter_map(|r| {
            Some(TcpEntry {
                local: SocketAddrV4::new(
                    parse::windows_ipv4(r.dwLocalAddr),
                    parse::windows_port(r.dwLocalPort),
                )
                .into(),
                remote: SocketAddrV4::new(
                    parse::windows_ipv4(r.dwRemoteAddr),
                    parse::windows_port(r.dwRemotePort),
                )
                .into(),
                state: names::tcp_state(Os::Windows, r.dwState as i32)?,
                send_queue: 0,
                recv_queue: 0,
            })
        }));
    }
    if let Some(buf) = ip_helper_table(|p, size| unsafe { GetTcp6Table2(p.cast(), size, 0) })? {
        // SAFETY: the call filled the buffer with a MIB_TCP6TABLE2.
        let rows: &[MIB_TCP6ROW2] = unsafe {
            table_rows::<MIB_TCP6ROW2>(&buf, std::mem::offset_of!(MIB_TCP6TABLE2, table))
        };
        out.extend(rows.iter().filter_map(|r| {
            let v6 = |a: windows_sys::Win32::Networking::WinSock::IN6_ADDR, port, scope| {
                // SAFETY: both union views cover the same 16 bytes.
                let ip = Ipv6Addr::from(unsafe { a.u.Byte });
                SocketAddr::from(SocketAddrV6::new(ip, parse::windows_port(port), 0, scope))
            };
            Some(TcpEntry {
                local: v6(r.LocalAddr, r.dwLocalPort, r.dwLocalScopeId),
                remote: v6(r.RemoteAddr, r.dwRemotePort, r.dwRemoteScopeId),
                state: names::tcp_state(Os::Windows, r.State)?,
                send_queue: 0,
                recv_queue: 0,
            })
        }));
    }
    Ok(out)
}

// --- isolation ---------------------------------------------------------------------------------

pub fn isolate_thread() -> Result<(), Unavailable> {
    Err(
        "per-case network isolation is implemented only on Linux (network namespaces); \
         Windows could use network compartments or Hyper-V containers, which is not implemented"
            .into(),
    )
}

// --- processes -----------------------------------------------------------------------------------

/// The variable through which the runner tells an agent which process to outlive no longer than
/// (see `watch_parent`).
const WATCH_PID: &str = "SOCKCONFORM_WATCH_PID";

pub fn prepare_agent(cmd: &mut Command) {
    // Its own process group, so `terminate` can send CTRL_BREAK to this agent alone (the group id
    // is the agent's pid). A side effect: CTRL_C is disabled in the new group; CTRL_BREAK is not.
    cmd.creation_flags(CREATE_NEW_PROCESS_GROUP);
    cmd.env(WATCH_PID, std::process::id().to_string());
    ensure_console();
}

/// Console control events reach only the processes attached to the caller's console. A runner
/// started without one (by a service, a CI agent, a GUI) gets a console of its own here, before
/// its first agent starts, and every agent inherits it (they are not DETACHED_PROCESS); where
/// there is one already, AllocConsole fails with ERROR_ACCESS_DENIED and nothing changes. The
/// runner's standard handles (pipes to a CI log, say) are kept: AllocConsole would point them at
/// the new, unseen console.
fn ensure_console() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        let ids = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE];
        let saved = ids.map(|id| GetStdHandle(id));
        if AllocConsole() != 0 {
            for (id, h) in ids.into_iter().zip(saved) {
                if !h.is_null() && h != INVALID_HANDLE_VALUE {
                    SetStdHandle(id, h);
                }
            }
        }
    });
}

/// Nothing to do: sockets here are handles, not numbered descriptors under RLIMIT_NOFILE, so a
/// handle inherited from the shell does not shift any count an agent reports.
pub fn close_inherited_descriptors(_keep: Option<&str>) {}

/// In an agent: end this process as soon as the runner that started it ends.
///
/// Windows has no parent-death signal. A Job Object with KILL_ON_JOB_CLOSE would need the runner
/// to keep a job handle and assign each agent to it after spawning (std cannot start a process
/// inside a job, so the agent runs unassigned for a moment), while `prepare_agent` only sees the
/// Command. So the runner passes its pid (`prepare_agent`), and a thread here waits on a handle of
/// the runner process and then terminates this process with exit code 1, as a hard kill by std
/// does. A pid is reused only after its process is gone: if the pid now names a process created
/// after this one, the runner is gone already.
pub fn watch_parent() {
    let Some(pid) = std::env::var(WATCH_PID)
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return;
    };
    let runner = unsafe {
        OpenProcess(
            PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
            0,
            pid,
        )
    };
    if runner.is_null() {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(ERROR_INVALID_PARAMETER as i32) {
            die(); // no such process: the runner is gone
        }
        eprintln!("agent: cannot watch the runner (pid {pid}): {e}");
        return;
    }
    match (created(runner), created(unsafe { GetCurrentProcess() })) {
        (Some(r), Some(me)) if r > me => die(),
        _ => {}
    }
    let runner = runner as usize;
    std::thread::spawn(move || {
        unsafe { WaitForSingleObject(runner as HANDLE, INFINITE) };
        die();
    });
}

/// The creation time of a process, in 100 ns units since 1601.
fn created(process: HANDLE) -> Option<u64> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut c, mut e, mut k, mut u) = (zero, zero, zero, zero);
    if unsafe { GetProcessTimes(process, &mut c, &mut e, &mut k, &mut u) } == 0 {
        return None;
    }
    Some(u64::from(c.dwHighDateTime) << 32 | u64::from(c.dwLowDateTime))
}

fn die() -> ! {
    unsafe {
        TerminateProcess(GetCurrentProcess(), 1);
    }
    std::process::exit(1)
}

/// Graceful termination: CTRL_BREAK to the agent's process group (made by `prepare_agent`). With
/// no handler installed (Rust installs none) the default one calls
/// ExitProcess(STATUS_CONTROL_C_EXIT), so the agent exits with "exit STATUS_CONTROL_C_EXIT" after
/// its DLLs detach, the counterpart of SIGTERM's default action. Console control events reach only
/// processes attached to the caller's console, which `prepare_agent` makes sure the runner has.
pub fn terminate(pid: u32) -> io::Result<()> {
    if unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid) } == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("CTRL_BREAK to the process group of {pid} failed: {e}"),
        ));
    }
    Ok(())
}

/// Whether the agent `pid` is blocked in a call: its threads' states and wait reasons from
/// NtQuerySystemInformation(SystemProcessInformation), and the thread the agent marked as in a
/// call (`mark_operation`); the decision is `parse::agent_blocked_in_call`. A blocking Winsock
/// call waits in NtWaitForSingleObject (wait reason UserRequest), while an agent waiting for its
/// next command reads a synchronous pipe (an Executive wait); the runner watcher thread waits
/// with UserRequest too, which is why the marked thread, not any waiting one, decides.
pub fn is_blocked(pid: u32) -> Option<bool> {
    let buf = system_processes().ok()?;
    // SAFETY: u64s viewed as their bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len() * 8) };
    let threads = parse::windows_process_threads(bytes, pid, std::mem::size_of::<usize>())?;
    let waits: Vec<parse::ThreadWait> = threads
        .iter()
        .map(|t| t.wait(thread_description(t.tid)))
        .collect();
    parse::agent_blocked_in_call(&waits)
}

/// The SystemProcessInformation list of every process and thread (some hundred KiB), in a
/// u64-aligned buffer grown until it fits.
fn system_processes() -> io::Result<Vec<u64>> {
    let mut buf: Vec<u64> = vec![0; 64 * 1024];
    loop {
        let mut needed = 0u32;
        let len = u32::try_from(buf.len() * 8).unwrap_or(u32::MAX);
        let status = unsafe {
            NtQuerySystemInformation(
                SYSTEM_PROCESS_INFORMATION,
                buf.as_mut_ptr().cast(),
                len,
                &mut needed,
            )
        };
        match status {
            0 => return Ok(buf),
            STATUS_INFO_LENGTH_MISMATCH if buf.len() < 64 << 20 => {
                buf = vec![0; (needed as usize).div_ceil(8).max(buf.len()) * 2]
            }
            s => {
                return Err(io::Error::other(format!(
                    "NtQuerySystemInformation failed with NTSTATUS 0x{:08X}",
                    s as u32
                )))
            }
        }
    }
}

/// A thread's description (SetThreadDescription; Windows 10 1607+), or None.
fn thread_description(tid: u32) -> Option<String> {
    let h = unsafe { OpenThread(THREAD_QUERY_LIMITED_INFORMATION, 0, tid) };
    if h.is_null() {
        return None;
    }
    let mut p: PWSTR = std::ptr::null_mut();
    let hr = unsafe { GetThreadDescription(h, &mut p) };
    unsafe { CloseHandle(h) };
    if hr < 0 || p.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated UTF-16 string the call allocated; freed with LocalFree.
    let name = unsafe {
        let len = (0..).take_while(|&i| *p.add(i) != 0).count();
        let name = String::from_utf16_lossy(std::slice::from_raw_parts(p, len));
        LocalFree(p.cast());
        name
    };
    Some(name)
}

/// Name the calling thread (the agent's operating thread) by whether it is in a call.
pub fn mark_operation(on: bool) {
    let name = if on {
        parse::THREAD_IN_CALL
    } else {
        parse::THREAD_IDLE
    };
    let wide: Vec<u16> = name.encode_utf16().chain([0]).collect();
    unsafe { SetThreadDescription(GetCurrentThread(), wide.as_ptr()) };
}

pub fn exit_description(status: ExitStatus) -> String {
    match status.code() {
        // The exit code is a DWORD; std hands it over as an i32.
        Some(code) => parse::windows_exit_description(code as u32),
        None => "unknown".into(),
    }
}

// --- knobs -----------------------------------------------------------------------------------------

/// TCP_MAXRT: seconds of retransmission (of data, and of the SYN while connecting) before the
/// connection is dropped.
pub fn set_user_timeout(s: &Socket, timeout: Duration) -> io::Result<()> {
    let secs = u32::try_from(parse::whole_seconds_up(timeout))
        .ok()
        .filter(|&v| v != u32::MAX) // u32::MAX (-1) means "never time out"
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "user timeout too long"))?;
    let r = unsafe {
        setsockopt(
            raw(s),
            IPPROTO_TCP,
            TCP_MAXRT,
            (&secs as *const u32).cast(),
            std::mem::size_of::<u32>() as i32,
        )
    };
    if r == SOCKET_ERROR {
        return Err(wsa_error());
    }
    Ok(())
}

/// closesocket and its own result. It fails with WSAEWOULDBLOCK on a non-blocking socket whose
/// linger time is non-zero, and the socket stays open: it is handed back (see
/// `parse::windows_close_leaves_socket_open`).
pub fn close(s: Socket) -> Result<(), (io::Error, Option<Socket>)> {
    let raw = s.into_raw_socket();
    if unsafe { closesocket(raw as SOCKET) } == 0 {
        return Ok(());
    }
    let e = wsa_error();
    let open = e
        .raw_os_error()
        .is_some_and(parse::windows_close_leaves_socket_open);
    // SAFETY: closesocket failed in a way that leaves this socket open and ours.
    let back = open.then(|| unsafe { Socket::from_raw_socket(raw) });
    Err((e, back))
}

/// recv(2) as Winsock answers it, WSAESHUTDOWN included (socket2 reports that as Ok(0)).
pub fn recv(s: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    let len = buf.len().min(i32::MAX as usize) as i32;
    let n =
        unsafe { windows_sys::Win32::Networking::WinSock::recv(raw(s), buf.as_mut_ptr(), len, 0) };
    if n == SOCKET_ERROR {
        return Err(wsa_error());
    }
    Ok(n as usize)
}

/// WSAPoll for POLLRDNORM (a listener reports it when a connection can be accepted). An error or
/// hang-up counts as readable: the call that follows reports it.
pub fn wait_readable(s: &Socket, timeout: Duration) -> io::Result<bool> {
    let mut pfd = WSAPOLLFD {
        fd: raw(s),
        events: POLLRDNORM,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    match unsafe { WSAPoll(&mut pfd, 1, ms) } {
        SOCKET_ERROR => Err(wsa_error()),
        n => Ok(n > 0),
    }
}

/// Windows has no per-process limit on open sockets (no RLIMIT_NOFILE) to raise: the limit a
/// case raises to keep out of its way is already out of the way, so this succeeds and reports no
/// limit (u64::MAX), and a case that only clears the way (ports/capacity_10k_idle) runs the same
/// scenario here.
pub fn raise_fd_limit() -> io::Result<u64> {
    Ok(u64::MAX)
}

/// Rust's abort is the C runtime's: `__fastfail`, which ends the process with
/// STATUS_STACK_BUFFER_OVERRUN. By default Windows Error Reporting takes the process first and may
/// keep it alive (suspended, while a report and dump are written, or behind a dialog) past any
/// deadline. SEM_NOGPFAULTERRORBOX tells the system not to invoke WER for this process
/// (SetErrorMode's documentation); in case a fast fail still reaches WER, its flags ask for no
/// UI, no heap in the dump and a queued report.
pub fn abort() -> ! {
    unsafe {
        SetErrorMode(GetErrorMode() | SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
        WerSetFlags(
            WER_FAULT_REPORTING_NO_UI
                | WER_FAULT_REPORTING_FLAG_NOHEAP
                | WER_FAULT_REPORTING_FLAG_QUEUE,
        );
    }
    std::process::abort()
}

/// Windows has no SIGPIPE: a send on a broken connection always fails with an error, so
/// `nosignal` changes nothing.
pub fn send(s: &Socket, buf: &[u8], _nosignal: bool) -> io::Result<usize> {
    s.send(buf)
}

/// Windows has no SIGPIPE, so there is no default action to restore. A case that asks for it is
/// about that signal (which write kills the process, or that MSG_NOSIGNAL, which Windows does not
/// have either, turns it into an error); run on without it, it would record plain errors as the
/// platform's answer to a question it cannot be asked here.
pub fn sigpipe_default() -> io::Result<()> {
    not_implemented(
        "the default SIGPIPE action (Windows has no SIGPIPE: a send on a broken connection \
         fails with an error)",
    )
}

/// Windows has no per-process limit on open sockets (no RLIMIT_NOFILE) to lower, so a case
/// about a process at its descriptor limit cannot be set up here.
pub fn set_fd_limit(_limit: u64) -> io::Result<()> {
    not_implemented(
        "a per-process descriptor limit (Windows has no RLIMIT_NOFILE to lower for its sockets)",
    )
}

pub fn poll(s: &Socket, timeout: Duration) -> io::Result<Vec<&'static str>> {
    // WSAPoll refuses POLLPRI (WSAEINVAL); POLLRDNORM | POLLWRNORM is the POLLIN | POLLOUT of Unix.
    let mut pfd = WSAPOLLFD {
        fd: raw(s),
        events: POLLRDNORM | POLLWRNORM,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    if unsafe { WSAPoll(&mut pfd, 1, ms) } == SOCKET_ERROR {
        return Err(wsa_error());
    }
    let table = [
        (POLLRDNORM, "IN"),
        (POLLRDBAND, "PRI"),
        (POLLWRNORM, "OUT"),
        (POLLERR, "ERR"),
        (POLLHUP, "HUP"),
        (POLLNVAL, "NVAL"),
    ];
    Ok(table
        .iter()
        .filter(|(bit, _)| pfd.revents & bit != 0)
        .map(|(_, n)| *n)
        .collect())
}

/// WSAPoll for POLLWRNORM alone, as a runtime waits for a non-blocking connect: before Windows 10
/// 2004 a failed connect reported no event at all here (the census, B3), which is what a case
/// then records. POLLERR, POLLHUP and POLLNVAL come unasked.
pub fn poll_writable(s: &Socket, timeout: Duration) -> io::Result<Vec<&'static str>> {
    let mut pfd = WSAPOLLFD {
        fd: raw(s),
        events: POLLWRNORM,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    if unsafe { WSAPoll(&mut pfd, 1, ms) } == SOCKET_ERROR {
        return Err(wsa_error());
    }
    let table = [
        (POLLWRNORM, "OUT"),
        (POLLERR, "ERR"),
        (POLLHUP, "HUP"),
        (POLLNVAL, "NVAL"),
    ];
    Ok(table
        .iter()
        .filter(|(bit, _)| pfd.revents & bit != 0)
        .map(|(_, n)| *n)
        .collect())
}

/// Windows has no SO_REUSEPORT; SO_REUSEADDR there already lets a second socket share a port in
/// use (the census, D1), and SO_EXCLUSIVEADDRUSE forbids it.
pub fn set_reuse_port(_s: &Socket, _on: bool) -> io::Result<()> {
    Err(crate::not_supported("Windows has no SO_REUSEPORT"))
}

/// SIO_TCP_INFO (Windows 10 1703 and later), version 0 of the structure.
pub fn socket_state(s: &Socket) -> io::Result<TcpState> {
    let version: u32 = 0;
    let mut info = TCP_INFO_v0::default();
    let mut returned = 0u32;
    let r = unsafe {
        WSAIoctl(
            raw(s),
            SIO_TCP_INFO,
            (&version as *const u32).cast(),
            std::mem::size_of::<u32>() as u32,
            (&mut info as *mut TCP_INFO_v0).cast(),
            std::mem::size_of::<TCP_INFO_v0>() as u32,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if r == SOCKET_ERROR {
        return Err(wsa_error());
    }
    TcpState::from_windows_tcpstate(info.State)
        .ok_or_else(|| io::Error::other(format!("unknown TCPSTATE {}", info.State)))
}

/// A socket can be shared with a child process on Windows, but not the way this backend would
/// need (a descriptor number inherited across exec): it is not implemented, so the case is
/// skipped rather than run without the holder.
pub fn spawn_inheriting(_s: &Socket, _cmd: &mut Command) -> io::Result<Child> {
    not_implemented(
        "passing a socket to a child process (it needs WSADuplicateSocket and a way to hand \
         the WSAPROTOCOL_INFO to the child)",
    )
}

pub fn adopt_inherited(_raw: &str) -> io::Result<Socket> {
    not_implemented(
        "adopting an inherited socket (it needs WSASocket with a WSAPROTOCOL_INFO from \
         WSADuplicateSocket)",
    )
}

/// Block until standard input is closed by every writer, without reading from it. Anonymous pipes
/// have no readiness notification on Windows, so this asks PeekNamedPipe (which does not consume)
/// every 20 ms; it fails with ERROR_BROKEN_PIPE once the last writer is gone.
pub fn wait_stdin_hangup() {
    let stdin = io::stdin().as_raw_handle() as HANDLE;
    loop {
        let mut available = 0u32;
        let ok = unsafe {
            PeekNamedPipe(
                stdin,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                &mut available,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
