//! Raw socket options: a small typed set of option names, read and written as the platform's own
//! integers, so a snapshot shows the value exactly as getsockopt returned it (Linux's doubled
//! buffer sizes, macOS's flag bits for a boolean), never a value normalized on the way.

use socket2::Socket;
use std::fmt;
use std::io;
use std::mem::ManuallyDrop;

// One backend per OS family; the path is chosen once, like `sys` in lib.rs.
#[cfg_attr(
    any(target_os = "linux", target_os = "macos", target_os = "freebsd"),
    path = "sys/sockopt/unix.rs"
)]
#[cfg_attr(windows, path = "sys/sockopt/windows.rs")]
#[cfg_attr(
    not(any(
        target_os = "linux",
        target_os = "macos",
        target_os = "freebsd",
        windows
    )),
    path = "sys/sockopt/unsupported.rs"
)]
mod imp;

/// The option's value as getsockopt wrote it, unconverted.
pub fn get(s: &Socket, opt: SockOpt) -> io::Result<OptValue> {
    imp::get_option(s, opt)
}

/// setsockopt with a raw int (for SO_LINGER: l_onoff 1 and this l_linger; negative turns it off).
pub fn set(s: &Socket, opt: SockOpt, value: i32) -> io::Result<()> {
    imp::set_option(s, opt, value)
}

/// Whether the socket is in non-blocking mode, as the OS reports it (fcntl O_NONBLOCK); Windows
/// cannot tell, which is `not supported (why)`.
pub fn is_nonblocking(s: &Socket) -> io::Result<bool> {
    imp::is_nonblocking(s)
}

/// The same descriptor (handle) as `s`, not a duplicate, for a call made in a second thread.
/// A duplicate (`try_clone`) would keep the socket open when the first thread closes its
/// descriptor, and the question "does close() wake a call blocked on this socket" would no
/// longer be asked. Never dropped: the owner of `s` closes it. A call that starts after the owner
/// closed it gets EBADF, or another socket that took the number, so the caller starts it first
/// and closes only once it is blocked.
pub fn same_descriptor(s: &Socket) -> io::Result<ManuallyDrop<Socket>> {
    imp::same_descriptor(s)
}

/// An option the suite reads or writes raw. Each maps to one (level, name) pair per OS in
/// `sys/sockopt/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SockOpt {
    RcvBuf,
    SndBuf,
    KeepAlive,
    ReuseAddr,
    Broadcast,
    NoDelay,
    AcceptConn,
    Linger,
}

impl SockOpt {
    pub const ALL: [SockOpt; 8] = [
        SockOpt::RcvBuf,
        SockOpt::SndBuf,
        SockOpt::KeepAlive,
        SockOpt::ReuseAddr,
        SockOpt::Broadcast,
        SockOpt::NoDelay,
        SockOpt::AcceptConn,
        SockOpt::Linger,
    ];

    /// The C name of the option, as every OS's headers spell it.
    pub fn name(self) -> &'static str {
        match self {
            SockOpt::RcvBuf => "SO_RCVBUF",
            SockOpt::SndBuf => "SO_SNDBUF",
            SockOpt::KeepAlive => "SO_KEEPALIVE",
            SockOpt::ReuseAddr => "SO_REUSEADDR",
            SockOpt::Broadcast => "SO_BROADCAST",
            SockOpt::NoDelay => "TCP_NODELAY",
            SockOpt::AcceptConn => "SO_ACCEPTCONN",
            SockOpt::Linger => "SO_LINGER",
        }
    }

    /// The option of this C name.
    pub fn from_name(name: &str) -> Option<SockOpt> {
        SockOpt::ALL.into_iter().find(|o| o.name() == name)
    }
}

impl fmt::Display for SockOpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What getsockopt wrote, unconverted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptValue {
    /// An integer option; `len` is the length the call reported, written when it is not the
    /// 4 bytes asked for (Windows answers some boolean options with one byte).
    Int { value: i32, len: usize },
    /// `struct linger` as the platform stores it (macOS counts l_linger in clock ticks).
    Linger { onoff: i32, linger: i32 },
}

impl fmt::Display for OptValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptValue::Int { value, len: 4 } => write!(f, "value {value}"),
            OptValue::Int { value, len } => write!(f, "value {value}, {len} byte(s)"),
            OptValue::Linger { onoff, linger } => write!(f, "l_onoff {onoff}, l_linger {linger}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_values_print_raw() {
        for o in SockOpt::ALL {
            assert_eq!(SockOpt::from_name(o.name()), Some(o));
        }
        assert_eq!(SockOpt::from_name("SO_NOPE"), None);
        assert_eq!(OptValue::Int { value: 4, len: 4 }.to_string(), "value 4");
        assert_eq!(
            OptValue::Int { value: 1, len: 1 }.to_string(),
            "value 1, 1 byte(s)"
        );
        let l = OptValue::Linger {
            onoff: 1,
            linger: 300,
        };
        assert_eq!(l.to_string(), "l_onoff 1, l_linger 300");
    }
}
