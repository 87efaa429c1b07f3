//! What crosses the wire, in portable terms: TCP segments as a packet capture saw them.
//!
//! The capture itself is per-OS (`Capture` of the backend); the data it yields is this module's
//! [`Segment`], identical on every platform so observations can be compared across them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One TCP segment as seen on an interface.
///
/// `payload` is the TCP payload length computed from the IP header's length field (IP total
/// length minus IP and TCP headers), never from the captured length, which may include link
/// padding. A capture taken before segmentation offload (TSO/GSO, e.g. on loopback or a veth)
/// sees the super-segment the stack handed to the device: one 64 KiB write may show as a single
/// segment such as "data 65483" rather than as MTU-sized segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Time since the capture started (when the capture read the segment, not a kernel timestamp).
    pub at: Duration,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
    pub seq: u32,
    pub ack_no: u32,
    pub window: u16,
    /// TCP payload length in bytes.
    pub payload: usize,
}

impl Segment {
    /// Short portable description of what this segment means, ignoring pure ACKs.
    ///
    /// The parts present are joined with `+` in the order SYN, data, FIN, RST; the ACK flag is
    /// only mentioned on SYN ("SYN-ACK") and RST ("RST-ACK"), PSH and the window never:
    /// "SYN", "SYN-ACK", "FIN", "RST", "RST-ACK", "data 5", "data 5+FIN", "SYN+data 5" (TCP Fast
    /// Open). `None` for a segment with no SYN/FIN/RST and no payload (a pure ACK, a keepalive
    /// or a zero-window probe without payload).
    pub fn event(&self) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        if self.syn {
            parts.push(if self.ack { "SYN-ACK" } else { "SYN" }.into());
        }
        if self.payload > 0 {
            parts.push(format!("data {}", self.payload));
        }
        if self.fin {
            parts.push("FIN".into());
        }
        if self.rst {
            // On a SYN-ACK the ACK is already named; say it once.
            parts.push(
                if self.ack && !self.syn {
                    "RST-ACK"
                } else {
                    "RST"
                }
                .into(),
            );
        }
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("+"))
        }
    }

    /// The flags in tcpdump's notation: `S` SYN, `F` FIN, `R` RST, `P` PSH, `.` ACK ("[S.]").
    pub fn flags(&self) -> String {
        let mut s = String::new();
        for (on, c) in [
            (self.syn, 'S'),
            (self.fin, 'F'),
            (self.rst, 'R'),
            (self.psh, 'P'),
            (self.ack, '.'),
        ] {
            if on {
                s.push(c);
            }
        }
        if s.is_empty() {
            s.push_str("none");
        }
        s
    }
}

/// One line in the spirit of tcpdump, for logs and assertion messages:
/// `1.234ms 127.0.0.1:40000 > 127.0.0.1:8080 [S.] seq 1 ack 2 win 65483 len 0`.
impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.3}ms {} > {} [{}] seq {} ack {} win {} len {}",
            self.at.as_secs_f64() * 1000.0,
            self.src,
            self.dst,
            self.flags(),
            self.seq,
            self.ack_no,
            self.window,
            self.payload
        )
    }
}

/// One captured packet as it was on the wire, from its IP header on (no link header), for a pcap
/// file: what a reader such as tcpdump or Wireshark needs beyond the portable [`Segment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// When the kernel saw it, as wall-clock time since the Unix epoch.
    pub at: Duration,
    /// The captured bytes: the IP and TCP headers and at most the start of the payload
    /// ([`SNAPLEN`] bytes in all).
    pub data: Vec<u8>,
    /// The packet's whole length on the wire (more than `data` when the payload was cut).
    pub len: u32,
}

/// Bytes kept of each packet: every IPv4/IPv6 and TCP header fits (as `tcpdump -s 256`).
pub const SNAPLEN: u32 = 256;

/// pcap's link type for packets that start at the IP header (IPv4 or IPv6, told by the version).
const LINKTYPE_RAW: u32 = 101;

/// Write `frames` as a standard pcap file (microsecond timestamps, link type RAW), the format
/// `tcpdump -r` and Wireshark read.
pub fn write_pcap(out: &mut impl std::io::Write, frames: &[Frame]) -> std::io::Result<()> {
    let mut header = Vec::with_capacity(24);
    header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic: microseconds, little-endian
    header.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&0i32.to_le_bytes()); // timestamps are UTC
    header.extend_from_slice(&0u32.to_le_bytes()); // accuracy
    header.extend_from_slice(&SNAPLEN.to_le_bytes());
    header.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    out.write_all(&header)?;
    for f in frames {
        let data = &f.data[..f.data.len().min(SNAPLEN as usize)];
        let mut record = Vec::with_capacity(16 + data.len());
        record.extend_from_slice(&(f.at.as_secs() as u32).to_le_bytes());
        record.extend_from_slice(&f.at.subsec_micros().to_le_bytes());
        record.extend_from_slice(&(data.len() as u32).to_le_bytes());
        record.extend_from_slice(&f.len.max(data.len() as u32).to_le_bytes());
        record.extend_from_slice(data);
        out.write_all(&record)?;
    }
    out.flush()
}

/// Parse one IP packet (IPv4 or IPv6, told by its version nibble) carrying a TCP segment, from
/// its IP header on: the portable half of every capture backend whose frames start at, or are
/// stripped down to, the IP header (the BSDs' DLT_NULL after its 4-byte family word). `data` is
/// what was captured (at least the headers), `wire_len` the packet's real length, used only
/// where the IP length field is 0 (BIG TCP). `at` is left zero for the caller to set.
///
/// IPv6 extension headers are not followed (only next header = TCP is parsed), and IPv4
/// fragments are ignored (TCP sets DF): both give None, as does anything that is not TCP.
pub fn parse_ip(data: &[u8], wire_len: usize) -> Option<Segment> {
    let (src, dst, tcp, tcp_len) = match data.first()? >> 4 {
        4 => ipv4_parts(data, wire_len)?,
        6 => ipv6_parts(data, wire_len)?,
        _ => return None,
    };
    if tcp.len() < 20 {
        return None;
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    Some(Segment {
        at: Duration::ZERO,
        src: SocketAddr::new(src, be16(tcp, 0)),
        dst: SocketAddr::new(dst, be16(tcp, 2)),
        fin: flags & 0x01 != 0,
        syn: flags & 0x02 != 0,
        rst: flags & 0x04 != 0,
        psh: flags & 0x08 != 0,
        ack: flags & 0x10 != 0,
        seq: be32(tcp, 4),
        ack_no: be32(tcp, 8),
        window: be16(tcp, 14),
        payload: tcp_len.checked_sub(doff).filter(|_| doff >= 20)?,
    })
}

/// The addresses, the TCP header on, and the TCP length (header and payload) of an IPv4 packet.
fn ipv4_parts(data: &[u8], wire_len: usize) -> Option<(IpAddr, IpAddr, &[u8], usize)> {
    const TCP: u8 = 6;
    if data.len() < 20 || data[9] != TCP {
        return None;
    }
    let ihl = usize::from(data[0] & 0x0f) * 4;
    // A fragment other than a whole datagram has no (complete) TCP header.
    if ihl < 20 || data.len() < ihl || be16(data, 6) & 0x3fff != 0 {
        return None;
    }
    let total = match usize::from(be16(data, 2)) {
        0 => wire_len,
        t => t,
    };
    let ip = |at: usize| IpAddr::from([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    Some((ip(12), ip(16), &data[ihl..], total.checked_sub(ihl)?))
}

/// The same for IPv6 (fixed header only; the payload length is the TCP length).
fn ipv6_parts(data: &[u8], wire_len: usize) -> Option<(IpAddr, IpAddr, &[u8], usize)> {
    const TCP: u8 = 6;
    if data.len() < 40 || data[6] != TCP {
        return None;
    }
    let payload_len = match usize::from(be16(data, 4)) {
        0 => wire_len.checked_sub(40)?,
        p => p,
    };
    let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&data[at..at + 16]).unwrap_or_default());
    Some((ip(8), ip(24), &data[40..], payload_len))
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Keep the segments (and the frame behind each, same order) with one of `ports` at either end.
/// A capture of a loopback the whole machine shares (macOS and FreeBSD, which have no network
/// namespace per case) also sees the traffic of every other case running at the same time; the
/// case's own ports (its listeners and its closed port: every connection of the case has one of
/// them at one end) tell its segments apart. `frames` is empty (none kept) or holds the packet
/// of each segment, as `Capture::stop_with_frames` returns them.
pub fn keep_ports(
    segments: Vec<Segment>,
    frames: Vec<Frame>,
    ports: &std::collections::BTreeSet<u16>,
) -> (Vec<Segment>, Vec<Frame>) {
    let ours = |s: &Segment| ports.contains(&s.src.port()) || ports.contains(&s.dst.port());
    if frames.is_empty() {
        return (segments.into_iter().filter(|s| ours(s)).collect(), frames);
    }
    assert_eq!(frames.len(), segments.len(), "one frame per segment");
    segments
        .into_iter()
        .zip(frames)
        .filter(|(s, _)| ours(s))
        .unzip()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn seg(flags: &str, payload: usize) -> Segment {
        Segment {
            at: Duration::ZERO,
            src: "127.0.0.1:1000".parse().unwrap(),
            dst: "127.0.0.1:2000".parse().unwrap(),
            syn: flags.contains('S'),
            ack: flags.contains('.'),
            fin: flags.contains('F'),
            rst: flags.contains('R'),
            psh: flags.contains('P'),
            seq: 1,
            ack_no: 2,
            window: 512,
            payload,
        }
    }

    fn event(flags: &str, payload: usize) -> Option<String> {
        seg(flags, payload).event()
    }

    #[test]
    fn wire_event_handshake() {
        assert_eq!(event("S", 0).as_deref(), Some("SYN"));
        assert_eq!(event("S.", 0).as_deref(), Some("SYN-ACK"));
        assert_eq!(event("S", 5).as_deref(), Some("SYN+data 5"));
        assert_eq!(event("S.", 5).as_deref(), Some("SYN-ACK+data 5"));
    }

    #[test]
    fn pcap_files_have_the_standard_header_and_one_record_per_frame() {
        let frames = [
            Frame {
                at: Duration::new(1_700_000_000, 123_456_789),
                data: vec![0x45; 40],
                len: 40,
            },
            Frame {
                at: Duration::new(1_700_000_001, 0),
                data: vec![0x60; 300],
                len: 1500,
            },
        ];
        let mut out = Vec::new();
        write_pcap(&mut out, &frames).unwrap();
        let u32_at = |i: usize| u32::from_le_bytes(out[i..i + 4].try_into().unwrap());
        assert_eq!(u32_at(0), 0xa1b2_c3d4);
        assert_eq!((u32_at(16), u32_at(20)), (SNAPLEN, LINKTYPE_RAW));
        // First record: seconds, microseconds, captured and original length, then the bytes.
        assert_eq!((u32_at(24), u32_at(28)), (1_700_000_000, 123_456));
        assert_eq!((u32_at(32), u32_at(36)), (40, 40));
        // The second is cut to the snap length, its wire length kept.
        let second = 24 + 16 + 40;
        assert_eq!((u32_at(second + 8), u32_at(second + 12)), (SNAPLEN, 1500));
        assert_eq!(out.len(), second + 16 + SNAPLEN as usize);
    }

    #[test]
    fn wire_event_pure_ack_and_probes_are_none() {
        assert_eq!(event(".", 0), None);
        assert_eq!(event("", 0), None);
        // PSH alone does not make a segment meaningful.
        assert_eq!(event("P.", 0), None);
    }

    #[test]
    fn wire_event_data_and_fin() {
        assert_eq!(event(".", 5).as_deref(), Some("data 5"));
        assert_eq!(event("P.", 5).as_deref(), Some("data 5"));
        assert_eq!(event("", 1).as_deref(), Some("data 1"));
        assert_eq!(event("F.", 0).as_deref(), Some("FIN"));
        assert_eq!(event("F", 0).as_deref(), Some("FIN"));
        assert_eq!(event("FP.", 5).as_deref(), Some("data 5+FIN"));
        assert_eq!(event(".", 65483).as_deref(), Some("data 65483"));
    }

    #[test]
    fn wire_event_reset() {
        assert_eq!(event("R", 0).as_deref(), Some("RST"));
        assert_eq!(event("R.", 0).as_deref(), Some("RST-ACK"));
        assert_eq!(event("R.", 3).as_deref(), Some("data 3+RST-ACK"));
        assert_eq!(event("FR.", 0).as_deref(), Some("FIN+RST-ACK"));
        assert_eq!(event("SR.", 0).as_deref(), Some("SYN-ACK+RST"));
    }

    #[test]
    fn wire_flags_and_display() {
        assert_eq!(seg("S.", 0).flags(), "S.");
        assert_eq!(seg("FP.", 0).flags(), "FP.");
        assert_eq!(seg("", 0).flags(), "none");
        assert_eq!(
            seg("P.", 5).to_string(),
            "0.000ms 127.0.0.1:1000 > 127.0.0.1:2000 [P.] seq 1 ack 2 win 512 len 5"
        );
    }

    /// A TCP header from 40000 to 8080, seq 1000, ack 2000, window 512, with `options` bytes.
    pub(crate) fn tcp_header(flags: u8, options: usize) -> Vec<u8> {
        let mut t = vec![0u8; 20 + options];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&8080u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[8..12].copy_from_slice(&2000u32.to_be_bytes());
        t[12] = (((20 + options) / 4) as u8) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&512u16.to_be_bytes());
        t
    }

    /// An IPv4 packet 10.0.0.1 > 10.0.0.2 around `tcp`, with `payload` bytes after it.
    pub(crate) fn ipv4(options: usize, tcp: &[u8], payload: usize, total: Option<u16>) -> Vec<u8> {
        let ihl = 20 + options;
        let mut p = vec![0u8; ihl];
        p[0] = 0x40 | (ihl / 4) as u8;
        let len = (ihl + tcp.len() + payload) as u16;
        p[2..4].copy_from_slice(&total.unwrap_or(len).to_be_bytes());
        p[6] = 0x40; // DF
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p.extend_from_slice(tcp);
        p.extend(std::iter::repeat_n(0xaa, payload));
        p
    }

    /// An IPv6 packet ::1 > fd00::2 around `tcp`, with `payload` bytes after it.
    pub(crate) fn ipv6(tcp: &[u8], payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((tcp.len() + payload) as u16).to_be_bytes());
        p[6] = 6;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
        p.extend_from_slice(tcp);
        p.extend(std::iter::repeat_n(0xaa, payload));
        p
    }

    #[test]
    fn parse_ip_reads_ipv4_with_options() {
        let p = ipv4(8, &tcp_header(0x18, 12), 5, None);
        let s = parse_ip(&p, p.len()).unwrap();
        assert_eq!(s.src, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(s.dst, "10.0.0.2:8080".parse().unwrap());
        assert!(s.ack && s.psh && !s.syn && !s.fin && !s.rst);
        assert_eq!((s.seq, s.ack_no, s.window, s.payload), (1000, 2000, 512, 5));
    }

    #[test]
    fn parse_ip_takes_the_payload_from_the_ip_header() {
        // Link padding after the packet is not payload.
        let mut p = ipv4(0, &tcp_header(0x11, 0), 0, None);
        p.extend_from_slice(&[0; 6]);
        assert_eq!(
            parse_ip(&p, p.len()).unwrap().event().as_deref(),
            Some("FIN")
        );
        // Only the headers were captured of a 64 KiB segment (TSO on loopback).
        let big = ipv4(0, &tcp_header(0x10, 12), 0, Some(65535));
        assert_eq!(parse_ip(&big, 200).unwrap().payload, 65535 - 20 - 32);
        // Length field 0: the packet's real length counts.
        let huge = ipv4(0, &tcp_header(0x10, 0), 0, Some(0));
        assert_eq!(parse_ip(&huge, 100_040).unwrap().payload, 100_000);
    }

    #[test]
    fn parse_ip_ignores_non_tcp_fragments_and_garbage() {
        let mut udp = ipv4(0, &tcp_header(0x02, 0), 0, None);
        udp[9] = 17;
        assert_eq!(parse_ip(&udp, udp.len()), None);
        let mut frag = ipv4(0, &tcp_header(0x02, 0), 0, None);
        frag[6] = 0x20; // MF
        assert_eq!(parse_ip(&frag, frag.len()), None);
        let p = ipv4(0, &tcp_header(0x02, 0), 0, None);
        assert_eq!(parse_ip(&p[..30], p.len()), None);
        assert_eq!(parse_ip(&[], 0), None);
        let mut bad_doff = p.clone();
        bad_doff[20 + 12] = 0x40; // a 16-byte TCP header
        assert_eq!(parse_ip(&bad_doff, p.len()), None);
    }

    #[test]
    fn parse_ip_reads_ipv6() {
        let p = ipv6(&tcp_header(0x12, 20), 0);
        let s = parse_ip(&p, p.len()).unwrap();
        assert_eq!(s.src, "[::1]:40000".parse().unwrap());
        assert_eq!(s.dst, "[fd00::2]:8080".parse().unwrap());
        assert_eq!((s.payload, s.event().as_deref()), (0, Some("SYN-ACK")));
        let mut hop_by_hop = p.clone();
        hop_by_hop[6] = 0;
        assert_eq!(parse_ip(&hop_by_hop, p.len()), None);
        // BIG TCP over IPv6: payload length 0, the packet's real length counts.
        let mut big = p.clone();
        big[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(parse_ip(&big, 40 + 40 + 70_000).unwrap().payload, 70_000);
    }

    #[test]
    fn keep_ports_keeps_the_cases_connections_and_their_frames() {
        let at = |src: &str, dst: &str| Segment {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ..seg("S", 0)
        };
        let segs = vec![
            at("127.0.0.1:5000", "127.0.0.1:8080"),
            at("127.0.0.1:6000", "127.0.0.1:9090"),
            at("127.0.0.1:8080", "127.0.0.1:5000"),
        ];
        let frames: Vec<Frame> = (0..3u8)
            .map(|i| Frame {
                at: Duration::ZERO,
                data: vec![i],
                len: 1,
            })
            .collect();
        let ports = [8080u16].into_iter().collect();
        let (kept, kept_frames) = keep_ports(segs.clone(), frames, &ports);
        assert_eq!(kept, [segs[0].clone(), segs[2].clone()]);
        assert_eq!(
            kept_frames.iter().map(|f| f.data[0]).collect::<Vec<_>>(),
            [0, 2]
        );
        let (kept, none) = keep_ports(segs, Vec::new(), &ports);
        assert_eq!((kept.len(), none.len()), (2, 0));
    }
}
