//! Every wait of a script, on one loop: `wait_until` looks at a condition until it is met, cannot
//! be observed here, or its deadline passes. Each wait is a condition and its words for each
//! result; `Waited::event` alone turns a wait that was not met, or could not be made, into the
//! observation's event, a note of the runner (a met wait records nothing).

use super::endpoints::canonical;
use super::{step_deadline, CaseWalk};
use crate::observe::{self, event::Event};
use crate::proto::{Outcome, Request};
use crate::script::{Op, Side, Slot, TcpState};
use platforms::wire::Segment;
use platforms::Capture;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long an explicit await may wait for a state.
const AWAIT_DEADLINE: Duration = Duration::from_secs(5);

/// Pauses between polls of an observable condition: 1 ms at first, growing to 10 ms, so a quick
/// condition is seen at once while a slow one does not flood a platform whose table is costly to
/// read (GetTcpTable2 under Wine took about 20 ms a call; polling it every 1 ms from every case
/// stalled the run).
pub struct Backoff(Duration);

impl Backoff {
    pub fn new() -> Backoff {
        Backoff(Duration::from_millis(1))
    }

    pub fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 3 / 2).min(Duration::from_millis(10));
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

/// What one look at a condition found, and what a wait found in the end (its last look).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    Met,
    /// Not met (yet), with what was seen instead ("" when there is nothing to tell).
    NotMet(String),
    /// This platform cannot show the condition, and why: never a timeout.
    CannotObserve(String),
}

impl Waited {
    /// Met, or not met with nothing more to tell.
    pub(crate) fn met_if(met: bool) -> Waited {
        if met {
            Waited::Met
        } else {
            Waited::NotMet(String::new())
        }
    }

    /// A wait on the wire where nothing is captured.
    fn no_capture() -> Waited {
        Waited::CannotObserve("no capture".into())
    }

    /// The runner's note for what a wait found: none when it was met, else the wait's own words
    /// for not met (given what was seen) or for cannot observe (given why).
    pub(super) fn event(
        self,
        not_met: impl FnOnce(String) -> String,
        cannot: impl FnOnce(String) -> String,
    ) -> Option<Event> {
        match self {
            Waited::Met => None,
            Waited::NotMet(seen) => Some(Event::runner(not_met(seen))),
            Waited::CannotObserve(why) => Some(Event::runner(cannot(why))),
        }
    }
}

/// Look at a condition until it is met or cannot be observed, or until the deadline has passed
/// (then the last look's NotMet is the result), pausing with Backoff between looks. An error
/// from a look (a table that cannot be read) ends the wait with it.
pub(crate) fn wait_until<E>(
    deadline: Instant,
    mut look: impl FnMut() -> Result<Waited, E>,
) -> Result<Waited, E> {
    let mut pause = Backoff::new();
    loop {
        match look()? {
            Waited::NotMet(_) if Instant::now() < deadline => pause.wait(),
            found => return Ok(found),
        }
    }
}

/// A wait on the captured wire. The capture wakes its waiter on each new batch of segments, so a
/// look blocks on that (until the deadline) instead of sleeping; without a capture the wait
/// cannot be made.
pub(super) fn on_wire(
    capture: Option<&Capture>,
    deadline: Instant,
    seen: impl Fn(&[Segment]) -> bool,
) -> Waited {
    let Some(c) = capture else {
        return Waited::no_capture();
    };
    let found =
        wait_until::<Infallible>(deadline, || Ok(Waited::met_if(c.wait_for(deadline, &seen))));
    match found {
        Ok(w) => w,
        Err(never) => match never {},
    }
}

/// Whether the peer acknowledged (or reset) every byte one end sent: `from` -> `to`, canonical.
fn acknowledged(segs: &[Segment], from: SocketAddr, to: SocketAddr, wrote: bool) -> bool {
    let sent_end = segs
        .iter()
        .filter(|s| canonical(s.src) == from && canonical(s.dst) == to && s.payload > 0)
        .map(|s| s.seq.wrapping_add(s.payload as u32))
        .next_back();
    // Data the side wrote but the capture has not seen yet is still to come: gVisor sends after
    // write() returns (a wait that passed on "nothing sent" let a failed accept() race the data
    // in limits/accept_out_of_fds).
    if sent_end.is_none() && wrote {
        return false;
    }
    // Acknowledged (ack_no at or past the end, modulo 2^32), or answered with a reset: either way
    // the peer's stack has processed it.
    sent_end.is_none_or(|end| {
        segs.iter().any(|s| {
            canonical(s.src) == to && (s.rst || (s.ack && s.ack_no.wrapping_sub(end) < (1 << 31)))
        })
    })
}

impl CaseWalk {
    /// Wait until the side's agent is asleep in its started call.
    pub(super) fn await_blocked(
        &mut self,
        side: Side,
        deadline: Instant,
    ) -> Result<Option<Event>, String> {
        let pid = self.agents.get(side).child.id();
        let waited = wait_until::<String>(deadline, || {
            Ok(match platforms::is_blocked(pid) {
                Some(true) => Waited::Met,
                Some(false) => Waited::NotMet(String::new()),
                None => Waited::CannotObserve(String::new()),
            })
        })?;
        Ok(waited.event(
            |_| format!("could not observe {side} blocked in its call"),
            |_| format!("cannot observe whether the {side} is blocked in its call on this platform; not waited for"),
        ))
    }

    /// Wait until data waits unread in the side's connection. Only the socket's owner can ask it
    /// (FIONREAD, which every platform answers; kernel tables may show no receive queue at all:
    /// Windows, gVisor), so the agent runs the wait loop and its reply is the wait's last look.
    pub(super) fn await_unread(&mut self, side: Side) -> Result<Option<Event>, String> {
        let req = Request {
            slot: Slot::CONN,
            op: Op::AwaitUnread {
                wait_ms: AWAIT_DEADLINE.as_millis() as u64,
            },
            addr: None,
            unix: None,
            thread: None,
        };
        let agent = self.agents.get(side);
        agent.send(&req)?;
        let reply = agent.receive(Instant::now() + AWAIT_DEADLINE + step_deadline())?;
        let waited = match reply.outcome {
            Outcome::Bytes { n } if n > 0 => Waited::Met,
            Outcome::Bytes { .. } => Waited::NotMet(String::new()),
            other => Waited::CannotObserve(format!("FIONREAD -> {other}")),
        };
        Ok(waited.event(
            |_| format!("no data reached the {side} within {AWAIT_DEADLINE:?}"),
            |why| format!("cannot see the {side}'s unread data here ({why}); not waited for"),
        ))
    }

    /// Wait until the side's end of the main connection reaches one of `states`.
    pub(super) fn await_state(
        &mut self,
        side: Side,
        states: &[TcpState],
    ) -> Result<Option<Event>, String> {
        let want: Vec<_> = states.iter().map(|s| s.name()).collect();
        let want = want.join(" or ");
        // A wait for states this table never lists cannot be performed: said at once instead of
        // timing out.
        let unlisted = states.iter().all(|s| self.tables.view.unlisted.contains(s));
        let waited = wait_until::<String>(Instant::now() + AWAIT_DEADLINE, || {
            if unlisted {
                return Ok(Waited::CannotObserve(
                    "this platform's table does not list it".into(),
                ));
            }
            let now = self.end_state(side, Slot::CONN)?;
            Ok(if states.contains(&now) {
                Waited::Met
            } else {
                Waited::NotMet(now.name().into())
            })
        })?;
        Ok(waited.event(
            |now| format!("{side} end never reached {want} within {AWAIT_DEADLINE:?}; it is {now}"),
            |why| format!("cannot wait for the {side} end to reach {want}: {why}"),
        ))
    }

    /// Wait until the capture shows the peer's stack acknowledged every byte the side sent on
    /// the main connection.
    pub(super) fn await_acked(&mut self, side: Side, deadline: Instant) -> Option<Event> {
        // What this platform cannot do comes first; a script without the connection second.
        let conn = self.ends.conns.get(&Slot::CONN).copied();
        let waited = match (self.tap.capture(), conn) {
            (None, _) => Waited::no_capture(),
            (Some(_), None) => Waited::CannotObserve("no connection".into()),
            (capture, Some((client, server))) => {
                let (from, to) = match side {
                    Side::Client => (canonical(client), canonical(server)),
                    Side::Server => (canonical(server), canonical(client)),
                };
                let wrote = self.ends.wrote.contains(&side);
                on_wire(capture, deadline, |segs| {
                    acknowledged(segs, from, to, wrote)
                })
            }
        };
        waited.event(
            |_| format!("did not observe the {side}'s data acknowledged"),
            |why| format!("cannot wait for the {side}'s data to be acknowledged ({why})"),
        )
    }

    /// Wait until the capture shows `n` SYNs from the client.
    pub(super) fn await_syns(&mut self, n: u32, deadline: Instant) -> Option<Event> {
        let host = self.ends.host;
        on_wire(self.tap.capture(), deadline, |segs| {
            segs.iter()
                .filter(|s| s.syn && !s.ack && s.dst.ip() == host)
                .count()
                >= n as usize
        })
        .event(
            |_| format!("did not observe {n} SYN(s) from the client"),
            |why| format!("cannot wait for {n} SYN(s) from the client ({why})"),
        )
    }

    /// Wait until the capture shows the client's data retransmitted `n` times.
    pub(super) fn await_retransmits(&mut self, n: u32, deadline: Instant) -> Option<Event> {
        let port = self.ends.client_ports.get(&Slot::CONN).copied();
        let waited = match (self.tap.capture(), port) {
            (None, _) => Waited::no_capture(),
            (Some(_), None) => Waited::CannotObserve("no client connection".into()),
            (capture, Some(port)) => on_wire(capture, deadline, |segs| {
                observe::retransmissions(segs, port) >= n as usize
            }),
        };
        waited.event(
            |_| format!("did not observe {n} retransmission(s) of the client's data"),
            |why| format!("cannot wait for {n} retransmission(s) of the client's data ({why})"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn a_condition_met_at_once_is_met_after_one_look() {
        let mut looks = 0;
        let found = wait_until::<Infallible>(soon(5_000), || {
            looks += 1;
            Ok(Waited::Met)
        });
        assert_eq!(found, Ok(Waited::Met));
        assert_eq!(looks, 1);
    }

    #[test]
    fn a_condition_met_later_is_met_when_it_holds() {
        let mut looks = 0;
        let found = wait_until::<Infallible>(soon(5_000), || {
            looks += 1;
            Ok(if looks == 3 {
                Waited::Met
            } else {
                Waited::NotMet(format!("look {looks}"))
            })
        });
        assert_eq!(found, Ok(Waited::Met));
        assert_eq!(looks, 3);
    }

    #[test]
    fn a_condition_never_met_is_not_met_at_the_deadline_with_the_last_look() {
        let start = Instant::now();
        let mut looks = 0;
        let found = wait_until::<Infallible>(soon(30), || {
            looks += 1;
            Ok(Waited::NotMet(format!("look {looks}")))
        });
        assert!(
            start.elapsed() >= Duration::from_millis(30),
            "gave up early"
        );
        assert_eq!(found, Ok(Waited::NotMet(format!("look {looks}"))));
        assert!(looks > 1, "looked only once");
    }

    #[test]
    fn a_condition_that_cannot_be_observed_ends_the_wait_at_once() {
        let start = Instant::now();
        let mut looks = 0;
        let found = wait_until::<Infallible>(soon(5_000), || {
            looks += 1;
            Ok(Waited::CannotObserve("no such table".into()))
        });
        assert_eq!(found, Ok(Waited::CannotObserve("no such table".into())));
        assert_eq!(looks, 1);
        assert!(start.elapsed() < Duration::from_secs(1), "it waited");
    }

    #[test]
    fn a_look_that_fails_ends_the_wait_with_its_error() {
        let found = wait_until(soon(5_000), || Err::<Waited, _>("cannot read the table"));
        assert_eq!(found, Err("cannot read the table"));
    }

    #[test]
    fn a_wait_on_the_wire_without_capture_cannot_observe() {
        let found = on_wire(None, soon(5_000), |_| panic!("no segments to look at"));
        assert_eq!(found, Waited::CannotObserve("no capture".into()));
    }

    /// The line an event renders, as the snapshot holds it.
    fn text(e: Option<Event>) -> Option<String> {
        e.map(|e| e.to_string())
    }

    /// A walk on a run without capture (no agents are needed for waits on the wire).
    fn walk_without_capture() -> CaseWalk {
        let no = || Err("not probed in this test".to_string());
        let cfg = super::super::RunConfig {
            agent_exe: "sockconform-agent".into(),
            isolation: no(),
            capture: Err("needs CAP_NET_RAW".into()),
            lab: no(),
            ipv6: no(),
            table: crate::visibility::TableView::complete(),
            sysctl: no(),
        };
        CaseWalk::new(&crate::script::Case::new("Verify: nothing", vec![]), &cfg)
    }

    #[test]
    fn waits_on_the_wire_without_capture_say_they_cannot_wait() {
        let mut walk = walk_without_capture();
        let deadline = soon(5_000);
        let start = Instant::now();
        assert_eq!(
            text(walk.await_syns(2, deadline)).as_deref(),
            Some("runner: cannot wait for 2 SYN(s) from the client (no capture)")
        );
        assert_eq!(
            text(walk.await_retransmits(3, deadline)).as_deref(),
            Some("runner: cannot wait for 3 retransmission(s) of the client's data (no capture)")
        );
        assert_eq!(
            text(walk.await_acked(Side::Server, deadline)).as_deref(),
            Some("runner: cannot wait for the server's data to be acknowledged (no capture)")
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "a wait it cannot make took time"
        );
    }

    #[test]
    fn only_a_wait_not_met_or_not_made_writes_a_line() {
        let words = |w: Waited| {
            w.event(
                |seen| format!("not met: {seen}"),
                |why| format!("cannot: {why}"),
            )
        };
        assert_eq!(words(Waited::Met), None);
        assert_eq!(
            words(Waited::NotMet("CLOSE_WAIT".into())),
            Some(Event::Runner("not met: CLOSE_WAIT".into()))
        );
        assert_eq!(
            text(words(Waited::CannotObserve("no capture".into()))).as_deref(),
            Some("runner: cannot: no capture")
        );
    }
}
