//! Pure parsers and tables of the per-OS backends: the text of BSD `netstat`, `ps` states, Windows
//! port words, NTSTATUS exit codes and Unix signal numbers.
//!
//! Architecture invariant: nothing here calls the OS, and nothing here is behind `cfg(target_os)`,
//! so the parsers of the macOS, FreeBSD and Windows backends are unit-tested on the Linux machines
//! that run this crate's tests. The backends in `sys/` only gather the raw text or numbers.

use crate::{names, Os, TcpEntry, TcpState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

// --- BSD netstat (macOS and FreeBSD) ------------------------------------------------------------

impl TcpState {
    /// The state of a `netstat -p tcp` line on macOS and FreeBSD: their `tcpstates[]` names
    /// (`netinet/tcp_fsm.h`), or the bare `TCPS_*` number netstat prints for a state outside
    /// that table. FreeBSD appends `*` to a state with a hidden SYN or FIN still to send
    /// (`TF_NEEDSYN`/`TF_NEEDFIN`); the star is not part of the state.
    pub fn from_bsd_netstat(s: &str) -> Option<TcpState> {
        let s = s.strip_suffix('*').unwrap_or(s);
        Some(match s {
            "CLOSED" => TcpState::Closed,
            "LISTEN" => TcpState::Listen,
            "SYN_SENT" => TcpState::SynSent,
            "SYN_RCVD" => TcpState::SynRecv,
            "ESTABLISHED" => TcpState::Established,
            "CLOSE_WAIT" => TcpState::CloseWait,
            "FIN_WAIT_1" => TcpState::FinWait1,
            "CLOSING" => TcpState::Closing,
            "LAST_ACK" => TcpState::LastAck,
            "FIN_WAIT_2" => TcpState::FinWait2,
            "TIME_WAIT" => TcpState::TimeWait,
            // macOS and FreeBSD share the TCPS_* numbering.
            n => return names::tcp_state(Os::Freebsd, n.parse().ok()?),
        })
    }
}

/// Parse the output of `netstat -an -W -p tcp` on macOS or FreeBSD. Both print
/// `Proto Recv-Q Send-Q Local-Address Foreign-Address (state)`, with the protocol column `tcp4`,
/// `tcp6` or `tcp46` (a dual-stack IPv6 socket), and addresses as `host.port` (`127.0.0.1.8080`,
/// `*.8080`, `::1.8080`, `fe80::1%lo0.8080`, `*.*`). Headers, the "Some tcp sockets may have been
/// deleted" trailer and lines that do not parse are skipped; columns after the state are ignored.
pub fn parse_bsd_netstat(text: &str) -> Vec<TcpEntry> {
    text.lines().filter_map(parse_bsd_netstat_line).collect()
}

fn parse_bsd_netstat_line(line: &str) -> Option<TcpEntry> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 6 {
        return None;
    }
    // FreeBSD prints sockets offloaded to a TCP offload engine as toe4/toe6/toe46.
    let family = f[0]
        .strip_prefix("tcp")
        .or_else(|| f[0].strip_prefix("toe"))?;
    let v6 = match family {
        "4" => false,
        "6" | "46" => true,
        _ => return None,
    };
    Some(TcpEntry {
        recv_queue: f[1].parse().ok()?,
        send_queue: f[2].parse().ok()?,
        local: parse_bsd_addr(f[3], v6)?,
        remote: parse_bsd_addr(f[4], v6)?,
        state: TcpState::from_bsd_netstat(f[5])?,
    })
}

/// One `host.port` address of BSD netstat. `*` stands for the unspecified address or port (0).
/// An IPv6 zone (`%lo0`) is dropped: turning an interface name into a scope id needs the OS.
pub fn parse_bsd_addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (host, port) = s.rsplit_once('.')?;
    let port = match port {
        "*" => 0,
        p => p.parse().ok()?,
    };
    let ip: IpAddr = match host {
        "*" if v6 => Ipv6Addr::UNSPECIFIED.into(),
        "*" => Ipv4Addr::UNSPECIFIED.into(),
        h if h.contains(':') => {
            let h = h.split_once('%').map_or(h, |(addr, _zone)| addr);
            h.parse::<Ipv6Addr>().ok()?.into()
        }
        h => h.parse::<Ipv4Addr>().ok()?.into(),
    };
    Some(SocketAddr::new(ip, port))
}

// --- BSD ps ---------------------------------------------------------------------------------------

/// Whether a process is asleep in the kernel, from the `state` column of `ps -o state=` on macOS or
/// FreeBSD (the first letter is the run state; the rest are flags such as `s` or `+`):
/// `S` sleeping, `I` idle (asleep for more than about 20 seconds), `D` (FreeBSD) or `U` (macOS)
/// uninterruptible wait, `L` (FreeBSD) waiting for a lock -> blocked; `R` running, `T` stopped,
/// `Z` zombie -> not blocked. Empty text (no such process) or another letter -> None.
pub fn bsd_ps_blocked(state: &str) -> Option<bool> {
    match state.trim().chars().next()? {
        'S' | 'I' | 'D' | 'U' | 'L' => Some(true),
        'R' | 'T' | 'Z' => Some(false),
        _ => None,
    }
}

// --- Windows ----------------------------------------------------------------------------------------

/// The port of a `MIB_TCPROW2`/`MIB_TCP6ROW2` port word: network byte order in the low 16 bits
/// of a DWORD read on a little-endian machine (Windows runs on no other), upper bits undefined.
pub fn windows_port(dw: u32) -> u16 {
    u16::from_be_bytes([dw as u8, (dw >> 8) as u8])
}

/// The address of a `MIB_TCPROW2` IPv4 address word (network byte order in memory, read as a
/// little-endian DWORD).
pub fn windows_ipv4(dw: u32) -> Ipv4Addr {
    Ipv4Addr::from(dw.to_le_bytes())
}

impl TcpState {
    /// The state in `TCP_INFO_v0.State` (`SIO_TCP_INFO`), the `TCPSTATE` enum of `mstcpip.h`:
    /// 0 CLOSED, 1 LISTEN, 2 SYN_SENT, 3 SYN_RCVD, 4 ESTABLISHED, 5 FIN_WAIT_1, 6 FIN_WAIT_2,
    /// 7 CLOSE_WAIT, 8 CLOSING, 9 LAST_ACK, 10 TIME_WAIT. Not the `MIB_TCP_STATE` numbering of
    /// GetTcpTable2 (1 CLOSED ... 12 DELETE_TCB), which `names::tcp_state(Os::Windows, n)` covers.
    pub fn from_windows_tcpstate(n: i32) -> Option<TcpState> {
        Some(match n {
            0 => TcpState::Closed,
            1 => TcpState::Listen,
            2 => TcpState::SynSent,
            3 => TcpState::SynRecv,
            4 => TcpState::Established,
            5 => TcpState::FinWait1,
            6 => TcpState::FinWait2,
            7 => TcpState::CloseWait,
            8 => TcpState::Closing,
            9 => TcpState::LastAck,
            10 => TcpState::TimeWait,
            _ => return None,
        })
    }
}

/// Names of the NTSTATUS codes a Windows process commonly ends with (`ntstatus.h`).
static NTSTATUS: &[(u32, &str)] = &[
    (0x4000_0015, "STATUS_FATAL_APP_EXIT"), // the CRT's abort() when it does not __fastfail
    (0x8000_0003, "STATUS_BREAKPOINT"),
    (0xC000_0005, "STATUS_ACCESS_VIOLATION"),
    (0xC000_001D, "STATUS_ILLEGAL_INSTRUCTION"),
    (0xC000_0094, "STATUS_INTEGER_DIVIDE_BY_ZERO"),
    (0xC000_00FD, "STATUS_STACK_OVERFLOW"),
    (0xC000_013A, "STATUS_CONTROL_C_EXIT"), // the default handler of CTRL_C/CTRL_BREAK
    (0xC000_0374, "STATUS_HEAP_CORRUPTION"),
    (0xC000_0409, "STATUS_STACK_BUFFER_OVERRUN"), // __fastfail, which Rust's abort() uses
];

/// The name of a well-known NTSTATUS exit code.
pub fn ntstatus_name(code: u32) -> Option<&'static str> {
    NTSTATUS.iter().find(|&&(c, _)| c == code).map(|&(_, n)| n)
}

/// How a Windows process ended, from its exit code: "exit 0", "exit STATUS_CONTROL_C_EXIT".
/// A code in the NTSTATUS error or warning range without a name prints in hex ("exit 0xC0000142"),
/// never as a bare large decimal. Note that std's `Child::kill` is `TerminateProcess(h, 1)`, so a
/// hard kill reads "exit 1", indistinguishable from `exit(1)`: only the runner knows it killed.
pub fn windows_exit_description(code: u32) -> String {
    match ntstatus_name(code) {
        Some(name) => format!("exit {name}"),
        None if code >= 0x8000_0000 => format!("exit 0x{code:08X}"),
        None => format!("exit {code}"),
    }
}

// --- Unix signals -------------------------------------------------------------------------------------

/// Signal numbers of Linux (`asm-generic/signal.h`, x86 and arm) and of macOS and FreeBSD
/// (`sys/signal.h`, the 4.4BSD numbering both kept); they differ for SIGBUS.
static LINUX_SIGNALS: &[(i32, &str)] = &[
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (11, "SIGSEGV"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
];
static BSD_SIGNALS: &[(i32, &str)] = &[
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (10, "SIGBUS"),
    (11, "SIGSEGV"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
];

/// The name of a signal that ended a process ("SIGKILL"), or "SIG#n" for one outside the table.
pub fn signal_name(os: Os, sig: i32) -> String {
    let table = match os {
        Os::Linux => LINUX_SIGNALS,
        Os::Macos | Os::Freebsd => BSD_SIGNALS,
        Os::Windows => &[],
    };
    match table.iter().find(|&&(n, _)| n == sig) {
        Some(&(_, name)) => name.into(),
        None => format!("SIG#{sig}"),
    }
}

// --- knobs ----------------------------------------------------------------------------------------------

/// A timeout in whole seconds, rounded up, for the options that take seconds (macOS
/// TCP_RXT_CONNDROPTIME, FreeBSD TCP_MAXUNACKTIME, Windows TCP_MAXRT): rounding down could turn a
/// short timeout into 0, which means "the system default" to all three.
pub fn whole_seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

// --- netstat arguments ----------------------------------------------------------------------------

/// The arguments that make `netstat` list every TCP socket (`-a`: listeners too) with numeric
/// hosts and ports (`-n`), IPv4 and IPv6 alike (`-p tcp`), and with no address shortened to fit its
/// column. What keeps an address whole differs: FreeBSD's `-W` ("wide": never truncate); macOS's
/// `-W` only avoids truncating some fields, and an IPv6 host is cut to its column unless `-l`
/// ("print full IPv6 address", Apple's netstat(1)) is given too.
pub fn bsd_netstat_args(os: Os) -> &'static [&'static str] {
    match os {
        Os::Macos => &["-a", "-n", "-l", "-W", "-p", "tcp"],
        _ => &["-a", "-n", "-W", "-p", "tcp"],
    }
}

// --- blocked in a call: BSD wait channels, marked threads -----------------------------------------

/// The wait messages (`wmesg`, shown by FreeBSD's `ps -o wchan`) of a process asleep inside a
/// socket call, from FreeBSD's `sys/kern/uipc_socket.c`, `uipc_sockbuf.c` and
/// `uipc_syscalls.c`: `sbwait` (recv or send waiting on a socket buffer), `accept`, `connec`
/// (connect) and `soclos` (a lingering close).
const FREEBSD_SOCKET_WAITS: [&str; 4] = ["sbwait", "accept", "connec", "soclos"];

/// Whether a FreeBSD process is blocked inside a socket call, from `ps -o state= -o wchan=`: the run
/// state letter (see `bsd_ps_blocked`) and the wait channel. Sleeping alone does not tell, since
/// an agent that waits for its next command sleeps too (on its stdin pipe: `piperd`), so only a
/// sleep on a socket's wait channel counts. Any other sleep, or running, is `Some(false)` (not
/// yet: the runner asks again); no process is `None`. `ps` may cut the name to its column width.
pub fn freebsd_ps_blocked_in_socket(text: &str) -> Option<bool> {
    let mut fields = text.split_whitespace();
    let asleep = bsd_ps_blocked(fields.next()?)?;
    let wchan = fields.next().unwrap_or("-");
    let on_socket = wchan.len() >= 5
        && FREEBSD_SOCKET_WAITS
            .iter()
            .any(|w| w.starts_with(wchan) || wchan.starts_with(w));
    Some(asleep && on_socket)
}

/// The names an agent gives its operating thread (`crate::mark_operation`), so that a runner can
/// find that thread among the agent's others (the runner watcher, the OS's worker threads) on
/// platforms whose process state alone cannot tell "blocked in a socket call" from "waiting for
/// the next command" (macOS, Windows).
pub const THREAD_IN_CALL: &str = "sockconform-agent: in call";
pub const THREAD_IDLE: &str = "sockconform-agent: idle";

/// One thread of a process as the OS reports it: its name (if it has one) and whether it is
/// asleep in the kernel in a wait that a blocking socket call makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadWait {
    pub name: Option<String>,
    /// The thread is waiting in the kernel.
    pub waiting: bool,
    /// The wait is one a blocking socket call makes (Windows: wait reason UserRequest or
    /// WrUserRequest; macOS: any wait).
    pub call_wait: bool,
}

/// Whether an agent is blocked inside its current call, from its threads:
/// - no thread waiting at all: the platform does not report waits (Wine's process list says every
///   thread is running, and an idle agent always has a waiting thread) -> None, cannot observe;
/// - the thread marked in a call is in a call's wait -> true; marked but running or in another
///   wait -> false (not yet);
/// - marked idle -> false (the request has not been read yet);
/// - no marked thread (an agent that does not mark) -> None.
pub fn agent_blocked_in_call(threads: &[ThreadWait]) -> Option<bool> {
    if !threads.iter().any(|t| t.waiting) {
        return None;
    }
    let named = |n: &str| threads.iter().find(|t| t.name.as_deref() == Some(n));
    if let Some(t) = named(THREAD_IN_CALL) {
        return Some(t.waiting && t.call_wait);
    }
    named(THREAD_IDLE).map(|_| false)
}

// --- Windows: NtQuerySystemInformation(SystemProcessInformation) -------------------------------------

/// `KTHREAD_STATE` Waiting, and the `KWAIT_REASON`s of a user-mode wait (NtWaitForSingleObject,
/// which Winsock's blocking calls use: UserRequest) and of a win32k wait (WrUserRequest).
pub const WINDOWS_THREAD_WAITING: u32 = 5;
const WINDOWS_WAIT_USER_REQUEST: u32 = 6;
const WINDOWS_WAIT_WR_USER_REQUEST: u32 = 13;

/// One thread of a `SYSTEM_PROCESS_INFORMATION` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowsThread {
    pub tid: u32,
    pub state: u32,
    pub wait_reason: u32,
}

impl WindowsThread {
    /// This thread as `agent_blocked_in_call` sees it, given its description.
    pub fn wait(&self, name: Option<String>) -> ThreadWait {
        let waiting = self.state == WINDOWS_THREAD_WAITING;
        ThreadWait {
            name,
            waiting,
            call_wait: waiting
                && matches!(
                    self.wait_reason,
                    WINDOWS_WAIT_USER_REQUEST | WINDOWS_WAIT_WR_USER_REQUEST
                ),
        }
    }
}

/// Offsets in `SYSTEM_PROCESS_INFORMATION` (the process header) and `SYSTEM_THREAD_INFORMATION`
/// (`winternl.h`/`ntddk.h`), which hold pointers, so they depend on the pointer width.
struct NtLayout {
    process_header: usize,
    unique_process_id: usize,
    thread_size: usize,
    unique_thread: usize,
    thread_state: usize,
    wait_reason: usize,
}

fn nt_layout(pointer_bytes: usize) -> Option<NtLayout> {
    match pointer_bytes {
        // x64/arm64: the header is 0x100 bytes, UniqueProcessId at 0x50; a thread is 0x50 bytes.
        8 => Some(NtLayout {
            process_header: 256,
            unique_process_id: 80,
            thread_size: 80,
            unique_thread: 48,
            thread_state: 68,
            wait_reason: 72,
        }),
        // x86: the header is 0xB8 bytes, UniqueProcessId at 0x44; a thread is 0x40 bytes.
        4 => Some(NtLayout {
            process_header: 184,
            unique_process_id: 68,
            thread_size: 64,
            unique_thread: 36,
            thread_state: 52,
            wait_reason: 56,
        }),
        _ => None,
    }
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn read_ptr(buf: &[u8], at: usize, pointer_bytes: usize) -> Option<u64> {
    let b = buf.get(at..at + pointer_bytes)?;
    let mut w = [0u8; 8];
    w[..pointer_bytes].copy_from_slice(b);
    Some(u64::from_le_bytes(w))
}

/// The threads of process `pid` in the buffer NtQuerySystemInformation(SystemProcessInformation)
/// filled: a chain of process entries (NextEntryOffset, 0 on the last), each followed by its
/// NumberOfThreads thread entries. None if the process is not listed or the buffer is malformed
/// (an entry running past its end). `pointer_bytes` is the width of the process that made the
/// call (8 on x64 and arm64, 4 on x86).
pub fn windows_process_threads(
    buf: &[u8],
    pid: u32,
    pointer_bytes: usize,
) -> Option<Vec<WindowsThread>> {
    let l = nt_layout(pointer_bytes)?;
    let mut at = 0usize;
    loop {
        let next = read_u32(buf, at)? as usize;
        let count = read_u32(buf, at + 4)? as usize;
        let id = read_ptr(buf, at + l.unique_process_id, pointer_bytes)?;
        if id == u64::from(pid) {
            let first = at + l.process_header;
            return (0..count)
                .map(|i| {
                    let t = first + i * l.thread_size;
                    buf.get(t..t + l.thread_size)?;
                    Some(WindowsThread {
                        tid: read_ptr(buf, t + l.unique_thread, pointer_bytes)? as u32,
                        state: read_u32(buf, t + l.thread_state)?,
                        wait_reason: read_u32(buf, t + l.wait_reason)?,
                    })
                })
                .collect();
        }
        if next == 0 {
            return None;
        }
        at = at.checked_add(next)?;
    }
}

/// How many rows of an IP Helper table (`MIB_TCPTABLE2`, `MIB_TCP6TABLE2`: a DWORD count, then the
/// rows at `rows_at`) can be read from a buffer of `buf_bytes`: the count the table claims,
/// clamped to what the buffer holds. A call that succeeded on an empty table may have written
/// nothing at all, so a buffer too small for the count is an empty table, never a read past its
/// end.
pub fn ip_helper_rows(buf_bytes: usize, claimed: u32, rows_at: usize, row_bytes: usize) -> usize {
    if buf_bytes < rows_at.max(4) || row_bytes == 0 {
        return 0;
    }
    (claimed as usize).min((buf_bytes - rows_at) / row_bytes)
}

/// Whether a socket is still open after `closesocket` failed with this Winsock error: it fails
/// with WSAEWOULDBLOCK on a non-blocking socket with a non-zero linger time, and with
/// WSAEINPROGRESS or WSAEINTR when a blocking call interferes, leaving the socket open in each
/// case (closesocket's documentation); other errors (WSAENOTSOCK, WSANOTINITIALISED) mean
/// there was no socket to close.
pub fn windows_close_leaves_socket_open(code: i32) -> bool {
    matches!(
        names::error_name(Os::Windows, code),
        Some("WSAEWOULDBLOCK" | "WSAEINPROGRESS" | "WSAEINTR")
    )
}

// --- FreeBSD TCP stacks -------------------------------------------------------------------------------

/// Whether a FreeBSD TCP stack (the name TCP_FUNCTION_BLK reports: `freebsd` for the default
/// stack, `rack`, `bbr`) enforces TCP_MAXUNACKTIME. The option is stored by every stack but
/// checked only by the progress timeout of the RACK and BBR stacks
/// (`ctf_progress_timeout_check` in `tcp_stacks/rack_bbr_common.c`); the default stack accepts
/// it and never drops the connection for it. RACK registers itself under aliases such as
/// `rack_latest` too.
pub fn freebsd_stack_enforces_maxunacktime(stack: &str) -> bool {
    let stack = stack.trim_end_matches('\0').trim();
    ["rack", "bbr"]
        .iter()
        .any(|s| stack == *s || stack.starts_with(&format!("{s}_")))
}

// --- descriptor limits ---------------------------------------------------------------------------------

/// The soft descriptor limit to ask for when raising it to the hard limit on macOS: setrlimit
/// refuses RLIM_INFINITY (or anything above the per-process ceiling `kern.maxfilesperproc`)
/// with EINVAL (setrlimit(2), COMPATIBILITY), so the hard limit is clamped to that ceiling.
pub fn macos_fd_limit(hard: u64, maxfilesperproc: u64) -> u64 {
    hard.min(maxfilesperproc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    // `netstat -anW -p tcp` on macOS 14, trimmed. Trailing blanks are as netstat pads them.
    const MACOS: &str = "\
Active Internet connections (including servers)
Proto Recv-Q Send-Q  Local Address                                 Foreign Address                               (state)    
tcp4       0      0  127.0.0.1.8080                                127.0.0.1.50000                               ESTABLISHED
tcp4       5      0  127.0.0.1.50000                               127.0.0.1.8080                                CLOSE_WAIT 
tcp4       0     12  192.168.1.20.50123                            17.57.144.20.5223                             FIN_WAIT_1 
tcp6       0      0  ::1.8080                                      ::1.50001                                     TIME_WAIT  
tcp46      0      0  *.8080                                        *.*                                           LISTEN     
tcp6       0      0  fe80::1%lo0.631                               *.*                                           LISTEN     
tcp4       0      0  *.22                                          *.*                                           LISTEN     
tcp4       0      0  127.0.0.1.50002                               127.0.0.1.9                                   SYN_SENT   
tcp4       0      0  127.0.0.1.8081                                127.0.0.1.50003                               TIME_WAIT  
";

    // `netstat -anW -p tcp` on FreeBSD 14, trimmed: toe lines, a T/TCP star, a bare state number
    // and the trailer netstat prints when the table changed while it was read.
    const FREEBSD: &str = "\
Active Internet connections (including servers)
Proto Recv-Q Send-Q Local Address                                 Foreign Address                               (state)    
tcp4       0      0 127.0.0.1.8080                                127.0.0.1.50000                               TIME_WAIT  
tcp6       0      0 ::1.8080                                      ::1.50001                                     FIN_WAIT_2 
tcp46      0      0 *.8080                                        *.*                                           LISTEN     
tcp4       0      0 *.22                                          *.*                                           LISTEN     
tcp6       0      0 *.22                                          *.*                                           LISTEN     
tcp4       0      0 10.0.2.15.22                                  10.0.2.2.61234                                SYN_RCVD*
toe4       0      3 10.0.2.15.443                                 10.0.2.2.61235                                LAST_ACK   
tcp4      17      0 127.0.0.1.50004                               127.0.0.1.8080                                8
tcp6       0      0 ::ffff:127.0.0.1.8082                         ::ffff:127.0.0.1.50005                        CLOSING    
tcp        0      0 *.*                                           *.*                                           CLOSED     
Some tcp sockets may have been deleted.
";

    #[test]
    fn bsd_state_names_map_to_portable_states() {
        let table = [
            ("CLOSED", TcpState::Closed),
            ("LISTEN", TcpState::Listen),
            ("SYN_SENT", TcpState::SynSent),
            ("SYN_RCVD", TcpState::SynRecv),
            ("ESTABLISHED", TcpState::Established),
            ("CLOSE_WAIT", TcpState::CloseWait),
            ("FIN_WAIT_1", TcpState::FinWait1),
            ("CLOSING", TcpState::Closing),
            ("LAST_ACK", TcpState::LastAck),
            ("FIN_WAIT_2", TcpState::FinWait2),
            ("TIME_WAIT", TcpState::TimeWait),
        ];
        for (i, (name, st)) in table.into_iter().enumerate() {
            assert_eq!(TcpState::from_bsd_netstat(name), Some(st), "{name}");
            // The order of tcpstates[] is the TCPS_* numbering, printed as a number when unnamed.
            assert_eq!(TcpState::from_bsd_netstat(&i.to_string()), Some(st), "{i}");
        }
        assert_eq!(
            TcpState::from_bsd_netstat("SYN_RCVD*"),
            Some(TcpState::SynRecv)
        );
        for bad in ["", "11", "-1", "SYN_RECV", "FIN_WAIT1", "established", "*"] {
            assert_eq!(TcpState::from_bsd_netstat(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_macos_netstat() {
        let t = parse_bsd_netstat(MACOS);
        assert_eq!(t.len(), 9, "{t:#?}");
        assert_eq!(
            t[0],
            TcpEntry {
                local: addr("127.0.0.1:8080"),
                remote: addr("127.0.0.1:50000"),
                state: TcpState::Established,
                send_queue: 0,
                recv_queue: 0,
            }
        );
        assert_eq!(t[1].recv_queue, 5);
        assert_eq!(t[1].state, TcpState::CloseWait);
        assert_eq!(t[2].send_queue, 12);
        assert_eq!(t[2].remote, addr("17.57.144.20:5223"));
        assert_eq!(t[2].state, TcpState::FinWait1);
        assert_eq!(t[3].local, addr("[::1]:8080"));
        assert_eq!(t[3].remote, addr("[::1]:50001"));
        assert_eq!(t[3].state, TcpState::TimeWait);
        // tcp46: a dual-stack listener is an IPv6 socket on the unspecified address.
        assert_eq!(t[4].local, addr("[::]:8080"));
        assert_eq!(t[4].remote, addr("[::]:0"));
        assert_eq!(t[4].state, TcpState::Listen);
        assert_eq!(t[5].local, addr("[fe80::1]:631"));
        assert_eq!(t[6].local, addr("0.0.0.0:22"));
        assert_eq!(t[6].remote, addr("0.0.0.0:0"));
        assert_eq!(t[7].state, TcpState::SynSent);
        assert_eq!(t[8].state, TcpState::TimeWait);
        assert_eq!(t[8].local, addr("127.0.0.1:8081"));
    }

    #[test]
    fn parses_freebsd_netstat() {
        let t = parse_bsd_netstat(FREEBSD);
        assert_eq!(t.len(), 9, "{t:#?}");
        assert_eq!(t[0].local, addr("127.0.0.1:8080"));
        assert_eq!(t[0].remote, addr("127.0.0.1:50000"));
        assert_eq!(t[0].state, TcpState::TimeWait);
        assert_eq!(t[1].local, addr("[::1]:8080"));
        assert_eq!(t[1].state, TcpState::FinWait2);
        assert_eq!(t[2].local, addr("[::]:8080"));
        assert_eq!(t[2].state, TcpState::Listen);
        assert_eq!(t[3].local, addr("0.0.0.0:22"));
        assert_eq!(t[4].local, addr("[::]:22"));
        assert_eq!(t[5].state, TcpState::SynRecv);
        assert_eq!(t[5].remote, addr("10.0.2.2:61234"));
        assert_eq!(t[6].state, TcpState::LastAck);
        assert_eq!(t[6].send_queue, 3);
        assert_eq!(t[7].state, TcpState::LastAck, "8 is TCPS_LAST_ACK");
        assert_eq!(t[7].recv_queue, 17);
        assert_eq!(t[8].local, addr("[::ffff:127.0.0.1]:8082"));
        assert_eq!(t[8].state, TcpState::Closing);
    }

    #[test]
    fn bsd_addresses() {
        assert_eq!(
            parse_bsd_addr("127.0.0.1.80", false),
            Some(addr("127.0.0.1:80"))
        );
        assert_eq!(parse_bsd_addr("*.80", false), Some(addr("0.0.0.0:80")));
        assert_eq!(parse_bsd_addr("*.80", true), Some(addr("[::]:80")));
        assert_eq!(parse_bsd_addr("*.*", true), Some(addr("[::]:0")));
        assert_eq!(parse_bsd_addr("::.80", true), Some(addr("[::]:80")));
        assert_eq!(
            parse_bsd_addr("fe80::1%em0.22", true),
            Some(addr("[fe80::1]:22"))
        );
        for bad in [
            "",
            "127.0.0.1",
            "127.0.0.1.",
            "127.0.0.1.http",
            "1.2.3.65536",
            "x.80",
        ] {
            assert_eq!(parse_bsd_addr(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn bsd_ps_states() {
        for (s, want) in [
            ("S+", Some(true)),
            ("Ss", Some(true)),
            ("I ", Some(true)),
            ("D", Some(true)),
            ("U", Some(true)),
            ("L", Some(true)),
            ("R+", Some(false)),
            ("T", Some(false)),
            ("Z", Some(false)),
            ("", None),
            ("\n", None),
            ("W", None),
        ] {
            assert_eq!(bsd_ps_blocked(s), want, "{s:?}");
        }
    }

    #[test]
    fn windows_port_words_are_network_order_in_the_low_half() {
        // Port 8080 = 0x1F90 is stored as bytes 1F 90 00 00: the DWORD reads 0x0000_901F.
        assert_eq!(windows_port(0x0000_901F), 8080);
        assert_eq!(windows_port(0x0000_5000), 80);
        assert_eq!(windows_port(0x0000_0100), 1);
        assert_eq!(windows_port(0x0000_FFFF), 65535);
        // The upper half is undefined and ignored.
        assert_eq!(windows_port(0xABCD_901F), 8080);
        assert_eq!(windows_port(u32::from_le_bytes([0xC3, 0x50, 0, 0])), 50000);
    }

    #[test]
    fn windows_ipv4_words_are_network_order_in_memory() {
        assert_eq!(windows_ipv4(0x0100_007F), Ipv4Addr::LOCALHOST);
        assert_eq!(
            windows_ipv4(u32::from_le_bytes([192, 168, 1, 20])),
            Ipv4Addr::new(192, 168, 1, 20)
        );
    }

    #[test]
    fn windows_tcpstate_numbering() {
        let want = [
            TcpState::Closed,
            TcpState::Listen,
            TcpState::SynSent,
            TcpState::SynRecv,
            TcpState::Established,
            TcpState::FinWait1,
            TcpState::FinWait2,
            TcpState::CloseWait,
            TcpState::Closing,
            TcpState::LastAck,
            TcpState::TimeWait,
        ];
        for (n, st) in want.into_iter().enumerate() {
            assert_eq!(TcpState::from_windows_tcpstate(n as i32), Some(st), "{n}");
        }
        // TCPSTATE_MAX (11) and anything else is not a state.
        for n in [-1, 11, 12] {
            assert_eq!(TcpState::from_windows_tcpstate(n), None, "{n}");
        }
        // The same state is one more in MIB_TCP_STATE (GetTcpTable2), up to TIME_WAIT.
        for n in 0..=10 {
            assert_eq!(
                TcpState::from_windows_tcpstate(n),
                names::tcp_state(Os::Windows, n + 1),
                "{n}"
            );
        }
    }

    #[test]
    fn windows_exit_codes_are_named() {
        assert_eq!(windows_exit_description(0), "exit 0");
        assert_eq!(windows_exit_description(1), "exit 1");
        assert_eq!(windows_exit_description(101), "exit 101");
        assert_eq!(
            windows_exit_description(0xC000_0409),
            "exit STATUS_STACK_BUFFER_OVERRUN"
        );
        assert_eq!(
            windows_exit_description(0xC000_013A),
            "exit STATUS_CONTROL_C_EXIT"
        );
        assert_eq!(
            windows_exit_description(0xC000_0005),
            "exit STATUS_ACCESS_VIOLATION"
        );
        assert_eq!(windows_exit_description(0xC000_0142), "exit 0xC0000142");
        assert_eq!(ntstatus_name(0xC000_00FD), Some("STATUS_STACK_OVERFLOW"));
        assert_eq!(ntstatus_name(0), None);
        // ExitStatus::code() gives the DWORD as an i32; the backend casts it back.
        assert_eq!(
            windows_exit_description(-1073740791i32 as u32),
            "exit STATUS_STACK_BUFFER_OVERRUN"
        );
    }

    #[test]
    fn signal_numbers_per_os() {
        assert_eq!(signal_name(Os::Linux, 9), "SIGKILL");
        assert_eq!(signal_name(Os::Linux, 7), "SIGBUS");
        assert_eq!(signal_name(Os::Linux, 13), "SIGPIPE");
        assert_eq!(signal_name(Os::Linux, 10), "SIG#10"); // SIGUSR1, not in the table
        for os in [Os::Macos, Os::Freebsd] {
            assert_eq!(signal_name(os, 10), "SIGBUS");
            assert_eq!(signal_name(os, 7), "SIG#7"); // SIGEMT
            assert_eq!(signal_name(os, 13), "SIGPIPE");
            assert_eq!(signal_name(os, 15), "SIGTERM");
        }
        assert_eq!(signal_name(Os::Windows, 9), "SIG#9");
        // Both tables name the same signals.
        fn names(t: &[(i32, &'static str)]) -> Vec<&'static str> {
            let mut v: Vec<_> = t.iter().map(|&(_, n)| n).collect();
            v.sort();
            v
        }
        assert_eq!(names(LINUX_SIGNALS), names(BSD_SIGNALS));
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(whole_seconds_up(Duration::ZERO), 0);
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(1000)), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(1001)), 2);
        assert_eq!(whole_seconds_up(Duration::from_secs(30)), 30);
    }

    #[test]
    fn netstat_is_asked_for_whole_ipv6_addresses_and_parses_a_whole_one() {
        let mac = bsd_netstat_args(Os::Macos);
        assert!(mac.contains(&"-l") && mac.contains(&"-W"), "{mac:?}");
        let fbsd = bsd_netstat_args(Os::Freebsd);
        assert!(fbsd.contains(&"-W") && !fbsd.contains(&"-l"), "{fbsd:?}");
        for args in [mac, fbsd] {
            assert!(args.ends_with(&["-p", "tcp"]) && args.contains(&"-a") && args.contains(&"-n"));
        }
        // What those flags print: addresses of full length, which the parser keeps whole.
        let line = "tcp6       0      0  2001:db8:85a3:1234:5678:8a2e:370:7334.8080       \
                    2001:db8:85a3:1234:5678:8a2e:370:7335.50001      ESTABLISHED";
        let e = parse_bsd_netstat(line);
        assert_eq!(e.len(), 1, "{line}");
        assert_eq!(
            e[0].local,
            addr("[2001:db8:85a3:1234:5678:8a2e:370:7334]:8080")
        );
        assert_eq!(
            e[0].remote,
            addr("[2001:db8:85a3:1234:5678:8a2e:370:7335]:50001")
        );
    }

    #[test]
    fn freebsd_wait_channels_tell_a_socket_call_from_an_idle_agent() {
        for (text, want) in [
            ("S    sbwait\n", Some(true)),
            ("I    sbwait", Some(true)),
            ("S+   accept", Some(true)),
            ("S    connec", Some(true)),
            ("S    soclos", Some(true)),
            ("S    sbwai", Some(true)), // cut to the column width
            // Waiting for the next command on the stdin pipe, or elsewhere: not in the call.
            ("S    piperd", Some(false)),
            ("S    ttyin", Some(false)),
            ("S    select", Some(false)),
            ("S    sb", Some(false)),
            ("S", Some(false)),
            ("R    -", Some(false)),
            ("R", Some(false)),
            ("Z    -", Some(false)),
            ("", None),
            ("W    sbwait", None),
        ] {
            assert_eq!(freebsd_ps_blocked_in_socket(text), want, "{text:?}");
        }
    }

    fn thread(name: Option<&str>, waiting: bool, call_wait: bool) -> ThreadWait {
        ThreadWait {
            name: name.map(str::to_owned),
            waiting,
            call_wait,
        }
    }

    #[test]
    fn the_marked_thread_decides_whether_an_agent_is_blocked() {
        let watcher = thread(None, true, true);
        let worker = thread(Some("worker"), true, false);
        // In a call and in a call's wait: blocked, whatever the other threads do.
        let in_call = thread(Some(THREAD_IN_CALL), true, true);
        assert_eq!(
            agent_blocked_in_call(&[watcher.clone(), in_call, worker.clone()]),
            Some(true)
        );
        // In a call but still running, or in another wait (a lock): not yet.
        for t in [
            thread(Some(THREAD_IN_CALL), false, false),
            thread(Some(THREAD_IN_CALL), true, false),
        ] {
            assert_eq!(agent_blocked_in_call(&[watcher.clone(), t]), Some(false));
        }
        // Idle, reading the next command (its watcher waits in a user-mode wait too): not blocked.
        let idle = thread(Some(THREAD_IDLE), true, false);
        assert_eq!(agent_blocked_in_call(&[idle, watcher.clone()]), Some(false));
        // No marked thread: an agent that does not mark; nothing to say.
        assert_eq!(agent_blocked_in_call(&[watcher, worker]), None);
        // No thread waiting at all (Wine reports every thread running): cannot observe.
        let running = thread(Some(THREAD_IN_CALL), false, false);
        assert_eq!(
            agent_blocked_in_call(&[running, thread(None, false, false)]),
            None
        );
        assert_eq!(agent_blocked_in_call(&[]), None);
    }

    /// A SystemProcessInformation buffer with the given processes (pid, threads), laid out as
    /// Windows does for `pointer_bytes`.
    fn nt_buffer(pointer_bytes: usize, procs: &[(u32, &[WindowsThread])]) -> Vec<u8> {
        let l = nt_layout(pointer_bytes).unwrap();
        let mut buf = Vec::new();
        for (i, (pid, threads)) in procs.iter().enumerate() {
            let start = buf.len();
            let size = l.process_header + threads.len() * l.thread_size;
            buf.resize(start + size, 0xAA);
            let next = if i + 1 == procs.len() { 0 } else { size as u32 };
            buf[start..start + 4].copy_from_slice(&next.to_le_bytes());
            buf[start + 4..start + 8].copy_from_slice(&(threads.len() as u32).to_le_bytes());
            let pid_at = start + l.unique_process_id;
            buf[pid_at..pid_at + pointer_bytes]
                .copy_from_slice(&u64::from(*pid).to_le_bytes()[..pointer_bytes]);
            for (j, t) in threads.iter().enumerate() {
                let at = start + l.process_header + j * l.thread_size;
                let tid_at = at + l.unique_thread;
                buf[tid_at..tid_at + pointer_bytes]
                    .copy_from_slice(&u64::from(t.tid).to_le_bytes()[..pointer_bytes]);
                buf[at + l.thread_state..at + l.thread_state + 4]
                    .copy_from_slice(&t.state.to_le_bytes());
                buf[at + l.wait_reason..at + l.wait_reason + 4]
                    .copy_from_slice(&t.wait_reason.to_le_bytes());
            }
        }
        buf
    }

    #[test]
    fn windows_process_list_yields_the_threads_of_one_process() {
        let t = |tid, state, wait_reason| WindowsThread {
            tid,
            state,
            wait_reason,
        };
        let system = [t(8, 5, 0)];
        let agent = [t(100, 5, 0), t(104, 5, 6), t(108, 2, 0)];
        let other = [t(200, 5, 6)];
        for width in [8, 4] {
            let buf = nt_buffer(width, &[(4, &system), (4321, &agent), (999, &other)]);
            assert_eq!(
                windows_process_threads(&buf, 4321, width),
                Some(agent.to_vec()),
                "{width}"
            );
            assert_eq!(
                windows_process_threads(&buf, 999, width),
                Some(other.to_vec())
            );
            assert_eq!(windows_process_threads(&buf, 5, width), None);
            // A buffer cut inside the agent's threads is malformed, not a shorter list.
            let last = nt_buffer(width, &[(4, &system), (4321, &agent)]);
            let cut = &last[..last.len() - 10];
            assert_eq!(windows_process_threads(cut, 4321, width), None);
        }
        assert_eq!(windows_process_threads(&[], 4, 8), None);
        assert_eq!(windows_process_threads(&[0; 512], 4, 2), None);
        // Waiting in a user-mode wait (UserRequest) is a call's wait; an executive wait (a
        // synchronous pipe read) is not; running is not waiting.
        assert!(t(1, 5, 6).wait(None).call_wait);
        assert!(t(1, 5, 13).wait(None).call_wait);
        let executive = t(1, 5, 0).wait(None);
        assert!(executive.waiting && !executive.call_wait);
        assert!(!t(1, 2, 6).wait(None).waiting);
    }

    #[test]
    fn ip_helper_rows_never_read_past_the_buffer() {
        // MIB_TCPTABLE2 on x64: the count, then rows of 28 bytes from offset 4.
        assert_eq!(ip_helper_rows(4 + 3 * 28, 3, 4, 28), 3);
        assert_eq!(ip_helper_rows(4 + 3 * 28, 9, 4, 28), 3);
        assert_eq!(ip_helper_rows(4 + 3 * 28 + 27, 9, 4, 28), 3);
        // An empty table in a buffer the call did not fill, or a buffer with no room at all.
        assert_eq!(ip_helper_rows(0, 0, 4, 28), 0);
        assert_eq!(ip_helper_rows(0, 7, 4, 28), 0);
        assert_eq!(ip_helper_rows(3, 7, 4, 28), 0);
        assert_eq!(ip_helper_rows(4, 7, 4, 28), 0);
        assert_eq!(ip_helper_rows(16384, 0, 4, 28), 0);
    }

    #[test]
    fn a_failed_closesocket_may_leave_the_socket_open() {
        let code = |n| names::error_code(Os::Windows, n).unwrap();
        for open in ["WSAEWOULDBLOCK", "WSAEINPROGRESS", "WSAEINTR"] {
            assert!(windows_close_leaves_socket_open(code(open)), "{open}");
        }
        for gone in ["WSAENOTSOCK", "WSAENETDOWN", "WSANOTINITIALISED"] {
            assert!(!windows_close_leaves_socket_open(code(gone)), "{gone}");
        }
    }

    #[test]
    fn only_rack_and_bbr_enforce_the_unacknowledged_time() {
        for s in ["rack", "bbr", "rack_latest", "rack\0\0\0\0"] {
            assert!(freebsd_stack_enforces_maxunacktime(s), "{s:?}");
        }
        for s in ["freebsd", "", "default", "racket", "bbrx"] {
            assert!(!freebsd_stack_enforces_maxunacktime(s), "{s:?}");
        }
    }

    #[test]
    fn macos_fd_limit_is_clamped_to_the_per_process_ceiling() {
        // RLIM_INFINITY as the hard limit (the macOS default) is refused by setrlimit.
        assert_eq!(macos_fd_limit(u64::MAX, 24576), 24576);
        assert_eq!(macos_fd_limit(10240, 24576), 10240);
    }
}
