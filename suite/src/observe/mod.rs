//! Observations: what a run saw, normalized so that a snapshot changes only when behavior changes.
//! Ports, addresses, pids and absolute times never appear; durations appear as buckets, and the raw
//! microseconds go to the machine-readable results only.

pub mod event;
#[cfg(test)]
mod old_rules;
pub mod same;

use crate::script::{Case, Timing};
use event::{Event, Flow, Section, WireEvent};
use platforms::wire::{IcmpError, Packet, Segment};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The compared part of a case's run: every step's outcome in order, the TCP states at each
/// checkpoint (as steps), and timing buckets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub case: String,
    pub intent: String,
    pub steps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timing: Vec<String>,
}

impl Observation {
    pub fn new(case: &Case) -> Observation {
        Observation {
            case: case.id(),
            intent: case.intent.into(),
            steps: Vec::new(),
            timing: Vec::new(),
        }
    }

    /// Record an event, as the line its Display renders: a timing bucket among the timing lines,
    /// anything else among the steps. The wire is not part of an observation (`Wire` holds it).
    pub fn push(&mut self, event: Event) {
        debug_assert!(
            !matches!(event, Event::Wire(_)),
            "a wire event in an observation: {event}"
        );
        match event {
            Event::Timing { .. } => self.timing.push(event.to_string()),
            _ => self.steps.push(event.to_string()),
        }
    }

    /// The text stored in the snapshot file.
    pub fn render(&self) -> String {
        serde_json::to_string_pretty(self).expect("observations serialize") + "\n"
    }
}

/// What crossed the wire, kept apart from the observation because it exists only when captured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "wire")]
pub enum Wire {
    Captured { events: Vec<String> },
    NotCaptured { reason: String },
}

impl Wire {
    /// A captured wire, each event as the line its Display renders.
    pub fn captured(events: impl IntoIterator<Item = WireEvent>) -> Wire {
        Wire::Captured {
            events: events.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    /// The text of the wire snapshot, if there is one to compare.
    pub fn render(&self, case: &str) -> Option<String> {
        match self {
            Wire::Captured { events } => {
                #[derive(Serialize)]
                struct W<'a> {
                    case: &'a str,
                    wire: &'a [String],
                }
                Some(
                    serde_json::to_string_pretty(&W { case, wire: events }).expect("serializes")
                        + "\n",
                )
            }
            Wire::NotCaptured { .. } => None,
        }
    }
}

/// The raw duration of one step, for the JSON results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawTiming {
    pub step: String,
    pub elapsed_us: u64,
}

/// An absolute duration bucket, wide enough to be stable on a loaded 2-core machine.
pub fn absolute_bucket(us: u64) -> &'static str {
    match us {
        0..=99_999 => "under 100 ms",
        100_000..=999_999 => "100 ms to 1 s",
        1_000_000..=2_999_999 => "1 s to 3 s",
        _ => "over 3 s",
    }
}

/// A bucket relative to the knob that drives the duration.
pub fn relative_bucket(us: u64, knob_ms: u64) -> &'static str {
    let ratio = us as f64 / (knob_ms.max(1) as f64 * 1000.0);
    match ratio {
        r if r < 0.1 => "immediately (under 0.1x)",
        r if r < 0.8 => "0.1x to 0.8x",
        r if r < 1.5 => "about 1x (0.8x to 1.5x)",
        r if r < 3.0 => "1.5x to 3x",
        _ => "over 3x",
    }
}

/// The timing event of `who`'s call `op` for the snapshot, if the script asks for one.
pub fn timing_event(
    who: &str,
    op: impl std::fmt::Display,
    timing: Timing,
    us: u64,
) -> Option<Event> {
    let bucket = match timing {
        Timing::Untimed => return None,
        Timing::Absolute => absolute_bucket(us).to_string(),
        Timing::Relative { knob, ms } => {
            format!("{} the {knob} ({ms} ms)", relative_bucket(us, ms))
        }
    };
    Some(Event::timing(who, op, bucket))
}

/// Reduce captured packets to portable wire events: "client > server: SYN", "client > server:
/// udp 5", "server > client: ICMP port unreachable (about udp client > closed port)". Pure ACKs
/// are left out (their number depends on delayed-ACK timing). In bulk cases, consecutive data
/// segments in one direction merge into one "data (bulk)" event because their segmentation is
/// not stable. TCP segments are reduced exactly as if they had been captured alone: a datagram
/// or an ICMP error between them changes nothing of their lines.
pub fn wire_events(
    packets: &[Packet],
    labels: &BTreeMap<u16, String>,
    bulk: bool,
    retransmissions_vary: Option<&str>,
) -> Vec<WireEvent> {
    let mut r = Reduction {
        labels,
        bulk,
        retransmissions_vary,
        out: Vec::new(),
        last_bulk_dir: None,
        next_seq: BTreeMap::new(),
        unnamed: BTreeMap::new(),
        sent: HashSet::new(),
        probes_since_event: Vec::new(),
    };
    for p in packets {
        match p {
            Packet::Tcp(s) => r.segment(s),
            Packet::Udp(d) => r.datagram(d),
            Packet::Icmp(e) => r.icmp(e),
        }
    }
    for ((from, to, what), n) in r.unnamed.into_values() {
        let what = format!("{what} (x{n}, connections opened in bulk)");
        r.out.push(WireEvent::Sent { from, to, what });
    }
    r.out
}

/// One reduction of a capture to wire events, segment by segment.
struct Reduction<'a> {
    labels: &'a BTreeMap<u16, String>,
    bulk: bool,
    retransmissions_vary: Option<&'a str>,
    out: Vec<WireEvent>,
    /// The direction (from, to) of the last bulk data event, while no other event followed it.
    last_bulk_dir: Option<(String, String)>,
    /// The next sequence number each sender has used up to, to recognize probes: an ACK without
    /// data whose sequence number is one below it (keepalive and zero-window probes).
    next_seq: BTreeMap<(u16, u16), u32>,
    /// Events (from, to, what) of connections opened in bulk, counted; keyed by their line, the
    /// order they are listed in.
    unnamed: BTreeMap<String, ((String, String, String), usize)>,
    /// The (port, sequence number) of every data segment sent, to recognize retransmissions.
    sent: HashSet<(u16, u32)>,
    probes_since_event: Vec<WireEvent>,
}

impl Reduction<'_> {
    fn name(&self, port: u16) -> String {
        self.labels
            .get(&port)
            .cloned()
            .unwrap_or_else(|| "other".to_string())
    }

    fn segment(&mut self, s: &Segment) {
        let (from, to) = (self.name(s.src.port()), self.name(s.dst.port()));
        if self.is_probe(s) {
            // Zero-window probes in bulk cases come as often as the timer says: not stable. Both
            // directions may probe in turn (both ends filled): one line each until another event.
            let ev = WireEvent::sent(&from, &to, "probe (ACK below the next sequence number)");
            if !(self.bulk && self.probes_since_event.contains(&ev)) {
                self.probes_since_event.push(ev.clone());
                self.out.push(ev);
            }
            return;
        }
        let Some(what) = s.event() else { return };
        self.probes_since_event.clear();
        // Where the count of retransmissions is not stable, the first one stands for all.
        if let Some(why) = self.retransmissions_vary {
            if s.payload > 0 && !self.sent.insert((s.src.port(), s.seq)) {
                let what = format!("{what} retransmitted, a varying number of times ({why})");
                let ev = WireEvent::sent(&from, &to, what);
                if !self.out.contains(&ev) {
                    self.out.push(ev);
                }
                return;
            }
        }
        // Connections the case opens in bulk have no name of their own: count them instead.
        if !self.labels.contains_key(&s.src.port()) || !self.labels.contains_key(&s.dst.port()) {
            let line = WireEvent::sent(&from, &to, &what).to_string();
            self.unnamed.entry(line).or_insert(((from, to, what), 0)).1 += 1;
            return;
        }
        if self.bulk && s.payload > 0 && !s.syn && !s.rst {
            // Whether the last bytes share a segment with the FIN is not stable either: split them.
            let dir = Some((from.clone(), to.clone()));
            if self.last_bulk_dir != dir {
                self.out.push(WireEvent::sent(&from, &to, "data (bulk)"));
                self.last_bulk_dir = dir;
            }
            if s.fin {
                self.out.push(WireEvent::sent(&from, &to, "FIN"));
                self.last_bulk_dir = None;
            }
            return;
        }
        self.last_bulk_dir = None;
        self.out.push(WireEvent::sent(&from, &to, what));
    }

    /// A datagram's line; in bulk cases a run of datagrams of one length in one direction is
    /// one line, marked repeated (how many the kernel let through is the case's outcome).
    fn datagram(&mut self, d: &platforms::wire::Datagram) {
        let (from, to) = (self.name(d.src.port()), self.name(d.dst.port()));
        if let (
            true,
            Some(WireEvent::Datagram {
                from: f,
                to: t,
                len,
                repeated,
            }),
        ) = (self.bulk, self.out.last_mut())
        {
            if (f.as_str(), t.as_str(), *len) == (from.as_str(), to.as_str(), d.payload) {
                *repeated = true;
                return;
            }
        }
        self.out.push(WireEvent::Datagram {
            from,
            to,
            len: d.payload,
            repeated: false,
        });
    }

    /// An ICMP error's line. Where the case says its retransmissions vary, so do the errors
    /// answering them (each retransmission meets the router's reject, within its rate limit):
    /// each distinct error is then written once, where it first came.
    fn icmp(&mut self, e: &IcmpError) {
        let ev = icmp_event(e, &|port| self.name(port));
        if self.retransmissions_vary.is_some() && self.out.contains(&ev) {
            return;
        }
        self.out.push(ev);
    }

    /// Note how far the segment's sender has used sequence numbers; whether the segment is a
    /// probe (an ACK without data one below the next sequence number).
    fn is_probe(&mut self, s: &Segment) -> bool {
        let key = (s.src.port(), s.dst.port());
        let end = s
            .seq
            .wrapping_add(s.payload as u32 + u32::from(s.syn) + u32::from(s.fin));
        let known = self.next_seq.get(&key).copied();
        if known.is_none_or(|n| end.wrapping_sub(n) as i32 > 0) {
            self.next_seq.insert(key, end);
        }
        s.event().is_none() && s.payload == 0 && known == Some(s.seq.wrapping_add(1))
    }
}

/// The wire line of an ICMP error, its ends named by `name` (a port's label). ICMP has no ports,
/// so the error's sender and receiver are named as hosts from the packet it quotes: the
/// quoted packet's destination host when the error comes from that address (the stack that
/// refused it), `router` when it comes from elsewhere (a hop on the way, the lab's router); the
/// receiver is the quoted packet's source host.
fn icmp_event(e: &IcmpError, name: &dyn Fn(u16) -> String) -> WireEvent {
    let about = Flow {
        transport: e.about.transport.to_string(),
        from: name(e.about.src.port()),
        to: name(e.about.dst.port()),
    };
    let from = if e.src == e.about.dst.ip() {
        host(&about.to)
    } else {
        "router".to_string()
    };
    let to = if e.dst == e.about.src.ip() {
        host(&about.from)
    } else {
        "another host".to_string()
    };
    WireEvent::Icmp {
        from,
        to,
        kind: e.kind.to_string(),
        about,
    }
}

/// The host an end lives on, by its label: `client c2` on the client, the closed port on the
/// server; an end of no known side keeps its label.
fn host(end: &str) -> String {
    if end.starts_with("client") {
        "client".into()
    } else if end == "server" || end == "closed port" {
        "server".into()
    } else {
        end.into()
    }
}

/// Every packet as one line with its time since the capture started (for the JSON results only:
/// times are not stable enough for a snapshot).
pub fn raw_wire(packets: &[Packet], labels: &BTreeMap<u16, String>) -> Vec<String> {
    let name = |port: u16| {
        labels
            .get(&port)
            .cloned()
            .unwrap_or_else(|| format!("port {port}"))
    };
    packets
        .iter()
        .map(|p| {
            let at = format!("{:>10.3} ms", p.at().as_secs_f64() * 1000.0);
            match p {
                Packet::Tcp(s) => format!(
                    "{at} {} > {} {} seq={} ack={} win={} len={}",
                    name(s.src.port()),
                    name(s.dst.port()),
                    s.flags(),
                    s.seq,
                    s.ack_no,
                    s.window,
                    s.payload
                ),
                Packet::Udp(d) => format!(
                    "{at} {} > {} udp len={}",
                    name(d.src.port()),
                    name(d.dst.port()),
                    d.payload
                ),
                Packet::Icmp(e) => format!("{at} {}", icmp_event(e, &name)),
            }
        })
        .collect()
}

/// How many of the data segments sent from `port` repeat a sequence number already sent.
pub fn retransmissions(segs: &[Segment], port: u16) -> usize {
    let mut seen = std::collections::HashSet::new();
    segs.iter()
        .filter(|s| s.src.port() == port && s.payload > 0)
        .filter(|s| !seen.insert(s.seq))
        .count()
}

/// The retransmission schedule of the data sent from `port`: how many times the first
/// retransmitted segment was sent again, and each interval as a power-of-two multiple of the first
/// (the exponential backoff), with the first interval as a bucket. Raw times would not be stable.
pub fn retransmission_schedule(segs: &[Segment], port: u16) -> Option<String> {
    let first = segs
        .iter()
        .find(|s| s.src.port() == port && s.payload > 0 && retransmissions_of(segs, s) > 0)?;
    let times: Vec<std::time::Duration> = segs
        .iter()
        .filter(|s| s.src.port() == port && s.payload > 0 && s.seq == first.seq)
        .map(|s| s.at)
        .collect();
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let base = *gaps.first()?;
    let multiples: Vec<String> = gaps
        .iter()
        .map(|g| format!("{}x", 2f64.powf((g / base).log2().round()).round() as u64))
        .collect();
    Some(format!(
        "{} retransmission(s) of the same data; intervals {} the first, which took {}",
        gaps.len(),
        multiples.join(", "),
        absolute_bucket((base * 1e6) as u64)
    ))
}

fn retransmissions_of(segs: &[Segment], s: &Segment) -> usize {
    segs.iter()
        .filter(|o| o.src == s.src && o.payload > 0 && o.seq == s.seq)
        .count()
        .saturating_sub(1)
}

/// A bucket for kernel memory per connection.
pub fn memory_bucket(bytes: u64) -> &'static str {
    match bytes {
        0..=1023 => "under 1 KiB",
        1024..=4095 => "1 KiB to 4 KiB",
        4096..=8191 => "4 KiB to 8 KiB",
        8192..=16383 => "8 KiB to 16 KiB",
        _ => "16 KiB or more",
    }
}

/// Whether this run's rendered snapshot body (an observation or a wire) says the same as a
/// stored one of its platform, by the one rule (`same::Rule::StoredThenRun`): the same text, or
/// every line that differs is something this run could not see here (`not visible (why)`,
/// `unavailable (why)`, e.g. the slab caches only real root may read) where the stored line has
/// a value of the same subject; and a wire whose connections each say the same, in whatever
/// order they interleave. A gap is never a difference, and never a value either: a stored gap
/// against a run's value is a change.
pub fn agrees(stored: &str, run: &str) -> bool {
    agrees_by(same::Rule::StoredThenRun, stored, run)
}

/// Whether two rendered snapshot bodies (observations, or wires) say the same by `rule`: conform
/// compares a run with its stored snapshot by `StoredThenRun`, two runs of one platform (`--repeat`,
/// the explorer's corpus) by `SamePlatform`.
pub fn agrees_by(rule: same::Rule, stored: &str, run: &str) -> bool {
    if stored == run {
        return true;
    }
    if let (Ok(a), Ok(b)) = (
        serde_json::from_str::<Observation>(stored),
        serde_json::from_str::<Observation>(run),
    ) {
        return (&a.case, &a.intent) == (&b.case, &b.intent)
            && same::lists_agree(rule, Section::Steps, &a.steps, &b.steps)
            && same::lists_agree(rule, Section::Timing, &a.timing, &b.timing);
    }
    match (
        serde_json::from_str::<WireBody>(stored),
        serde_json::from_str::<WireBody>(run),
    ) {
        (Ok(a), Ok(b)) => {
            a.case == b.case
                && same::wires_agree(rule, same::WireOrder::PerConnection, &a.wire, &b.wire)
        }
        _ => false,
    }
}

/// The body of a wire snapshot, as `Wire::render` writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBody {
    case: String,
    wire: Vec<String>,
}

/// A short signature of what happened, for the summary table: the notable outcomes in order
/// (end of stream, errors, deaths) and, when captured, who sent FIN or RST first.
pub fn signature(obs: &Observation, wire: &Wire) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Wire::Captured { events } = wire {
        if let Some(first) = first_close(events) {
            parts.push(first);
        }
    }
    for e in Event::parse_all(Section::Steps, &obs.steps) {
        let Some(short) = notable(&e) else { continue };
        if !parts.contains(&short) {
            parts.push(short);
        }
    }
    if parts.is_empty() {
        "all ok".into()
    } else {
        parts.join(", ")
    }
}

/// Who sent the first RST (or, without one, the first FIN) outside a SYN: "server RST".
fn first_close(events: &[String]) -> Option<String> {
    let sent: Vec<(String, String)> = Event::parse_all(Section::Wire, events)
        .into_iter()
        .filter_map(|e| match e {
            Event::Wire(WireEvent::Sent { from, what, .. }) => Some((from, what)),
            _ => None,
        })
        .collect();
    ["RST", "FIN"].iter().find_map(|flag| {
        sent.iter()
            .find(|(_, what)| what.contains(flag) && !what.contains("SYN"))
            .map(|(from, _)| format!("{from} {flag}"))
    })
}

/// The signature's word for a notable outcome: `eof`, an error's kind, `died(how)`, `events(...)`.
fn notable(e: &Event) -> Option<String> {
    use crate::proto::Outcome;
    let Event::Call(c) = e else { return None };
    if let event::Returned::DiedWithin { how, grace_ms } = &c.result {
        return Some(format!(
            "died({how}) within the grace period ({grace_ms} ms)"
        ));
    }
    match c.result.outcome()? {
        Outcome::Error { kind, .. } => Some(kind.clone()),
        Outcome::Eof => Some("eof".into()),
        Outcome::Died { how } => Some(format!("died({how})")),
        o @ Outcome::Events { events } if !events.is_empty() => Some(o.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(steps: &[&str]) -> String {
        Observation {
            case: "x/y".into(),
            intent: "Verify: x.".into(),
            steps: steps.iter().map(|s| s.to_string()).collect(),
            timing: vec![],
        }
        .render()
    }

    #[test]
    fn a_run_that_cannot_see_agrees_with_what_the_snapshot_saw_not_the_reverse() {
        let root = observation(&[
            "a: b -> ok",
            "kernel memory per connection (x): 4 KiB to 8 KiB",
        ]);
        let rootless = root.replace("4 KiB to 8 KiB", "not visible (only real root)");
        assert!(agrees(&root, &rootless));
        assert!(agrees(&root, &root));
        // A value where the snapshot has none, another subject, or any other changed line is a
        // difference.
        assert!(!agrees(&rootless, &root));
        assert!(!agrees(
            &root,
            &rootless.replace("kernel memory", "kernel pages")
        ));
        assert!(!agrees(
            &root,
            &rootless.replace("a: b -> ok", "a: b -> eof")
        ));
        assert!(!agrees(&root, &observation(&["a: b -> ok"])));
    }

    #[test]
    fn a_wire_agrees_whatever_the_order_between_its_connections() {
        let wire = |events: &[&str]| {
            Wire::Captured {
                events: events.iter().map(|s| s.to_string()).collect(),
            }
            .render("x/y")
            .unwrap()
        };
        let stored = wire(&["client > server: RST", "client c2 > server: SYN"]);
        let run = wire(&["client c2 > server: SYN", "client > server: RST"]);
        assert!(agrees(&stored, &run));
        assert!(!agrees(
            &stored,
            &wire(&["client c2 > server: SYN", "client > server: RST-ACK"])
        ));
        // A wire body never agrees with an observation body.
        assert!(!agrees(&stored, &observation(&[])));
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn relative_bucket_is_monotonic(a in 0u64..10_000_000, b in 0u64..10_000_000, knob in 1u64..10_000) {
            let order = ["immediately (under 0.1x)", "0.1x to 0.8x", "about 1x (0.8x to 1.5x)", "1.5x to 3x", "over 3x"];
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let i = order.iter().position(|x| *x == relative_bucket(lo, knob)).unwrap();
            let j = order.iter().position(|x| *x == relative_bucket(hi, knob)).unwrap();
            prop_assert!(i <= j);
        }

        #[test]
        fn absolute_bucket_is_monotonic_over_every_u64(a in any::<u64>(), b in any::<u64>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let rank = |us| ABSOLUTE.iter().position(|x| *x == absolute_bucket(us));
            let (i, j) = (rank(lo), rank(hi));
            prop_assert!(i.is_some() && j.is_some(), "{lo} or {hi} fell outside the four buckets");
            prop_assert!(i <= j);
        }
    }

    const ABSOLUTE: [&str; 4] = ["under 100 ms", "100 ms to 1 s", "1 s to 3 s", "over 3 s"];

    #[test]
    fn absolute_buckets_change_exactly_at_their_boundaries() {
        for (below, at, bucket) in [
            (99_999, 100_000, 1),
            (999_999, 1_000_000, 2),
            (2_999_999, 3_000_000, 3),
        ] {
            assert_eq!(absolute_bucket(below), ABSOLUTE[bucket - 1]);
            assert_eq!(absolute_bucket(at), ABSOLUTE[bucket]);
        }
        assert_eq!(absolute_bucket(0), ABSOLUTE[0]);
        assert_eq!(absolute_bucket(u64::MAX), ABSOLUTE[3]);
    }

    #[test]
    fn timing_lines_name_the_call_as_its_step_line_does() {
        let l = timing_event(
            "client",
            "read(10)",
            Timing::Relative {
                knob: "read timeout",
                ms: 200,
            },
            210_000,
        );
        assert_eq!(
            l.unwrap().to_string(),
            "client: read(10): about 1x (0.8x to 1.5x) the read timeout (200 ms)"
        );
        assert_eq!(
            timing_event("client", "x", Timing::Absolute, 5).map(|e| e.to_string()),
            Some("client: x: under 100 ms".to_string())
        );
        assert_eq!(timing_event("client", "x", Timing::Untimed, 5), None);
    }

    use platforms::wire::{IcmpKind, Quoted, Transport};

    /// The wire events' lines, as the snapshot holds them.
    fn lines(
        segs: &[Segment],
        labels: &BTreeMap<u16, String>,
        bulk: bool,
        vary: Option<&str>,
    ) -> Vec<String> {
        let packets: Vec<Packet> = segs.iter().cloned().map(Packet::Tcp).collect();
        packet_lines(&packets, labels, bulk, vary)
    }

    fn packet_lines(
        packets: &[Packet],
        labels: &BTreeMap<u16, String>,
        bulk: bool,
        vary: Option<&str>,
    ) -> Vec<String> {
        wire_events(packets, labels, bulk, vary)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn seg(src: u16, dst: u16, flags: &str, payload: usize) -> Segment {
        Segment {
            at: std::time::Duration::ZERO,
            src: ([127, 0, 0, 1], src).into(),
            dst: ([127, 0, 0, 1], dst).into(),
            syn: flags.contains('S'),
            ack: flags.contains('A'),
            fin: flags.contains('F'),
            rst: flags.contains('R'),
            psh: flags.contains('P'),
            seq: 0,
            ack_no: 0,
            window: 0,
            payload,
        }
    }

    #[test]
    fn wire_events_name_endpoints_and_drop_pure_acks() {
        let labels = BTreeMap::from([(80, "server".to_string()), (5000, "client".to_string())]);
        // Sequence numbers as on the wire: the SYN takes one, so the ACK and data that follow it
        // start at 1 (a pure ACK one below the next number would be a probe).
        let mut ack = seg(5000, 80, "A", 0);
        ack.seq = 1;
        let mut data = seg(5000, 80, "PA", 5);
        data.seq = 1;
        let segs = [
            seg(5000, 80, "S", 0),
            seg(80, 5000, "SA", 0),
            ack,
            data,
            seg(80, 5000, "RA", 0),
        ];
        let ev = lines(&segs, &labels, false, None);
        assert_eq!(ev[0], "client > server: SYN");
        assert_eq!(ev.len(), 4, "{ev:?}");
        assert!(ev[3].starts_with("server > client: RST"), "{ev:?}");
    }

    fn udp(src: u16, dst: u16, payload: usize) -> Packet {
        Packet::Udp(platforms::wire::Datagram {
            at: std::time::Duration::ZERO,
            src: ([127, 0, 0, 1], src).into(),
            dst: ([127, 0, 0, 1], dst).into(),
            payload,
        })
    }

    fn icmp(from: [u8; 4], kind: IcmpKind, about: (Transport, u16, u16)) -> Packet {
        Packet::Icmp(IcmpError {
            at: std::time::Duration::ZERO,
            src: from.into(),
            dst: [127, 0, 0, 1].into(),
            kind,
            about: Quoted {
                transport: about.0,
                src: ([127, 0, 0, 1], about.1).into(),
                dst: ([127, 0, 0, 1], about.2).into(),
            },
        })
    }

    #[test]
    fn datagrams_and_icmp_errors_are_named_like_segments_and_leave_them_alone() {
        let labels = BTreeMap::from([
            (80, "server".to_string()),
            (5000, "client".to_string()),
            (5001, "client c2".to_string()),
            (23000, "closed port".to_string()),
        ]);
        let tcp = [seg(5000, 80, "S", 0), seg(80, 5000, "SA", 0)];
        let packets = vec![
            Packet::Tcp(tcp[0].clone()),
            udp(5001, 23000, 5),
            icmp(
                [127, 0, 0, 1],
                IcmpKind::PortUnreachable,
                (Transport::Udp, 5001, 23000),
            ),
            udp(5001, 80, 0),
            icmp(
                [192, 0, 2, 1],
                IcmpKind::HostUnreachable,
                (Transport::Tcp, 5000, 80),
            ),
            Packet::Tcp(tcp[1].clone()),
        ];
        assert_eq!(
            packet_lines(&packets, &labels, false, None),
            [
                "client > server: SYN",
                "client c2 > closed port: udp 5",
                "server > client: ICMP port unreachable (about udp client c2 > closed port)",
                "client c2 > server: udp 0",
                "router > client: ICMP host unreachable (about tcp client > server)",
                "server > client: SYN-ACK",
            ]
        );
        // Every line is one the snapshot format reads back as typed.
        for line in packet_lines(&packets, &labels, false, None) {
            let e = Event::parse(Section::Wire, &line);
            assert!(!matches!(e, Event::Note(_)), "{line}");
        }
        // The TCP lines are those of the segments alone.
        let tcp_lines = lines(&tcp, &labels, false, None);
        let all = packet_lines(&packets, &labels, false, None);
        assert_eq!(tcp_lines, [all[0].clone(), all[5].clone()]);
        // Where retransmissions vary, so do the errors answering them: each is written once.
        let again = icmp(
            [192, 0, 2, 1],
            IcmpKind::HostUnreachable,
            (Transport::Tcp, 5000, 80),
        );
        let repeated = [packets.clone(), vec![again.clone(), again]].concat();
        assert_eq!(
            packet_lines(&repeated, &labels, false, None).len(),
            all.len() + 2
        );
        assert_eq!(packet_lines(&repeated, &labels, false, Some("x")), all);
    }

    #[test]
    fn bulk_probes_of_both_directions_in_turn_count_once_each() {
        let labels = BTreeMap::from([(80, "server".to_string()), (5000, "client".to_string())]);
        let mut c = seg(5000, 80, "PA", 5);
        c.seq = 100;
        let mut s = seg(80, 5000, "PA", 5);
        s.seq = 300;
        let mut cp = seg(5000, 80, "A", 0);
        cp.seq = 104;
        let mut sp = seg(80, 5000, "A", 0);
        sp.seq = 304;
        let probes = |n: usize| {
            let mut v = vec![c.clone(), s.clone()];
            for _ in 0..n {
                v.extend([cp.clone(), sp.clone()]);
            }
            v
        };
        let (few, many) = (
            lines(&probes(2), &labels, true, None),
            lines(&probes(5), &labels, true, None),
        );
        assert_eq!(few, many);
        assert_eq!(few.len(), 4, "{few:?}");
    }

    #[test]
    fn probes_and_retransmissions_are_recognized() {
        let labels = BTreeMap::from([(80, "server".to_string()), (5000, "client".to_string())]);
        let mut a = seg(5000, 80, "PA", 5);
        a.seq = 100;
        let mut probe = seg(5000, 80, "A", 0);
        probe.seq = 104;
        let mut pure_ack = seg(5000, 80, "A", 0);
        pure_ack.seq = 105;
        let ev = lines(&[a.clone(), probe, pure_ack], &labels, false, None);
        assert_eq!(
            ev,
            [
                "client > server: data 5",
                "client > server: probe (ACK below the next sequence number)"
            ]
        );
        let mut r = Vec::new();
        for ms in [0u64, 200, 600, 1400] {
            let mut x = a.clone();
            x.at = std::time::Duration::from_millis(ms);
            r.push(x);
        }
        assert_eq!(retransmissions(&r, 5000), 3);
        assert_eq!(
            retransmission_schedule(&r, 5000).unwrap(),
            "3 retransmission(s) of the same data; intervals 1x, 2x, 4x the first, which took 100 ms to 1 s"
        );
    }

    #[test]
    fn a_varying_retransmission_count_is_named_not_counted() {
        let labels = BTreeMap::from([(80, "server".to_string()), (5000, "client".to_string())]);
        let mut a = seg(5000, 80, "PA", 5);
        a.seq = 100;
        let three = [a.clone(), a.clone(), a.clone()];
        let four = [a.clone(), a.clone(), a.clone(), a];
        let why = Some("the rate limit decides");
        assert_eq!(
            lines(&three, &labels, false, why),
            lines(&four, &labels, false, why)
        );
        assert_eq!(
            lines(&three, &labels, false, why),
            ["client > server: data 5", "client > server: data 5 retransmitted, a varying number of times (the rate limit decides)"]
        );
    }

    #[test]
    fn connections_opened_in_bulk_are_counted_after_the_named_ones() {
        let labels = BTreeMap::from([(80, "server".to_string()), (5000, "client".to_string())]);
        let segs = [
            seg(6001, 80, "S", 0),
            seg(5000, 80, "S", 0),
            seg(80, 6001, "SA", 0),
            seg(6002, 80, "S", 0),
        ];
        assert_eq!(
            lines(&segs, &labels, false, None),
            [
                "client > server: SYN",
                "other > server: SYN (x2, connections opened in bulk)",
                "server > other: SYN-ACK (x1, connections opened in bulk)"
            ]
        );
    }

    #[test]
    fn an_observation_keeps_timing_events_apart_from_steps() {
        let mut o = Observation {
            case: "x/y".into(),
            intent: String::new(),
            steps: vec![],
            timing: vec![],
        };
        o.push(Event::call(
            "client",
            "read(10)",
            crate::proto::Outcome::Eof,
        ));
        o.push(Event::timing("client", "read(10)", "under 100 ms"));
        o.push(Event::runner("the network heals"));
        assert_eq!(
            o.steps,
            ["client: read(10) -> eof", "runner: the network heals"]
        );
        assert_eq!(o.timing, ["client: read(10): under 100 ms"]);
    }

    #[test]
    fn bulk_data_merges_per_direction() {
        let labels = BTreeMap::from([(80, "server".to_string()), (5000, "client".to_string())]);
        let segs = [
            seg(5000, 80, "PA", 100),
            seg(5000, 80, "PA", 200),
            seg(80, 5000, "FA", 0),
            seg(5000, 80, "PA", 7),
            seg(5000, 80, "FPA", 9),
        ];
        let ev = lines(&segs, &labels, true, None);
        assert_eq!(
            ev,
            [
                "client > server: data (bulk)",
                "server > client: FIN",
                "client > server: data (bulk)",
                "client > server: FIN"
            ]
        );
    }

    #[test]
    fn signature_lists_notable_outcomes() {
        let mut o = Observation {
            case: "x/y".into(),
            intent: String::new(),
            steps: vec![],
            timing: vec![],
        };
        o.steps.push("client: read(10) -> eof".into());
        o.steps
            .push("client: write(5) -> error(BrokenPipe, EPIPE)".into());
        let w = Wire::Captured {
            events: vec!["server > client: FIN".into()],
        };
        assert_eq!(signature(&o, &w), "server FIN, eof, BrokenPipe");
    }
}
