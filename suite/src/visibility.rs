//! What this platform's TCP table can show, probed once per run rather than assumed.
//!
//! A checkpoint reads the kernel's table. A socket missing from it is `CLOSED` only if the table
//! would have listed it in the state it may still be in: gVisor's /proc/net/tcp lists no
//! TIME_WAIT, Windows reports no receive queues. So the run first walks one connection through
//! the states the catalog checks (ESTABLISHED with unread data, CLOSE_WAIT, an orphaned
//! FIN_WAIT2, TIME_WAIT) and records which of them the table showed. What it did not show is
//! then written as not visible, never as `CLOSED` or a queue of 0.

use crate::observe::event::{End, Gap};
use platforms::{TcpEntry, TcpState};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long the probe waits for each state to appear (they appear within a millisecond or two).
const PROBE_WAIT: Duration = Duration::from_millis(500);

/// The states the probe walks through, in order.
pub const PROBED: [TcpState; 4] = [
    TcpState::Established,
    TcpState::CloseWait,
    TcpState::FinWait2,
    TcpState::TimeWait,
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableView {
    /// Probed states the table did not list while a socket was in them.
    pub unlisted: BTreeSet<TcpState>,
    /// Whether the table's receive-queue figure is real (it showed 5 unread bytes).
    pub recv_queue: bool,
    /// Why the probe could not run, if it could not: then nothing is assumed listed.
    pub unprobed: Option<String>,
    /// Whether the table lists a connection the server has not accepted yet (gVisor does not).
    pub lists_unaccepted: bool,
    /// Whether a segment between two loopback sockets is processed within the sending call
    /// (Linux: the peer is in CLOSE_WAIT when close() returns), or later (gVisor's netstack
    /// works asynchronously: a checkpoint must then wait for the table to stop changing).
    pub synchronous: bool,
    /// Whether the receive-queue figure counts a received FIN as one byte (Linux) or not (BSD):
    /// checkpoints take it off, so the matrix compares unread data, not table conventions.
    pub fin_counted: bool,
    /// The quickest read of the table during the probe: what one read costs here (it decides
    /// how many cases can poll it at once).
    pub read_cost: Duration,
}

impl TableView {
    /// A table that lists every state and reports queues (what a test of pure logic assumes).
    pub fn complete() -> TableView {
        TableView {
            unlisted: BTreeSet::new(),
            recv_queue: true,
            unprobed: None,
            lists_unaccepted: true,
            synchronous: true,
            fin_counted: false,
            read_cost: Duration::ZERO,
        }
    }

    /// A table the probe could not walk: nothing is assumed listed or real.
    fn unprobed(why: String) -> TableView {
        TableView {
            unlisted: PROBED.into_iter().collect(),
            recv_queue: false,
            unprobed: Some(why),
            lists_unaccepted: false,
            synchronous: false,
            fin_counted: false,
            read_cost: Duration::ZERO,
        }
    }

    /// Walk one loopback connection through the probed states on the calling thread's stack.
    pub fn probe_here() -> TableView {
        match walk(platforms::tcp_table) {
            Ok(v) => v,
            Err(why) => TableView::unprobed(why),
        }
    }

    /// Probe on a fresh thread, in a namespace of its own when cases are isolated (so the probe
    /// reads the same kind of table the cases will).
    pub fn probe(isolated: bool) -> TableView {
        std::thread::spawn(move || {
            if isolated {
                if let Err(why) = platforms::isolate_thread() {
                    return TableView::unprobed(why);
                }
            }
            TableView::probe_here()
        })
        .join()
        .unwrap_or_else(|_| TableView::unprobed("the probe thread panicked".into()))
    }

    /// Whether every probed state is listed and queues are real.
    pub fn is_complete(&self) -> bool {
        self.unlisted.is_empty() && self.recv_queue
    }

    /// One end of a case's connection is absent from the table: what that means here. Only
    /// what a socket can still be after it left the table of a complete one matters: a lingering
    /// state (TIME_WAIT, an orphaned FIN_WAIT2) or, for the server's end, not accepted yet.
    /// Where it may be any of those, the end is a gap (`not visible (...)`), never CLOSED.
    pub fn absent_end(&self, server_end: bool) -> End {
        let mut hidden: Vec<&str> = self
            .unlisted
            .iter()
            .filter(|s| matches!(s, TcpState::TimeWait | TcpState::FinWait2))
            .map(|s| s.name())
            .collect();
        if server_end && !self.lists_unaccepted {
            hidden.push("queued unaccepted");
        }
        if hidden.is_empty() {
            End::state(TcpState::Closed.name())
        } else {
            End::Gap(Gap::NotVisible(format!(
                "CLOSED, or {}, which this table does not list",
                hidden.join(" or ")
            )))
        }
    }

    /// One line for the run's header and results.json.
    pub fn describe(&self) -> String {
        if let Some(why) = &self.unprobed {
            return format!("not probed ({why}): no state is assumed listed");
        }
        let mut s = if self.unlisted.is_empty() {
            "lists every probed state".to_string()
        } else {
            let names: Vec<&str> = self.unlisted.iter().map(|s| s.name()).collect();
            format!("does not list {}", names.join(", "))
        };
        if !self.lists_unaccepted {
            s += ", nor connections not yet accepted";
        }
        s += if self.recv_queue {
            "; receive queues real"
        } else {
            "; receive queues not reported"
        };
        if self.fin_counted {
            s += " (a received FIN counted as 1, taken off)";
        }
        if !self.synchronous {
            s += "; segments processed after the call returns";
        }
        s
    }
}

/// The probe itself, over any table reader (tests hand in a filtered one).
pub fn walk(read: impl Fn() -> std::io::Result<Vec<TcpEntry>>) -> Result<TableView, String> {
    // The quickest read stands for what a read costs here: a slow one may be the machine's
    // momentary load (a build beside the run), which a read cost of 20 ms per call (Wine) is not.
    let cost = std::cell::Cell::new(None::<Duration>);
    let table = || {
        let t0 = Instant::now();
        let t = read();
        let took = t0.elapsed();
        cost.set(Some(cost.get().map_or(took, |c| c.min(took))));
        t
    };
    fn io(what: &'static str) -> impl Fn(std::io::Error) -> String {
        move |e| format!("{what}: {e}")
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("bind"))?;
    let server_addr = listener.local_addr().map_err(io("local_addr"))?;
    let mut client = TcpStream::connect(server_addr).map_err(io("connect"))?;
    let client_addr = client.local_addr().map_err(io("local_addr"))?;
    // Before accept(): is the queued connection's server end in the table?
    let end = Instant::now() + PROBE_WAIT;
    let lists_unaccepted = loop {
        let t = table().map_err(io("read the TCP table"))?;
        if t.iter()
            .any(|e| e.local == server_addr && e.remote == client_addr)
        {
            break true;
        }
        if Instant::now() > end {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let (mut server, _) = listener.accept().map_err(io("accept"))?;
    drop(listener);
    let find = |local: SocketAddr, remote: SocketAddr, want: TcpState| {
        let end = Instant::now() + PROBE_WAIT;
        loop {
            let t = table().map_err(io("read the TCP table"))?;
            let hit = t
                .into_iter()
                .find(|e| e.local == local && e.remote == remote && e.state == want);
            if hit.is_some() || Instant::now() > end {
                return Ok::<_, String>(hit);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let mut unlisted = BTreeSet::new();
    client.write_all(b"probe").map_err(io("write"))?;
    let est = find(server_addr, client_addr, TcpState::Established)?;
    // The queue must reach 5 unless the table does not report it.
    let mut recv_queue = false;
    if est.is_some() {
        let end = Instant::now() + PROBE_WAIT;
        while Instant::now() < end {
            let t = table().map_err(io("read the TCP table"))?;
            if t.iter()
                .any(|e| e.local == server_addr && e.remote == client_addr && e.recv_queue == 5)
            {
                recv_queue = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    } else {
        unlisted.insert(TcpState::Established);
    }
    // The client closes first and lets go of its socket: the server sits in CLOSE_WAIT (its 5
    // bytes still unread), the client's orphaned socket in FIN_WAIT2.
    drop(client);
    // Synchronous only if the peer's state follows at once every time: one lucky reading of an
    // asynchronous stack must not pass for it.
    let mut synchronous = table().map_err(io("read the TCP table"))?.iter().any(|e| {
        e.local == server_addr && e.remote == client_addr && e.state == TcpState::CloseWait
    });
    for _ in 0..SYNC_TRIALS {
        if !synchronous {
            break;
        }
        synchronous = closes_synchronously()?;
    }
    // Linux's figure is rcv_nxt - copied_seq, so the FIN counts as one more byte (6); BSD's
    // Recv-Q counts bytes only (5).
    let mut fin_counted = false;
    match find(server_addr, client_addr, TcpState::CloseWait)? {
        None => {
            unlisted.insert(TcpState::CloseWait);
        }
        Some(e) => fin_counted = recv_queue && e.recv_queue == 6,
    }
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).map_err(io("read"))?;
    if find(client_addr, server_addr, TcpState::FinWait2)?.is_none() {
        unlisted.insert(TcpState::FinWait2);
    }
    // The server closes: the client's socket, the active closer, goes to TIME_WAIT.
    drop(server);
    if find(client_addr, server_addr, TcpState::TimeWait)?.is_none() {
        unlisted.insert(TcpState::TimeWait);
    }
    Ok(TableView {
        unlisted,
        recv_queue,
        unprobed: None,
        lists_unaccepted,
        synchronous,
        fin_counted,
        read_cost: cost.get().unwrap_or_default(),
    })
}

/// More connections closed to tell a synchronous stack from a lucky asynchronous one.
const SYNC_TRIALS: usize = 8;

/// Whether the server's end of a fresh connection has seen the client's FIN (a read at once
/// returns end of stream) when the client's close() returns. The socket is asked, not the table:
/// one read of gVisor's table takes milliseconds, long enough for its netstack to catch up, and
/// the probe then passed gVisor for synchronous in about one run of ten.
fn closes_synchronously() -> Result<bool, String> {
    let e = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(e("bind"))?;
    let c = TcpStream::connect(l.local_addr().map_err(e("local_addr"))?).map_err(e("connect"))?;
    let (mut s, _) = l.accept().map_err(e("accept"))?;
    s.set_nonblocking(true).map_err(e("set_nonblocking"))?;
    drop(c);
    Ok(matches!(s.read(&mut [0u8; 1]), Ok(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_hides_time_wait_and_queues_is_found_out() {
        // The real table of this machine, with TIME_WAIT removed and queues zeroed, as gVisor's
        // /proc/net/tcp shows it: the probe must notice both gaps.
        let view = walk(|| {
            Ok(platforms::tcp_table()?
                .into_iter()
                .filter(|e| e.state != TcpState::TimeWait)
                .map(|mut e| {
                    e.recv_queue = 0;
                    e
                })
                .collect())
        })
        .unwrap();
        assert!(view.unlisted.contains(&TcpState::TimeWait), "{view:?}");
        assert!(!view.recv_queue);
        assert_eq!(
            view.absent_end(false),
            End::Gap(Gap::NotVisible(
                "CLOSED, or TIME_WAIT, which this table does not list".into()
            ))
        );
    }

    #[test]
    fn a_complete_table_makes_absence_closed() {
        assert_eq!(TableView::complete().absent_end(true), End::state("CLOSED"));
        let unread_only = TableView {
            unlisted: [TcpState::CloseWait].into_iter().collect(),
            recv_queue: true,
            unprobed: None,
            lists_unaccepted: false,
            synchronous: true,
            fin_counted: false,
            read_cost: Duration::ZERO,
        };
        assert_eq!(unread_only.absent_end(false), End::state("CLOSED"));
        assert_eq!(
            unread_only.absent_end(true).to_string(),
            "not visible (CLOSED, or queued unaccepted, which this table does not list)"
        );
    }
}
