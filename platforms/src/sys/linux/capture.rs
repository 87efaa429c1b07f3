//! Packet capture of TCP segments, UDP datagrams and ICMP errors inside the calling thread's
//! network namespace (Linux).
//!
//! One `AF_PACKET`/`SOCK_DGRAM` ("cooked": the buffer starts at the IP header) socket bound to
//! every interface with `ETH_P_ALL`, read by a background thread that parses IPv4/IPv6 headers
//! and the TCP, UDP or ICMP header after them into portable [`Packet`]s.
//!
//! * Namespace: a packet socket belongs to the network namespace of the thread that created it,
//!   so [`Capture::start`] captures the namespace of its *calling thread* (e.g. a case thread after
//!   `unshare(CLONE_NEWNET)`); interfaces added to that namespace later are captured too. The
//!   socket keeps the namespace alive as long as the capture runs.
//! * Each packet once: on loopback every packet passes the tap twice, once `PACKET_OUTGOING` and
//!   once `PACKET_HOST`; the outgoing copy is skipped there (as libpcap does). On every other
//!   interface (a veth whose peer lives in another namespace, the namespace lab's setup) both
//!   directions are kept, since each packet crosses that interface once. Consequently a packet
//!   that crosses *two* interfaces of the captured namespace (both ends of a veth pair in the same
//!   namespace, or a namespace that forwards/routes) is recorded once per interface.
//! * Filtering: a classic BPF filter in the kernel keeps only IPv4/IPv6 TCP, UDP and ICMP errors
//!   (`bpf_frames::ip_filter`, shared with the BSDs) and drops the loopback outgoing copies, so unrelated traffic does not fill the receive buffer (4 MiB, forced past
//!   `net.core.rmem_max` when CAP_NET_ADMIN allows). The same checks are repeated in user space.
//! * Loss is visible: the kernel's drop counter (`PACKET_STATISTICS`) is read by
//!   [`Capture::dropped`] and at stop, where any drop is reported on stderr.
//!
//! Limitations:
//! * Segmentation offload: the tap sees what the stack hands to the device, before TSO/GSO
//!   splits it (loopback and veth never split it at all). The payload length comes from the IP
//!   header, so one 64 KiB write over loopback can show as a single segment "data 65483"
//!   rather than several MTU-sized ones. With BIG TCP (IP length field 0) the length of the
//!   packet as received is used instead.
//! * `at` is when the reader thread read the packet (monotonic, relative to start), not the
//!   kernel's timestamp: order is exact, sub-millisecond intervals are approximate.
//! * gVisor (runsc with `--net-raw`): its packet sockets accept the BPF filter but do not apply
//!   it (the same checks in user space keep only what the filter would), report the link type of loopback as 0
//!   (loopback is then recognized by its `IFF_LOOPBACK` flag), and have neither
//!   `PACKET_STATISTICS` (drops cannot be counted: [`Capture::dropped`] stays 0) nor
//!   `SIOCGSTAMPNS` (times are when the reader thread read the packet).
//! * IPv6 extension headers are not followed (only a next header of TCP, UDP or ICMPv6 is
//!   parsed); IPv4 fragments are ignored but for a UDP datagram's first (TCP sets DF). Link-local IPv6 addresses are reported with scope id 0, and a
//!   dual-stack socket's IPv4-mapped address (`::ffff:a.b.c.d`) appears as the plain IPv4 address
//!   that is really on the wire.

use crate::bpf_frames::{self, FamilyCheck, Insn};
use crate::capture_core::{CaptureCore, Sink};
use crate::wire::{self, Frame, Packet, Segment};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receive buffer of the packet socket: large so bursts are not lost. 4 MiB lost about 500 of
/// the 30,000 packets of 10,000 connections opened at once when the machine was loaded and the
/// reader thread fell behind; the kernel doubles the value and charges only what is queued.
const RCVBUF: libc::c_int = 32 << 20;
/// Bytes read per packet: headers only (IPv4 ≤ 60 or IPv6 40, plus TCP ≤ 60); also what a pcap
/// file keeps of each packet.
const HEADER_BYTES: usize = crate::wire::SNAPLEN as usize;
/// At most this many packets are read between two polls (keeps stop prompt under a flood).
const BATCH: usize = 4096;

const ETH_P_IP: u16 = libc::ETH_P_IP as u16;
const ETH_P_IPV6: u16 = libc::ETH_P_IPV6 as u16;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A running capture of the TCP, UDP and ICMP error packets of one network namespace (see the
/// module docs).
pub struct Capture {
    core: CaptureCore,
    packet: Arc<OwnedFd>,
    /// eventfd polled by the reader together with the packet socket; written to stop it.
    wake: Arc<OwnedFd>,
    /// Kernel drops so far (reading PACKET_STATISTICS resets the kernel's counters).
    dropped: AtomicU32,
}

impl Capture {
    /// Start capturing every TCP segment, UDP datagram and ICMP error (IPv4 and IPv6) on all
    /// interfaces of the network
    /// namespace of the CALLING THREAD (the socket is created here, which fixes its namespace;
    /// the reader is a background thread).
    ///
    /// Needs CAP_NET_RAW: returns the `socket()` error (PermissionDenied) otherwise.
    pub fn start() -> io::Result<Capture> {
        let packet = Arc::new(packet_socket()?);
        let wake = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
        // Kernel receive timestamps: a segment's time is when the kernel saw it, not when the
        // reader thread got to it (which, on a loaded machine, can be much later).
        let on: libc::c_int = 1;
        cvt(unsafe {
            libc::setsockopt(
                packet.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
        let started = Clock::now();
        // Only now does the socket receive anything (it was created with protocol 0).
        bind_all(&packet)?;
        let core = {
            let (packet, wake) = (packet.clone(), wake.clone());
            CaptureCore::spawn(move |sink| read_loop(&packet, &wake, sink, started))?
        };
        Ok(Capture {
            core,
            packet,
            wake,
            dropped: AtomicU32::new(0),
        })
    }

    /// A copy of the TCP segments captured so far, in arrival order.
    pub fn segments(&self) -> Vec<Segment> {
        self.core.segments()
    }

    /// A copy of every packet captured so far, in arrival order.
    pub fn packets(&self) -> Vec<Packet> {
        self.core.packets()
    }

    /// Wait until `pred` holds for the captured TCP segments or `deadline` passes; returns whether it
    /// held. Woken by the reader on every new batch of segments (no polling). Returns false early
    /// if the reader has stopped (nothing more can arrive). `pred` runs under the capture's lock:
    /// it must not call back into this `Capture`.
    pub fn wait_for(&self, deadline: Instant, pred: impl Fn(&[Segment]) -> bool) -> bool {
        self.core.wait_for(deadline, pred)
    }

    /// As [`Capture::wait_for`], on every packet captured (datagrams and ICMP errors too).
    pub fn wait_for_packets(&self, deadline: Instant, pred: impl Fn(&[Packet]) -> bool) -> bool {
        self.core.wait_for_packets(deadline, pred)
    }

    /// Whether the kernel applies the BPF filter (Linux does; gVisor accepts SO_ATTACH_FILTER
    /// on a packet socket but ignores it, and has no SO_GET_FILTER): without it every packet of
    /// the namespace reaches user space, where the same checks drop what the filter would.
    pub fn filtered_in_kernel(&self) -> bool {
        let mut len: libc::socklen_t = 0;
        // SO_GET_FILTER (= SO_ATTACH_FILTER) with a zero length returns the program's length.
        unsafe {
            libc::getsockopt(
                self.packet.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                std::ptr::null_mut(),
                &mut len,
            ) == 0
                && len > 0
        }
    }

    /// Packets the kernel dropped so far because the receive buffer was full (missing from the
    /// capture). Always 0 where the kernel does not count them (gVisor has no
    /// PACKET_STATISTICS): there a loss would go unnoticed.
    pub fn dropped(&self) -> u32 {
        kernel_drops(self.packet.as_raw_fd(), &self.dropped)
    }

    /// Stop the reader thread (woken through its eventfd; what the kernel already queued is
    /// still read) and return the TCP segments captured. Drops, if any, are reported on stderr.
    pub fn stop(self) -> Vec<Segment> {
        wire::segments(self.stop_with_frames().0)
    }

    /// Stop as [`Capture::stop`] does and return every packet, with the bytes behind each (the
    /// same order and count) as they were captured: for a pcap file.
    pub fn stop_with_frames(mut self) -> (Vec<Packet>, Vec<Frame>) {
        self.shutdown();
        self.core.take()
    }

    fn shutdown(&mut self) {
        let (wake, packet) = (self.wake.as_raw_fd(), self.packet.as_raw_fd());
        let ask = || {
            let one: u64 = 1;
            // Cannot fail short of a counter overflow; the reader also exits on its own errors.
            unsafe { libc::write(wake, (&one as *const u64).cast(), 8) };
        };
        let dropped = &self.dropped;
        self.core
            .stop_and_report(ask, || kernel_drops(packet, dropped), "receive buffer");
    }
}

/// The kernel's drops on packet socket `fd` so far, kept in `total` (reading
/// PACKET_STATISTICS resets the kernel's counters); `total` alone where it has none.
fn kernel_drops(fd: RawFd, total: &AtomicU32) -> u32 {
    let mut stats: libc::tpacket_stats = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if r == 0 {
        total.fetch_add(stats.tp_drops, Ordering::Relaxed);
    }
    total.load(Ordering::Relaxed)
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The packet socket, created in the calling thread's namespace with protocol 0 so it receives
/// nothing until the filter is attached and [`bind_all`] runs (no unfiltered packets queued).
fn packet_socket() -> io::Result<OwnedFd> {
    let fd =
        cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SO_RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN; fall back to SO_RCVBUF.
    if setsockopt_int(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        RCVBUF,
    )
    .is_err()
    {
        setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF)?;
    }
    let mut program = filter_program();
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// Start receiving: all protocols, all interfaces (ifindex 0) of the socket's namespace.
fn bind_all(fd: &OwnedFd) -> io::Result<()> {
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = 0;
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Classic BPF: drop loopback's outgoing copies, then keep what the wire records (IPv4/IPv6
/// TCP, UDP and ICMP errors: `bpf_frames::ip_filter`), whole packets (no snap length, so
/// recvfrom(MSG_TRUNC) reports the real length). Offsets are relative to the IP header
/// (SOCK_DGRAM); the ancillary loads read skb metadata (the packet type, the link type, the
/// link protocol that tells IPv4 from IPv6).
fn filter_program() -> Vec<libc::sock_filter> {
    const LDB_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const LDH_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code: u16, k: u32, jt: u8, jf: u8| Insn { code, jt, jf, k };
    // Jump offsets are relative to the next instruction; the selection starts at 5.
    let mut program = vec![
        /* 0 */ op(LDB_ABS, anc(libc::SKF_AD_PKTTYPE), 0, 0),
        /* 1 */ op(JEQ_K, libc::PACKET_OUTGOING as u32, 0, 3), // outgoing? 2 : 5
        /* 2 */ op(LDH_ABS, anc(libc::SKF_AD_HATYPE), 0, 0),
        /* 3 */ op(JEQ_K, libc::ARPHRD_LOOPBACK as u32, 0, 1), // loopback? reject : 5
        /* 4 */ op(RET_K, 0, 0, 0),
    ];
    let family = FamilyCheck {
        load: op(LDH_ABS, anc(libc::SKF_AD_PROTOCOL), 0, 0),
        v4: ETH_P_IP.into(),
        v6: ETH_P_IPV6.into(),
    };
    program.extend(bpf_frames::ip_filter(family, 0, u32::MAX));
    program
        .into_iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect()
}

/// The offset of a classic BPF load that reads the skb's ancillary datum `off`.
fn anc(off: libc::c_int) -> u32 {
    (libc::SKF_AD_OFF + off) as u32
}

/// The capture's time origin, on both the monotonic clock (fallback) and the realtime clock (the
/// clock of kernel packet timestamps).
#[derive(Clone, Copy)]
struct Clock {
    instant: Instant,
    realtime: Duration,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            realtime: realtime_now(),
        }
    }

    /// Time since the origin of the packet last read from `fd` (its kernel timestamp).
    fn packet_time(&self, fd: RawFd) -> Duration {
        // SIOCGSTAMPNS (the 64-bit "old" ioctl on 64-bit targets): the last packet's timestamp.
        const SIOCGSTAMPNS: libc::c_ulong = 0x8907;
        let mut ts: libc::timespec = unsafe { mem::zeroed() };
        if unsafe { libc::ioctl(fd, SIOCGSTAMPNS as _, &mut ts) } == 0 && ts.tv_sec > 0 {
            let t = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
            return t.saturating_sub(self.realtime);
        }
        self.instant.elapsed()
    }
}

fn realtime_now() -> Duration {
    let mut ts: libc::timespec = unsafe { mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn read_loop(packet: &OwnedFd, wake: &OwnedFd, sink: &Sink, started: Clock) {
    let mut fds = [
        libc::pollfd {
            fd: packet.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut buf = [0u8; HEADER_BYTES];
    let mut batch = Vec::new();
    let mut loopbacks = Loopbacks::default();
    loop {
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("sockconform capture: poll failed, capture stopped: {e}");
            break;
        }
        let stopping = fds[1].revents != 0;
        // Read what is queued (also when stopping: it was on the wire before stop was asked).
        let mut skipped = 0;
        let mut failed = false;
        // When stopping, read everything queued, however much: it was on the wire before stop.
        let limit = if stopping { usize::MAX } else { BATCH };
        for _ in 0..limit {
            match recv_one(packet.as_raw_fd(), &mut buf, started, &mut loopbacks) {
                Ok(Some(Some(packet_frame))) => batch.push(packet_frame),
                Ok(Some(None)) => skipped += 1,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("sockconform capture: recvfrom failed, capture stopped: {e}");
                    failed = true;
                    break;
                }
            }
        }
        sink.push(&mut batch, skipped);
        if stopping || failed {
            break;
        }
    }
}

/// Read one packet without blocking: `Ok(None)` when none is queued, `Ok(Some(None))` for a
/// packet the wire does not record; a recorded packet comes with its bytes as captured.
fn recv_one(
    fd: RawFd,
    buf: &mut [u8],
    started: Clock,
    loopbacks: &mut Loopbacks,
) -> io::Result<Option<Option<(Packet, Frame)>>> {
    loop {
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // MSG_TRUNC: the return value is the packet's real length even though only the
        // headers fit in `buf`.
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                // Transient (an interface went down); keep capturing the others.
                Some(libc::ENETDOWN) => return Ok(Some(None)),
                _ => return Err(e),
            }
        }
        let at = started.packet_time(fd);
        if sll.sll_pkttype == libc::PACKET_OUTGOING && loopbacks.is_loopback(fd, &sll) {
            return Ok(Some(None));
        }
        let wire_len = n as usize;
        let captured = &buf[..wire_len.min(buf.len())];
        return Ok(Some(
            parse(u16::from_be(sll.sll_protocol), captured, wire_len).map(|mut p| {
                p.set_at(at);
                let frame = Frame {
                    at: started.realtime + at,
                    data: captured.to_vec(),
                    len: u32::try_from(wire_len).unwrap_or(u32::MAX),
                };
                (p, frame)
            }),
        ));
    }
}

/// Which interfaces are loopbacks (whose outgoing copies are skipped). Linux reports
/// `ARPHRD_LOOPBACK` as the link type of every loopback packet; gVisor reports 0 there, so any
/// other link type is settled once per interface index by its `IFF_LOOPBACK` flag (SIOCGIFNAME
/// and SIOCGIFFLAGS on the packet socket, which answer for the socket's namespace).
#[derive(Default)]
struct Loopbacks {
    by_index: std::collections::HashMap<libc::c_int, bool>,
}

impl Loopbacks {
    fn is_loopback(&mut self, fd: RawFd, sll: &libc::sockaddr_ll) -> bool {
        if sll.sll_hatype == libc::ARPHRD_LOOPBACK {
            return true;
        }
        *self
            .by_index
            .entry(sll.sll_ifindex)
            .or_insert_with(|| interface_is_loopback(fd, sll.sll_ifindex))
    }
}

fn interface_is_loopback(fd: RawFd, index: libc::c_int) -> bool {
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    req.ifr_ifru.ifru_ifindex = index;
    unsafe {
        libc::ioctl(fd, libc::SIOCGIFNAME, &mut req) == 0
            && libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0
            && req.ifr_ifru.ifru_flags & libc::IFF_LOOPBACK as libc::c_short != 0
    }
}

/// Parse a cooked packet (starting at the IP header) of link protocol `proto` (host order): an
/// IPv4 or IPv6 packet whose version agrees with the link protocol, read by the portable
/// [`wire::parse_packet`] (anything else, ARP for one, is no packet). `at` is left zero.
fn parse(proto: u16, data: &[u8], wire_len: usize) -> Option<Packet> {
    let version = match proto {
        ETH_P_IP => 4,
        ETH_P_IPV6 => 6,
        _ => return None,
    };
    if data.first()? >> 4 != version {
        return None;
    }
    wire::parse_packet(data, wire_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::{ipv4, ipv6, tcp_header};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    // --- parsing (pure; the IP and TCP parsing itself is tested in wire.rs) -----------------

    #[test]
    fn capture_parses_only_ip_whose_version_agrees_with_the_link_protocol() {
        let v4 = ipv4(8, &tcp_header(0x18, 12), 5, None);
        let v6 = ipv6(&tcp_header(0x12, 20), 0);
        let Some(Packet::Tcp(s)) = parse(ETH_P_IP, &v4, v4.len()) else {
            panic!("not a segment")
        };
        assert_eq!(Some(&s), wire::parse_ip(&v4, v4.len()).as_ref());
        assert_eq!(s.event().as_deref(), Some("data 5"));
        let Some(Packet::Tcp(s)) = parse(ETH_P_IPV6, &v6, v6.len()) else {
            panic!("not a segment")
        };
        assert_eq!(s.src, "[::1]:40000".parse().unwrap());
        assert_eq!(parse(ETH_P_IPV6, &v4, v4.len()), None);
        assert_eq!(parse(ETH_P_IP, &v6, v6.len()), None);
        assert_eq!(parse(0x0806, &v4, v4.len()), None);
        assert_eq!(parse(ETH_P_IP, &[], 0), None);
    }

    /// The kernel filter, run by the test interpreter over every packet the wire records and
    /// every one it does not, on a host interface and on loopback (whose outgoing copies go).
    #[test]
    fn the_filter_keeps_tcp_udp_and_icmp_errors_and_drops_loopback_copies() {
        use crate::bpf_frames::tests::{kept_and_dropped, run};
        let program: Vec<Insn> = filter_program()
            .into_iter()
            .map(|i| Insn {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let (kept, dropped) = kept_and_dropped();
        let skb = |ip: &[u8], outgoing: bool, loopback: bool| {
            let proto = if ip[0] >> 4 == 4 {
                ETH_P_IP
            } else {
                ETH_P_IPV6
            };
            move |k: u32| match (k as libc::c_int) - libc::SKF_AD_OFF {
                libc::SKF_AD_PKTTYPE if outgoing => libc::PACKET_OUTGOING as u32,
                libc::SKF_AD_PKTTYPE => libc::PACKET_HOST as u32,
                libc::SKF_AD_HATYPE if loopback => libc::ARPHRD_LOOPBACK as u32,
                libc::SKF_AD_HATYPE => libc::ARPHRD_ETHER as u32,
                libc::SKF_AD_PROTOCOL => proto.into(),
                other => panic!("ancillary load {other}"),
            }
        };
        for ip in &kept {
            assert_eq!(run(&program, ip, skb(ip, false, true)), u32::MAX, "{ip:?}");
            assert_eq!(run(&program, ip, skb(ip, true, false)), u32::MAX, "{ip:?}");
            assert_eq!(run(&program, ip, skb(ip, true, true)), 0, "{ip:?}");
            let proto = if ip[0] >> 4 == 4 {
                ETH_P_IP
            } else {
                ETH_P_IPV6
            };
            assert!(parse(proto, ip, ip.len()).is_some(), "{ip:?}");
        }
        for ip in &dropped {
            assert_eq!(run(&program, ip, skb(ip, false, false)), 0, "{ip:?}");
            let proto = if ip[0] >> 4 == 4 {
                ETH_P_IP
            } else {
                ETH_P_IPV6
            };
            assert_eq!(parse(proto, ip, ip.len()), None, "{ip:?}");
        }
    }

    // --- live captures in a private namespace (root) ----------------------------------------

    /// Run `f` in a fresh thread moved into its own network namespace with `lo` up; None (after
    /// printing why) when not root.
    fn in_namespace<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return None;
        }
        let thread = std::thread::spawn(move || {
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::PermissionDenied {
                    eprintln!("skipped: root but cannot unshare(CLONE_NEWNET): {e}");
                    return None;
                }
                panic!("unshare(CLONE_NEWNET): {e}");
            }
            super::super::set_interface_up("lo").expect("bring lo up");
            Some(f())
        });
        thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    fn events(segs: &[Segment], from: SocketAddr, to: SocketAddr) -> Vec<String> {
        segs.iter()
            .filter(|s| s.src == from && s.dst == to)
            .filter_map(Segment::event)
            .collect()
    }

    fn dump(segs: &[Segment]) -> String {
        segs.iter().map(|s| format!("\n  {s}")).collect()
    }

    fn position(segs: &[Segment], from: SocketAddr, pred: impl Fn(&Segment) -> bool) -> usize {
        segs.iter()
            .position(|s| s.src == from && pred(s))
            .unwrap_or_else(|| panic!("{}", dump(segs)))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// Connect, send 5 bytes, close both ends in order (client first) over `listen`'s address;
    /// returns the capture, client and server addresses and the packets user space skipped (None
    /// where the kernel does not apply the filter). None if the address is unusable.
    fn orderly_exchange(
        listen: &str,
    ) -> Option<(Vec<Segment>, SocketAddr, SocketAddr, Option<u64>)> {
        let cap = Capture::start().expect("start capture");
        let listener = match TcpListener::bind(listen) {
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                eprintln!("skipped: cannot bind {listen}: {e}");
                return None;
            }
            r => r.unwrap(),
        };
        let server_addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(server_addr).unwrap();
        let client_addr = client.local_addr().unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"hello").unwrap();
        drop(client);
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello");
        drop(server);
        let both_fins = |s: &[Segment]| {
            let fin = |from, to| events(s, from, to).iter().any(|e| e.ends_with("FIN"));
            fin(client_addr, server_addr) && fin(server_addr, client_addr)
        };
        let held = cap.wait_for(soon(), both_fins);
        // What user space had to drop, where the kernel applies the filter (not in gVisor).
        let skipped = cap.filtered_in_kernel().then(|| cap.core.skipped());
        assert_eq!(cap.dropped(), 0);
        let segs = cap.stop();
        assert!(held, "no FIN both ways:{}", dump(&segs));
        Some((segs, client_addr, server_addr, skipped))
    }

    fn check_orderly(segs: &[Segment], c: SocketAddr, s: SocketAddr) {
        let c2s = events(segs, c, s);
        let s2c = events(segs, s, c);
        assert!(
            c2s == ["SYN", "data 5", "FIN"] || c2s == ["SYN", "data 5+FIN"],
            "client events {c2s:?}:{}",
            dump(segs)
        );
        assert_eq!(s2c, ["SYN-ACK", "FIN"], "{}", dump(segs));
        let syn = position(segs, c, |x| x.syn);
        let syn_ack = position(segs, s, |x| x.syn && x.ack);
        let data = position(segs, c, |x| x.payload == 5);
        let c_fin = position(segs, c, |x| x.fin);
        let s_fin = position(segs, s, |x| x.fin);
        assert!(
            syn < syn_ack && syn_ack < data && data <= c_fin && c_fin < s_fin,
            "{}",
            dump(segs)
        );
        // Sequence numbers hang together, so the header fields are parsed where they should be.
        assert_eq!(segs[syn_ack].ack_no, segs[syn].seq.wrapping_add(1));
        assert_eq!(segs[data].seq, segs[syn].seq.wrapping_add(1));
        assert!(segs[syn].window > 0);
        assert!(segs.windows(2).all(|w| w[0].at <= w[1].at));
        // Every segment belongs to this connection: the namespace is private.
        assert!(segs
            .iter()
            .all(|x| (x.src == c && x.dst == s) || (x.src == s && x.dst == c)));
    }

    #[test]
    fn capture_orderly_close_ipv4() {
        in_namespace(|| {
            let (segs, c, s, skipped) = orderly_exchange("127.0.0.1:0").unwrap();
            check_orderly(&segs, c, s);
            // The kernel filter already dropped loopback's outgoing copies.
            if let Some(skipped) = skipped {
                assert_eq!(skipped, 0);
            }
        });
    }

    #[test]
    fn capture_orderly_close_ipv6() {
        in_namespace(|| {
            if let Some((segs, c, s, _)) = orderly_exchange("[::1]:0") {
                check_orderly(&segs, c, s);
            }
        });
    }

    #[test]
    fn capture_linger_zero_sends_rst() {
        in_namespace(|| {
            use socket2::{Domain, Protocol, Socket, Type};
            let cap = Capture::start().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let s = listener.local_addr().unwrap();
            let client = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
            client.connect(&s.into()).unwrap();
            let c = client.local_addr().unwrap().as_socket().unwrap();
            let (mut server, _) = listener.accept().unwrap();
            (&client).write_all(b"hello").unwrap();
            let mut got = [0u8; 5];
            server.read_exact(&mut got).unwrap();
            client.set_linger(Some(Duration::ZERO)).unwrap();
            drop(client);
            let held = cap.wait_for(soon(), |segs| segs.iter().any(|x| x.src == c && x.rst));
            let err = server.read(&mut got).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
            let segs = cap.stop();
            assert!(held, "no RST:{}", dump(&segs));
            let c2s = events(&segs, c, s);
            assert_eq!(
                c2s.first().map(String::as_str),
                Some("SYN"),
                "{}",
                dump(&segs)
            );
            assert!(c2s.contains(&"data 5".to_string()), "{}", dump(&segs));
            assert!(c2s.last().unwrap().starts_with("RST"), "{}", dump(&segs));
            assert!(!c2s.iter().any(|e| e.contains("FIN")), "{}", dump(&segs));
        });
    }

    #[test]
    fn capture_bulk_payload_adds_up() {
        in_namespace(|| {
            const BYTES: usize = 1 << 20;
            let cap = Capture::start().unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let s = listener.local_addr().unwrap();
            let mut client = TcpStream::connect(s).unwrap();
            let c = client.local_addr().unwrap();
            let (mut server, _) = listener.accept().unwrap();
            let reader = std::thread::spawn(move || {
                let mut n = 0;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match server.read(&mut buf).unwrap() {
                        0 => return n,
                        k => n += k,
                    }
                }
            });
            client.write_all(&vec![7u8; BYTES]).unwrap();
            drop(client);
            assert_eq!(reader.join().unwrap(), BYTES);
            // The span of sequence numbers the data covered, not the sum of payloads: a loaded
            // machine can overflow the loopback backlog (netdev_max_backlog), and a
            // retransmission would count twice.
            let sent = |segs: &[Segment]| -> usize {
                let data: Vec<&Segment> = segs
                    .iter()
                    .filter(|x| x.src == c && x.dst == s && x.payload > 0)
                    .collect();
                let Some(first) = data.first().map(|x| x.seq) else {
                    return 0;
                };
                data.iter()
                    .map(|x| x.seq.wrapping_sub(first) as usize + x.payload)
                    .max()
                    .unwrap_or(0)
            };
            let held = cap.wait_for(soon(), |segs| sent(segs) >= BYTES);
            assert_eq!(cap.dropped(), 0);
            let segs = cap.stop();
            let largest = segs.iter().map(|x| x.payload).max().unwrap_or(0);
            eprintln!(
                "{BYTES} bytes in {} segments, largest {largest}",
                segs.len()
            );
            assert!(held, "{} of {BYTES} bytes seen", sent(&segs));
            // Every byte was seen once its retransmissions are set aside: the payloads add up.
            assert_eq!(sent(&segs), BYTES);
        });
    }

    #[test]
    fn capture_stops_promptly_when_nothing_comes() {
        in_namespace(|| {
            let cap = Capture::start().unwrap();
            let t = Instant::now();
            assert!(!cap.wait_for(t + Duration::from_millis(50), |s| !s.is_empty()));
            let waited = t.elapsed();
            assert!(
                waited >= Duration::from_millis(50) && waited < Duration::from_secs(1),
                "{waited:?}"
            );
            let t = Instant::now();
            let segs = cap.stop();
            let took = t.elapsed();
            assert!(segs.is_empty(), "{}", dump(&segs));
            assert!(took < Duration::from_millis(200), "stop took {took:?}");
            // Dropping without stop ends the reader too.
            let t = Instant::now();
            drop(Capture::start().unwrap());
            assert!(t.elapsed() < Duration::from_millis(200));
        });
    }

    /// Send `payload` from a UDP socket on `host` to a port of `host` nobody listens on, and
    /// return what was captured, the sender's and the closed port's addresses and the packets
    /// user space skipped (None where the kernel does not apply the filter). None if the
    /// address is unusable.
    fn datagram_to_closed_port(
        host: &str,
        payload: &[u8],
    ) -> Option<(Vec<Packet>, SocketAddr, SocketAddr, Option<u64>)> {
        let cap = Capture::start().expect("start capture");
        let closed = match std::net::UdpSocket::bind(format!("{host}:0")) {
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                eprintln!("skipped: cannot bind {host}: {e}");
                return None;
            }
            // A port just released is one nobody listens on.
            r => r.unwrap().local_addr().unwrap(),
        };
        let sender = std::net::UdpSocket::bind(format!("{host}:0")).unwrap();
        sender.connect(closed).unwrap();
        sender.send(payload).unwrap();
        // The port unreachable comes back to the connected socket as ECONNREFUSED: once the
        // next receive says so, the error is on the wire.
        sender
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let refused = sender.recv(&mut [0u8; 8]).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        let from = sender.local_addr().unwrap();
        let both = |p: &[Packet]| {
            p.iter().any(|p| matches!(p, Packet::Udp(_)))
                && p.iter().any(|p| matches!(p, Packet::Icmp(_)))
        };
        assert!(cap.wait_for_packets(soon(), both), "{:?}", cap.packets());
        let skipped = cap.filtered_in_kernel().then(|| cap.core.skipped());
        assert_eq!(cap.dropped(), 0);
        let (packets, frames) = cap.stop_with_frames();
        assert_eq!(packets.len(), frames.len());
        if std::env::var_os("SOCKCONFORM_PRINT_FRAMES").is_some() {
            for f in &frames {
                let hex: String = f.data.iter().map(|b| format!("{b:02x}")).collect();
                eprintln!("frame {hex}");
            }
        }
        Some((packets, from, closed, skipped))
    }

    fn check_datagram_and_port_unreachable(
        packets: &[Packet],
        from: SocketAddr,
        closed: SocketAddr,
        payload: usize,
    ) {
        let all: String = packets.iter().map(|p| format!("\n  {p}")).collect();
        assert_eq!(packets.len(), 2, "{all}");
        let Packet::Udp(d) = &packets[0] else {
            panic!("not a datagram first:{all}")
        };
        assert_eq!((d.src, d.dst, d.payload), (from, closed, payload), "{all}");
        let Packet::Icmp(e) = &packets[1] else {
            panic!("not an ICMP error second:{all}")
        };
        assert_eq!(e.kind, wire::IcmpKind::PortUnreachable, "{all}");
        assert_eq!((e.src, e.dst), (closed.ip(), from.ip()), "{all}");
        assert_eq!(e.about.transport, wire::Transport::Udp);
        assert_eq!((e.about.src, e.about.dst), (from, closed), "{all}");
        assert!(d.at <= e.at, "{all}");
        // No TCP: the waits and `stop` see no segment.
        assert!(wire::segments(packets.to_vec()).is_empty());
    }

    #[test]
    fn capture_sees_a_datagram_to_a_closed_port_and_its_port_unreachable_ipv4() {
        in_namespace(|| {
            let (packets, from, closed, skipped) =
                datagram_to_closed_port("127.0.0.1", b"hello").unwrap();
            check_datagram_and_port_unreachable(&packets, from, closed, 5);
            // The kernel filter kept exactly what the wire records.
            if let Some(skipped) = skipped {
                assert_eq!(skipped, 0);
            }
        });
    }

    #[test]
    fn capture_sees_an_empty_datagram_and_its_icmpv6_port_unreachable() {
        in_namespace(|| {
            if let Some((packets, from, closed, _)) = datagram_to_closed_port("[::1]", b"") {
                check_datagram_and_port_unreachable(&packets, from, closed, 0);
            }
        });
    }
}
