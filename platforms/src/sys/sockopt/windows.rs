//! Raw options on Windows: getsockopt/setsockopt as Winsock answers them. Winsock has no call that
//! reads a socket's blocking mode back (FIONBIO only sets it).

use crate::sockopt::{OptValue, SockOpt};
use socket2::Socket;
use std::io;
use std::mem::{size_of, ManuallyDrop};
use std::os::windows::io::{AsRawSocket, FromRawSocket};
use windows_sys::Win32::Networking::WinSock::{
    getsockopt, setsockopt, WSAGetLastError, IPPROTO_TCP, LINGER, SOCKET, SOCKET_ERROR, SOL_SOCKET,
    SO_ACCEPTCONN, SO_BROADCAST, SO_KEEPALIVE, SO_LINGER, SO_RCVBUF, SO_REUSEADDR, SO_SNDBUF,
    TCP_NODELAY,
};

fn level_and_name(opt: SockOpt) -> (i32, i32) {
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

fn raw(s: &Socket) -> SOCKET {
    s.as_raw_socket() as SOCKET
}

fn check(r: i32) -> io::Result<()> {
    if r == SOCKET_ERROR {
        Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }))
    } else {
        Ok(())
    }
}

/// getsockopt into a zeroed `T`; returns it and the length Winsock reported.
fn get_raw<T>(s: &Socket, opt: SockOpt) -> io::Result<(T, usize)> {
    let (level, name) = level_and_name(opt);
    let mut val: T = unsafe { std::mem::zeroed() };
    let mut len = size_of::<T>() as i32;
    check(unsafe { getsockopt(raw(s), level, name, (&mut val as *mut T).cast(), &mut len) })?;
    Ok((val, len.max(0) as usize))
}

pub fn get_option(s: &Socket, opt: SockOpt) -> io::Result<OptValue> {
    if opt == SockOpt::Linger {
        let (l, _) = get_raw::<LINGER>(s, opt)?;
        return Ok(OptValue::Linger {
            onoff: l.l_onoff.into(),
            linger: l.l_linger.into(),
        });
    }
    let (value, len) = get_raw::<i32>(s, opt)?;
    Ok(OptValue::Int { value, len })
}

/// setsockopt with an int; for SO_LINGER, `value` is l_linger with l_onoff 1 (a negative value
/// turns lingering off).
pub fn set_option(s: &Socket, opt: SockOpt, value: i32) -> io::Result<()> {
    let (level, name) = level_and_name(opt);
    if opt == SockOpt::Linger {
        let l = LINGER {
            l_onoff: (value >= 0) as u16,
            l_linger: value.clamp(0, u16::MAX.into()) as u16,
        };
        let p = (&l as *const LINGER).cast();
        return check(unsafe { setsockopt(raw(s), level, name, p, size_of::<LINGER>() as i32) });
    }
    let p = (&value as *const i32).cast();
    check(unsafe { setsockopt(raw(s), level, name, p, size_of::<i32>() as i32) })
}

pub fn is_nonblocking(_s: &Socket) -> io::Result<bool> {
    Err(crate::not_supported(
        "Winsock cannot read a socket's blocking mode back; FIONBIO only sets it",
    ))
}

/// The same socket handle, not a duplicate (see `knobs::same_descriptor`).
pub fn same_descriptor(s: &Socket) -> io::Result<ManuallyDrop<Socket>> {
    Ok(ManuallyDrop::new(unsafe {
        Socket::from_raw_socket(s.as_raw_socket())
    }))
}
