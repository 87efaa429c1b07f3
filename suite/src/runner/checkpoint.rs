//! Checkpoints: the TCP states of the case's connections and listener, read from the kernel's
//! tables once they have settled, and the settling itself.

use super::endpoints::canonical;
use super::host::Net;
use super::waits::{on_wire, wait_until, Waited};
use super::{CaseWalk, RunConfig};
use crate::observe::event::{Checkpoint, End, Event, Part, Queue};
use crate::script::{Case, Side, Slot, Step, TcpState};
use crate::visibility::TableView;
use platforms::TcpEntry;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a checkpoint waits for transient TCP states (FIN_WAIT1, LAST_ACK...) to settle.
const SETTLE_DEADLINE: Duration = Duration::from_secs(1);
/// What identifies one table entry of the case, for telling whether the table still changes.
pub(super) type EntryKey = (SocketAddr, SocketAddr, TcpState);

/// The key of one table entry.
pub(super) fn entry_key(e: &TcpEntry) -> EntryKey {
    (e.local, e.remote, e.state)
}

/// How long the case's table entries must stay the same before a checkpoint reads them, on a
/// stack that processes segments after the sending call returns.
const QUIET: Duration = Duration::from_millis(300);
/// How long a checkpoint on such a stack waits for a closed endpoint's FIN or RST on the wire.
const CLOSING_DEADLINE: Duration = Duration::from_secs(5);

/// What the walk knows of the TCP tables.
pub(super) struct Tables {
    /// What this platform's table can show.
    pub(super) view: TableView,
    /// The case moves bulk data: queue sizes are not stable, so only "rx_queue>0" is shown.
    bulk: bool,
    /// Connection endpoints whose FIN or RST a step has caused (close, shutdown, the process's
    /// end) and a checkpoint on an asynchronous stack waits to see on the wire.
    pub(super) closing: Vec<SocketAddr>,
    /// The last step was a checkpoint, which settled the table (or waited its deadline for it).
    pub(super) settled: bool,
}

impl Tables {
    pub(super) fn new(case: &Case, cfg: &RunConfig) -> Tables {
        Tables {
            view: cfg.table.clone(),
            bulk: case.is_bulk(),
            closing: Vec::new(),
            settled: false,
        }
    }
}

/// Both sides' tables, client first.
pub(super) fn tables(net: &Net) -> Result<[Vec<TcpEntry>; 2], String> {
    Ok([net.tcp_table(Side::Client)?, net.tcp_table(Side::Server)?])
}

impl CaseWalk {
    /// The state of one end of a client connection; a socket the kernel no longer has is CLOSED.
    pub(super) fn end_state(&self, side: Side, slot: Slot) -> Result<TcpState, String> {
        let &(c, s) = self
            .ends
            .conns
            .get(&slot)
            .ok_or_else(|| format!("no connection in slot {slot}"))?;
        let t = self.net.tcp_table(side)?;
        Ok(find(&t, side, c, s)
            .map(|e| e.state)
            .unwrap_or(TcpState::Closed))
    }

    /// Remember which connection endpoints this step ends the sending side of, for `settle`.
    pub(super) fn note_closing(&mut self, step: &Step) {
        for end in self.ends.closed_by(step) {
            if !self.tables.closing.contains(&end) {
                self.tables.closing.push(end);
            }
        }
    }

    /// Wait (bounded) until the wire shows the FIN or RST of every endpoint a step closed: the
    /// peer's state can only follow once it was sent. gVisor may send it after the call, or after
    /// a killed process was reaped.
    fn await_closing_on_wire(&mut self) {
        // A stack that sends within the call (the probe saw it: Linux) on loopback has put the
        // FIN or RST on the wire by now, or never will (a child still holds the socket; the
        // connection was reset already): waiting would only cost the deadline in the second case.
        let loopback = matches!(self.net, Net::Local { .. });
        let closing = std::mem::take(&mut self.tables.closing);
        if closing.is_empty() || (loopback && self.tables.view.synchronous) {
            return;
        }
        let want: Vec<SocketAddr> = closing.iter().map(|a| canonical(*a)).collect();
        // What this wait found is not written: the checkpoint's line shows what followed it (a
        // FIN that never came leaves the peer's state where it was).
        on_wire(
            self.tap.capture(),
            Instant::now() + CLOSING_DEADLINE,
            |segs| {
                want.iter().all(|w| {
                    segs.iter()
                        .any(|s| (s.fin || s.rst) && canonical(s.src) == *w)
                })
            },
        );
    }

    /// Wait (bounded) until no socket of the case is in a transient state; return the tables.
    pub(super) fn settle(&self) -> [Vec<TcpEntry>; 2] {
        let view = &self.tables.view;
        // On a stack that processes segments after the call returns (gVisor), the case's entries
        // must also have stopped changing for a while: a RST sent by close() may still be on its
        // way. Linux's loopback has done that work by the time the call returns.
        let mut last: Option<(Vec<EntryKey>, Instant)> = None;
        let mut t = Default::default();
        let _ = wait_until::<Infallible>(Instant::now() + SETTLE_DEADLINE, || {
            t = tables(&self.net).unwrap_or_default();
            let ours: Vec<&TcpEntry> = t.iter().flatten().filter(|e| self.is_ours(e)).collect();
            let transient = ours.iter().any(|e| e.state.is_transient());
            // Linux-like stacks (a complete table, segments handled within the call) are settled
            // as soon as nothing is transient; on others the entries must also stop changing.
            let stable = (view.synchronous && view.is_complete()) || unchanged(&ours, &mut last);
            Ok(Waited::met_if(!transient && stable))
        });
        t
    }

    /// Whether a table entry is one end of one of the case's connections.
    pub(super) fn is_ours(&self, e: &TcpEntry) -> bool {
        let (l, r) = (canonical(e.local), canonical(e.remote));
        self.ends.conns.values().any(|&(c, s)| {
            (l == canonical(c) && r == canonical(s)) || (l == canonical(s) && r == canonical(c))
        })
    }

    /// The checkpoint: each connection's two ends, then the listener.
    pub(super) fn checkpoint(&mut self, name: &str) -> Event {
        self.await_closing_on_wire();
        let [tc, ts] = self.settle();
        let mut parts = Vec::new();
        for (slot, &(c, s)) in &self.ends.conns {
            parts.push(Part::Conn {
                // The case's main connection goes unnamed.
                slot: (!slot.is_conn()).then(|| slot.to_string()),
                client: self.end(find(&tc, Side::Client, c, s), Side::Client),
                server: self.end(find(&ts, Side::Server, c, s), Side::Server),
            });
        }
        if let Some(l) = self.ends.previous_listener {
            let listening = ts
                .iter()
                .any(|e| canonical(e.local) == canonical(l) && e.state == TcpState::Listen);
            let state = if listening {
                TcpState::Listen
            } else {
                TcpState::Closed
            };
            parts.push(Part::Listener(state.name().into()));
        }
        Event::Checkpoint(Checkpoint {
            name: name.into(),
            parts,
        })
    }

    /// One end of a connection as a checkpoint shows it: its state, and its unread bytes.
    fn end(&self, entry: Option<&TcpEntry>, side: Side) -> End {
        let view = &self.tables.view;
        let Some(e) = entry else {
            return view.absent_end(side == Side::Server);
        };
        // The kernel's receive-queue figure, shown as the kernel reports it; bulk cases hide the
        // unstable size. A table whose queues are not real shows none rather than a false 0.
        // Linux counts a received FIN as one byte of the queue (rcv_nxt - copied_seq): taken off
        // here (the probe found out which convention this table follows).
        let fin_in_queue = view.fin_counted
            && matches!(
                e.state,
                TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::TimeWait
            );
        let unread = e.recv_queue.saturating_sub(u64::from(fin_in_queue));
        let queue = match (unread > 0 && view.recv_queue, self.tables.bulk) {
            (false, _) => None,
            (true, true) => Some(Queue::NonZero),
            (true, false) => Some(Queue::Bytes(unread)),
        };
        End::State {
            state: e.state.name().into(),
            queue,
        }
    }
}

/// Whether the case's entries are the same as at the last look, for QUIET; remembers them when
/// they changed.
fn unchanged(ours: &[&TcpEntry], last: &mut Option<(Vec<EntryKey>, Instant)>) -> bool {
    let mut now: Vec<EntryKey> = ours.iter().map(|e| entry_key(e)).collect();
    now.sort_by_key(|(l, r, st)| (*l, *r, st.name()));
    match last {
        Some((prev, since)) if *prev == now => since.elapsed() >= QUIET,
        _ => {
            *last = Some((now, Instant::now()));
            false
        }
    }
}

fn find(t: &[TcpEntry], side: Side, client: SocketAddr, server: SocketAddr) -> Option<&TcpEntry> {
    let (local, remote) = match side {
        Side::Client => (client, server),
        Side::Server => (server, client),
    };
    let (local, remote) = (canonical(local), canonical(remote));
    t.iter().find(|e| {
        canonical(e.local) == local && canonical(e.remote) == remote && e.state != TcpState::Listen
    })
}
