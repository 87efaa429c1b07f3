//! The portable half of BPF capture (macOS and FreeBSD, `sys/bpf.rs`): the records a read of
//! `/dev/bpf` returns, the DLT_NULL link header of the loopback interface, and the classic BPF
//! program that keeps TCP, UDP and ICMP errors in the kernel (shared with Linux's filter). Nothing here calls the OS, so it is tested on Linux
//! with byte fixtures written from the header layouts.
//!
//! A read returns whole records, each a `struct bpf_hdr` followed by the captured bytes:
//! `bh_tstamp` (a timeval: two 32-bit fields on macOS, whose user-space header uses
//! `struct timeval32`; two 64-bit fields on 64-bit FreeBSD), then `bh_caplen`, `bh_datalen` and
//! `bh_hdrlen`, in host byte order. The packet starts `bh_hdrlen` bytes into the record (the
//! kernel pads the header so that the network header is aligned), and the next record starts at
//! `BPF_WORDALIGN(bh_hdrlen + bh_caplen)`: `BPF_ALIGNMENT` is `sizeof(int32_t)` on macOS (xnu
//! `bsd/net/bpf.h`) and `sizeof(long)` on FreeBSD (`sys/net/bpf.h`).
//!
//! On the loopback interface the link header is DLT_NULL: 4 bytes holding the address family
//! (AF_INET = 2; AF_INET6 = 30 on macOS, 28 on FreeBSD) in HOST byte order.

use crate::wire::{self, Frame, Packet, SNAPLEN};
use std::time::Duration;

/// `DLT_NULL` from `net/bpf.h` (macOS) and `net/dlt.h` (FreeBSD): BSD loopback encapsulation.
pub const DLT_NULL: u32 = 0;

/// Bytes of the DLT_NULL link header (the family word).
const NULL_HEADER: usize = 4;

/// What differs between the BSDs in the records and the link header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of each of the two timeval fields of `bh_tstamp` (4 on macOS, 8 on 64-bit FreeBSD).
    pub stamp_field: usize,
    /// BPF_ALIGNMENT: records start at multiples of it.
    pub align: usize,
    /// The OS's AF_INET and AF_INET6, as the DLT_NULL family word holds them.
    pub af_inet: u32,
    pub af_inet6: u32,
}

impl Layout {
    /// Where `bh_caplen` starts; `bh_datalen` and `bh_hdrlen` follow it.
    fn caplen_at(&self) -> usize {
        2 * self.stamp_field
    }

    /// The bytes of the header up to the end of `bh_hdrlen` (SIZEOF_BPF_HDR).
    fn header_len(&self) -> usize {
        self.caplen_at() + 10
    }

    /// BPF_WORDALIGN.
    pub fn word_align(&self, x: usize) -> usize {
        (x + self.align - 1) & !(self.align - 1)
    }
}

/// One record of a BPF read: the packet from its link header on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The kernel's time stamp, as wall-clock time since the Unix epoch.
    pub at: Duration,
    /// The captured bytes (`bh_caplen` of them).
    pub data: &'a [u8],
    /// The packet's whole length (`bh_datalen`).
    pub wire_len: usize,
}

/// The records of one read, in order. A record that claims more bytes than the read returned
/// ends the walk (the kernel returns whole records, so this means a malformed buffer).
pub fn records<'a>(buf: &'a [u8], layout: &Layout) -> Vec<Record<'a>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = buf.get(at..at + layout.header_len()) {
        let u32_at = |i: usize| u32::from_ne_bytes(header[i..i + 4].try_into().unwrap()) as usize;
        let caplen = u32_at(layout.caplen_at());
        let datalen = u32_at(layout.caplen_at() + 4);
        let hdrlen = usize::from(u16::from_ne_bytes(
            header[layout.caplen_at() + 8..layout.caplen_at() + 10]
                .try_into()
                .unwrap(),
        ));
        let Some(data) = buf.get(at + hdrlen..at + hdrlen + caplen) else {
            break;
        };
        if hdrlen < layout.header_len() {
            break;
        }
        out.push(Record {
            at: stamp(header, layout),
            data,
            wire_len: datalen,
        });
        at += layout.word_align(hdrlen + caplen);
    }
    out
}

/// `bh_tstamp`: seconds and microseconds, each `stamp_field` bytes in host order.
fn stamp(header: &[u8], layout: &Layout) -> Duration {
    let field = |i: usize| -> u64 {
        let b = &header[i * layout.stamp_field..(i + 1) * layout.stamp_field];
        match b.len() {
            4 => u64::from(u32::from_ne_bytes(b.try_into().unwrap())),
            _ => u64::from_ne_bytes(b.try_into().unwrap()),
        }
    };
    Duration::from_secs(field(0)) + Duration::from_micros(field(1).min(999_999))
}

/// The packet of a DLT_NULL record (a TCP segment, a UDP datagram or an ICMP error, as
/// `wire::parse_packet` reads them) and its bytes from the IP header on (for a pcap file, which
/// is link type RAW like Linux's); None for anything else. The packet's time is left zero for
/// the capture to set relative to its start.
pub fn null_packet(record: &Record<'_>, layout: &Layout) -> Option<(Packet, Frame)> {
    let family = u32::from_ne_bytes(record.data.get(..NULL_HEADER)?.try_into().ok()?);
    let ip = &record.data[NULL_HEADER..];
    let wire_len = record.wire_len.checked_sub(NULL_HEADER)?;
    let version = ip.first()? >> 4;
    let expected = if family == layout.af_inet {
        4
    } else if family == layout.af_inet6 {
        6
    } else {
        return None;
    };
    if version != expected {
        return None;
    }
    let packet = wire::parse_packet(ip, wire_len)?;
    let frame = Frame {
        at: record.at,
        data: ip[..ip.len().min(SNAPLEN as usize)].to_vec(),
        len: u32::try_from(wire_len).unwrap_or(u32::MAX),
    };
    Some((packet, frame))
}

/// One classic BPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// Instruction encodings from `net/bpf.h` (the same on macOS, FreeBSD and Linux); the libc crate
// defines them for Linux only.
pub(crate) const BPF_LD: u16 = 0x00;
pub(crate) const BPF_LDX: u16 = 0x01;
pub(crate) const BPF_JMP: u16 = 0x05;
pub(crate) const BPF_RET: u16 = 0x06;
pub(crate) const BPF_W: u16 = 0x00;
#[cfg(test)]
pub(crate) const BPF_H: u16 = 0x08;
pub(crate) const BPF_B: u16 = 0x10;
pub(crate) const BPF_ABS: u16 = 0x20;
pub(crate) const BPF_IND: u16 = 0x40;
pub(crate) const BPF_MSH: u16 = 0xa0;
pub(crate) const BPF_JEQ: u16 = 0x10;
pub(crate) const BPF_JGT: u16 = 0x20;
pub(crate) const BPF_JGE: u16 = 0x30;
pub(crate) const BPF_K: u16 = 0x00;

/// How a filter tells IPv4 from IPv6 before the IP header: the instruction that loads the
/// family into the accumulator, and the values it holds for each.
#[derive(Clone, Copy, Debug)]
pub struct FamilyCheck {
    pub load: Insn,
    pub v4: u32,
    pub v6: u32,
}

/// The classic BPF instructions that keep what the wire records, for an IP header `base` bytes
/// into the packet: IPv4 and IPv6 TCP and UDP, ICMP errors (destination unreachable, time
/// exceeded, parameter problem) and ICMPv6 errors (types 1 to 4: destination unreachable,
/// packet too big, time exceeded, parameter problem). A kept packet returns `accept` (its snap
/// length), anything else 0. The ICMPv4 type is read past the header's real length (`ldx
/// 4*([base]&0xf)`); the ICMPv6 type right after the fixed header, as the parser reads it (an
/// extension header is not followed). Shared by the BSDs' DLT_NULL filter and Linux's cooked
/// packet socket, and run by an interpreter in the tests.
pub fn ip_filter(family: FamilyCheck, base: u32, accept: u32) -> Vec<Insn> {
    let op = |code: u16, k: u32, jt: u8, jf: u8| Insn { code, jt, jf, k };
    let jeq = BPF_JMP | BPF_JEQ | BPF_K;
    let ldb = BPF_LD | BPF_B | BPF_ABS;
    // Jump offsets are relative to the next instruction: accept is 19, reject 20.
    vec![
        /* 0 */ family.load,
        /* 1 */ op(jeq, family.v4, 0, 9), // IPv4? 2 : 11
        /* 2 */ op(ldb, base + 9, 0, 0), // IPv4 protocol
        /* 3 */ op(jeq, 6, 15, 0), // TCP: accept
        /* 4 */ op(jeq, 17, 14, 0), // UDP: accept
        /* 5 */ op(jeq, 1, 0, 14), // ICMP? 6 : reject
        /* 6 */ op(BPF_LDX | BPF_B | BPF_MSH, base, 0, 0), // X = IPv4 header length
        /* 7 */ op(BPF_LD | BPF_B | BPF_IND, base, 0, 0), // ICMP type
        /* 8 */ op(jeq, 3, 10, 0), // destination unreachable: accept
        /* 9 */ op(jeq, 11, 9, 0), // time exceeded: accept
        /* 10 */ op(jeq, 12, 8, 9), // parameter problem: accept, else reject
        /* 11 */ op(jeq, family.v6, 0, 8), // IPv6? 12 : reject
        /* 12 */ op(ldb, base + 6, 0, 0), // IPv6 next header
        /* 13 */ op(jeq, 6, 5, 0), // TCP: accept
        /* 14 */ op(jeq, 17, 4, 0), // UDP: accept
        /* 15 */ op(jeq, 58, 0, 4), // ICMPv6? 16 : reject
        /* 16 */ op(ldb, base + 40, 0, 0), // ICMPv6 type
        /* 17 */ op(BPF_JMP | BPF_JGE | BPF_K, 1, 0, 2), // type >= 1? 18 : reject
        /* 18 */ op(BPF_JMP | BPF_JGT | BPF_K, 4, 1, 0), // type > 4? reject : accept
        /* 19 */ op(BPF_RET | BPF_K, accept, 0, 0),
        /* 20 */ op(BPF_RET | BPF_K, 0, 0, 0),
    ]
}

/// Keep what the wire records ([`ip_filter`]) on a DLT_NULL interface, and of each packet its
/// link header and the first SNAPLEN bytes from the IP header (the headers: what a pcap file
/// keeps on Linux too). BPF loads words in network byte order, so the host-order family word is
/// compared with its bytes read big-endian.
///
/// Why not the case's ports: a case's ports are not known when its capture starts (its listener
/// binds port 0 afterwards, the client's port comes from connect), and replacing the program
/// with BIOCSETF flushes the buffer on both systems (`reset_d` in `bpf_setf`), which would lose
/// what was captured and not yet read. So the kernel keeps every TCP, UDP and ICMP error packet,
/// and the case's own are told apart by their ports afterwards (`wire::keep_ports`).
pub fn capture_filter(layout: &Layout) -> Vec<Insn> {
    let family = |af: u32| u32::from_be_bytes(af.to_ne_bytes());
    let check = FamilyCheck {
        load: Insn {
            code: BPF_LD | BPF_W | BPF_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        v4: family(layout.af_inet),
        v6: family(layout.af_inet6),
    };
    ip_filter(check, NULL_HEADER as u32, NULL_HEADER as u32 + SNAPLEN)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::tests::{ipv4, ipv6, tcp_header};

    const MACOS: Layout = Layout {
        stamp_field: 4,
        align: 4,
        af_inet: 2,
        af_inet6: 30,
    };
    const FREEBSD: Layout = Layout {
        stamp_field: 8,
        align: 8,
        af_inet: 2,
        af_inet6: 28,
    };

    /// One record as the kernel writes it: the header fields in host order, padding up to
    /// `hdrlen` (SIZEOF_BPF_HDR + 4 bytes of DLT_NULL, word-aligned, minus those 4), the family
    /// word, the packet cut at `caplen`, and padding up to the next aligned record.
    fn record(
        layout: &Layout,
        secs: u64,
        usecs: u64,
        family: u32,
        ip: &[u8],
        cut: usize,
    ) -> Vec<u8> {
        let mut r = Vec::new();
        for v in [secs, usecs] {
            match layout.stamp_field {
                4 => r.extend_from_slice(&(v as u32).to_ne_bytes()),
                _ => r.extend_from_slice(&v.to_ne_bytes()),
            }
        }
        let hdrlen = layout.word_align(layout.header_len() + NULL_HEADER) - NULL_HEADER;
        let caplen = (NULL_HEADER + ip.len()).min(cut);
        r.extend_from_slice(&(caplen as u32).to_ne_bytes());
        r.extend_from_slice(&((NULL_HEADER + ip.len()) as u32).to_ne_bytes());
        r.extend_from_slice(&(hdrlen as u16).to_ne_bytes());
        r.resize(hdrlen, 0);
        let mut packet = family.to_ne_bytes().to_vec();
        packet.extend_from_slice(ip);
        r.extend_from_slice(&packet[..caplen]);
        r.resize(layout.word_align(r.len()), 0);
        r
    }

    #[test]
    fn header_lengths_follow_the_two_layouts() {
        // macOS: timeval32 (8) + caplen + datalen + hdrlen = 18; the network header lands on a
        // 4-byte boundary after 4 bytes of DLT_NULL, so bh_hdrlen is 20.
        assert_eq!(MACOS.header_len(), 18);
        assert_eq!(MACOS.word_align(18 + 4) - 4, 20);
        // FreeBSD (LP64): timeval (16) + 10 = 26; aligned to 8 after DLT_NULL: bh_hdrlen 28.
        assert_eq!(FREEBSD.header_len(), 26);
        assert_eq!(FREEBSD.word_align(26 + 4) - 4, 28);
    }

    fn walk(layout: &Layout) {
        let syn = ipv4(0, &tcp_header(0x02, 0), 0, None);
        let data = ipv6(&tcp_header(0x18, 12), 300);
        let mut buf = record(layout, 1_700_000_000, 250_000, layout.af_inet, &syn, 1000);
        // The second packet is longer than the snap length: cut, its whole length kept.
        let cut = NULL_HEADER + SNAPLEN as usize;
        buf.extend(record(
            layout,
            1_700_000_001,
            7,
            layout.af_inet6,
            &data,
            cut,
        ));
        let recs = records(&buf, layout);
        assert_eq!(recs.len(), 2, "{layout:?}");
        assert_eq!(recs[0].at, Duration::new(1_700_000_000, 250_000_000));
        assert_eq!(recs[1].at, Duration::new(1_700_000_001, 7_000));
        assert_eq!(
            (recs[1].data.len(), recs[1].wire_len),
            (cut, 4 + data.len())
        );
        let (Packet::Tcp(s), f) = null_packet(&recs[0], layout).unwrap() else {
            panic!("not TCP")
        };
        assert_eq!((s.event().as_deref(), s.dst.port()), (Some("SYN"), 8080));
        assert_eq!(
            (f.data.as_slice(), f.len),
            (syn.as_slice(), syn.len() as u32)
        );
        let (Packet::Tcp(s), f) = null_packet(&recs[1], layout).unwrap() else {
            panic!("not TCP")
        };
        assert_eq!(s.src, "[::1]:40000".parse().unwrap());
        assert_eq!(s.event().as_deref(), Some("data 300"));
        assert_eq!((f.data.len(), f.len), (SNAPLEN as usize, data.len() as u32));
    }

    #[test]
    fn records_are_walked_with_macos_alignment() {
        walk(&MACOS);
    }

    #[test]
    fn records_are_walked_with_freebsd_alignment() {
        walk(&FREEBSD);
    }

    #[test]
    fn a_record_past_the_end_of_the_read_ends_the_walk() {
        let p = ipv4(0, &tcp_header(0x02, 0), 0, None);
        let one = record(&FREEBSD, 1, 0, 2, &p, 1000);
        let mut buf = one.clone();
        buf.extend_from_slice(&one[..one.len() - 10]);
        assert_eq!(records(&buf, &FREEBSD).len(), 1);
        assert!(records(&one[..10], &FREEBSD).is_empty());
    }

    #[test]
    fn the_family_word_must_match_the_ip_version() {
        let v4 = ipv4(0, &tcp_header(0x02, 0), 0, None);
        let v6 = ipv6(&tcp_header(0x02, 0), 0);
        let parse = |family: u32, ip: &[u8]| {
            let buf = record(&MACOS, 1, 0, family, ip, 1000);
            null_packet(&records(&buf, &MACOS)[0], &MACOS).map(|(p, _)| p.ports())
        };
        assert!(parse(2, &v4).is_some());
        assert!(parse(30, &v6).is_some());
        // FreeBSD's AF_INET6 is not macOS's; a family that disagrees with the packet is dropped.
        assert_eq!(parse(28, &v6), None);
        assert_eq!(parse(30, &v4), None);
        assert_eq!(parse(2, &v6), None);
    }

    /// The few classic BPF instructions the filters use, run as the kernel would; `anc` answers
    /// a load past the packet (Linux's ancillary data), which the BSD filter never makes.
    pub(crate) fn run(program: &[Insn], packet: &[u8], anc: impl Fn(u32) -> u32) -> u32 {
        let (mut pc, mut a, mut x) = (0usize, 0u32, 0u32);
        let byte = |k: usize| packet.get(k).copied().map(u32::from);
        loop {
            let i = program[pc];
            pc += 1;
            let k = i.k as usize;
            let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match i.code {
                c if c == BPF_LD | BPF_W | BPF_ABS => {
                    a = u32::from_be_bytes(packet[k..k + 4].try_into().unwrap())
                }
                c if c == BPF_LD | BPF_H | BPF_ABS => {
                    a = match packet.get(k..k + 2) {
                        Some(b) => u32::from(u16::from_be_bytes([b[0], b[1]])),
                        None => anc(i.k),
                    }
                }
                c if c == BPF_LD | BPF_B | BPF_ABS => a = byte(k).unwrap_or_else(|| anc(i.k)),
                // A load past the packet ends the program with 0, as in the kernel.
                c if c == BPF_LD | BPF_B | BPF_IND => match byte(x as usize + k) {
                    Some(b) => a = b,
                    None => return 0,
                },
                c if c == BPF_LDX | BPF_B | BPF_MSH => x = (byte(k).unwrap_or(0) & 0xf) * 4,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => pc += jump(a == i.k),
                c if c == BPF_JMP | BPF_JGT | BPF_K => pc += jump(a > i.k),
                c if c == BPF_JMP | BPF_JGE | BPF_K => pc += jump(a >= i.k),
                c if c == BPF_RET | BPF_K => return i.k,
                c => panic!("opcode {c:#x} not in the interpreter"),
            }
        }
    }

    /// Every packet the wire records, over IPv4 then IPv6, and the kinds it does not: what
    /// `ip_filter` must keep and drop on any link.
    pub(crate) fn kept_and_dropped() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        use crate::wire::tests::{icmp4, icmp6, udp_header};
        let tcp4 = ipv4(0, &tcp_header(0x02, 0), 0, None);
        let tcp6 = ipv6(&tcp_header(0x02, 0), 0);
        let mut udp4 = ipv4(8, &udp_header(5), 5, None);
        udp4[9] = 17;
        let mut udp6 = ipv6(&udp_header(0), 0);
        udp6[6] = 17;
        let kept = vec![
            tcp4.clone(),
            udp4.clone(),
            icmp4(3, 3, &udp4),
            icmp4(11, 0, &tcp4),
            icmp4(12, 0, &tcp4),
            tcp6.clone(),
            udp6.clone(),
            icmp6(1, 4, &udp6),
            icmp6(2, 0, &tcp6),
            icmp6(4, 0, &tcp6),
        ];
        let mut sctp = tcp4.clone();
        sctp[9] = 132;
        let mut hop_by_hop = tcp6.clone();
        hop_by_hop[6] = 0;
        let dropped = vec![
            icmp4(8, 0, &tcp4),   // echo request
            icmp4(5, 1, &tcp4),   // redirect
            icmp6(128, 0, &tcp6), // echo request
            icmp6(135, 0, &tcp6), // neighbour solicitation
            sctp,
            hop_by_hop,
        ];
        (kept, dropped)
    }

    #[test]
    fn the_filter_keeps_tcp_udp_and_icmp_errors_over_both_families_and_nothing_else() {
        let (kept, dropped) = kept_and_dropped();
        for layout in [MACOS, FREEBSD] {
            let program = capture_filter(&layout);
            let framed = |ip: &[u8]| {
                let family = match ip[0] >> 4 {
                    4 => layout.af_inet,
                    _ => layout.af_inet6,
                };
                let mut p = family.to_ne_bytes().to_vec();
                p.extend_from_slice(ip);
                p
            };
            let no_anc = |k: u32| panic!("load past the packet at {k}");
            let keep = NULL_HEADER as u32 + SNAPLEN;
            for ip in &kept {
                assert_eq!(run(&program, &framed(ip), no_anc), keep, "{ip:?}");
                // The parser agrees: what the kernel keeps is a packet.
                let rec = Record {
                    at: Duration::ZERO,
                    data: &framed(ip),
                    wire_len: 4 + ip.len(),
                };
                assert!(null_packet(&rec, &layout).is_some(), "{ip:?}");
            }
            for ip in &dropped {
                assert_eq!(run(&program, &framed(ip), no_anc), 0, "{ip:?}");
            }
            // Another family (the other BSD's AF_INET6) is not mistaken for IPv6.
            let mut other = framed(&kept[5]);
            other[..4].copy_from_slice(&(layout.af_inet6 ^ 2).to_ne_bytes());
            assert_eq!(run(&program, &other, no_anc), 0);
        }
    }
}
