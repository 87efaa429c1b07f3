//! Connection setup: listen, connect and accept, one at a time or in bulk.

use super::{addr_of, millis, new_socket, Agent, Done};
use crate::proto::Outcome;
use crate::script::Slot;
use platforms::knobs;
use socket2::Socket;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// How long AcceptAll waits for one more connection before it stops (so a client that gave up
/// cannot hang it).
const ACCEPT_ALL_IDLE: Duration = Duration::from_secs(2);

impl Agent {
    pub(super) fn listen(
        &mut self,
        slot: Slot,
        addr: SocketAddr,
        backlog: i32,
        reuse_addr: bool,
    ) -> io::Result<Done> {
        let s = new_socket(&addr)?;
        s.set_reuse_address(reuse_addr)?;
        s.bind(&addr.into())?;
        s.listen(backlog)?;
        let local = addr_of(s.local_addr());
        self.put(slot, s);
        Ok(Done {
            outcome: Outcome::Ok,
            local,
            peer: None,
        })
    }

    /// Listen on `[::]` with IPV6_V6ONLY as asked (or left at the default); the outcome names the
    /// value in effect.
    pub(super) fn listen_dual_stack(
        &mut self,
        slot: Slot,
        addr: SocketAddr,
        v6only: Option<bool>,
    ) -> io::Result<Done> {
        let s = new_socket(&addr)?;
        if let Some(on) = v6only {
            s.set_only_v6(on)?;
        }
        s.bind(&addr.into())?;
        s.listen(128)?;
        let on = s.only_v6()?;
        let local = addr_of(s.local_addr());
        self.put(slot, s);
        Ok(Done {
            outcome: Outcome::OkWith {
                note: format!("IPV6_V6ONLY {}", if on { "on" } else { "off" }),
            },
            local,
            peer: None,
        })
    }

    pub(super) fn connect(
        &mut self,
        slot: Slot,
        addr: SocketAddr,
        timeout_ms: Option<u64>,
    ) -> io::Result<Done> {
        let s = new_socket(&addr)?;
        let r = match timeout_ms {
            Some(ms) => s.connect_timeout(&addr.into(), millis(ms)),
            None => s.connect(&addr.into()),
        };
        let done = Done {
            outcome: match r {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::from_error(&e),
            },
            local: addr_of(s.local_addr()),
            peer: addr_of(s.peer_addr()),
        };
        // Keep even a failed socket: later steps may ask for its state.
        self.put(slot, s);
        Ok(done)
    }

    /// Accept one connection from the main listener into `slot`.
    pub(super) fn accept(&mut self, slot: Slot) -> io::Result<Done> {
        let (s, peer) = self.sock(Slot::LISTENER)?.accept()?;
        let local = addr_of(s.local_addr());
        self.put(slot, s);
        Ok(Done {
            outcome: Outcome::Ok,
            local,
            peer: peer.as_socket(),
        })
    }

    /// Open connections to `addr` until `max` or the first error, kept open; with
    /// `compare_ports`, also count the local ports the previous batch had used already.
    pub(super) fn connect_many(
        &mut self,
        addr: SocketAddr,
        max: usize,
        compare_ports: bool,
    ) -> Outcome {
        let mut ports = Vec::new();
        let mut then = None;
        while ports.len() < max {
            let connected = new_socket(&addr).and_then(|s| s.connect(&addr.into()).map(|()| s));
            match connected {
                Ok(s) => {
                    ports.push(addr_of(s.local_addr()).map(|a| a.port()).unwrap_or(0));
                    self.many.push(s);
                }
                Err(e) => {
                    then = Some(Box::new(Outcome::from_error(&e)));
                    break;
                }
            }
        }
        let reused_ports = compare_ports.then(|| {
            ports
                .iter()
                .filter(|p| self.previous_ports.contains(p))
                .count()
        });
        let n = ports.len();
        self.previous_ports = ports;
        Outcome::Many {
            n,
            then,
            reused_ports,
        }
    }

    /// Accept from the listener in `slot` until `max` connections, or until none arrives within
    /// ACCEPT_ALL_IDLE; the connections are held open.
    pub(super) fn accept_all(&mut self, slot: Slot, max: usize) -> io::Result<Outcome> {
        let listener = self.sock(slot)?;
        // Accept without blocking, and wait for the next connection with poll, bounded: an
        // accept timeout (SO_RCVTIMEO on the listener) exists only on Linux.
        let was_nonblocking = self.nonblocking.contains(&slot);
        listener.set_nonblocking(true)?;
        let mut accepted = Vec::new();
        let then = accept_until(listener, max, &mut accepted);
        if !was_nonblocking {
            listener.set_nonblocking(false)?;
        }
        // The accepted connections are only held open (BSD and Windows made them non-blocking
        // like the listener; nothing reads them).
        let n = accepted.len();
        self.many.extend(accepted);
        Ok(Outcome::Many {
            n,
            then,
            reused_ports: None,
        })
    }
}

/// Accept from a non-blocking listener until `max`, or until nothing more arrives within
/// ACCEPT_ALL_IDLE: that stops the loop with the kernel's own answer to the last accept (EAGAIN,
/// WSAEWOULDBLOCK). Returns what stopped it before `max`.
fn accept_until(listener: &Socket, max: usize, accepted: &mut Vec<Socket>) -> Option<Box<Outcome>> {
    loop {
        if accepted.len() == max {
            return None;
        }
        match listener.accept() {
            Ok((s, _)) => accepted.push(s),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match knobs::wait_readable(listener, ACCEPT_ALL_IDLE) {
                    Ok(true) => {}
                    Ok(false) => return Some(Box::new(Outcome::from_error(&e))),
                    Err(e) => return Some(Box::new(Outcome::from_error(&e))),
                }
            }
            Err(e) => return Some(Box::new(Outcome::from_error(&e))),
        }
    }
}
