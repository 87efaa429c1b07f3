//! The portable half of BPF capture (macOS and FreeBSD, `sys/bpf.rs`): the records a read of
//! `/dev/bpf` returns, the DLT_NULL link header of the loopback interface, and the classic BPF
//! program that keeps TCP in the kernel. Nothing here calls the OS, so it is tested on Linux
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

use crate::wire::{self, Frame, Segment, SNAPLEN};
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

/// The TCP segment of a DLT_NULL record and its packet from the IP header on (for a pcap file,
/// which is link type RAW like Linux's); None for anything that is not IPv4 or IPv6 TCP.
/// `Segment::at` is left zero for the capture to set relative to its start.
pub fn null_segment(record: &Record<'_>, layout: &Layout) -> Option<(Segment, Frame)> {
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
    let segment = wire::parse_ip(ip, wire_len)?;
    let frame = Frame {
        at: record.at,
        data: ip[..ip.len().min(SNAPLEN as usize)].to_vec(),
        len: u32::try_from(wire_len).unwrap_or(u32::MAX),
    };
    Some((segment, frame))
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
const BPF_LD: u16 = 0x00;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_B: u16 = 0x10;
const BPF_ABS: u16 = 0x20;
const BPF_JEQ: u16 = 0x10;
const BPF_K: u16 = 0x00;

/// Keep IPv4 (protocol 6) and IPv6 (next header 6) TCP on a DLT_NULL interface, and of each
/// packet its link header and the first SNAPLEN bytes from the IP header (the headers: what a
/// pcap file keeps on Linux too). BPF loads words in network byte order, so the host-order
/// family word is compared with its bytes read big-endian.
///
/// Why not the case's ports: a case's ports are not known when its capture starts (its listener
/// binds port 0 afterwards, the client's port comes from connect), and replacing the program
/// with BIOCSETF flushes the buffer on both systems (`reset_d` in `bpf_setf`), which would lose
/// what was captured and not yet read. So the kernel keeps TCP, and the case's segments are
/// told apart by its ports afterwards (`wire::keep_ports`).
pub fn tcp_filter(layout: &Layout) -> Vec<Insn> {
    let family = |af: u32| u32::from_be_bytes(af.to_ne_bytes());
    let op = |code: u16, k: u32, jt: u8, jf: u8| Insn { code, jt, jf, k };
    let at = |ip_offset: usize| (NULL_HEADER + ip_offset) as u32;
    // Jump offsets are relative to the next instruction.
    vec![
        /* 0 */ op(BPF_LD | BPF_W | BPF_ABS, 0, 0, 0), // the family word
        /* 1 */
        op(BPF_JMP | BPF_JEQ | BPF_K, family(layout.af_inet), 0, 2), // IPv4? 2 : 4
        /* 2 */ op(BPF_LD | BPF_B | BPF_ABS, at(9), 0, 0), // IPv4 protocol
        /* 3 */ op(BPF_JMP | BPF_JEQ | BPF_K, 6, 3, 4), // TCP? accept : reject
        /* 4 */
        op(BPF_JMP | BPF_JEQ | BPF_K, family(layout.af_inet6), 0, 3), // IPv6? 5 : reject
        /* 5 */ op(BPF_LD | BPF_B | BPF_ABS, at(6), 0, 0), // IPv6 next header
        /* 6 */ op(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, 1), // TCP? accept : reject
        /* 7 */ op(BPF_RET | BPF_K, NULL_HEADER as u32 + SNAPLEN, 0, 0),
        /* 8 */ op(BPF_RET | BPF_K, 0, 0, 0),
    ]
}

#[cfg(test)]
mod tests {
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
        let (s, f) = null_segment(&recs[0], layout).unwrap();
        assert_eq!((s.event().as_deref(), s.dst.port()), (Some("SYN"), 8080));
        assert_eq!(
            (f.data.as_slice(), f.len),
            (syn.as_slice(), syn.len() as u32)
        );
        let (s, f) = null_segment(&recs[1], layout).unwrap();
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
            null_segment(&records(&buf, &MACOS)[0], &MACOS).map(|(s, _)| s.src)
        };
        assert!(parse(2, &v4).is_some());
        assert!(parse(30, &v6).is_some());
        // FreeBSD's AF_INET6 is not macOS's; a family that disagrees with the packet is dropped.
        assert_eq!(parse(28, &v6), None);
        assert_eq!(parse(30, &v4), None);
        assert_eq!(parse(2, &v6), None);
    }

    /// The few classic BPF instructions the filter uses, run as the kernel would.
    fn run(program: &[Insn], packet: &[u8]) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = program[pc];
            pc += 1;
            let k = i.k as usize;
            match i.code {
                c if c == BPF_LD | BPF_W | BPF_ABS => {
                    a = u32::from_be_bytes(packet[k..k + 4].try_into().unwrap())
                }
                c if c == BPF_LD | BPF_B | BPF_ABS => a = u32::from(packet[k]),
                c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf })
                }
                c if c == BPF_RET | BPF_K => return i.k,
                c => panic!("opcode {c:#x} not in the interpreter"),
            }
        }
    }

    #[test]
    fn the_filter_keeps_tcp_over_both_families_and_nothing_else() {
        for layout in [MACOS, FREEBSD] {
            let program = tcp_filter(&layout);
            let framed = |family: u32, ip: &[u8]| {
                let mut p = family.to_ne_bytes().to_vec();
                p.extend_from_slice(ip);
                p
            };
            let v4 = ipv4(0, &tcp_header(0x02, 0), 0, None);
            let v6 = ipv6(&tcp_header(0x02, 0), 0);
            let keep = NULL_HEADER as u32 + SNAPLEN;
            assert_eq!(run(&program, &framed(layout.af_inet, &v4)), keep);
            assert_eq!(run(&program, &framed(layout.af_inet6, &v6)), keep);
            let mut udp = v4.clone();
            udp[9] = 17;
            assert_eq!(run(&program, &framed(layout.af_inet, &udp)), 0);
            let mut udp6 = v6.clone();
            udp6[6] = 17;
            assert_eq!(run(&program, &framed(layout.af_inet6, &udp6)), 0);
            // Another family (the other BSD's AF_INET6) is not mistaken for IPv6.
            assert_eq!(run(&program, &framed(layout.af_inet6 ^ 2, &v6)), 0);
        }
    }
}
