//! One typed event for every line an observation holds: a call and what it returned, a started
//! call, a checkpoint's TCP states, the runner's own notes, a reading (a measurement or a fact,
//! or the gap where it could not be taken), a timing bucket and a wire event.
//!
//! An event renders exactly the line a snapshot holds, and every snapshot line parses back into
//! the event that renders it. This module is the only place that takes snapshot text apart: the
//! agreement rule (`same`), the matrix and the explorer work on events.
//!
//! Parsing never loses a byte: a structured reading of a line is kept only when it renders the
//! line again exactly; a line of no known form is kept whole (`Event::Note`), and the snapshot
//! test checks that no committed line needs that fallback.

use crate::proto::Outcome;
use std::fmt;

/// Which list of an observation a line belongs to: the same text means different things in each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Steps,
    Timing,
    Wire,
}

impl Section {
    /// The title the matrix gives the section.
    pub fn title(self) -> &'static str {
        match self {
            Section::Steps => "steps",
            Section::Timing => "timing",
            Section::Wire => "wire",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `client: read(100) -> eof`, `runner: hard kill server -> process died (signal SIGKILL)`.
    Call(Call),
    /// `client: read(100) begins`: a call started, finished by a later step.
    Begins { who: String, op: String },
    /// `checkpoint end: client CLOSED, server TIME_WAIT; listener LISTEN`.
    Checkpoint(Checkpoint),
    /// `runner: fault: the network heals`: what the runner did or could not do, with no outcome.
    Runner(String),
    /// `kernel memory per connection (...): 4 KiB to 8 KiB`, `fact: unavailable (...)`.
    Reading { subject: String, value: Value },
    /// A step line of no other form, kept whole.
    Note(String),
    /// `client: read(10): about 1x (0.8x to 1.5x) the read timeout (200 ms)`.
    Timing { step: String, bucket: String },
    /// `client > server: RST-ACK`.
    Wire(WireEvent),
}

/// A call of an agent or of the runner, and what it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `client`, `server`, `client c2`, `runner`.
    pub who: String,
    /// The operation as the script prints it: `write(5, MSG_NOSIGNAL)`.
    pub op: String,
    pub result: Returned,
}

/// What a call came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Returned {
    /// What the call returned (or how the process ended in it).
    Outcome(Outcome),
    /// A terminated process ended within the grace it was given.
    DiedWithin { how: String, grace_ms: u64 },
    /// The call could not be made: its process had ended one step earlier.
    NotPerformed { how: String },
    /// A rebooted host took the server process with it.
    ServerDied { how: String },
    /// A call on a second thread had not returned when it was collected, this long after.
    StillBlocked { after_ms: u64 },
}

/// What a reading says: a value, or why it could not be taken here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Shown(String),
    Gap(Gap),
}

/// A measurement or state this platform cannot show: never a value, never a difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gap {
    /// `not visible (why)`: the platform does not show it (a table that does not list TIME_WAIT).
    NotVisible(String),
    /// `unavailable (why)`: this run could not take it (a file it may not read).
    Unavailable(String),
}

/// The TCP states of a case's sockets at a named point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub name: String,
    pub parts: Vec<Part>,
}

/// One `; `-separated part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// `c2 client ESTABLISHED, server CLOSE_WAIT` (no slot for the case's main connection).
    Conn {
        slot: Option<String>,
        client: End,
        server: End,
    },
    /// `listener LISTEN`.
    Listener(String),
}

/// One end of a connection at a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    State { state: String, queue: Option<Queue> },
    Gap(Gap),
}

/// The receive queue the kernel table reported for an end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// ` rx_queue=N`
    Bytes(u64),
    /// ` rx_queue>0`: bulk cases, whose exact figure is not stable.
    NonZero,
}

/// A line of the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireEvent {
    /// `client c2 > server: SYN`: `what` is the segment's event (`SYN-ACK`, `data 5`, ...).
    Sent {
        from: String,
        to: String,
        what: String,
    },
    /// `client > server: udp 5`: a UDP datagram of `len` payload bytes (`udp 0` when empty).
    /// In bulk cases (a send flood), consecutive datagrams of one length in one direction are
    /// one line, `udp 1400, repeated (bulk)`: their number is the case's outcome, not the wire's.
    Datagram {
        from: String,
        to: String,
        len: usize,
        repeated: bool,
    },
    /// `server > client: ICMP port unreachable (about udp client > closed port)`: an ICMP or
    /// ICMPv6 error, `kind` in the words both share (`host unreachable`, `packet too big (mtu
    /// 1280)`), about the packet it quotes. `from` and `to` name hosts: the host of an end
    /// (`client`, `server`), or `router` for an error from neither end of the packet.
    Icmp {
        from: String,
        to: String,
        kind: String,
        about: Flow,
    },
    /// A summary of the wire that names no endpoints (a retransmission schedule).
    Summary(String),
}

impl Event {
    /// The event a line of `section` stands for.
    pub fn parse(section: Section, line: &str) -> Event {
        let typed = match section {
            Section::Steps => parse_step(line),
            Section::Timing => line.rsplit_once(": ").map(|(step, bucket)| Event::Timing {
                step: step.into(),
                bucket: bucket.into(),
            }),
            Section::Wire => Some(Event::Wire(WireEvent::parse(line))),
        };
        // Kept only if it says exactly what the line said.
        match typed {
            Some(e) if e.to_string() == line => e,
            _ => Event::Note(line.into()),
        }
    }

    /// Every line of a list.
    pub fn parse_all(section: Section, lines: &[String]) -> Vec<Event> {
        lines.iter().map(|l| Event::parse(section, l)).collect()
    }

    /// An outcome line, as the runner writes it.
    pub fn call(who: impl Into<String>, op: impl fmt::Display, outcome: Outcome) -> Event {
        Event::returned(who, op, Returned::Outcome(outcome))
    }

    /// A call and what it came to, when that is more than an outcome.
    pub fn returned(who: impl Into<String>, op: impl fmt::Display, result: Returned) -> Event {
        Event::Call(Call {
            who: who.into(),
            op: op.to_string(),
            result,
        })
    }

    /// `runner: hard kill client -> process died (how)`: what one of the runner's own acts did.
    pub fn runner_call(op: impl fmt::Display, result: Returned) -> Event {
        Event::returned("runner", op, result)
    }

    /// A call that could not be made because its process had ended one step earlier.
    pub fn not_performed(
        who: impl Into<String>,
        op: impl fmt::Display,
        how: impl Into<String>,
    ) -> Event {
        Event::returned(who, op, Returned::NotPerformed { how: how.into() })
    }

    /// `client: read(100) begins`.
    pub fn begins(who: impl Into<String>, op: impl fmt::Display) -> Event {
        Event::Begins {
            who: who.into(),
            op: op.to_string(),
        }
    }

    /// `runner: NOTE`: what the runner did or could not do.
    pub fn runner(note: impl Into<String>) -> Event {
        Event::Runner(note.into())
    }

    /// `SUBJECT: VALUE`, a reading that was taken.
    pub fn shown(subject: impl Into<String>, value: impl Into<String>) -> Event {
        Event::Reading {
            subject: subject.into(),
            value: Value::Shown(value.into()),
        }
    }

    /// `SUBJECT: not visible (why)` or `SUBJECT: unavailable (why)`, a reading that could not be
    /// taken here.
    pub fn gap(subject: impl Into<String>, gap: Gap) -> Event {
        Event::Reading {
            subject: subject.into(),
            value: Value::Gap(gap),
        }
    }

    /// The timing line of a call, named as its step line names it (`client: read(10)`).
    pub fn timing(who: &str, op: impl fmt::Display, bucket: impl Into<String>) -> Event {
        Event::Timing {
            step: format!("{who}: {op}"),
            bucket: bucket.into(),
        }
    }
}

impl Gap {
    /// `not visible (why)`.
    pub fn not_visible(why: impl fmt::Display) -> Gap {
        Gap::NotVisible(why.to_string())
    }

    /// `unavailable (why)`.
    pub fn unavailable(why: impl fmt::Display) -> Gap {
        Gap::Unavailable(why.to_string())
    }
}

impl End {
    /// An end the table shows in `state`, without a queue figure.
    pub fn state(state: impl Into<String>) -> End {
        End::State {
            state: state.into(),
            queue: None,
        }
    }
}

/// The packet an ICMP line is about: `udp client > closed port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// `tcp` or `udp`.
    pub transport: String,
    pub from: String,
    pub to: String,
}

/// How a run of datagrams in a bulk case ends its line (see `WireEvent::Datagram`).
const REPEATED: &str = ", repeated (bulk)";

impl WireEvent {
    /// `FROM > TO: WHAT`.
    pub fn sent(from: &str, to: &str, what: impl fmt::Display) -> WireEvent {
        WireEvent::Sent {
            from: from.into(),
            to: to.into(),
            what: what.to_string(),
        }
    }
}

fn parse_step(line: &str) -> Option<Event> {
    if let Some(rest) = line.strip_prefix("checkpoint ") {
        return Checkpoint::parse(rest).map(Event::Checkpoint);
    }
    if let Some((head, result)) = line.split_once(" -> ") {
        let (who, op) = head.split_once(": ")?;
        return Some(Event::Call(Call {
            who: who.into(),
            op: op.into(),
            result: Returned::parse(result)?,
        }));
    }
    if let Some(head) = line.strip_suffix(" begins") {
        let (who, op) = head.split_once(": ")?;
        return Some(Event::Begins {
            who: who.into(),
            op: op.into(),
        });
    }
    if let Some(note) = line.strip_prefix("runner: ") {
        return Some(Event::Runner(note.into()));
    }
    let (subject, value) = line.split_once(": ")?;
    Some(Event::Reading {
        subject: subject.into(),
        value: match Gap::parse(value) {
            Some(gap) => Value::Gap(gap),
            None => Value::Shown(value.into()),
        },
    })
}

impl Returned {
    fn parse(s: &str) -> Option<Returned> {
        if let Some(how) = s
            .strip_prefix("not performed (the process had ended: ")
            .and_then(|r| r.strip_suffix(')'))
        {
            return Some(Returned::NotPerformed { how: how.into() });
        }
        if let Some(how) = s
            .strip_prefix("the server process died (")
            .and_then(|r| r.strip_suffix(')'))
        {
            return Some(Returned::ServerDied { how: how.into() });
        }
        if let Some(ms) = s
            .strip_prefix("still blocked after ")
            .and_then(|r| r.strip_suffix(" ms"))
        {
            return Some(Returned::StillBlocked {
                after_ms: ms.parse().ok()?,
            });
        }
        if let Some((died, grace)) = s.split_once(" within the grace period (") {
            let how = died.strip_prefix("process died (")?.strip_suffix(')')?;
            let ms = grace.strip_suffix(" ms)")?.parse().ok()?;
            return Some(Returned::DiedWithin {
                how: how.into(),
                grace_ms: ms,
            });
        }
        parse_outcome(s).map(Returned::Outcome)
    }

    /// The outcome of the call, when it returned one.
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            Returned::Outcome(o) => Some(o),
            _ => None,
        }
    }
}

/// The text `proto::Outcome` displays, back into the outcome.
pub fn parse_outcome(s: &str) -> Option<Outcome> {
    let inner = |p: &str| s.strip_prefix(p).and_then(|r| r.strip_suffix(')'));
    Some(match s {
        "ok" => Outcome::Ok,
        "eof" => Outcome::Eof,
        "no events" => Outcome::Events { events: Vec::new() },
        _ if s.starts_with("ok(") && s.contains(" connections)") => parse_many(s)?,
        _ if s.starts_with("no ") && s.ends_with(" ms") => {
            let (what, ms) = s["no ".len()..s.len() - " ms".len()].rsplit_once(" within ")?;
            Outcome::Nothing {
                what: what.into(),
                within_ms: ms.parse().ok()?,
            }
        }
        _ if s.starts_with("filled, then ") => Outcome::Filled {
            then: Box::new(parse_outcome(&s["filled, then ".len()..])?),
        },
        _ => {
            if let Some(n) = inner("ok(") {
                Outcome::Bytes { n: n.parse().ok()? }
            } else if let Some(note) = inner("ok (") {
                Outcome::OkWith { note: note.into() }
            } else if let Some(e) = inner("error(") {
                let (kind, code) = e.split_once(", ")?;
                Outcome::Error {
                    kind: kind.into(),
                    code: code.into(),
                }
            } else if let Some(ev) = inner("events(") {
                Outcome::Events {
                    events: ev.split('|').map(String::from).collect(),
                }
            } else if let Some(slot) = s
                .strip_prefix("not performed (no socket in slot ")
                .and_then(|r| r.strip_suffix(": the step that makes it failed)"))
            {
                Outcome::NoSocket { slot: slot.into() }
            } else if let Some(why) = inner("not supported (") {
                Outcome::NotSupported { why: why.into() }
            } else if let Some(state) = inner("state(") {
                Outcome::State {
                    state: state.into(),
                }
            } else {
                Outcome::Died {
                    how: inner("process died (")?.into(),
                }
            }
        }
    })
}

/// `ok(N connections)[, then OUTCOME][; R of N local ports were in use toward the previous listener]`.
fn parse_many(s: &str) -> Option<Outcome> {
    let (n, mut rest) = s.strip_prefix("ok(")?.split_once(" connections)")?;
    let mut reused_ports = None;
    if let Some((before, reused)) = rest.rsplit_once("; ") {
        let r = reused.strip_suffix(" local ports were in use toward the previous listener")?;
        reused_ports = Some(r.split_once(" of ")?.0.parse().ok()?);
        rest = before;
    }
    let then = match rest.strip_prefix(", then ") {
        Some(t) => Some(Box::new(parse_outcome(t)?)),
        None if rest.is_empty() => None,
        None => return None,
    };
    Some(Outcome::Many {
        n: n.parse().ok()?,
        then,
        reused_ports,
    })
}

impl Gap {
    /// `not visible (why)` or `unavailable (why)`, the whole text.
    pub fn parse(s: &str) -> Option<Gap> {
        let why = |p: &str| {
            let inner = s.strip_prefix(p)?.strip_suffix(')')?;
            // The explanation is one parenthesis: its own must balance.
            (top_level_find(inner, ")").is_none()).then(|| inner.to_string())
        };
        why("not visible (")
            .map(Gap::NotVisible)
            .or_else(|| why("unavailable (").map(Gap::Unavailable))
    }
}

impl Checkpoint {
    /// The text after `checkpoint `.
    fn parse(s: &str) -> Option<Checkpoint> {
        let (name, body) = s.split_once(": ")?;
        let parts = top_level_split(body, "; ")
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(Part::parse)
            .collect::<Option<Vec<Part>>>()?;
        Some(Checkpoint {
            name: name.into(),
            parts,
        })
    }
}

impl Part {
    fn parse(s: &str) -> Option<Part> {
        if let Some(state) = s.strip_prefix("listener ") {
            return Some(Part::Listener(state.into()));
        }
        let (slot, rest) = match s.strip_prefix("client ") {
            Some(rest) => (None, rest),
            None => {
                let (slot, rest) = s.split_once(" client ")?;
                (Some(slot.to_string()), rest)
            }
        };
        let (client, server) = match top_level_split(rest, ", server ").as_slice() {
            [c, s] => (End::parse(c)?, End::parse(s)?),
            _ => return None,
        };
        Some(Part::Conn {
            slot,
            client,
            server,
        })
    }

    /// `c2 client` / `client`, `c2 server` / `server`: how an end of this part is named.
    pub fn end_names(&self) -> Option<[String; 2]> {
        let Part::Conn { slot, .. } = self else {
            return None;
        };
        let prefix = slot.as_ref().map(|s| format!("{s} ")).unwrap_or_default();
        Some([format!("{prefix}client"), format!("{prefix}server")])
    }
}

impl End {
    fn parse(s: &str) -> Option<End> {
        if let Some(gap) = Gap::parse(s) {
            return Some(End::Gap(gap));
        }
        let (state, queue) = match s.split_once(" rx_queue") {
            Some((state, "=0")) => (state, Some(Queue::Bytes(0))),
            Some((state, ">0")) => (state, Some(Queue::NonZero)),
            Some((state, q)) => (
                state,
                Some(Queue::Bytes(q.strip_prefix('=')?.parse().ok()?)),
            ),
            None => (s, None),
        };
        (!state.is_empty() && !state.contains(' ')).then(|| End::State {
            state: state.into(),
            queue,
        })
    }
}

impl WireEvent {
    /// A datagram or ICMP line where the words say so (and render back as written), any other
    /// `FROM > TO: WHAT` a segment's line, anything else a summary.
    fn parse(line: &str) -> WireEvent {
        let Some((from, to, what)) = line.split_once(": ").and_then(|(head, what)| {
            let (from, to) = head.split_once(" > ")?;
            Some((from, to, what))
        }) else {
            return WireEvent::Summary(line.into());
        };
        let typed = Self::datagram(from, to, what).or_else(|| Self::icmp(from, to, what));
        match typed {
            Some(e) if e.to_string() == line => e,
            _ => WireEvent::sent(from, to, what),
        }
    }

    fn datagram(from: &str, to: &str, what: &str) -> Option<WireEvent> {
        let what = what.strip_prefix("udp ")?;
        let (len, repeated) = match what.strip_suffix(REPEATED) {
            Some(len) => (len, true),
            None => (what, false),
        };
        Some(WireEvent::Datagram {
            from: from.into(),
            to: to.into(),
            len: len.parse().ok()?,
            repeated,
        })
    }

    fn icmp(from: &str, to: &str, what: &str) -> Option<WireEvent> {
        let rest = what.strip_prefix("ICMP ")?.strip_suffix(')')?;
        let (kind, about) = rest.split_once(" (about ")?;
        let (transport, ends) = about.split_once(' ')?;
        let (a, b) = ends.split_once(" > ")?;
        Some(WireEvent::Icmp {
            from: from.into(),
            to: to.into(),
            kind: kind.into(),
            about: Flow {
                transport: transport.into(),
                from: a.into(),
                to: b.into(),
            },
        })
    }
}

/// Where `pat` first occurs outside parentheses.
fn top_level_find(s: &str, pat: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        if depth == 0 && s[i..].starts_with(pat) {
            return Some(i);
        }
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// `s` split at every `sep` outside parentheses (a `not visible (...)` holds commas of its own).
fn top_level_split<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = top_level_find(rest, sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    out.push(rest);
    out
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Call(c) => write!(f, "{}: {} -> {}", c.who, c.op, c.result),
            Event::Begins { who, op } => write!(f, "{who}: {op} begins"),
            Event::Checkpoint(c) => write!(f, "{c}"),
            Event::Runner(note) => write!(f, "runner: {note}"),
            Event::Reading { subject, value } => write!(f, "{subject}: {value}"),
            Event::Note(text) => f.write_str(text),
            Event::Timing { step, bucket } => write!(f, "{step}: {bucket}"),
            Event::Wire(w) => write!(f, "{w}"),
        }
    }
}

impl fmt::Display for Returned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Returned::Outcome(o) => write!(f, "{o}"),
            Returned::DiedWithin { how, grace_ms } => write!(
                f,
                "process died ({how}) within the grace period ({grace_ms} ms)"
            ),
            Returned::NotPerformed { how } => {
                write!(f, "not performed (the process had ended: {how})")
            }
            Returned::ServerDied { how } => write!(f, "the server process died ({how})"),
            Returned::StillBlocked { after_ms } => write!(f, "still blocked after {after_ms} ms"),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Shown(v) => f.write_str(v),
            Value::Gap(g) => write!(f, "{g}"),
        }
    }
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gap::NotVisible(why) => write!(f, "not visible ({why})"),
            Gap::Unavailable(why) => write!(f, "unavailable ({why})"),
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "checkpoint {}: ", self.name)?;
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Conn {
                slot,
                client,
                server,
            } => {
                if let Some(slot) = slot {
                    write!(f, "{slot} ")?;
                }
                write!(f, "client {client}, server {server}")
            }
            Part::Listener(state) => write!(f, "listener {state}"),
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::State { state, queue } => {
                f.write_str(state)?;
                match queue {
                    Some(Queue::Bytes(n)) => write!(f, " rx_queue={n}"),
                    Some(Queue::NonZero) => f.write_str(" rx_queue>0"),
                    None => Ok(()),
                }
            }
            End::Gap(g) => write!(f, "{g}"),
        }
    }
}

impl fmt::Display for WireEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireEvent::Sent { from, to, what } => write!(f, "{from} > {to}: {what}"),
            WireEvent::Datagram {
                from,
                to,
                len,
                repeated,
            } => {
                write!(f, "{from} > {to}: udp {len}")?;
                if *repeated {
                    f.write_str(REPEATED)?;
                }
                Ok(())
            }
            WireEvent::Icmp {
                from,
                to,
                kind,
                about,
            } => write!(
                f,
                "{from} > {to}: ICMP {kind} (about {} {} > {})",
                about.transport, about.from, about.to
            ),
            WireEvent::Summary(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(line: &str) -> Event {
        Event::parse(Section::Steps, line)
    }

    #[test]
    fn lines_parse_into_their_typed_form() {
        let Event::Call(c) = step("client: write(5, MSG_NOSIGNAL) -> error(BrokenPipe, EPIPE)")
        else {
            panic!("not a call")
        };
        assert_eq!(
            (c.who.as_str(), c.op.as_str()),
            ("client", "write(5, MSG_NOSIGNAL)")
        );
        assert_eq!(
            c.result.outcome(),
            Some(&Outcome::Error {
                kind: "BrokenPipe".into(),
                code: "EPIPE".into()
            })
        );
        let Event::Checkpoint(cp) = step("checkpoint end: c2 client ESTABLISHED rx_queue=5, server not visible (CLOSED, or TIME_WAIT, which this table does not list); listener LISTEN") else {
            panic!("not a checkpoint")
        };
        assert_eq!(cp.parts.len(), 2);
        let Part::Conn {
            slot,
            client,
            server,
        } = &cp.parts[0]
        else {
            panic!("{cp:?}")
        };
        assert_eq!(slot.as_deref(), Some("c2"));
        assert_eq!(
            *client,
            End::State {
                state: "ESTABLISHED".into(),
                queue: Some(Queue::Bytes(5))
            }
        );
        assert!(matches!(server, End::Gap(Gap::NotVisible(_))));
        assert!(matches!(
            step("kernel memory per connection: unavailable (cannot read the slab caches here)"),
            Event::Reading {
                value: Value::Gap(Gap::Unavailable(_)),
                ..
            }
        ));
        let blocked = "server l2: accept in a second thread (collected within 300 ms) -> still blocked after 300 ms";
        let Event::Call(c) = step(blocked) else {
            panic!("not a call")
        };
        assert_eq!(c.result, Returned::StillBlocked { after_ms: 300 });
        assert_eq!(step(blocked).to_string(), blocked);
        let Event::Call(c) =
            step("client: bind abstract name -> not supported (no abstract namespace on macos)")
        else {
            panic!("not a call")
        };
        assert_eq!(
            c.result.outcome(),
            Some(&Outcome::NotSupported {
                why: "no abstract namespace on macos".into()
            })
        );
        assert!(matches!(
            Event::parse(Section::Wire, "client c2 > server: SYN"),
            Event::Wire(WireEvent::Sent { .. })
        ));
    }

    #[test]
    fn datagram_and_icmp_lines_parse_into_their_typed_form_and_render_back() {
        let wire = |line: &str| Event::parse(Section::Wire, line);
        let udp = "client > server: udp 5";
        assert_eq!(
            wire(udp),
            Event::Wire(WireEvent::Datagram {
                from: "client".into(),
                to: "server".into(),
                len: 5,
                repeated: false
            })
        );
        let flood = "client > server: udp 1400, repeated (bulk)";
        assert!(matches!(
            wire(flood),
            Event::Wire(WireEvent::Datagram {
                repeated: true,
                len: 1400,
                ..
            })
        ));
        assert_eq!(wire(flood).to_string(), flood);
        let icmp = "server > client: ICMP port unreachable (about udp client > closed port)";
        let Event::Wire(WireEvent::Icmp {
            from,
            to,
            kind,
            about,
        }) = wire(icmp)
        else {
            panic!("not an ICMP line")
        };
        assert_eq!((from.as_str(), to.as_str()), ("server", "client"));
        assert_eq!(kind, "port unreachable");
        assert_eq!(
            about,
            Flow {
                transport: "udp".into(),
                from: "client".into(),
                to: "closed port".into()
            }
        );
        let too_big =
            "router > client c2: ICMP packet too big (mtu 1280) (about tcp client c2 > server)";
        assert!(
            matches!(wire(too_big), Event::Wire(WireEvent::Icmp { kind, .. }) if kind == "packet too big (mtu 1280)")
        );
        for line in [udp, icmp, too_big, "client > server: udp 0"] {
            assert_eq!(wire(line).to_string(), line);
        }
        // Near misses stay segment lines, whole.
        for line in ["client > server: udp 05", "client > server: ICMP odd"] {
            assert!(
                matches!(wire(line), Event::Wire(WireEvent::Sent { .. })),
                "{line}"
            );
            assert_eq!(wire(line).to_string(), line);
        }
    }

    #[test]
    fn a_line_of_no_known_form_is_kept_whole() {
        // An outcome that does not render back as written is not forced into a type.
        for line in [
            "client: read(100) -> ok(007)",
            "checkpoint x: client A B, server C",
        ] {
            assert_eq!(step(line), Event::Note(line.into()));
            assert_eq!(step(line).to_string(), line);
        }
    }

    #[test]
    fn many_connections_round_trip_with_both_tails() {
        for s in [
            "ok(10 connections)",
            "ok(4 connections), then error(AddrNotAvailable, EADDRNOTAVAIL)",
            "ok(4 connections), then error(Uncategorized, EMFILE); 3 of 4 local ports were in use toward the previous listener",
        ] {
            let o = parse_outcome(s).unwrap_or_else(|| panic!("{s}"));
            assert!(matches!(o, Outcome::Many { .. }), "{o:?}");
            assert_eq!(o.to_string(), s);
        }
    }

    #[test]
    fn nothing_received_round_trips() {
        let s = "no datagram within 100 ms";
        let o = parse_outcome(s).unwrap_or_else(|| panic!("{s}"));
        assert_eq!(
            o,
            Outcome::Nothing {
                what: "datagram".into(),
                within_ms: 100
            }
        );
        assert_eq!(o.to_string(), s);
        assert_eq!(
            parse_outcome("no events"),
            Some(Outcome::Events { events: Vec::new() })
        );
    }

    /// Every snapshot file committed under `snapshots/` (every platform, the explorer's corpus
    /// included).
    fn committed_snapshots() -> Vec<std::path::PathBuf> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir)
                .expect("snapshots/ is readable")
                .flatten()
            {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "snap") {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"),
            &mut out,
        );
        out.sort();
        out
    }

    /// The body rebuilt from typed events: each line parsed into its event and rendered again.
    fn rebuilt(body: &str, untyped: &mut Vec<String>) -> String {
        let mut typed = |section, lines: &[String]| -> Vec<String> {
            Event::parse_all(section, lines)
                .into_iter()
                .map(|e| {
                    if let Event::Note(n) = &e {
                        untyped.push(n.clone());
                    }
                    e.to_string()
                })
                .collect()
        };
        if let Ok(mut o) = serde_json::from_str::<crate::observe::Observation>(body) {
            o.steps = typed(Section::Steps, &o.steps);
            o.timing = typed(Section::Timing, &o.timing);
            return o.render();
        }
        let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        let case = v["case"].as_str().expect("a wire body names its case");
        let lines: Vec<String> = serde_json::from_value(v["wire"].clone()).expect("wire lines");
        let events = typed(Section::Wire, &lines);
        crate::observe::Wire::Captured { events }
            .render(case)
            .expect("captured")
    }

    #[test]
    fn every_committed_snapshot_parses_into_typed_events_and_renders_back_byte_for_byte() {
        let files = committed_snapshots();
        let corpus = files
            .iter()
            .filter(|p| p.to_string_lossy().contains("/explore/"));
        assert!(
            files.len() > 500 && corpus.count() > 100,
            "{} files",
            files.len()
        );
        let mut untyped = Vec::new();
        for path in &files {
            let body = crate::snapshot::read_body(path)
                .expect("readable")
                .expect("exists");
            assert_eq!(rebuilt(&body, &mut untyped), body, "{}", path.display());
        }
        // Round-tripping through the fallback would prove nothing: every line has its type.
        assert!(untyped.is_empty(), "lines of no known form: {untyped:#?}");
    }
}
