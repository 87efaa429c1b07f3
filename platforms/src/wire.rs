//! What crosses the wire, in portable terms: TCP segments as a packet capture saw them.
//!
//! The capture itself is per-OS (`Capture` of the backend); the data it yields is this module's
//! [`Segment`], identical on every platform so observations can be compared across them.

use std::fmt;
use std::net::SocketAddr;
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

#[cfg(test)]
mod tests {
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
}
