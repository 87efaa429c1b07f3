//! Unix-domain sockets (AF_UNIX): their types, path and abstract names, peer credentials and
//! SO_REUSEPORT, behind one portable surface. Where an OS lacks a feature (the abstract namespace
//! off Linux, SO_REUSEPORT on Windows) the call returns [`crate::not_supported`] with the reason,
//! which a case records as that platform's outcome. Everything else is left to the OS to answer:
//! socket(AF_UNIX, SOCK_DGRAM) on Windows, a path longer than `sun_path`, are real calls whose
//! errors are the observation.

use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};
use std::io;
use std::mem::size_of;
use std::path::Path;

/// The socket types a Unix-domain socket may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnixKind {
    Stream,
    Datagram,
    Seqpacket,
}

/// socket(AF_UNIX, kind, 0), as the OS answers it (Windows has only SOCK_STREAM, macOS no
/// SOCK_SEQPACKET: their errors are the outcome).
pub fn socket(kind: UnixKind) -> io::Result<Socket> {
    let ty = match kind {
        UnixKind::Stream => Type::STREAM,
        UnixKind::Datagram => Type::DGRAM,
        UnixKind::Seqpacket => Type::SEQPACKET,
    };
    Socket::new(Domain::UNIX, ty, None)
}

/// Where `sun_path` begins in a `sockaddr_un`: after a 16-bit family on Linux and Windows, after
/// `sun_len` and an 8-bit family on the BSDs and macOS. Two bytes on all of them.
const SUN_PATH_OFFSET: usize = 2;

/// The address of `name` as the kernel receives it: `sun_path` holds the bytes, and the length
/// counts them plus one terminating NUL (a pathname) or exactly them (an abstract name, which
/// begins with a NUL byte). Unlike `SockAddr::unix`, which refuses a path that does not fit
/// `sun_path` before the kernel sees it, a name up to the size of a `sockaddr_storage` is handed
/// to the kernel as it is, so the OS's own limit answers.
pub fn address(name: &[u8]) -> io::Result<SockAddr> {
    let terminated = name.first() != Some(&0);
    let len = SUN_PATH_OFFSET + name.len() + usize::from(terminated);
    let mut storage = SockAddrStorage::zeroed();
    if len > size_of::<SockAddrStorage>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a name longer than a sockaddr_storage cannot be passed to the kernel at all",
        ));
    }
    // SAFETY: the storage is at least `len` bytes long (checked above), zeroed, and any byte
    // pattern is valid for it.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut((&mut storage as *mut SockAddrStorage).cast::<u8>(), len)
    };
    set_family(bytes, len);
    bytes[SUN_PATH_OFFSET..SUN_PATH_OFFSET + name.len()].copy_from_slice(name);
    // SAFETY: the storage holds an AF_UNIX address of `len` bytes.
    Ok(unsafe { SockAddr::new(storage, len as socket2::socklen_t) })
}

/// The family (and on the BSDs the address length) at the head of a `sockaddr_un`.
fn set_family(bytes: &mut [u8], len: usize) {
    #[cfg(any(target_os = "macos", target_os = "freebsd"))]
    {
        bytes[0] = len.min(u8::MAX as usize) as u8;
        bytes[1] = libc::AF_UNIX as u8;
    }
    #[cfg(not(any(target_os = "macos", target_os = "freebsd")))]
    {
        let _ = len;
        let family = i32::from(Domain::UNIX) as u16;
        bytes[..2].copy_from_slice(&family.to_ne_bytes());
    }
}

/// The name inside an AF_UNIX address, as the kernel gave it back: the bytes of `sun_path` up to
/// the address length, without a terminating NUL.
pub fn name_of(addr: &SockAddr) -> Vec<u8> {
    let len = addr.len() as usize;
    // SAFETY: `as_ptr` points at a storage of at least `len` initialized bytes.
    let bytes = unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), len) };
    let path = bytes.get(SUN_PATH_OFFSET..).unwrap_or_default();
    match path.split_first() {
        // An abstract name: every byte counts, the leading NUL included.
        Some((0, _)) => path.to_vec(),
        _ => path.split(|b| *b == 0).next().unwrap_or_default().to_vec(),
    }
}

/// The abstract name of `tag` (a NUL byte, then the tag's bytes): Linux only. Elsewhere there is
/// no abstract namespace, and a leading NUL would be read as an empty path.
pub fn abstract_name(tag: &Path) -> io::Result<Vec<u8>> {
    if !cfg!(target_os = "linux") {
        return Err(crate::not_supported(format!(
            "no abstract socket namespace on {}: it is a Linux extension",
            std::env::consts::OS
        )));
    }
    let mut name = vec![0u8];
    name.extend_from_slice(tag.to_string_lossy().as_bytes());
    Ok(name)
}

/// The bytes of a path as a name for `address`.
pub fn path_name(path: &Path) -> Vec<u8> {
    path.to_string_lossy().as_bytes().to_vec()
}

/// What the peer's credentials say, each field None where this OS does not report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// This process's own effective user and group, to compare a peer's with (None on Windows).
pub fn own_ids() -> (Option<u32>, Option<u32>) {
    #[cfg(unix)]
    return unsafe { (Some(libc::geteuid()), Some(libc::getegid())) };
    #[cfg(not(unix))]
    (None, None)
}

/// The credentials of the peer of a connected Unix-domain socket: SO_PEERCRED (Linux: pid, uid,
/// gid), LOCAL_PEERCRED and LOCAL_PEERPID (macOS), getpeereid (FreeBSD: uid, gid),
/// SIO_AF_UNIX_GETPEERPID (Windows: the pid only).
pub fn peer_cred(s: &Socket) -> io::Result<PeerCred> {
    sys::peer_cred(s)
}

#[cfg(target_os = "linux")]
mod sys {
    use super::PeerCred;
    use socket2::Socket;
    use std::io;
    use std::os::fd::AsRawFd;

    pub fn peer_cred(s: &Socket) -> io::Result<PeerCred> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` is a ucred and `len` its size.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if r == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(PeerCred {
            pid: Some(cred.pid as u32),
            uid: Some(cred.uid),
            gid: Some(cred.gid),
        })
    }
}

#[cfg(target_os = "macos")]
mod sys {
    use super::PeerCred;
    use socket2::Socket;
    use std::io;
    use std::os::fd::AsRawFd;

    /// LOCAL_PEERCRED gives a xucred (uid and groups, no pid); LOCAL_PEERPID the pid.
    pub fn peer_cred(s: &Socket) -> io::Result<PeerCred> {
        let fd = s.as_raw_fd();
        // SAFETY: an all-zero xucred is a valid value.
        let mut cred: libc::xucred = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xucred>() as libc::socklen_t;
        // SAFETY: `cred` is a xucred and `len` its size.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_LOCAL,
                libc::LOCAL_PEERCRED,
                (&mut cred as *mut libc::xucred).cast(),
                &mut len,
            )
        };
        if r == -1 {
            return Err(io::Error::last_os_error());
        }
        let mut pid: libc::pid_t = 0;
        let mut plen = std::mem::size_of::<libc::pid_t>() as libc::socklen_t;
        // SAFETY: `pid` is a pid_t and `plen` its size.
        let p = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_LOCAL,
                libc::LOCAL_PEERPID,
                (&mut pid as *mut libc::pid_t).cast(),
                &mut plen,
            )
        };
        let groups = cred.cr_ngroups > 0;
        Ok(PeerCred {
            pid: (p == 0).then_some(pid as u32),
            uid: Some(cred.cr_uid),
            gid: groups.then_some(cred.cr_groups[0]),
        })
    }
}

#[cfg(target_os = "freebsd")]
mod sys {
    use super::PeerCred;
    use socket2::Socket;
    use std::io;
    use std::os::fd::AsRawFd;

    /// getpeereid(3): the peer's effective uid and gid (its pid is not part of the answer).
    pub fn peer_cred(s: &Socket) -> io::Result<PeerCred> {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: both pointers are to valid integers.
        if unsafe { libc::getpeereid(s.as_raw_fd(), &mut uid, &mut gid) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(PeerCred {
            pid: None,
            uid: Some(uid),
            gid: Some(gid),
        })
    }
}

#[cfg(windows)]
mod sys {
    use super::PeerCred;
    use socket2::Socket;
    use std::io;
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{
        WSAGetLastError, WSAIoctl, SIO_AF_UNIX_GETPEERPID, SOCKET_ERROR,
    };

    /// SIO_AF_UNIX_GETPEERPID: the peer's process id; Windows has no uid or gid to report.
    pub fn peer_cred(s: &Socket) -> io::Result<PeerCred> {
        let mut pid: u32 = 0;
        let mut returned: u32 = 0;
        // SAFETY: the output buffer is a u32 of the size given; no overlapped I/O.
        let r = unsafe {
            WSAIoctl(
                s.as_raw_socket() as usize,
                SIO_AF_UNIX_GETPEERPID,
                std::ptr::null(),
                0,
                (&mut pid as *mut u32).cast(),
                std::mem::size_of::<u32>() as u32,
                &mut returned,
                std::ptr::null_mut(),
                None,
            )
        };
        if r == SOCKET_ERROR {
            return Err(io::Error::from_raw_os_error(unsafe { WSAGetLastError() }));
        }
        Ok(PeerCred {
            pid: Some(pid),
            uid: None,
            gid: None,
        })
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "freebsd",
    windows
)))]
mod sys {
    use super::PeerCred;
    use socket2::Socket;
    use std::io;

    pub fn peer_cred(_s: &Socket) -> io::Result<PeerCred> {
        Err(crate::not_supported(format!(
            "no peer-credential call known on {}",
            std::env::consts::OS
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_travel_to_the_kernel_and_back() {
        let a = address(b"/tmp/x").unwrap();
        assert_eq!(a.len() as usize, SUN_PATH_OFFSET + 7);
        assert_eq!(name_of(&a), b"/tmp/x");
        let long = vec![b'p'; 110];
        assert_eq!(name_of(&address(&long).unwrap()), long);
        assert!(address(&[b'p'; 200]).is_err());
    }
}
