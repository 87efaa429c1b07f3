//! Packet capture through BPF on the loopback interface (macOS and FreeBSD), with the same API
//! and the same portable results as Linux's AF_PACKET capture (`sys/linux/capture.rs`):
//! [`Packet`]s (TCP segments, UDP datagrams, ICMP errors) with their time since the capture
//! started, and the bytes behind each as a [`Frame`] from the IP header on, for the pcap file.
//!
//! * Device: `/dev/bpf` (FreeBSD clones a new unit per open) or the first free `/dev/bpfN`
//!   (macOS). Opening it needs root, or on macOS membership of the `access_bpf` group.
//! * Interface: `lo0`, whose link type must be DLT_NULL (a 4-byte address family in host order,
//!   then the IP header). Each loopback packet passes the tap once (`if_simloop` on FreeBSD,
//!   the output path on macOS), so no copy has to be skipped as on Linux.
//! * Filter: a classic BPF program keeps IPv4 and IPv6 TCP, UDP and ICMP errors, and of each
//!   packet its headers
//!   (`bpf_frames::capture_filter`, which says why it is not the case's ports). macOS and FreeBSD
//!   have no network namespace per case, so the capture sees every case running at the same
//!   time: the runner keeps a case's own packets by its ports (`wire::keep_ports`; an ICMP
//!   error by the ports of the packet it quotes).
//! * Prompt delivery: BIOCIMMEDIATE hands each packet to the reader as it comes (no waiting for
//!   a full buffer), and a read timeout (BIOCSRTIMEOUT) lets the reader see a stop request.
//! * Times: `bh_tstamp`, the kernel's time stamp (microseconds, wall clock).
//! * Loss is visible: BIOCGSTATS counts the packets the kernel dropped because the buffer
//!   (as large as `net.bpf.maxbufsize` / `debug.bpf_maxbufsize` allows) was full.

use super::{BpfInsn, BpfProgram, BpfStat, BPF_LAYOUT};
use crate::bpf_frames::{self, DLT_NULL};
use crate::capture_core::{CaptureCore, Sink};
use crate::wire::{Frame, Packet, Segment};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Buffer asked for; the kernel clamps it to its maximum (512 KiB by default on both systems).
const BUFFER: libc::c_uint = 4 << 20;
/// How long a read waits when nothing comes, so that a stop request is seen this soon.
const READ_TIMEOUT: Duration = Duration::from_millis(50);
const LOOPBACK: &[u8] = b"lo0";

/// A running capture of the TCP, UDP and ICMP error packets on the loopback interface (see the
/// module docs).
pub struct Capture {
    core: CaptureCore,
    bpf: Arc<OwnedFd>,
    /// When a stop was asked, in microseconds since the Unix epoch (0: not yet).
    stop: Arc<AtomicU64>,
}

impl Capture {
    /// Start capturing every TCP segment, UDP datagram and ICMP error (IPv4 and IPv6) on `lo0`. Fails with the error of
    /// opening the BPF device (PermissionDenied when not root) or of setting it up.
    pub fn start() -> io::Result<Capture> {
        let bpf = Arc::new(open_device()?);
        let buffer_len = configure(&bpf)?;
        let started = wall_clock();
        let stop = Arc::new(AtomicU64::new(0));
        let core = {
            let (bpf, stop) = (bpf.clone(), stop.clone());
            CaptureCore::spawn(move |sink| read_loop(&bpf, buffer_len, sink, &stop, started))?
        };
        Ok(Capture { core, bpf, stop })
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
    /// held. Woken by the reader after every read that brought segments. Returns false early if
    /// the reader has stopped. `pred` runs under the capture's lock.
    pub fn wait_for(&self, deadline: Instant, pred: impl Fn(&[Segment]) -> bool) -> bool {
        self.core.wait_for(deadline, pred)
    }

    /// As [`Capture::wait_for`], on every packet captured (datagrams and ICMP errors too).
    pub fn wait_for_packets(&self, deadline: Instant, pred: impl Fn(&[Packet]) -> bool) -> bool {
        self.core.wait_for_packets(deadline, pred)
    }

    /// Packets the kernel dropped since the capture started because its buffer was full.
    pub fn dropped(&self) -> u32 {
        kernel_drops(self.bpf.as_raw_fd())
    }

    /// Stop the reader (what the kernel already holds is still read) and return the TCP
    /// segments.
    pub fn stop(self) -> Vec<Segment> {
        let (packets, _) = self.stop_with_frames();
        crate::wire::segments(packets)
    }

    /// Stop as [`Capture::stop`] does and return every packet with the bytes behind each (same
    /// order and count).
    pub fn stop_with_frames(mut self) -> (Vec<Packet>, Vec<Frame>) {
        self.shutdown();
        self.core.take()
    }

    fn shutdown(&mut self) {
        let stop = &self.stop;
        let ask = || {
            let now = wall_clock().as_micros().max(1);
            stop.store(u64::try_from(now).unwrap_or(u64::MAX), Ordering::Release);
        };
        let bpf = self.bpf.as_raw_fd();
        self.core
            .stop_and_report(ask, || kernel_drops(bpf), "BPF buffer");
    }
}

/// Packets the kernel dropped on BPF device `fd` since it was opened (0 where it cannot say).
fn kernel_drops(fd: RawFd) -> u32 {
    let mut stats: BpfStat = unsafe { mem::zeroed() };
    if unsafe { libc::ioctl(fd, libc::BIOCGSTATS, &mut stats) } == 0 {
        stats.bs_drop
    } else {
        0
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `/dev/bpf` where the system clones units (FreeBSD), else the first `/dev/bpfN` no other
/// process holds (macOS: EBUSY means taken; the list ends where a unit does not exist).
fn open_device() -> io::Result<OwnedFd> {
    let open = |path: &str| -> io::Result<OwnedFd> {
        let c = std::ffi::CString::new(path).expect("no NUL in a device path");
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    match open("/dev/bpf") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for unit in 0..256 {
        match open(&format!("/dev/bpf{unit}")) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            other => return other,
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!("no free BPF device (/dev/bpf0 to /dev/bpf255): {last}"),
    ))
}

fn ioctl<T>(fd: RawFd, request: libc::c_ulong, arg: &mut T, what: &str) -> io::Result<()> {
    if unsafe { libc::ioctl(fd, request, arg as *mut T) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Buffer size, interface, link type, immediate mode, filter and read timeout, in the order
/// BPF needs (the buffer size only counts before the interface is set); returns the buffer
/// size the kernel granted, which every read must ask for exactly.
fn configure(bpf: &OwnedFd) -> io::Result<usize> {
    let fd = bpf.as_raw_fd();
    let mut len: libc::c_uint = BUFFER;
    ioctl(fd, libc::BIOCSBLEN, &mut len, "BIOCSBLEN")?;
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(LOOPBACK) {
        *dst = *src as libc::c_char;
    }
    ioctl(fd, libc::BIOCSETIF, &mut req, "BIOCSETIF lo0")?;
    let mut dlt: libc::c_uint = u32::MAX;
    ioctl(fd, libc::BIOCGDLT, &mut dlt, "BIOCGDLT")?;
    if dlt != DLT_NULL {
        return Err(io::Error::other(format!(
            "lo0 has link type {dlt}, not DLT_NULL ({DLT_NULL}): its frames cannot be parsed"
        )));
    }
    let mut on: libc::c_uint = 1;
    ioctl(fd, libc::BIOCIMMEDIATE, &mut on, "BIOCIMMEDIATE")?;
    // Set after the interface, so what arrived before the filter is flushed with it.
    let mut insns: Vec<BpfInsn> = bpf_frames::capture_filter(&BPF_LAYOUT)
        .into_iter()
        .map(|i| BpfInsn {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let mut program = BpfProgram {
        bf_len: insns.len() as libc::c_uint,
        bf_insns: insns.as_mut_ptr(),
    };
    ioctl(fd, libc::BIOCSETF, &mut program, "BIOCSETF")?;
    let mut timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: READ_TIMEOUT.as_micros() as libc::suseconds_t,
    };
    ioctl(fd, libc::BIOCSRTIMEOUT, &mut timeout, "BIOCSRTIMEOUT")?;
    let mut granted: libc::c_uint = 0;
    ioctl(fd, libc::BIOCGBLEN, &mut granted, "BIOCGBLEN")?;
    Ok(granted as usize)
}

fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// When the stop was asked, if it was.
fn stop_time(stop: &AtomicU64) -> Option<Duration> {
    match stop.load(Ordering::Acquire) {
        0 => None,
        us => Some(Duration::from_micros(us)),
    }
}

/// Read until everything captured before the stop request is read: a read begun after the
/// request came back empty (its timeout passed with nothing held), or a packet stamped at or
/// after the request came in. The second rule matters on a loopback other cases keep busy,
/// where a read may never come back empty.
fn read_loop(bpf: &OwnedFd, len: usize, sink: &Sink, stop: &AtomicU64, started: Duration) {
    let mut buf = vec![0u8; len];
    loop {
        let asked_before = stop_time(stop);
        let n = unsafe { libc::read(bpf.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("sockconform capture: read from BPF failed, capture stopped: {e}");
            break;
        }
        let records = bpf_frames::records(&buf[..n as usize], &BPF_LAYOUT);
        let last = records.last().map(|r| r.at);
        let mut batch: Vec<(Packet, Frame)> = records
            .iter()
            .filter_map(|r| {
                let (mut packet, frame) = bpf_frames::null_packet(r, &BPF_LAYOUT)?;
                packet.set_at(r.at.saturating_sub(started));
                Some((packet, frame))
            })
            .collect();
        sink.push(&mut batch, 0);
        let caught_up = match (stop_time(stop), last) {
            (Some(asked), Some(last)) => last >= asked,
            _ => false,
        };
        if (asked_before.is_some() && n == 0) || caught_up {
            break;
        }
    }
}
