//! The wait before each step (but option setters and checkpoints) of a case that asks for it
//! (`Case::settle_between_moves`: the explorer's scripts, which have no await steps), on a stack that processes segments after the
//! call returns (gVisor). There a move that looks at the peer's last move (a zero-timeout poll,
//! a read, a checkpoint) would race the segments that move sent. So the runner waits, bounded,
//! until the stack is quiet:
//! - every FIN or RST a step caused is on the wire;
//! - every SYN, data or FIN a side sent is acknowledged or answered by a reset (the ACK proves
//!   the peer's stack has processed it), unless the peer's window is closed (then it waits for
//!   the application, not for the stack);
//! - no socket of the case is in a transient state (but behind a closed window);
//! - neither the capture nor the case's table entries changed for `QUIET_GAP`.
//!
//! On a stack that handles each segment within the sending call (Linux loopback) nothing is
//! waited for and nothing is written. A wait met writes nothing; one not met within its deadline
//! writes a line (the move then goes ahead: a real race is still seen as one); without a capture
//! only the table can be waited for, and the observation says so once.

use super::checkpoint::{entry_key, tables, EntryKey};
use super::endpoints::canonical;
use super::host::Net;
use super::waits::{wait_until, Waited};
use super::CaseWalk;
use crate::observe::event::Event;
use crate::script::{Op, Side, Step};
use platforms::wire::Segment;
use platforms::TcpEntry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long the runner waits for the stack to go quiet before one step.
const QUIET_DEADLINE: Duration = Duration::from_secs(2);
/// How long the capture and the table must stay unchanged: gVisor puts a segment on the wire
/// within a few milliseconds of the call that caused it on this machine, even under load.
const QUIET_GAP: Duration = Duration::from_millis(50);

/// Whether, and how, the walk waits for quiet before each step.
pub(super) struct Quiet {
    /// The case asks for it and the stack is asynchronous.
    pub(super) on: bool,
    /// The line saying that segments in flight cannot be seen here was written.
    said_no_capture: bool,
}

impl Quiet {
    pub(super) fn new(asked: bool, synchronous: bool) -> Quiet {
        Quiet {
            on: asked && !synchronous,
            said_no_capture: false,
        }
    }
}

/// Whether the stack must be quiet before this step: not before a checkpoint (which settles the
/// table itself), nor before setting an option of one's own socket, which neither looks at the
/// peer's last move nor sends anything (the wait before the next step covers both).
pub(super) fn looks_or_sends(step: &Step) -> bool {
    match step {
        Step::Checkpoint(_) => false,
        Step::Do(a) => !matches!(
            a.op,
            Op::SetLinger { .. }
                | Op::SetNonblocking { .. }
                | Op::SetReadTimeout { .. }
                | Op::SetWriteTimeout { .. }
                | Op::SetRecvBuffer { .. }
                | Op::SetSendBuffer { .. }
                | Op::SetUserTimeout { .. }
                | Op::SetKeepalive { .. }
                | Op::SigpipeDefault
        ),
        _ => true,
    }
}

/// A value that must stay the same for a while: remembers it and since when it has held.
#[derive(Default)]
struct Still<T> {
    last: Option<(T, Instant)>,
}

impl<T: PartialEq> Still<T> {
    /// Whether `now` equals the remembered value and has for at least `gap`.
    fn held(&mut self, now: T, gap: Duration) -> bool {
        match &self.last {
            Some((prev, since)) if *prev == now => since.elapsed() >= gap,
            _ => {
                self.last = Some((now, Instant::now()));
                false
            }
        }
    }
}

impl CaseWalk {
    /// Wait until the stack is quiet before the next step, if the case asks for it here;
    /// returns the observation's line when the wait was not met or could not be made in full.
    pub(super) fn quiet_before_step(&mut self) -> Option<Event> {
        if !self.quiet.on {
            return None;
        }
        let capture = self.tap.capture();
        let mut still = Still::default();
        let found = wait_until::<Infallible>(Instant::now() + QUIET_DEADLINE, || {
            let segs = capture.map(|c| c.segments()).unwrap_or_default();
            let ours = self.our_entries();
            let why = self.restless(&segs, &ours);
            // gVisor lists the entries in another order at each read.
            let mut keys: Vec<EntryKey> = ours.iter().map(entry_key).collect();
            keys.sort_by_key(|(l, r, st)| (*l, *r, st.name()));
            keys.dedup();
            let stable = still.held((segs.len(), keys), QUIET_GAP);
            Ok(match why {
                Some(why) => Waited::NotMet(why),
                None if stable => Waited::Met,
                None => Waited::NotMet("segments or states still changing".into()),
            })
        });
        let found = match found {
            Ok(w) => w,
            Err(never) => match never {},
        };
        let no_capture =
            capture.is_none() && !std::mem::replace(&mut self.quiet.said_no_capture, true);
        let waited = match found {
            Waited::Met if no_capture => Waited::CannotObserve("no capture".into()),
            other => other,
        };
        waited.event(
            |why| format!("the stack was not quiet within {QUIET_DEADLINE:?} before the next step ({why})"),
            |why| format!("cannot see segments in flight before each step ({why}): waited for a stable TCP table only"),
        )
    }

    /// The case's entries of both tables (an unreadable table shows none). On loopback both
    /// sides' sockets are in one table, read once: a read of gVisor's takes several ms.
    fn our_entries(&self) -> Vec<TcpEntry> {
        let t = match self.net {
            Net::Local { .. } => vec![self.net.tcp_table(Side::Client).unwrap_or_default()],
            Net::Lab(_) => tables(&self.net).unwrap_or_default().to_vec(),
        };
        t.into_iter()
            .flatten()
            .filter(|e| self.is_ours(e))
            .collect()
    }

    /// What is still moving, if anything (the gap aside): a FIN or RST not yet sent, a segment
    /// not yet answered, a transient state.
    fn restless(&self, segs: &[Segment], ours: &[TcpEntry]) -> Option<String> {
        if let Some(end) = self
            .tables
            .closing
            .iter()
            .find(|w| !closed_on_wire(segs, **w) && !window_closed_to(segs, **w))
        {
            return Some(format!(
                "the {}'s FIN or RST is not on the wire yet",
                self.ends.name_of(*end)
            ));
        }
        for &(c, s) in self.ends.conns.values() {
            for (from, to) in [(c, s), (s, c)] {
                let (from, to) = (canonical(from), canonical(to));
                if unanswered(segs, from, to) == Answer::Pending {
                    return Some(format!(
                        "the {}'s segment is not acknowledged yet",
                        self.ends.name_of(from)
                    ));
                }
            }
        }
        if let Some(side) = self
            .ends
            .wrote
            .iter()
            .find(|side| !self.data_seen(segs, **side))
        {
            return Some(format!("the {side}'s data is not on the wire yet"));
        }
        // A closing end whose peer's window is closed stays in FIN_WAIT1 or LAST_ACK until the
        // peer's application reads (a client that filled the buffer and was killed).
        let moving = ours.iter().find(|e| {
            e.state.is_transient()
                && !window_closed_to(segs, e.local)
                && !window_closed_to(segs, e.remote)
        });
        moving.map(|e| format!("an end is in {}", e.state.name()))
    }

    /// Whether the capture shows data from the side on the main connection.
    fn data_seen(&self, segs: &[Segment], side: crate::script::Side) -> bool {
        let Some(&(c, s)) = self.ends.conns.get(&crate::script::Slot::CONN) else {
            return true;
        };
        let from = canonical(if side == crate::script::Side::Client {
            c
        } else {
            s
        });
        segs.iter()
            .any(|x| canonical(x.src) == from && x.payload > 0)
            || segs
                .iter()
                .any(|x| x.rst && (canonical(x.src) == from || canonical(x.dst) == from))
    }
}

/// Whether an endpoint a step closed has sent its FIN or RST, or has nothing to send because its
/// connection was reset.
fn closed_on_wire(segs: &[Segment], end: SocketAddr) -> bool {
    let end = canonical(end);
    segs.iter().any(|s| {
        (canonical(s.src) == end && (s.fin || s.rst)) || (canonical(s.dst) == end && s.rst)
    })
}

/// Whether the last segment `end` received that announces a window announced none: then its FIN
/// waits behind its unsent data for the peer's application to read.
fn window_closed_to(segs: &[Segment], end: SocketAddr) -> bool {
    let end = canonical(end);
    let last = segs
        .iter()
        .rev()
        .find(|s| canonical(s.dst) == end && !s.rst);
    last.is_some_and(|s| s.window == 0)
}

/// Where the last segment that takes sequence space in one direction stands.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Acknowledged, reset after it, or there is none.
    Done,
    /// Not answered, and the peer's window is open: the peer's stack has yet to process it.
    Pending,
    /// Not answered because the peer's window is closed: it waits for the peer's application.
    Stalled,
}

/// How the last SYN, data or FIN from `from` to `to` (canonical addresses) was answered.
fn unanswered(segs: &[Segment], from: SocketAddr, to: SocketAddr) -> Answer {
    let dir =
        |s: &Segment, a: SocketAddr, b: SocketAddr| canonical(s.src) == a && canonical(s.dst) == b;
    let Some(last) = segs
        .iter()
        .rposition(|s| dir(s, from, to) && (s.syn || s.fin || s.payload > 0))
    else {
        return Answer::Done;
    };
    let s = &segs[last];
    let end = s
        .seq
        .wrapping_add(s.payload as u32 + u32::from(s.syn) + u32::from(s.fin));
    // At or past the end, modulo 2^32.
    let acked = segs
        .iter()
        .any(|x| dir(x, to, from) && x.ack && x.ack_no.wrapping_sub(end) < (1 << 31));
    let reset = segs[last + 1..]
        .iter()
        .any(|x| x.rst && (dir(x, to, from) || dir(x, from, to)));
    if acked || reset {
        return Answer::Done;
    }
    // The window of the peer's last segment that announces one (a reset's means nothing).
    match segs.iter().rev().find(|x| dir(x, to, from) && !x.rst) {
        Some(back) if back.window == 0 => Answer::Stalled,
        _ => Answer::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: &str = "127.0.0.1:40000";
    const S: &str = "127.0.0.1:5000";

    /// A segment from `src` to `dst` with the given flags ("S", "A", "F", "R"), seq, ack, window
    /// and payload.
    fn seg(
        src: &str,
        dst: &str,
        flags: &str,
        seq: u32,
        ack_no: u32,
        window: u16,
        payload: usize,
    ) -> Segment {
        Segment {
            at: Duration::ZERO,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            syn: flags.contains('S'),
            ack: flags.contains('A'),
            fin: flags.contains('F'),
            rst: flags.contains('R'),
            psh: false,
            seq,
            ack_no,
            window,
            payload,
        }
    }

    fn answer(segs: &[Segment]) -> Answer {
        unanswered(segs, C.parse().unwrap(), S.parse().unwrap())
    }

    #[test]
    fn data_is_pending_until_acknowledged() {
        let data = seg(C, S, "A", 1, 1, 100, 5);
        assert_eq!(answer(std::slice::from_ref(&data)), Answer::Pending);
        assert_eq!(
            answer(&[data.clone(), seg(S, C, "A", 1, 4, 100, 0)]),
            Answer::Pending
        );
        assert_eq!(answer(&[data, seg(S, C, "A", 1, 6, 100, 0)]), Answer::Done);
    }

    #[test]
    fn a_fin_takes_one_sequence_number() {
        let fin = seg(C, S, "AF", 6, 1, 100, 0);
        assert_eq!(
            answer(&[fin.clone(), seg(S, C, "A", 1, 6, 100, 0)]),
            Answer::Pending
        );
        assert_eq!(answer(&[fin, seg(S, C, "A", 1, 7, 100, 0)]), Answer::Done);
    }

    #[test]
    fn a_reset_after_the_segment_answers_it_but_one_before_does_not() {
        let data = seg(C, S, "A", 1, 1, 100, 5);
        let rst = seg(S, C, "R", 1, 0, 0, 0);
        assert_eq!(answer(&[data.clone(), rst.clone()]), Answer::Done);
        assert_eq!(answer(&[rst, data.clone()]), Answer::Pending);
        assert_eq!(answer(&[data, seg(C, S, "AR", 6, 1, 0, 0)]), Answer::Done);
    }

    #[test]
    fn data_behind_a_closed_window_is_stalled_not_pending() {
        let segs = [seg(C, S, "A", 1, 1, 100, 5), seg(S, C, "A", 1, 1, 0, 0)];
        assert_eq!(answer(&segs), Answer::Stalled);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let data = seg(C, S, "A", u32::MAX - 1, 1, 100, 5);
        assert_eq!(
            answer(&[data.clone(), seg(S, C, "A", 1, 3, 100, 0)]),
            Answer::Done
        );
        assert_eq!(
            answer(&[data, seg(S, C, "A", 1, 2, 100, 0)]),
            Answer::Pending
        );
    }

    #[test]
    fn a_closed_end_is_on_the_wire_with_its_fin_or_rst_or_a_reset_to_it() {
        let c: SocketAddr = C.parse().unwrap();
        assert!(!closed_on_wire(&[seg(C, S, "A", 1, 1, 100, 5)], c));
        assert!(closed_on_wire(&[seg(C, S, "AF", 1, 1, 100, 0)], c));
        assert!(closed_on_wire(&[seg(S, C, "R", 1, 0, 0, 0)], c));
    }

    #[test]
    fn a_fin_waits_behind_a_closed_window() {
        let s: SocketAddr = S.parse().unwrap();
        assert!(!window_closed_to(&[seg(C, S, "A", 1, 1, 100, 0)], s));
        assert!(window_closed_to(&[seg(C, S, "A", 1, 1, 0, 0)], s));
        assert!(!window_closed_to(
            &[seg(C, S, "A", 1, 1, 0, 0), seg(C, S, "A", 1, 1, 10, 0)],
            s
        ));
    }

    #[test]
    fn a_value_holds_only_after_the_gap() {
        let mut still = Still::default();
        assert!(!still.held(1, Duration::ZERO));
        assert!(still.held(1, Duration::ZERO));
        assert!(!still.held(2, Duration::ZERO));
        assert!(!still.held(2, Duration::from_secs(60)));
    }
}
