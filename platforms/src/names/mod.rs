//! Symbolic names for the numbers operating systems report: error codes and TCP states.
//!
//! Snapshots never hold a bare number: an error is recorded as the name its OS gives it
//! ("ECONNRESET", "WSAECONNRESET", "ERROR_NETNAME_DELETED") and a TCP state as a portable
//! [`TcpState`] name. The numbers differ per OS (ECONNRESET is 104 on Linux, 54 on macOS and
//! FreeBSD), so every OS has its own table.
//!
//! The tables are plain data, compiled on every platform with no `cfg(target_os)`: a reviewer
//! (or CI) on one machine can read, test and diff the numbering of all four OSes, and a Linux
//! run can render a Windows snapshot's codes. Only the tests that compare a table with the
//! running OS's own headers (the `libc` / `windows-sys` constants) are gated on the target.
//!
//! Where two names share a number, `error_name` gives the one the OS's header defines and the
//! other is an alias `#define`d to it (EAGAIN, not EWOULDBLOCK); `error_code` accepts both.
//! Each per-OS module documents its sources and its choices.

mod freebsd;
mod linux;
mod macos;
mod windows;

/// An operating system whose numbering a table describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Os {
    Linux,
    Macos,
    Freebsd,
    Windows,
}

impl Os {
    /// All four, in the order Linux, Macos, Windows, Freebsd.
    pub const ALL: [Os; 4] = [Os::Linux, Os::Macos, Os::Windows, Os::Freebsd];

    /// The directory name used under snapshots/ : "linux", "macos", "freebsd", "windows" (same
    /// as `std::env::consts::OS`).
    pub fn dir_name(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Macos => "macos",
            Os::Freebsd => "freebsd",
            Os::Windows => "windows",
        }
    }

    /// Parse a dir name back ("linux" -> `Some(Os::Linux)`); `None` for anything else.
    pub fn from_dir_name(s: &str) -> Option<Os> {
        Os::ALL.into_iter().find(|os| os.dir_name() == s)
    }

    /// The error table: every code with its primary name, ascending by code.
    fn errors(self) -> &'static [(i32, &'static str)] {
        match self {
            Os::Linux => linux::ERRORS,
            Os::Macos => macos::ERRORS,
            Os::Freebsd => freebsd::ERRORS,
            Os::Windows => windows::ERRORS,
        }
    }

    /// Second names of numbers that are in [`Os::errors`] under another name.
    fn aliases(self) -> &'static [(&'static str, i32)] {
        match self {
            Os::Linux => linux::ALIASES,
            Os::Macos => macos::ALIASES,
            Os::Freebsd => freebsd::ALIASES,
            Os::Windows => windows::ALIASES,
        }
    }

    fn tcp_states(self) -> &'static [(i32, TcpState)] {
        match self {
            Os::Linux => linux::TCP_STATES,
            Os::Macos => macos::TCP_STATES,
            Os::Freebsd => freebsd::TCP_STATES,
            Os::Windows => windows::TCP_STATES,
        }
    }
}

/// Symbolic name of an OS error code as that OS spells it: errno names on Unix ("ECONNRESET"),
/// Winsock names on Windows ("WSAECONNRESET"), and for Windows also the Win32 `ERROR_*` codes
/// that `std::io::Error` may carry ("ERROR_BROKEN_PIPE", "ERROR_NETNAME_DELETED", ...).
///
/// For a number with two names this is the primary one: "EAGAIN" (not "EWOULDBLOCK") on every
/// Unix, "EDEADLK" and "EOPNOTSUPP" on Linux, "ERROR_IO_PENDING" (not "WSA_IO_PENDING") on
/// Windows.
pub fn error_name(os: Os, code: i32) -> Option<&'static str> {
    let table = os.errors();
    table
        .binary_search_by_key(&code, |&(c, _)| c)
        .ok()
        .map(|i| table[i].1)
}

/// The reverse lookup: "ECONNRESET" -> `Some(104)` on Linux. Accepts aliases too
/// ("EWOULDBLOCK" -> `Some(11)` on Linux).
pub fn error_code(os: Os, name: &str) -> Option<i32> {
    os.errors()
        .iter()
        .find(|&&(_, n)| n == name)
        .map(|&(c, _)| c)
        .or_else(|| {
            os.aliases()
                .iter()
                .find(|&&(n, _)| n == name)
                .map(|&(_, c)| c)
        })
}

/// Portable TCP state names used in snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Closed,
    Listen,
    SynSent,
    SynRecv,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
    /// Windows only: the TCB is being deleted (`MIB_TCP_STATE_DELETE_TCB`).
    DeleteTcb,
}

impl TcpState {
    /// Every state, in declaration order.
    pub const ALL: [TcpState; 12] = [
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
        TcpState::DeleteTcb,
    ];

    /// "CLOSED", "LISTEN", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2",
    /// "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT", "DELETE_TCB"
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait1 => "FIN_WAIT1",
            TcpState::FinWait2 => "FIN_WAIT2",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::DeleteTcb => "DELETE_TCB",
        }
    }

    /// The inverse of [`TcpState::name`]; `None` for any other string.
    pub fn from_name(s: &str) -> Option<TcpState> {
        TcpState::ALL.into_iter().find(|st| st.name() == s)
    }

    /// States a connection passes through quickly on a live network (SYN_SENT, SYN_RECV,
    /// FIN_WAIT1, CLOSING, LAST_ACK): a checkpoint waits (with a deadline) for them to settle.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            TcpState::SynSent
                | TcpState::SynRecv
                | TcpState::FinWait1
                | TcpState::Closing
                | TcpState::LastAck
        )
    }
}

/// The portable state of an OS's TCP state number, in that OS's own numbering:
/// - Linux: `include/net/tcp_states.h` (1 ESTABLISHED ... 11 CLOSING, 12 NEW_SYN_RECV ->
///   SYN_RECV, 13 BOUND_INACTIVE -> CLOSED), as in /proc/net/tcp and `TCP_INFO` `tcpi_state`.
/// - macOS and FreeBSD: `netinet/tcp_fsm.h` `TCPS_*` (0 CLOSED, 1 LISTEN, 2 SYN_SENT,
///   3 SYN_RECEIVED, 4 ESTABLISHED, 5 CLOSE_WAIT, 6 FIN_WAIT_1, 7 CLOSING, 8 LAST_ACK,
///   9 FIN_WAIT_2, 10 TIME_WAIT).
/// - Windows: `MIB_TCP_STATE` (1 CLOSED, 2 LISTEN, 3 SYN_SENT, 4 SYN_RCVD, 5 ESTAB, 6 FIN_WAIT1,
///   7 FIN_WAIT2, 8 CLOSE_WAIT, 9 CLOSING, 10 LAST_ACK, 11 TIME_WAIT, 12 DELETE_TCB).
pub fn tcp_state(os: Os, code: i32) -> Option<TcpState> {
    os.tcp_states()
        .iter()
        .find(|&&(c, _)| c == code)
        .map(|&(_, st)| st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const UNIX: [Os; 3] = [Os::Linux, Os::Macos, Os::Freebsd];

    #[test]
    fn names_dir_name_round_trip() {
        for os in Os::ALL {
            assert_eq!(Os::from_dir_name(os.dir_name()), Some(os));
        }
        assert_eq!(Os::from_dir_name("Linux"), None);
        assert_eq!(Os::from_dir_name("ios"), None);
        assert_eq!(Os::from_dir_name(""), None);
        let dirs: Vec<_> = Os::ALL.iter().map(|os| os.dir_name()).collect();
        assert_eq!(dirs, ["linux", "macos", "windows", "freebsd"]);
    }

    #[test]
    fn names_know_the_os_this_binary_was_built_for_by_its_std_name() {
        // The tables name an OS by std's name for it, so this binary's own OS is found by that
        // name exactly when the tables have it.
        assert_eq!(Os::from_dir_name(std::env::consts::OS), crate::CURRENT_OS);
    }

    #[test]
    fn names_tables_sorted_unique_numbers_and_names() {
        for os in Os::ALL {
            let table = os.errors();
            assert!(!table.is_empty(), "{os:?}");
            // Strictly ascending: unique numbers, and error_name's binary search is valid.
            for w in table.windows(2) {
                assert!(w[0].0 < w[1].0, "{os:?}: {:?} then {:?}", w[0], w[1]);
            }
            let mut names = HashSet::new();
            for &(_, name) in table {
                assert!(names.insert(name), "{os:?}: {name} listed twice");
            }
            for &(alias, code) in os.aliases() {
                assert!(
                    names.insert(alias),
                    "{os:?}: alias {alias} is also a primary name"
                );
                assert!(
                    error_name(os, code).is_some(),
                    "{os:?}: alias {alias} -> unlisted {code}"
                );
            }
        }
    }

    fn is_symbol(name: &str) -> bool {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    }

    #[test]
    fn names_match_os_style() {
        for os in UNIX {
            let all = os.errors().iter().map(|&(_, n)| n);
            for name in all.chain(os.aliases().iter().map(|&(n, _)| n)) {
                assert!(name.starts_with('E') && is_symbol(name), "{os:?}: {name}");
                assert!(!name.contains('_'), "{os:?}: {name}");
            }
            for &(code, _) in os.errors() {
                assert!(code > 0 && code < 256, "{os:?}: errno {code}");
            }
        }
        let win = Os::Windows;
        let all = win.errors().iter().map(|&(_, n)| n);
        for name in all.chain(win.aliases().iter().map(|&(n, _)| n)) {
            assert!(
                (name.starts_with("WSA") || name.starts_with("ERROR_")) && is_symbol(name),
                "{name}"
            );
        }
        for &(code, name) in win.errors() {
            // Winsock codes live in 10000..12000, Win32 codes elsewhere.
            let wsa_range = (10_000..12_000).contains(&code);
            assert_eq!(name.starts_with("WSA"), wsa_range, "{name} = {code}");
        }
    }

    #[test]
    fn names_complete_errno_ranges() {
        // Linux asm-generic: 1..=133 with the holes 41 (EWOULDBLOCK) and 58 (EDEADLOCK).
        for code in 1..=133 {
            let want = !matches!(code, 41 | 58);
            assert_eq!(error_name(Os::Linux, code).is_some(), want, "linux {code}");
        }
        assert_eq!(Os::Linux.errors().len(), 131);
        assert_eq!(error_name(Os::Linux, 134), None);
        for (os, last) in [(Os::Macos, 107), (Os::Freebsd, 97)] {
            for code in 1..=last {
                assert!(error_name(os, code).is_some(), "{os:?} {code}");
            }
            assert_eq!(os.errors().len(), last as usize, "{os:?}");
            assert_eq!(error_name(os, last + 1), None, "{os:?}");
        }
        for os in Os::ALL {
            assert_eq!(error_name(os, 0), None, "{os:?}: 0 is success");
            assert_eq!(error_name(os, -1), None, "{os:?}");
        }
        // Every Winsock error of winsock2.h, 10004..=11031 in the documented blocks.
        let wsa = |code| error_name(Os::Windows, code).is_some();
        for code in [10004, 10009, 10013, 10014, 10022, 10024] {
            assert!(wsa(code), "{code}");
        }
        for code in (10035..=10071).chain(10091..=10093).chain(10101..=10112) {
            assert!(wsa(code), "{code}");
        }
        for code in 11001..=11031 {
            assert!(wsa(code), "{code}");
        }
    }

    #[test]
    fn names_round_trip_every_entry() {
        for os in Os::ALL {
            for &(code, name) in os.errors() {
                assert_eq!(error_name(os, code), Some(name), "{os:?} {code}");
                assert_eq!(error_code(os, name), Some(code), "{os:?} {name}");
            }
            for &(alias, code) in os.aliases() {
                assert_eq!(error_code(os, alias), Some(code), "{os:?} {alias}");
                assert_ne!(error_name(os, code), Some(alias), "{os:?} {alias}");
            }
            assert_eq!(error_code(os, "ENOSUCHERROR"), None);
            assert_eq!(error_code(os, ""), None);
        }
    }

    /// Codes a socket conformance run actually meets, per OS.
    #[test]
    fn names_spot_checks_linux() {
        let os = Os::Linux;
        for (name, code) in [
            ("EPERM", 1),
            ("EINTR", 4),
            ("EBADF", 9),
            ("EAGAIN", 11),
            ("ENOMEM", 12),
            ("EACCES", 13),
            ("EINVAL", 22),
            ("ENFILE", 23),
            ("EMFILE", 24),
            ("EPIPE", 32),
            ("EDEADLK", 35),
            ("ENOTSOCK", 88),
            ("EMSGSIZE", 90),
            ("ENOPROTOOPT", 92),
            ("EOPNOTSUPP", 95),
            ("EAFNOSUPPORT", 97),
            ("EADDRINUSE", 98),
            ("EADDRNOTAVAIL", 99),
            ("ENETDOWN", 100),
            ("ENETUNREACH", 101),
            ("ENETRESET", 102),
            ("ECONNABORTED", 103),
            ("ECONNRESET", 104),
            ("ENOBUFS", 105),
            ("EISCONN", 106),
            ("ENOTCONN", 107),
            ("ESHUTDOWN", 108),
            ("ETIMEDOUT", 110),
            ("ECONNREFUSED", 111),
            ("EHOSTDOWN", 112),
            ("EHOSTUNREACH", 113),
            ("EALREADY", 114),
            ("EINPROGRESS", 115),
            ("EHWPOISON", 133),
        ] {
            assert_eq!(error_name(os, code), Some(name), "{code}");
            assert_eq!(error_code(os, name), Some(code), "{name}");
        }
        assert_eq!(error_code(os, "EWOULDBLOCK"), Some(11));
        assert_eq!(error_code(os, "EDEADLOCK"), Some(35));
        assert_eq!(error_code(os, "ENOTSUP"), Some(95));
        assert_eq!(error_name(os, 41), None);
        assert_eq!(error_name(os, 58), None);
    }

    #[test]
    fn names_spot_checks_macos() {
        let os = Os::Macos;
        for (name, code) in [
            ("EPERM", 1),
            ("EINTR", 4),
            ("EBADF", 9),
            ("EDEADLK", 11),
            ("ENOMEM", 12),
            ("EACCES", 13),
            ("EINVAL", 22),
            ("ENFILE", 23),
            ("EMFILE", 24),
            ("EPIPE", 32),
            ("EAGAIN", 35),
            ("EINPROGRESS", 36),
            ("EALREADY", 37),
            ("ENOTSOCK", 38),
            ("EMSGSIZE", 40),
            ("ENOPROTOOPT", 42),
            ("ENOTSUP", 45),
            ("EAFNOSUPPORT", 47),
            ("EADDRINUSE", 48),
            ("EADDRNOTAVAIL", 49),
            ("ENETDOWN", 50),
            ("ENETUNREACH", 51),
            ("ENETRESET", 52),
            ("ECONNABORTED", 53),
            ("ECONNRESET", 54),
            ("ENOBUFS", 55),
            ("EISCONN", 56),
            ("ENOTCONN", 57),
            ("ESHUTDOWN", 58),
            ("ETIMEDOUT", 60),
            ("ECONNREFUSED", 61),
            ("EHOSTDOWN", 64),
            ("EHOSTUNREACH", 65),
            ("EOPNOTSUPP", 102),
            ("EQFULL", 106),
            ("ENOTCAPABLE", 107),
        ] {
            assert_eq!(error_name(os, code), Some(name), "{code}");
            assert_eq!(error_code(os, name), Some(code), "{name}");
        }
        assert_eq!(error_code(os, "EWOULDBLOCK"), Some(35));
    }

    #[test]
    fn names_spot_checks_freebsd() {
        let os = Os::Freebsd;
        for (name, code) in [
            ("EPERM", 1),
            ("EINTR", 4),
            ("EBADF", 9),
            ("EDEADLK", 11),
            ("ENOMEM", 12),
            ("EACCES", 13),
            ("EINVAL", 22),
            ("ENFILE", 23),
            ("EMFILE", 24),
            ("EPIPE", 32),
            ("EAGAIN", 35),
            ("EINPROGRESS", 36),
            ("EALREADY", 37),
            ("ENOTSOCK", 38),
            ("EMSGSIZE", 40),
            ("ENOPROTOOPT", 42),
            ("EOPNOTSUPP", 45),
            ("EAFNOSUPPORT", 47),
            ("EADDRINUSE", 48),
            ("EADDRNOTAVAIL", 49),
            ("ENETDOWN", 50),
            ("ENETUNREACH", 51),
            ("ENETRESET", 52),
            ("ECONNABORTED", 53),
            ("ECONNRESET", 54),
            ("ENOBUFS", 55),
            ("EISCONN", 56),
            ("ENOTCONN", 57),
            ("ESHUTDOWN", 58),
            ("ETIMEDOUT", 60),
            ("ECONNREFUSED", 61),
            ("EHOSTDOWN", 64),
            ("EHOSTUNREACH", 65),
            ("EDOOFUS", 88),
            ("ENOTCAPABLE", 93),
            ("ECAPMODE", 94),
            ("EINTEGRITY", 97),
        ] {
            assert_eq!(error_name(os, code), Some(name), "{code}");
            assert_eq!(error_code(os, name), Some(code), "{name}");
        }
        assert_eq!(error_code(os, "EWOULDBLOCK"), Some(35));
        assert_eq!(error_code(os, "ENOTSUP"), Some(45));
    }

    #[test]
    fn names_spot_checks_windows() {
        let os = Os::Windows;
        for (name, code) in [
            ("WSAEINTR", 10004),
            ("WSAEBADF", 10009),
            ("WSAEACCES", 10013),
            ("WSAEFAULT", 10014),
            ("WSAEINVAL", 10022),
            ("WSAEMFILE", 10024),
            ("WSAEWOULDBLOCK", 10035),
            ("WSAEINPROGRESS", 10036),
            ("WSAEALREADY", 10037),
            ("WSAENOTSOCK", 10038),
            ("WSAEMSGSIZE", 10040),
            ("WSAENOPROTOOPT", 10042),
            ("WSAEOPNOTSUPP", 10045),
            ("WSAEAFNOSUPPORT", 10047),
            ("WSAEADDRINUSE", 10048),
            ("WSAEADDRNOTAVAIL", 10049),
            ("WSAENETDOWN", 10050),
            ("WSAENETUNREACH", 10051),
            ("WSAENETRESET", 10052),
            ("WSAECONNABORTED", 10053),
            ("WSAECONNRESET", 10054),
            ("WSAENOBUFS", 10055),
            ("WSAEISCONN", 10056),
            ("WSAENOTCONN", 10057),
            ("WSAESHUTDOWN", 10058),
            ("WSAETIMEDOUT", 10060),
            ("WSAECONNREFUSED", 10061),
            ("WSAEHOSTDOWN", 10064),
            ("WSAEHOSTUNREACH", 10065),
            ("WSANOTINITIALISED", 10093),
            ("WSAEDISCON", 10101),
            ("WSAHOST_NOT_FOUND", 11001),
            ("WSATRY_AGAIN", 11002),
            ("WSANO_DATA", 11004),
            ("WSA_QOS_RESERVED_PETYPE", 11031),
            ("ERROR_ACCESS_DENIED", 5),
            ("ERROR_INVALID_HANDLE", 6),
            ("ERROR_NOT_ENOUGH_MEMORY", 8),
            ("ERROR_NETNAME_DELETED", 64),
            ("ERROR_INVALID_PARAMETER", 87),
            ("ERROR_BROKEN_PIPE", 109),
            ("ERROR_SEM_TIMEOUT", 121),
            ("ERROR_NO_DATA", 232),
            ("ERROR_OPERATION_ABORTED", 995),
            ("ERROR_IO_INCOMPLETE", 996),
            ("ERROR_IO_PENDING", 997),
            ("ERROR_CONNECTION_REFUSED", 1225),
            ("ERROR_NETWORK_UNREACHABLE", 1231),
            ("ERROR_HOST_UNREACHABLE", 1232),
            ("ERROR_PORT_UNREACHABLE", 1234),
            ("ERROR_CONNECTION_ABORTED", 1236),
            ("ERROR_TIMEOUT", 1460),
        ] {
            assert_eq!(error_name(os, code), Some(name), "{code}");
            assert_eq!(error_code(os, name), Some(code), "{name}");
        }
        assert_eq!(error_code(os, "WSA_IO_PENDING"), Some(997));
        assert_eq!(error_code(os, "WSANO_ADDRESS"), Some(11004));
        // Unix names do not exist on Windows, and vice versa.
        assert_eq!(error_code(os, "ECONNRESET"), None);
        assert_eq!(error_code(Os::Linux, "WSAECONNRESET"), None);
    }

    #[test]
    fn names_socket_errors_named_on_every_os() {
        // The portable errors the suite records; each OS must name every one of them.
        let unix = [
            "ECONNRESET",
            "EPIPE",
            "ETIMEDOUT",
            "ECONNREFUSED",
            "EHOSTUNREACH",
            "ENETUNREACH",
            "EADDRINUSE",
            "EADDRNOTAVAIL",
            "EAGAIN",
            "EWOULDBLOCK",
            "EINPROGRESS",
            "ENOTCONN",
            "EMFILE",
            "ENFILE",
            "ENOBUFS",
            "ECONNABORTED",
            "EINTR",
            "ENETRESET",
            "ESHUTDOWN",
            "EISCONN",
            "EALREADY",
            "ENETDOWN",
            "EHOSTDOWN",
        ];
        for os in UNIX {
            for name in unix {
                let code = error_code(os, name).unwrap_or_else(|| panic!("{os:?}: {name}"));
                let primary = error_name(os, code).unwrap();
                assert_eq!(error_code(os, primary), Some(code));
            }
            // The shared number reads "EAGAIN" everywhere.
            assert_eq!(
                error_name(os, error_code(os, "EWOULDBLOCK").unwrap()),
                Some("EAGAIN")
            );
        }
        for name in unix
            .iter()
            .filter(|&&n| n != "EAGAIN" && n != "ENFILE" && n != "EPIPE")
        {
            let wsa = format!("WSA{name}");
            assert!(error_code(Os::Windows, &wsa).is_some(), "{wsa}");
        }
    }

    #[test]
    fn names_tcp_state_names_round_trip() {
        let mut seen = HashSet::new();
        for st in TcpState::ALL {
            assert_eq!(TcpState::from_name(st.name()), Some(st));
            assert!(seen.insert(st.name()));
            assert!(is_symbol(st.name()), "{}", st.name());
        }
        assert_eq!(TcpState::from_name("SYN_RCVD"), None);
        assert_eq!(TcpState::from_name("established"), None);
        assert_eq!(TcpState::from_name(""), None);
        let transient: Vec<_> = TcpState::ALL
            .into_iter()
            .filter(|s| s.is_transient())
            .collect();
        assert_eq!(
            transient,
            [
                TcpState::SynSent,
                TcpState::SynRecv,
                TcpState::FinWait1,
                TcpState::Closing,
                TcpState::LastAck
            ]
        );
    }

    #[test]
    fn names_tcp_state_every_state_of_every_os() {
        use TcpState::*;
        let linux = [
            (1, Established),
            (2, SynSent),
            (3, SynRecv),
            (4, FinWait1),
            (5, FinWait2),
            (6, TimeWait),
            (7, Closed),
            (8, CloseWait),
            (9, LastAck),
            (10, Listen),
            (11, Closing),
            (12, SynRecv),
            (13, Closed),
        ];
        let bsd = [
            (0, Closed),
            (1, Listen),
            (2, SynSent),
            (3, SynRecv),
            (4, Established),
            (5, CloseWait),
            (6, FinWait1),
            (7, Closing),
            (8, LastAck),
            (9, FinWait2),
            (10, TimeWait),
        ];
        let windows = [
            (1, Closed),
            (2, Listen),
            (3, SynSent),
            (4, SynRecv),
            (5, Established),
            (6, FinWait1),
            (7, FinWait2),
            (8, CloseWait),
            (9, Closing),
            (10, LastAck),
            (11, TimeWait),
            (12, DeleteTcb),
        ];
        let expected: [(Os, &[(i32, TcpState)]); 4] = [
            (Os::Linux, &linux),
            (Os::Macos, &bsd),
            (Os::Freebsd, &bsd),
            (Os::Windows, &windows),
        ];
        for (os, want) in expected {
            assert_eq!(os.tcp_states(), want, "{os:?}");
            for &(code, st) in want {
                assert_eq!(tcp_state(os, code), Some(st), "{os:?} {code}");
            }
            let codes: HashSet<i32> = os.tcp_states().iter().map(|&(c, _)| c).collect();
            assert_eq!(
                codes.len(),
                os.tcp_states().len(),
                "{os:?}: duplicate number"
            );
            for code in [-1, 14, 100, 255] {
                assert_eq!(tcp_state(os, code), None, "{os:?} {code}");
            }
            // Every portable state is reachable on every OS (DELETE_TCB is Windows-only).
            for st in TcpState::ALL {
                let present = os.tcp_states().iter().any(|&(_, s)| s == st);
                let want = st != DeleteTcb || os == Os::Windows;
                assert_eq!(present, want, "{os:?} {st:?}");
            }
        }
        assert_eq!(tcp_state(Os::Linux, 0), None);
        assert_eq!(tcp_state(Os::Windows, 0), None);
        assert_eq!(tcp_state(Os::Macos, 11), None);
        // MIB_TCP_STATE_RESERVED (100) is not a state.
        assert_eq!(tcp_state(Os::Windows, 100), None);
    }

    /// Compares a name list with the running OS's own constants (`libc` / `windows-sys`).
    #[cfg(any(
        target_os = "linux",
        target_os = "macos",
        target_os = "freebsd",
        windows
    ))]
    macro_rules! check_consts {
        ($os:expr, $($path:ident)::+ => $($name:ident),+ $(,)?) => {{
            use $($path)::+ as consts;
            let mut n = 0;
            $(
                // c_int, WSA_ERROR (i32) or WIN32_ERROR (u32) depending on the source.
                #[allow(clippy::unnecessary_cast)]
                let want = consts::$name as i32;
                assert_eq!(error_code($os, stringify!($name)), Some(want), stringify!($name));
                n += 1;
            )+
            n
        }};
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn names_linux_table_matches_libc() {
        let n = check_consts!(Os::Linux, libc =>
            EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, ENOEXEC, EBADF, ECHILD, EAGAIN,
            ENOMEM, EACCES, EFAULT, ENOTBLK, EBUSY, EEXIST, EXDEV, ENODEV, ENOTDIR, EISDIR,
            EINVAL, ENFILE, EMFILE, ENOTTY, ETXTBSY, EFBIG, ENOSPC, ESPIPE, EROFS, EMLINK,
            EPIPE, EDOM, ERANGE, EDEADLK, ENAMETOOLONG, ENOLCK, ENOSYS, ENOTEMPTY, ELOOP,
            EWOULDBLOCK, ENOMSG, EIDRM, ECHRNG, EL2NSYNC, EL3HLT, EL3RST, ELNRNG, EUNATCH,
            ENOCSI, EL2HLT, EBADE, EBADR, EXFULL, ENOANO, EBADRQC, EBADSLT, EDEADLOCK, EBFONT,
            ENOSTR, ENODATA, ETIME, ENOSR, ENONET, ENOPKG, EREMOTE, ENOLINK, EADV, ESRMNT,
            ECOMM, EPROTO, EMULTIHOP, EDOTDOT, EBADMSG, EOVERFLOW, ENOTUNIQ, EBADFD, EREMCHG,
            ELIBACC, ELIBBAD, ELIBSCN, ELIBMAX, ELIBEXEC, EILSEQ, ERESTART, ESTRPIPE, EUSERS,
            ENOTSOCK, EDESTADDRREQ, EMSGSIZE, EPROTOTYPE, ENOPROTOOPT, EPROTONOSUPPORT,
            ESOCKTNOSUPPORT, EOPNOTSUPP, ENOTSUP, EPFNOSUPPORT, EAFNOSUPPORT, EADDRINUSE,
            EADDRNOTAVAIL, ENETDOWN, ENETUNREACH, ENETRESET, ECONNABORTED, ECONNRESET, ENOBUFS,
            EISCONN, ENOTCONN, ESHUTDOWN, ETOOMANYREFS, ETIMEDOUT, ECONNREFUSED, EHOSTDOWN,
            EHOSTUNREACH, EALREADY, EINPROGRESS, ESTALE, EUCLEAN, ENOTNAM, ENAVAIL, EISNAM,
            EREMOTEIO, EDQUOT, ENOMEDIUM, EMEDIUMTYPE, ECANCELED, ENOKEY, EKEYEXPIRED,
            EKEYREVOKED, EKEYREJECTED, EOWNERDEAD, ENOTRECOVERABLE, ERFKILL, EHWPOISON,
        );
        assert_eq!(n, Os::Linux.errors().len() + Os::Linux.aliases().len());
        // What the running system reports for a refused connection, end to end.
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            error_name(Os::Linux, e.raw_os_error().unwrap()),
            Some("ECONNREFUSED")
        );
    }

    #[cfg(target_os = "macos")]
    #[test]
    fn names_macos_table_matches_libc() {
        let n = check_consts!(Os::Macos, libc =>
            EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, ENOEXEC, EBADF, ECHILD, EDEADLK,
            ENOMEM, EACCES, EFAULT, ENOTBLK, EBUSY, EEXIST, EXDEV, ENODEV, ENOTDIR, EISDIR,
            EINVAL, ENFILE, EMFILE, ENOTTY, ETXTBSY, EFBIG, ENOSPC, ESPIPE, EROFS, EMLINK,
            EPIPE, EDOM, ERANGE, EAGAIN, EWOULDBLOCK, EINPROGRESS, EALREADY, ENOTSOCK,
            EDESTADDRREQ, EMSGSIZE, EPROTOTYPE, ENOPROTOOPT, EPROTONOSUPPORT, ESOCKTNOSUPPORT,
            ENOTSUP, EPFNOSUPPORT, EAFNOSUPPORT, EADDRINUSE, EADDRNOTAVAIL, ENETDOWN,
            ENETUNREACH, ENETRESET, ECONNABORTED, ECONNRESET, ENOBUFS, EISCONN, ENOTCONN,
            ESHUTDOWN, ETOOMANYREFS, ETIMEDOUT, ECONNREFUSED, ELOOP, ENAMETOOLONG, EHOSTDOWN,
            EHOSTUNREACH, ENOTEMPTY, EPROCLIM, EUSERS, EDQUOT, ESTALE, EREMOTE, EBADRPC,
            ERPCMISMATCH, EPROGUNAVAIL, EPROGMISMATCH, EPROCUNAVAIL, ENOLCK, ENOSYS, EFTYPE,
            EAUTH, ENEEDAUTH, EPWROFF, EDEVERR, EOVERFLOW, EBADEXEC, EBADARCH, ESHLIBVERS,
            EBADMACHO, ECANCELED, EIDRM, ENOMSG, EILSEQ, ENOATTR, EBADMSG, EMULTIHOP, ENODATA,
            ENOLINK, ENOSR, ENOSTR, EPROTO, ETIME, EOPNOTSUPP, ENOPOLICY, ENOTRECOVERABLE,
            EOWNERDEAD, EQFULL, ENOTCAPABLE,
        );
        assert_eq!(n, Os::Macos.errors().len() + Os::Macos.aliases().len());
    }

    #[cfg(target_os = "freebsd")]
    #[test]
    fn names_freebsd_table_matches_libc() {
        let n = check_consts!(Os::Freebsd, libc =>
            EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, ENOEXEC, EBADF, ECHILD, EDEADLK,
            ENOMEM, EACCES, EFAULT, ENOTBLK, EBUSY, EEXIST, EXDEV, ENODEV, ENOTDIR, EISDIR,
            EINVAL, ENFILE, EMFILE, ENOTTY, ETXTBSY, EFBIG, ENOSPC, ESPIPE, EROFS, EMLINK,
            EPIPE, EDOM, ERANGE, EAGAIN, EWOULDBLOCK, EINPROGRESS, EALREADY, ENOTSOCK,
            EDESTADDRREQ, EMSGSIZE, EPROTOTYPE, ENOPROTOOPT, EPROTONOSUPPORT, ESOCKTNOSUPPORT,
            EOPNOTSUPP, ENOTSUP, EPFNOSUPPORT, EAFNOSUPPORT, EADDRINUSE, EADDRNOTAVAIL,
            ENETDOWN, ENETUNREACH, ENETRESET, ECONNABORTED, ECONNRESET, ENOBUFS, EISCONN,
            ENOTCONN, ESHUTDOWN, ETOOMANYREFS, ETIMEDOUT, ECONNREFUSED, ELOOP, ENAMETOOLONG,
            EHOSTDOWN, EHOSTUNREACH, ENOTEMPTY, EPROCLIM, EUSERS, EDQUOT, ESTALE, EREMOTE,
            EBADRPC, ERPCMISMATCH, EPROGUNAVAIL, EPROGMISMATCH, EPROCUNAVAIL, ENOLCK, ENOSYS,
            EFTYPE, EAUTH, ENEEDAUTH, EIDRM, ENOMSG, EOVERFLOW, ECANCELED, EILSEQ, ENOATTR,
            EDOOFUS, EBADMSG, EMULTIHOP, ENOLINK, EPROTO, ENOTCAPABLE, ECAPMODE,
            ENOTRECOVERABLE, EOWNERDEAD, EINTEGRITY,
        );
        assert_eq!(n, Os::Freebsd.errors().len() + Os::Freebsd.aliases().len());
    }

    #[cfg(windows)]
    #[test]
    fn names_windows_table_matches_windows_sys() {
        use windows_sys::Win32::Networking::WinSock::WSANO_DATA;
        let wsa = check_consts!(Os::Windows, windows_sys::Win32::Networking::WinSock =>
            WSAEINTR, WSAEBADF, WSAEACCES, WSAEFAULT, WSAEINVAL, WSAEMFILE, WSAEWOULDBLOCK,
            WSAEINPROGRESS, WSAEALREADY, WSAENOTSOCK, WSAEDESTADDRREQ, WSAEMSGSIZE,
            WSAEPROTOTYPE, WSAENOPROTOOPT, WSAEPROTONOSUPPORT, WSAESOCKTNOSUPPORT,
            WSAEOPNOTSUPP, WSAEPFNOSUPPORT, WSAEAFNOSUPPORT, WSAEADDRINUSE,
            WSAEADDRNOTAVAIL, WSAENETDOWN, WSAENETUNREACH, WSAENETRESET, WSAECONNABORTED,
            WSAECONNRESET, WSAENOBUFS, WSAEISCONN, WSAENOTCONN, WSAESHUTDOWN,
            WSAETOOMANYREFS, WSAETIMEDOUT, WSAECONNREFUSED, WSAELOOP, WSAENAMETOOLONG,
            WSAEHOSTDOWN, WSAEHOSTUNREACH, WSAENOTEMPTY, WSAEPROCLIM, WSAEUSERS, WSAEDQUOT,
            WSAESTALE, WSAEREMOTE, WSASYSNOTREADY, WSAVERNOTSUPPORTED, WSANOTINITIALISED,
            WSAEDISCON, WSAENOMORE, WSAECANCELLED, WSAEINVALIDPROCTABLE,
            WSAEINVALIDPROVIDER, WSAEPROVIDERFAILEDINIT, WSASYSCALLFAILURE,
            WSASERVICE_NOT_FOUND, WSATYPE_NOT_FOUND, WSA_E_NO_MORE, WSA_E_CANCELLED,
            WSAEREFUSED, WSAHOST_NOT_FOUND, WSATRY_AGAIN, WSANO_RECOVERY, WSANO_DATA,
            WSA_QOS_RECEIVERS, WSA_QOS_SENDERS, WSA_QOS_NO_SENDERS, WSA_QOS_NO_RECEIVERS,
            WSA_QOS_REQUEST_CONFIRMED, WSA_QOS_ADMISSION_FAILURE, WSA_QOS_POLICY_FAILURE,
            WSA_QOS_BAD_STYLE, WSA_QOS_BAD_OBJECT, WSA_QOS_TRAFFIC_CTRL_ERROR,
            WSA_QOS_GENERIC_ERROR, WSA_QOS_ESERVICETYPE, WSA_QOS_EFLOWSPEC,
            WSA_QOS_EPROVSPECBUF, WSA_QOS_EFILTERSTYLE, WSA_QOS_EFILTERTYPE,
            WSA_QOS_EFILTERCOUNT, WSA_QOS_EOBJLENGTH, WSA_QOS_EFLOWCOUNT,
            WSA_QOS_EUNKOWNPSOBJ, WSA_QOS_EPOLICYOBJ, WSA_QOS_EFLOWDESC,
            WSA_QOS_EPSFLOWSPEC, WSA_QOS_EPSFILTERSPEC, WSA_QOS_ESDMODEOBJ,
            WSA_QOS_ESHAPERATEOBJ, WSA_QOS_RESERVED_PETYPE, WSA_SECURE_HOST_NOT_FOUND,
            WSA_IPSEC_NAME_POLICY_ERROR, WSA_INVALID_HANDLE, WSA_NOT_ENOUGH_MEMORY,
            WSA_INVALID_PARAMETER, WSA_OPERATION_ABORTED, WSA_IO_INCOMPLETE, WSA_IO_PENDING,
        );
        let win32 = check_consts!(Os::Windows, windows_sys::Win32::Foundation =>
            ERROR_INVALID_FUNCTION, ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND,
            ERROR_TOO_MANY_OPEN_FILES, ERROR_ACCESS_DENIED, ERROR_INVALID_HANDLE,
            ERROR_NOT_ENOUGH_MEMORY, ERROR_OUTOFMEMORY, ERROR_INVALID_DRIVE,
            ERROR_NOT_SAME_DEVICE, ERROR_WRITE_PROTECT, ERROR_SHARING_VIOLATION,
            ERROR_LOCK_VIOLATION, ERROR_HANDLE_EOF, ERROR_HANDLE_DISK_FULL,
            ERROR_NOT_SUPPORTED, ERROR_REM_NOT_LIST, ERROR_DUP_NAME, ERROR_BAD_NETPATH,
            ERROR_NETWORK_BUSY, ERROR_DEV_NOT_EXIST, ERROR_BAD_NET_RESP,
            ERROR_UNEXP_NET_ERR, ERROR_NETNAME_DELETED, ERROR_NETWORK_ACCESS_DENIED,
            ERROR_BAD_NET_NAME, ERROR_FILE_EXISTS, ERROR_INVALID_PARAMETER,
            ERROR_BROKEN_PIPE, ERROR_DISK_FULL, ERROR_CALL_NOT_IMPLEMENTED,
            ERROR_SEM_TIMEOUT, ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_NAME,
            ERROR_SEEK_ON_DEVICE, ERROR_DIR_NOT_EMPTY, ERROR_BAD_PATHNAME, ERROR_BUSY,
            ERROR_ALREADY_EXISTS, ERROR_FILENAME_EXCED_RANGE, ERROR_FILE_TOO_LARGE,
            ERROR_BAD_PIPE, ERROR_PIPE_BUSY, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED,
            ERROR_MORE_DATA, ERROR_NO_MORE_ITEMS, ERROR_DIRECTORY,
            ERROR_DIRECTORY_NOT_SUPPORTED, ERROR_INVALID_ADDRESS, ERROR_PIPE_CONNECTED,
            ERROR_DRIVER_CANCEL_TIMEOUT, ERROR_ABANDONED_WAIT_0, ERROR_OPERATION_ABORTED,
            ERROR_IO_INCOMPLETE, ERROR_IO_PENDING, ERROR_NOACCESS, ERROR_INVALID_FLAGS,
            ERROR_SERVICE_REQUEST_TIMEOUT, ERROR_PROCESS_ABORTED, ERROR_COUNTER_TIMEOUT,
            ERROR_POSSIBLE_DEADLOCK, ERROR_TOO_MANY_LINKS, ERROR_NOT_FOUND,
            ERROR_INVALID_NETNAME, ERROR_CANCELLED, ERROR_CONNECTION_REFUSED,
            ERROR_GRACEFUL_DISCONNECT, ERROR_ADDRESS_ALREADY_ASSOCIATED,
            ERROR_ADDRESS_NOT_ASSOCIATED, ERROR_CONNECTION_INVALID, ERROR_CONNECTION_ACTIVE,
            ERROR_NETWORK_UNREACHABLE, ERROR_HOST_UNREACHABLE, ERROR_PROTOCOL_UNREACHABLE,
            ERROR_PORT_UNREACHABLE, ERROR_REQUEST_ABORTED, ERROR_CONNECTION_ABORTED,
            ERROR_RETRY, ERROR_CONNECTION_COUNT_LIMIT, ERROR_INCORRECT_ADDRESS,
            ERROR_DISK_QUOTA_EXCEEDED, ERROR_PRIVILEGE_NOT_HELD, ERROR_NO_SYSTEM_RESOURCES,
            ERROR_NONPAGED_SYSTEM_RESOURCES, ERROR_WORKING_SET_QUOTA,
            ERROR_COMMITMENT_LIMIT, ERROR_TIMEOUT, ERROR_INVALID_USER_BUFFER,
            ERROR_CANT_RESOLVE_FILENAME, ERROR_NOT_CONNECTED, ERROR_NETWORK_NOT_AVAILABLE,
            ERROR_RESOURCE_CALL_TIMED_OUT, ERROR_CTX_MODEM_RESPONSE_TIMEOUT,
            ERROR_CTX_CLIENT_QUERY_TIMEOUT, ERROR_DS_TIMELIMIT_EXCEEDED,
            ERROR_IPSEC_IKE_TIMED_OUT, ERROR_RUNLEVEL_SWITCH_TIMEOUT,
            ERROR_RUNLEVEL_SWITCH_AGENT_TIMEOUT,
        );
        // Every entry and alias is compared, as on the other OSes, but one: winsock.h's
        // WSANO_ADDRESS, an alias of WSANO_DATA that windows-sys does not define.
        assert_eq!(error_code(Os::Windows, "WSANO_ADDRESS"), Some(WSANO_DATA));
        assert_eq!(
            wsa + win32 + 1,
            Os::Windows.errors().len() + Os::Windows.aliases().len()
        );
    }
}
