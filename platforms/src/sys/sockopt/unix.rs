//! Raw options and the blocking mode on Linux, macOS and FreeBSD: getsockopt/setsockopt and
//! fcntl, with the values the kernel wrote.

use crate::sockopt::{OptValue, SockOpt};
use socket2::Socket;
use std::io;
use std::mem::{size_of, ManuallyDrop};
use std::os::fd::{AsRawFd, FromRawFd};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn level_and_name(opt: SockOpt) -> (libc::c_int, libc::c_int) {
    use libc::*;
    match opt {
        SockOpt::RcvBuf => (SOL_SOCKET, SO_RCVBUF),
        SockOpt::SndBuf => (SOL_SOCKET, SO_SNDBUF),
        SockOpt::KeepAlive => (SOL_SOCKET, SO_KEEPALIVE),
        SockOpt::ReuseAddr => (SOL_SOCKET, SO_REUSEADDR),
        SockOpt::Broadcast => (SOL_SOCKET, SO_BROADCAST),
        SockOpt::NoDelay => (IPPROTO_TCP, TCP_NODELAY),
        SockOpt::AcceptConn => (SOL_SOCKET, SO_ACCEPTCONN),
        SockOpt::Linger => (SOL_SOCKET, SO_LINGER),
    }
}

/// getsockopt into a zeroed `T`; returns it and the length the kernel reported.
fn get_raw<T>(s: &Socket, opt: SockOpt) -> io::Result<(T, usize)> {
    let (level, name) = level_and_name(opt);
    let mut val: T = unsafe { std::mem::zeroed() };
    let mut len = size_of::<T>() as libc::socklen_t;
    cvt(unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&mut val as *mut T).cast(),
            &mut len,
        )
    })?;
    Ok((val, len as usize))
}

pub fn get_option(s: &Socket, opt: SockOpt) -> io::Result<OptValue> {
    if opt == SockOpt::Linger {
        let (l, _) = get_raw::<libc::linger>(s, opt)?;
        return Ok(OptValue::Linger {
            onoff: l.l_onoff,
            linger: l.l_linger,
        });
    }
    let (value, len) = get_raw::<libc::c_int>(s, opt)?;
    Ok(OptValue::Int { value, len })
}

/// setsockopt with an int; for SO_LINGER, `value` is l_linger with l_onoff 1 (a negative value
/// turns lingering off).
pub fn set_option(s: &Socket, opt: SockOpt, value: i32) -> io::Result<()> {
    let (level, name) = level_and_name(opt);
    let set = |ptr: *const libc::c_void, len: usize| {
        cvt(unsafe { libc::setsockopt(s.as_raw_fd(), level, name, ptr, len as libc::socklen_t) })
            .map(drop)
    };
    if opt == SockOpt::Linger {
        let l = libc::linger {
            l_onoff: (value >= 0) as libc::c_int,
            l_linger: value.max(0),
        };
        return set(
            (&l as *const libc::linger).cast(),
            size_of::<libc::linger>(),
        );
    }
    set((&value as *const i32).cast(), size_of::<libc::c_int>())
}

/// O_NONBLOCK of the descriptor, as fcntl(F_GETFL) reports it.
pub fn is_nonblocking(s: &Socket) -> io::Result<bool> {
    let flags = cvt(unsafe { libc::fcntl(s.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// The same descriptor, not a duplicate (see `knobs::same_descriptor`).
pub fn same_descriptor(s: &Socket) -> io::Result<ManuallyDrop<Socket>> {
    Ok(ManuallyDrop::new(unsafe {
        Socket::from_raw_fd(s.as_raw_fd())
    }))
}
