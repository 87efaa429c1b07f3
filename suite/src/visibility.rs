//! What this platform's TCP table can show, probed once per run rather than assumed.
//!
//! A checkpoint reads the kernel's table. A socket missing from it is `CLOSED` only if the table
//! would have listed it in the state it may still be in: gVisor's /proc/net/tcp lists no
//! TIME_WAIT, Windows reports no receive queues. So the run first walks one connection through
//! the states the catalog checks (ESTABLISHED with unread data, CLOSE_WAIT, an orphaned
//! FIN_WAIT2, TIME_WAIT) and records which of them the table showed. What it did not show is
//! then written as not visible, never as `CLOSED` or a queue of 0.

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
}

impl TableView {
    /// A table that lists every state and reports queues (what a test of pure logic assumes).
    pub fn complete() -> TableView {
        TableView {
            unlisted: BTreeSet::new(),
            recv_queue: true,
            unprobed: None,
        }
    }

    /// Walk one loopback connection through the probed states on the calling thread's stack.
    pub fn probe_here() -> TableView {
        match walk(platforms::tcp_table) {
            Ok(v) => v,
            Err(why) => TableView {
                unlisted: PROBED.into_iter().collect(),
                recv_queue: false,
                unprobed: Some(why),
            },
        }
    }

    /// Probe on a fresh thread, in a namespace of its own when cases are isolated (so the probe
    /// reads the same kind of table the cases will).
    pub fn probe(isolated: bool) -> TableView {
        std::thread::spawn(move || {
            if isolated {
                if let Err(why) = platforms::isolate_thread() {
                    return TableView {
                        unlisted: PROBED.into_iter().collect(),
                        recv_queue: false,
                        unprobed: Some(why),
                    };
                }
            }
            TableView::probe_here()
        })
        .join()
        .unwrap_or_else(|_| TableView {
            unlisted: PROBED.into_iter().collect(),
            recv_queue: false,
            unprobed: Some("the probe thread panicked".into()),
        })
    }

    /// Whether every probed state is listed and queues are real.
    pub fn is_complete(&self) -> bool {
        self.unlisted.is_empty() && self.recv_queue
    }

    /// A socket of the case is absent from the table: what that means here.
    pub fn absent_word(&self) -> String {
        // Only states a socket can still be in after it left the table of a complete one matter:
        // the lingering ones (TIME_WAIT, an orphaned FIN_WAIT2).
        let hidden: Vec<&str> = self
            .unlisted
            .iter()
            .filter(|s| matches!(s, TcpState::TimeWait | TcpState::FinWait2))
            .map(|s| s.name())
            .collect();
        if hidden.is_empty() {
            "CLOSED".into()
        } else {
            format!(
                "not visible (CLOSED, or {}, which this table does not list)",
                hidden.join(" or ")
            )
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
        s += if self.recv_queue {
            "; receive queues real"
        } else {
            "; receive queues not reported"
        };
        s
    }
}

/// The probe itself, over any table reader (tests hand in a filtered one).
pub fn walk(table: impl Fn() -> std::io::Result<Vec<TcpEntry>>) -> Result<TableView, String> {
    fn io(what: &'static str) -> impl Fn(std::io::Error) -> String {
        move |e| format!("{what}: {e}")
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("bind"))?;
    let server_addr = listener.local_addr().map_err(io("local_addr"))?;
    let mut client = TcpStream::connect(server_addr).map_err(io("connect"))?;
    let (mut server, client_addr) = listener.accept().map_err(io("accept"))?;
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
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).map_err(io("read"))?;
    // The client closes first and lets go of its socket: the server sits in CLOSE_WAIT, the
    // client's orphaned socket in FIN_WAIT2.
    drop(client);
    if find(server_addr, client_addr, TcpState::CloseWait)?.is_none() {
        unlisted.insert(TcpState::CloseWait);
    }
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
    })
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
        assert!(view.absent_word().contains("TIME_WAIT"));
        assert!(view.absent_word().starts_with("not visible"));
    }

    #[test]
    fn a_complete_table_makes_absence_closed() {
        assert_eq!(TableView::complete().absent_word(), "CLOSED");
        let unread_only = TableView {
            unlisted: [TcpState::CloseWait].into_iter().collect(),
            recv_queue: true,
            unprobed: None,
        };
        assert_eq!(unread_only.absent_word(), "CLOSED");
    }
}
