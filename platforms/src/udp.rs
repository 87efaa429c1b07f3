//! UDP calls whose form differs per OS: a receive that reports truncation as the OS does, the
//! dissolution of a UDP association, and Linux's IP_RECVERR with its error queue. The portable
//! parts of UDP (bind, connect, send, sendto, SO_BROADCAST) are socket2's and need nothing here.

use socket2::{SockAddr, Socket};
use std::io;
use std::net::SocketAddr;

/// One datagram (or the part of it that fit) as a receive returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// What the call returned: the bytes copied into the buffer.
    pub n: usize,
    /// Whether the OS said the datagram was longer than the buffer (MSG_TRUNC in the flags
    /// recvmsg hands back). Windows has no such flag: it fails the call with WSAEMSGSIZE instead.
    pub truncated: bool,
    /// The sender, when the OS named one.
    pub from: Option<SocketAddr>,
}

/// An error the kernel queued on the socket's error queue (Linux, IP_RECVERR).
#[derive(Debug)]
pub struct QueuedError {
    /// The error it carries (ECONNREFUSED for a port unreachable).
    pub error: io::Error,
    /// Where it came from, in words: "ICMP port unreachable", "local", ...
    pub origin: String,
    /// The destination of the datagram that caused it.
    pub to: Option<SocketAddr>,
}

/// One recvmsg() (recvfrom() on Windows) into `buf`, peeking when asked; truncation is reported
/// as the OS reports it: a flag on Unix, the call's error on Windows (which socket2 would hide).
pub fn recv_msg(s: &Socket, buf: &mut [u8], peek: bool) -> io::Result<Received> {
    sys::recv_msg(s, buf, peek)
}

/// Dissolve the socket's association. On Unix this is connect() to an AF_UNSPEC address (Linux
/// returns 0; the BSDs and macOS disconnect but fail with EAFNOSUPPORT or EINVAL, and that answer
/// is the outcome). Winsock has no AF_UNSPEC connect: its documented way is a connect() to the
/// zero address of the socket's family, which libuv uses too.
pub fn disconnect(s: &Socket) -> io::Result<()> {
    sys::disconnect(s)
}

/// IP_RECVERR (IPV6_RECVERR on an IPv6 socket): Linux only.
pub fn set_recv_err(s: &Socket, on: bool) -> io::Result<()> {
    sys::set_recv_err(s, on)
}

/// Read one entry of the socket's error queue (recvmsg with MSG_ERRQUEUE): Linux only. An empty
/// queue is the call's own error (EAGAIN).
pub fn read_error_queue(s: &Socket) -> io::Result<QueuedError> {
    sys::read_error_queue(s)
}

fn socket_addr(a: &SockAddr) -> Option<SocketAddr> {
    a.as_socket()
}

#[cfg(unix)]
mod sys {
    use super::*;
    use std::os::fd::AsRawFd;

    pub fn recv_msg(s: &Socket, buf: &mut [u8], peek: bool) -> io::Result<Received> {
        let flags = if peek { libc::MSG_PEEK } else { 0 };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: recvmsg writes at most `namelen` bytes of address into the storage socket2
        // hands us, and at most `iov_len` bytes into `buf`; `namelen` is written back for it.
        let ((n, msg_flags), from) = unsafe {
            SockAddr::try_init(|storage, len| {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_name = storage.cast();
                msg.msg_namelen = *len;
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                let n = libc::recvmsg(s.as_raw_fd(), &mut msg, flags);
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                *len = msg.msg_namelen;
                Ok((n as usize, msg.msg_flags))
            })?
        };
        Ok(Received {
            n,
            truncated: msg_flags & libc::MSG_TRUNC != 0,
            from: socket_addr(&from),
        })
    }

    pub fn disconnect(s: &Socket) -> io::Result<()> {
        // SAFETY: a zeroed sockaddr with only the family set, passed with its own size.
        let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
        sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
        if unsafe { libc::connect(s.as_raw_fd(), &sa, len) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    pub use super::linux::{read_error_queue, set_recv_err};

    #[cfg(not(target_os = "linux"))]
    pub fn set_recv_err(_s: &Socket, _on: bool) -> io::Result<()> {
        Err(crate::not_supported(format!(
            "IP_RECVERR is a Linux option; {} has no error queue",
            std::env::consts::OS
        )))
    }

    #[cfg(not(target_os = "linux"))]
    pub fn read_error_queue(_s: &Socket) -> io::Result<QueuedError> {
        Err(crate::not_supported(format!(
            "MSG_ERRQUEUE is Linux's; {} has no error queue",
            std::env::consts::OS
        )))
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::os::fd::AsRawFd;

    pub fn set_recv_err(s: &Socket, on: bool) -> io::Result<()> {
        let (level, name) = match s.local_addr()?.as_socket() {
            Some(SocketAddr::V6(_)) => (libc::IPPROTO_IPV6, libc::IPV6_RECVERR),
            _ => (libc::IPPROTO_IP, libc::IP_RECVERR),
        };
        let v: libc::c_int = on.into();
        // SAFETY: one int option, passed with its size.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                level,
                name,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn read_error_queue(s: &Socket) -> io::Result<QueuedError> {
        // Room for one sock_extended_err and the offender's address after it.
        let mut control = [0u64; 64];
        let mut data = [0u8; 64];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: as in recv_msg, with a control buffer of its stated length.
        let (ee, to) = unsafe {
            SockAddr::try_init(|storage, len| {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_name = storage.cast();
                msg.msg_namelen = *len;
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = std::mem::size_of_val(&control);
                let flags = libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT;
                if libc::recvmsg(s.as_raw_fd(), &mut msg, flags) < 0 {
                    return Err(io::Error::last_os_error());
                }
                *len = msg.msg_namelen;
                Ok(extended_err(&msg))
            })?
        };
        let ee = ee.ok_or_else(|| io::Error::other("the error queue entry had no IP_RECVERR"))?;
        Ok(QueuedError {
            error: io::Error::from_raw_os_error(ee.ee_errno as i32),
            origin: origin(&ee),
            to: socket_addr(&to),
        })
    }

    /// The sock_extended_err among the message's control data.
    unsafe fn extended_err(msg: &libc::msghdr) -> Option<libc::sock_extended_err> {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level, kind) == (libc::IPPROTO_IP, libc::IP_RECVERR)
                || (level, kind) == (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
            {
                let p = libc::CMSG_DATA(c) as *const libc::sock_extended_err;
                return Some(std::ptr::read_unaligned(p));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
        None
    }

    /// The origin in words; the ICMP message by name where it is the one a case expects.
    fn origin(ee: &libc::sock_extended_err) -> String {
        match (ee.ee_origin, ee.ee_type, ee.ee_code) {
            (libc::SO_EE_ORIGIN_ICMP, 3, 3) => "ICMP port unreachable".into(),
            (libc::SO_EE_ORIGIN_ICMP6, 1, 4) => "ICMPv6 port unreachable".into(),
            (libc::SO_EE_ORIGIN_ICMP, t, c) => format!("ICMP type {t} code {c}"),
            (libc::SO_EE_ORIGIN_ICMP6, t, c) => format!("ICMPv6 type {t} code {c}"),
            (libc::SO_EE_ORIGIN_LOCAL, ..) => "the local stack".into(),
            (o, ..) => format!("origin {o}"),
        }
    }
}

#[cfg(windows)]
mod sys {
    use super::*;
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{
        connect, recvfrom, WSAGetLastError, MSG_PEEK, SOCKADDR, SOCKET, SOCKET_ERROR,
    };

    fn raw(s: &Socket) -> SOCKET {
        s.as_raw_socket() as SOCKET
    }

    fn wsa_error() -> io::Error {
        io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
    }

    /// recvfrom() as Winsock answers it: a datagram longer than the buffer fails WSAEMSGSIZE
    /// (with the buffer filled), and that error is the outcome.
    pub fn recv_msg(s: &Socket, buf: &mut [u8], peek: bool) -> io::Result<Received> {
        let flags = if peek { MSG_PEEK } else { 0 };
        let len = buf.len().min(i32::MAX as usize) as i32;
        // SAFETY: recvfrom writes at most `len` bytes into `buf` and at most `*fromlen` bytes of
        // address into the storage socket2 hands us, updating `*fromlen`.
        let (n, from) = unsafe {
            SockAddr::try_init(|storage, fromlen| {
                let n = recvfrom(
                    raw(s),
                    buf.as_mut_ptr(),
                    len,
                    flags,
                    storage.cast(),
                    fromlen,
                );
                if n == SOCKET_ERROR {
                    return Err(wsa_error());
                }
                Ok(n as usize)
            })?
        };
        Ok(Received {
            n,
            truncated: false,
            from: socket_addr(&from),
        })
    }

    pub fn disconnect(s: &Socket) -> io::Result<()> {
        let zero: SocketAddr = match s.local_addr()?.as_socket() {
            Some(SocketAddr::V6(_)) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            _ => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        };
        let zero = SockAddr::from(zero);
        // SAFETY: the address and its length come from one SockAddr.
        let r = unsafe { connect(raw(s), zero.as_ptr() as *const SOCKADDR, zero.len()) };
        if r == SOCKET_ERROR {
            return Err(wsa_error());
        }
        Ok(())
    }

    pub fn set_recv_err(_s: &Socket, _on: bool) -> io::Result<()> {
        Err(crate::not_supported(
            "IP_RECVERR is a Linux option; Winsock has no error queue",
        ))
    }

    pub fn read_error_queue(_s: &Socket) -> io::Result<QueuedError> {
        Err(crate::not_supported(
            "MSG_ERRQUEUE is Linux's; Winsock has no error queue",
        ))
    }
}

/// Any other OS: socket2's portable calls, and no error queue.
#[cfg(not(any(unix, windows)))]
mod sys {
    use super::*;
    use std::mem::MaybeUninit;

    pub fn recv_msg(s: &Socket, buf: &mut [u8], peek: bool) -> io::Result<Received> {
        if peek {
            return Err(crate::not_implemented("MSG_PEEK on this OS"));
        }
        // SAFETY: u8 and MaybeUninit<u8> have one layout; recv only writes into it.
        let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
        let (n, from) = s.recv_from(uninit)?;
        Ok(Received {
            n,
            truncated: false,
            from: socket_addr(&from),
        })
    }

    pub fn disconnect(_s: &Socket) -> io::Result<()> {
        Err(crate::not_implemented(
            "dissolving a UDP association on this OS",
        ))
    }

    pub fn set_recv_err(_s: &Socket, _on: bool) -> io::Result<()> {
        Err(crate::not_supported("IP_RECVERR is a Linux option"))
    }

    pub fn read_error_queue(_s: &Socket) -> io::Result<QueuedError> {
        Err(crate::not_supported("MSG_ERRQUEUE is Linux's"))
    }
}
