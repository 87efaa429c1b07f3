//! What crosses the wire, in portable terms: TCP segments, UDP datagrams and ICMP errors as a
//! packet capture saw them.
//!
//! The capture itself is per-OS (`Capture` of the backend); the data it yields is this module's
//! [`Packet`] (a [`Segment`], a [`Datagram`] or an [`IcmpError`]), identical on every platform
//! so observations can be compared across them.

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

/// One captured packet the wire records: a TCP segment, a UDP datagram, or an ICMP/ICMPv6 error
/// about a TCP or UDP packet (what a stack or a router says about a datagram or a segment it
/// could not deliver).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Tcp(Segment),
    Udp(Datagram),
    Icmp(IcmpError),
}

/// One UDP datagram as seen on an interface. `payload` is the UDP payload length by the UDP
/// header (0 for an empty datagram).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Time since the capture started.
    pub at: Duration,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: usize,
}

/// An ICMP or ICMPv6 error: who sent it to whom (addresses: ICMP has no ports), what it says,
/// and the packet it is about, as its quoted headers name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcmpError {
    /// Time since the capture started.
    pub at: Duration,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub kind: IcmpKind,
    pub about: Quoted,
}

/// The packet an ICMP error quotes: its transport protocol and its two ends (the one that sent
/// it, which the error goes back to, and the one it was for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quoted {
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// The transport protocols whose packets an ICMP error is kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        })
    }
}

/// What an ICMP error says, in words shared by ICMP and ICMPv6 where the two mean the same
/// (IPv4's host unreachable and IPv6's address unreachable are both "host unreachable"; IPv4's
/// fragmentation needed and IPv6's packet too big are both "packet too big"), so a case's
/// IPv4 and IPv6 variants, and two stacks, read alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpKind {
    NetUnreachable,
    HostUnreachable,
    ProtocolUnreachable,
    PortUnreachable,
    /// Communication administratively prohibited (a filter's reject).
    Prohibited,
    PacketTooBig {
        mtu: u32,
    },
    TimeExceeded {
        reassembly: bool,
    },
    ParameterProblem,
    /// A destination unreachable code of no other name, with its family and number.
    Unreachable {
        v6: bool,
        code: u8,
    },
}

impl IcmpKind {
    /// The error of an ICMP (`v6` false) or ICMPv6 message of `kind` and `code`, whose second
    /// header word is `rest` (the MTU of a packet-too-big); None for a message that is not an
    /// error about a packet (echo, redirect, neighbour discovery, ...).
    fn of(v6: bool, kind: u8, code: u8, rest: u32) -> Option<IcmpKind> {
        use IcmpKind::*;
        Some(match (v6, kind, code) {
            (false, 3, 0) | (true, 1, 0) => NetUnreachable,
            (false, 3, 1) | (true, 1, 3) => HostUnreachable,
            (false, 3, 2) => ProtocolUnreachable,
            (false, 3, 3) | (true, 1, 4) => PortUnreachable,
            (false, 3, 9 | 10 | 13) | (true, 1, 1) => Prohibited,
            // IPv4 keeps the next hop's MTU in the low half of the word.
            (false, 3, 4) => PacketTooBig { mtu: rest & 0xffff },
            (false, 3, code) | (true, 1, code) => Unreachable { v6, code },
            (true, 2, _) => PacketTooBig { mtu: rest },
            (false, 11, c) | (true, 3, c) => TimeExceeded { reassembly: c == 1 },
            (false, 12, _) | (true, 4, _) => ParameterProblem,
            _ => return None,
        })
    }
}

/// The words of a wire line: "port unreachable", "packet too big (mtu 1280)".
impl fmt::Display for IcmpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IcmpKind::NetUnreachable => f.write_str("net unreachable"),
            IcmpKind::HostUnreachable => f.write_str("host unreachable"),
            IcmpKind::ProtocolUnreachable => f.write_str("protocol unreachable"),
            IcmpKind::PortUnreachable => f.write_str("port unreachable"),
            IcmpKind::Prohibited => f.write_str("administratively prohibited"),
            IcmpKind::PacketTooBig { mtu } => write!(f, "packet too big (mtu {mtu})"),
            IcmpKind::TimeExceeded { reassembly: false } => f.write_str("time exceeded"),
            IcmpKind::TimeExceeded { reassembly: true } => {
                f.write_str("time exceeded (reassembly)")
            }
            IcmpKind::ParameterProblem => f.write_str("parameter problem"),
            IcmpKind::Unreachable { v6: false, code } => {
                write!(f, "destination unreachable (ICMP code {code})")
            }
            IcmpKind::Unreachable { v6: true, code } => {
                write!(f, "destination unreachable (ICMPv6 code {code})")
            }
        }
    }
}

impl Packet {
    /// Time since the capture started.
    pub fn at(&self) -> Duration {
        match self {
            Packet::Tcp(s) => s.at,
            Packet::Udp(d) => d.at,
            Packet::Icmp(e) => e.at,
        }
    }

    /// Set the time since the capture started (a backend stamps what the parser left zero).
    pub fn set_at(&mut self, at: Duration) {
        match self {
            Packet::Tcp(s) => s.at = at,
            Packet::Udp(d) => d.at = at,
            Packet::Icmp(e) => e.at = at,
        }
    }

    /// The TCP segment, if this is one.
    pub fn segment(&self) -> Option<&Segment> {
        match self {
            Packet::Tcp(s) => Some(s),
            _ => None,
        }
    }

    /// The ports that tell whose packet this is (source, destination): a segment's or a
    /// datagram's own, an ICMP error's those of the packet it quotes.
    pub fn ports(&self) -> (u16, u16) {
        match self {
            Packet::Tcp(s) => (s.src.port(), s.dst.port()),
            Packet::Udp(d) => (d.src.port(), d.dst.port()),
            Packet::Icmp(e) => (e.about.src.port(), e.about.dst.port()),
        }
    }
}

/// The TCP segments among `packets`, in order: what a TCP-only reader of a capture wants.
pub fn segments(packets: impl IntoIterator<Item = Packet>) -> Vec<Segment> {
    packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Tcp(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// One line in the spirit of tcpdump (see `Segment`'s): `0.120ms 127.0.0.1:40000 >
/// 127.0.0.1:23000 udp 5`, `0.130ms 127.0.0.1 > 127.0.0.1 ICMP port unreachable about udp
/// 127.0.0.1:40000 > 127.0.0.1:23000`.
impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.at().as_secs_f64() * 1000.0;
        match self {
            Packet::Tcp(s) => write!(f, "{s}"),
            Packet::Udp(d) => write!(f, "{ms:.3}ms {} > {} udp {}", d.src, d.dst, d.payload),
            Packet::Icmp(e) => write!(
                f,
                "{ms:.3}ms {} > {} ICMP {} about {} {} > {}",
                e.src, e.dst, e.kind, e.about.transport, e.about.src, e.about.dst
            ),
        }
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
/// its IP header on: the TCP half of [`parse_packet`], which every existing TCP consumer reads.
/// Anything that is not a whole TCP segment (UDP, ICMP, a fragment, garbage) gives None.
pub fn parse_ip(data: &[u8], wire_len: usize) -> Option<Segment> {
    match parse_packet(data, wire_len)? {
        Packet::Tcp(s) => Some(s),
        _ => None,
    }
}

/// Parse one IP packet (IPv4 or IPv6, told by its version nibble) from its IP header on: a TCP
/// segment, a UDP datagram or an ICMP/ICMPv6 error about a TCP or UDP packet. This is the
/// portable half of every capture backend whose frames start at, or are stripped down to, the
/// IP header (the BSDs' DLT_NULL after its 4-byte family word). `data` is what was captured (at
/// least the headers), `wire_len` the packet's real length, used only where the IP length field
/// is 0 (BIG TCP, jumbograms). `at` is left zero for the caller to set.
///
/// IPv6 extension headers are not followed (only a next header of TCP, UDP or ICMPv6 is
/// parsed). IPv4 fragments: TCP sets DF, so a TCP fragment is ignored; of a fragmented UDP
/// datagram the first fragment stands for the datagram (its UDP header holds the datagram's
/// length) and the others are ignored. ICMP that is not an error (echo, neighbour discovery)
/// and errors quoting anything but TCP or UDP give None.
pub fn parse_packet(data: &[u8], wire_len: usize) -> Option<Packet> {
    let ip = match data.first()? >> 4 {
        4 => ipv4_parts(data, wire_len)?,
        6 => ipv6_parts(data, wire_len)?,
        _ => return None,
    };
    match ip.proto {
        TCP if ip.whole => tcp(&ip).map(Packet::Tcp),
        UDP if ip.first_fragment => udp(&ip).map(Packet::Udp),
        ICMP if ip.whole && !ip.v6 => icmp_error(&ip).map(Packet::Icmp),
        ICMPV6 if ip.v6 => icmp_error(&ip).map(Packet::Icmp),
        _ => None,
    }
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// An IP header read: the addresses, the protocol, the bytes after the header and the length
/// of that payload by the IP header.
struct IpParts<'a> {
    v6: bool,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    body: &'a [u8],
    body_len: usize,
    /// Not a fragment (IPv6: always, since a fragment header is not followed).
    whole: bool,
    /// The first fragment or a whole packet: the transport header is there.
    first_fragment: bool,
}

fn tcp(ip: &IpParts<'_>) -> Option<Segment> {
    let tcp = ip.body;
    if tcp.len() < 20 {
        return None;
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    Some(Segment {
        at: Duration::ZERO,
        src: SocketAddr::new(ip.src, be16(tcp, 0)),
        dst: SocketAddr::new(ip.dst, be16(tcp, 2)),
        fin: flags & 0x01 != 0,
        syn: flags & 0x02 != 0,
        rst: flags & 0x04 != 0,
        psh: flags & 0x08 != 0,
        ack: flags & 0x10 != 0,
        seq: be32(tcp, 4),
        ack_no: be32(tcp, 8),
        window: be16(tcp, 14),
        payload: ip.body_len.checked_sub(doff).filter(|_| doff >= 20)?,
    })
}

/// A UDP datagram: its payload length from the UDP length field (the whole datagram's, also
/// when only its first fragment is here), or from the IP length where the field is 0 (an IPv6
/// jumbogram).
fn udp(ip: &IpParts<'_>) -> Option<Datagram> {
    let udp = ip.body;
    if udp.len() < 8 {
        return None;
    }
    let len = match usize::from(be16(udp, 4)) {
        0 => ip.body_len,
        n => n,
    };
    Some(Datagram {
        at: Duration::ZERO,
        src: SocketAddr::new(ip.src, be16(udp, 0)),
        dst: SocketAddr::new(ip.dst, be16(udp, 2)),
        payload: len.checked_sub(8)?,
    })
}

/// An ICMP (IPv4) or ICMPv6 error and the TCP or UDP packet it quotes: the quoted IP header
/// (of the same family) and the first 4 bytes after it, the ports.
fn icmp_error(ip: &IpParts<'_>) -> Option<IcmpError> {
    let icmp = ip.body;
    if icmp.len() < 8 {
        return None;
    }
    let kind = IcmpKind::of(ip.v6, icmp[0], icmp[1], be32(icmp, 4))?;
    let quoted = &icmp[8..];
    let inner = if ip.v6 {
        ipv6_parts(quoted, quoted.len())?
    } else {
        ipv4_parts(quoted, quoted.len())?
    };
    let transport = match inner.proto {
        TCP => Transport::Tcp,
        UDP => Transport::Udp,
        _ => return None,
    };
    if !inner.first_fragment || inner.body.len() < 4 {
        return None;
    }
    Some(IcmpError {
        at: Duration::ZERO,
        src: ip.src,
        dst: ip.dst,
        kind,
        about: Quoted {
            transport,
            src: SocketAddr::new(inner.src, be16(inner.body, 0)),
            dst: SocketAddr::new(inner.dst, be16(inner.body, 2)),
        },
    })
}

/// The header of an IPv4 packet (a quoted one too: only the header need be there).
fn ipv4_parts(data: &[u8], wire_len: usize) -> Option<IpParts<'_>> {
    if data.len() < 20 || data[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(data[0] & 0x0f) * 4;
    if ihl < 20 || data.len() < ihl {
        return None;
    }
    let (more_fragments, offset) = (be16(data, 6) & 0x2000 != 0, be16(data, 6) & 0x1fff);
    let total = match usize::from(be16(data, 2)) {
        0 => wire_len,
        t => t,
    };
    let ip = |at: usize| IpAddr::from([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    Some(IpParts {
        v6: false,
        src: ip(12),
        dst: ip(16),
        proto: data[9],
        body: &data[ihl..],
        body_len: total.checked_sub(ihl)?,
        whole: !more_fragments && offset == 0,
        first_fragment: offset == 0,
    })
}

/// The same for IPv6 (fixed header only; the payload length is the next header's length).
fn ipv6_parts(data: &[u8], wire_len: usize) -> Option<IpParts<'_>> {
    if data.len() < 40 || data[0] >> 4 != 6 {
        return None;
    }
    let payload_len = match usize::from(be16(data, 4)) {
        0 => wire_len.checked_sub(40)?,
        p => p,
    };
    let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&data[at..at + 16]).unwrap_or_default());
    Some(IpParts {
        v6: true,
        src: ip(8),
        dst: ip(24),
        proto: data[6],
        body: &data[40..],
        body_len: payload_len,
        whole: true,
        first_fragment: true,
    })
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Keep the packets (and the frame behind each, same order) with one of `ports` at either end.
/// A capture of a loopback the whole machine shares (macOS and FreeBSD, which have no network
/// namespace per case) also sees the traffic of every other case running at the same time; the
/// case's own ports (its listeners and its closed port: every connection and every datagram of
/// the case has one of them at one end) tell its packets apart. An ICMP error goes by the ports
/// of the packet it quotes. `frames` is empty (none kept) or holds the frame of each packet,
/// as `Capture::stop_with_frames` returns them.
pub fn keep_ports(
    packets: Vec<Packet>,
    frames: Vec<Frame>,
    ports: &std::collections::BTreeSet<u16>,
) -> (Vec<Packet>, Vec<Frame>) {
    let ours = |p: &Packet| {
        let (src, dst) = p.ports();
        ports.contains(&src) || ports.contains(&dst)
    };
    if frames.is_empty() {
        return (packets.into_iter().filter(|p| ours(p)).collect(), frames);
    }
    assert_eq!(frames.len(), packets.len(), "one frame per packet");
    packets
        .into_iter()
        .zip(frames)
        .filter(|(p, _)| ours(p))
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

    /// A UDP header from 40000 to 23000 for `payload` bytes.
    pub(crate) fn udp_header(payload: usize) -> Vec<u8> {
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&40000u16.to_be_bytes());
        u[2..4].copy_from_slice(&23000u16.to_be_bytes());
        u[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        u
    }

    /// An ICMP message of `kind` and `code` from 10.0.0.2 back to 10.0.0.1, quoting IPv4
    /// packet `about` up to 8 bytes past its header (what a stack quotes at least).
    pub(crate) fn icmp4(kind: u8, code: u8, about: &[u8]) -> Vec<u8> {
        let mut icmp = vec![kind, code, 0, 0, 0, 0, 0, 0];
        let quoted = usize::from(about[0] & 0x0f) * 4 + 8;
        icmp.extend_from_slice(&about[..quoted.min(about.len())]);
        let mut p = ipv4(0, &icmp, 0, None);
        p[9] = 1;
        p[12..16].copy_from_slice(&[10, 0, 0, 2]);
        p[16..20].copy_from_slice(&[10, 0, 0, 1]);
        p
    }

    /// An ICMPv6 message of `kind` and `code` quoting the first 48 bytes of IPv6 packet `about`.
    pub(crate) fn icmp6(kind: u8, code: u8, about: &[u8]) -> Vec<u8> {
        let mut icmp = vec![kind, code, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&about[..48.min(about.len())]);
        let mut p = ipv6(&icmp, 0);
        p[6] = 58;
        p
    }

    /// Bytes from a hex dump.
    fn hex(dump: &str) -> Vec<u8> {
        dump.as_bytes()
            .chunks(2)
            .map(|d| u8::from_str_radix(std::str::from_utf8(d).unwrap(), 16).unwrap())
            .collect()
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

    // Real frames, captured on loopback in a private namespace with an AF_PACKET socket (from
    // the IP header on): a datagram to a closed port and the stack's answer, over IPv4 and
    // IPv6, and nftables' `reject with icmpx` answering a TCP SYN.
    const UDP4_HELLO: &str = "450000214a6b40004011f25e7f0000017f0000019449ca35000dfe2068656c6c6f";
    const ICMP4_PORT_UNREACHABLE_UDP: &str = concat!(
        "45c0003d03a90000400178557f0000017f00000103035c7d00000000450000214a6b40004011f25e",
        "7f0000017f0000019449ca35000dfe2068656c6c6f",
    );
    const UDP6_EMPTY: &str = concat!(
        "6009243e000811400000000000000000000000000000000100000000000000000000000000000001",
        "d919c87c0008001b",
    );
    const ICMP6_PORT_UNREACHABLE_UDP: &str = concat!(
        "600d12dd00383a400000000000000000000000000000000100000000000000000000000000000001",
        "0104c73c000000006009243e00081140000000000000000000000000000000010000000000000000",
        "0000000000000001d919c87c0008001b",
    );
    const ICMP6_PORT_UNREACHABLE_TCP: &str = concat!(
        "600d12dd00583a400000000000000000000000000000000100000000000000000000000000000001",
        "01048b340000000060069d2d00280640000000000000000000000000000000010000000000000000",
        "0000000000000001a1cc59d9b80806a600000000a002ffc4003000000204ffc40402080a1d75e5f1",
        "000000000103030a",
    );
    const ICMP4_HOST_UNREACHABLE_TCP: &str = concat!(
        "45c00058387600004001436d7f0000017f0000010301c44e000000004500003c91a640004006ab13",
        "7f0000017f0000019c4059da55a5b50700000000a002ffd7fe3000000204ffd70402080acf4cb89a",
        "000000000103030a",
    );

    fn packet(dump: &str) -> Packet {
        let p = hex(dump);
        parse_packet(&p, p.len()).unwrap_or_else(|| panic!("no packet in {dump}"))
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_packet_reads_real_udp_datagrams() {
        let Packet::Udp(d) = packet(UDP4_HELLO) else {
            panic!("not a datagram")
        };
        let (from, to) = (sa("127.0.0.1:37961"), sa("127.0.0.1:51765"));
        assert_eq!((d.src, d.dst, d.payload), (from, to, 5));
        let Packet::Udp(d) = packet(UDP6_EMPTY) else {
            panic!("not a datagram")
        };
        assert_eq!(
            (d.src, d.dst, d.payload),
            (sa("[::1]:55577"), sa("[::1]:51324"), 0)
        );
        assert_eq!(
            parse_ip(&hex(UDP4_HELLO), 33),
            None,
            "a datagram is no segment"
        );
    }

    #[test]
    fn parse_packet_reads_real_icmp_errors_and_what_they_quote() {
        let cases = [
            (
                ICMP4_PORT_UNREACHABLE_UDP,
                IcmpKind::PortUnreachable,
                Transport::Udp,
                "127.0.0.1:37961",
                "127.0.0.1:51765",
            ),
            (
                ICMP6_PORT_UNREACHABLE_UDP,
                IcmpKind::PortUnreachable,
                Transport::Udp,
                "[::1]:55577",
                "[::1]:51324",
            ),
            (
                ICMP6_PORT_UNREACHABLE_TCP,
                IcmpKind::PortUnreachable,
                Transport::Tcp,
                "[::1]:41420",
                "[::1]:23001",
            ),
            (
                ICMP4_HOST_UNREACHABLE_TCP,
                IcmpKind::HostUnreachable,
                Transport::Tcp,
                "127.0.0.1:40000",
                "127.0.0.1:23002",
            ),
        ];
        for (dump, kind, transport, from, to) in cases {
            let Packet::Icmp(e) = packet(dump) else {
                panic!("not an ICMP error: {dump}")
            };
            assert_eq!((e.kind, e.about.transport), (kind, transport), "{dump}");
            assert_eq!((e.about.src, e.about.dst), (sa(from), sa(to)), "{dump}");
            // The error goes back to the quoted packet's sender, from its destination.
            assert_eq!((e.src, e.dst), (sa(to).ip(), sa(from).ip()), "{dump}");
            assert_eq!(
                Packet::Icmp(e.clone()).ports(),
                (sa(from).port(), sa(to).port())
            );
        }
    }

    #[test]
    fn icmp_kinds_read_alike_over_both_families() {
        let tcp4 = ipv4(0, &tcp_header(0x02, 0), 0, None);
        let tcp6 = ipv6(&tcp_header(0x02, 0), 0);
        let kind = |p: Vec<u8>| match parse_packet(&p, p.len()) {
            Some(Packet::Icmp(e)) => Some(e.kind.to_string()),
            _ => None,
        };
        let mut too_big4 = icmp4(3, 4, &tcp4);
        too_big4[20 + 6..20 + 8].copy_from_slice(&1400u16.to_be_bytes());
        let mut too_big6 = icmp6(2, 0, &tcp6);
        too_big6[40 + 4..40 + 8].copy_from_slice(&1280u32.to_be_bytes());
        for (v4, v6, words) in [
            (icmp4(3, 1, &tcp4), icmp6(1, 3, &tcp6), "host unreachable"),
            (icmp4(3, 0, &tcp4), icmp6(1, 0, &tcp6), "net unreachable"),
            (
                icmp4(3, 13, &tcp4),
                icmp6(1, 1, &tcp6),
                "administratively prohibited",
            ),
            (icmp4(11, 0, &tcp4), icmp6(3, 0, &tcp6), "time exceeded"),
            (icmp4(12, 0, &tcp4), icmp6(4, 0, &tcp6), "parameter problem"),
        ] {
            assert_eq!(kind(v4).as_deref(), Some(words));
            assert_eq!(kind(v6).as_deref(), Some(words));
        }
        assert_eq!(kind(too_big4).as_deref(), Some("packet too big (mtu 1400)"));
        assert_eq!(kind(too_big6).as_deref(), Some("packet too big (mtu 1280)"));
        assert_eq!(
            kind(icmp6(1, 6, &tcp6)).as_deref(),
            Some("destination unreachable (ICMPv6 code 6)")
        );
        // Not errors, or errors about no TCP or UDP packet: nothing to record.
        assert_eq!(kind(icmp4(8, 0, &tcp4)), None);
        assert_eq!(kind(icmp6(135, 0, &tcp6)), None);
        let mut about_icmp = tcp4.clone();
        about_icmp[9] = 1;
        assert_eq!(kind(icmp4(3, 1, &about_icmp)), None);
        // A quote too short to hold the ports.
        assert_eq!(kind(icmp4(3, 1, &tcp4[..22])), None);
    }

    #[test]
    fn parse_packet_takes_a_fragmented_datagram_by_its_first_fragment() {
        let mut first = ipv4(0, &udp_header(3000), 1000, None);
        first[9] = 17;
        first[6] = 0x20; // MF, offset 0
        let Some(Packet::Udp(d)) = parse_packet(&first, first.len()) else {
            panic!("the first fragment is the datagram")
        };
        assert_eq!(d.payload, 3000);
        let mut later = first.clone();
        later[6..8].copy_from_slice(&0x00b9u16.to_be_bytes()); // offset 1480, last
        assert_eq!(parse_packet(&later, later.len()), None);
    }

    #[test]
    fn keep_ports_keeps_the_cases_packets_and_their_frames() {
        let at = |src: &str, dst: &str| {
            Packet::Tcp(Segment {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                ..seg("S", 0)
            })
        };
        let udp = |src: &str, dst: &str| {
            Packet::Udp(Datagram {
                at: Duration::ZERO,
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                payload: 5,
            })
        };
        let icmp_about = |src: &str, dst: &str| {
            Packet::Icmp(IcmpError {
                at: Duration::ZERO,
                src: [127, 0, 0, 1].into(),
                dst: [127, 0, 0, 1].into(),
                kind: IcmpKind::PortUnreachable,
                about: Quoted {
                    transport: Transport::Udp,
                    src: src.parse().unwrap(),
                    dst: dst.parse().unwrap(),
                },
            })
        };
        let packets = vec![
            at("127.0.0.1:5000", "127.0.0.1:8080"),
            at("127.0.0.1:6000", "127.0.0.1:9090"),
            at("127.0.0.1:8080", "127.0.0.1:5000"),
            udp("127.0.0.1:5001", "127.0.0.1:8080"),
            udp("127.0.0.1:5001", "127.0.0.1:9090"),
            icmp_about("127.0.0.1:5001", "127.0.0.1:8080"),
            icmp_about("127.0.0.1:5001", "127.0.0.1:9090"),
        ];
        let frames: Vec<Frame> = (0..7u8)
            .map(|i| Frame {
                at: Duration::ZERO,
                data: vec![i],
                len: 1,
            })
            .collect();
        let ports = [8080u16].into_iter().collect();
        let (kept, kept_frames) = keep_ports(packets.clone(), frames, &ports);
        let expected: Vec<Packet> = [0, 2, 3, 5].iter().map(|&i| packets[i].clone()).collect();
        assert_eq!(kept, expected);
        assert_eq!(
            kept_frames.iter().map(|f| f.data[0]).collect::<Vec<_>>(),
            [0, 2, 3, 5]
        );
        let (kept, none) = keep_ports(packets, Vec::new(), &ports);
        assert_eq!((kept.len(), none.len()), (4, 0));
    }
}
