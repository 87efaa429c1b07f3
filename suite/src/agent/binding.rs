//! Sockets taken one call at a time (connect/, bind/ and listen/ cases): socket() alone, bind,
//! listen on a socket as it is, a non-blocking connect and connect() again on the same socket,
//! the wait for a connect by writability, SO_ERROR, getsockname, the reuse options, and which of
//! two listeners on one port gets the connections.
//!
//! What these report of addresses is a statement (which family, which well-known address,
//! whether the port is 0), never a number that varies from run to run.

use super::{addr_of, millis, new_socket, Agent, Done};
use crate::proto::Outcome;
use crate::runner::waits::{wait_until, Waited};
use crate::script::{Family, Slot};
use platforms::knobs;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long AcceptSpread waits for the connections it expects.
const SPREAD_WAIT: Duration = Duration::from_secs(2);

impl Agent {
    /// socket() alone: the slot holds a TCP socket, neither bound nor connected.
    pub(super) fn open_socket(&mut self, slot: Slot, family: Family) -> io::Result<Outcome> {
        let domain = match family {
            Family::Ipv4 => Domain::IPV4,
            Family::Ipv6 => Domain::IPV6,
        };
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        self.put(slot, s);
        Ok(Outcome::Ok)
    }

    /// bind() of the slot's socket; the reply carries the address it got.
    pub(super) fn bind(&mut self, slot: Slot, addr: SocketAddr) -> io::Result<Done> {
        let s = self.sock(slot)?;
        s.bind(&addr.into())?;
        Ok(Done {
            outcome: Outcome::Ok,
            local: addr_of(s.local_addr()),
            peer: None,
        })
    }

    /// listen() on the slot's socket as it is. A socket that had no port before (never bound, or
    /// its bind failed) and has one after was bound by listen() itself: the outcome says where.
    pub(super) fn listen_on(&mut self, slot: Slot, backlog: i32) -> io::Result<Done> {
        let s = self.sock(slot)?;
        let unbound = addr_of(s.local_addr()).is_none_or(|a| a.port() == 0);
        s.listen(backlog)?;
        let local = addr_of(s.local_addr());
        let outcome = match local {
            Some(a) if unbound && a.port() != 0 => Outcome::OkWith {
                note: format!(
                    "bound to an ephemeral port on {} ({})",
                    ip_kind(a.ip()),
                    family_name(&a)
                ),
            },
            _ => Outcome::Ok,
        };
        Ok(Done {
            outcome,
            local,
            peer: None,
        })
    }

    /// A new non-blocking socket connects; the call's own answer is the outcome, and the socket
    /// stays in the slot for the steps that wait on it.
    pub(super) fn connect_nonblocking(&mut self, slot: Slot, addr: SocketAddr) -> io::Result<Done> {
        let s = new_socket(&addr)?;
        s.set_nonblocking(true)?;
        let r = s.connect(&addr.into());
        let done = connect_done(&s, r);
        self.put(slot, s);
        self.nonblocking.insert(slot);
        Ok(done)
    }

    /// connect() on the slot's existing socket, whatever its mode and state.
    pub(super) fn connect_socket(&mut self, slot: Slot, addr: SocketAddr) -> io::Result<Done> {
        let s = self.sock(slot)?;
        let r = s.connect(&addr.into());
        Ok(connect_done(s, r))
    }

    /// Accept from the listener in `slot` and the one in `other` until `n` connections in all,
    /// or until SPREAD_WAIT passed; the connections are held open. The outcome says which
    /// listeners got connections, not how many each got: the split is the kernel's hash.
    pub(super) fn accept_spread(
        &mut self,
        slot: Slot,
        other: Slot,
        n: usize,
    ) -> io::Result<Outcome> {
        let listeners = [slot, other];
        let modes: Vec<bool> = listeners
            .iter()
            .map(|l| self.nonblocking.contains(l))
            .collect();
        for l in listeners {
            self.sock(l)?.set_nonblocking(true)?;
        }
        let mut got = [Vec::new(), Vec::new()];
        let mut out = [false, false];
        wait_until(Instant::now() + SPREAD_WAIT, || {
            for (i, l) in listeners.iter().enumerate() {
                accept_ready(self.sock(*l)?, &mut got[i], &mut out[i]);
            }
            Ok::<_, io::Error>(Waited::met_if(got[0].len() + got[1].len() >= n))
        })?;
        for (l, was) in listeners.iter().zip(modes) {
            if !was {
                self.sock(*l)?.set_nonblocking(false)?;
            }
        }
        let counts = [got[0].len(), got[1].len()];
        self.many.extend(got.into_iter().flatten());
        Ok(Outcome::OkWith {
            note: spread_note(counts, other, n),
        })
    }
}

/// Accept what is queued on a non-blocking listener into `got`. A listener whose accept fails
/// with anything but "nothing queued" (say, it is not listening: its bind failed) is `out`: it
/// got no connection, which is what the outcome says of it.
fn accept_ready(listener: &Socket, got: &mut Vec<Socket>, out: &mut bool) {
    while !*out {
        match listener.accept() {
            Ok((s, _)) => got.push(s),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => *out = true,
        }
    }
}

/// Which of the two listeners got connections, and how many arrived when fewer than asked.
fn spread_note(counts: [usize; 2], other: Slot, n: usize) -> String {
    let which = match counts {
        [0, 0] => "neither listener got a connection".to_string(),
        [_, 0] => "only this listener got connections".to_string(),
        [0, _] => format!("only {other} got connections"),
        _ => "both listeners got connections".to_string(),
    };
    let total = counts[0] + counts[1];
    if total < n {
        format!("{which}; {total} of {n} arrived")
    } else {
        which
    }
}

/// A connect's outcome with the socket's ends as they are after the call.
fn connect_done(s: &Socket, r: io::Result<()>) -> Done {
    Done {
        outcome: match r {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::from_error(&e),
        },
        local: addr_of(s.local_addr()),
        peer: addr_of(s.peer_addr()),
    }
}

/// Wait (at most `timeout_ms`) for the socket to be writable or in error; the events reported.
pub(super) fn await_writable(s: &Socket, timeout_ms: u64) -> io::Result<Outcome> {
    let events = knobs::poll_writable(s, millis(timeout_ms))?;
    Ok(Outcome::Events {
        events: events.iter().map(|e| e.to_string()).collect(),
    })
}

/// SO_ERROR: `ok (no error)`, or the pending error as an error outcome reads. Reading it clears
/// it, as it does for a runtime that asks once a connect is writable.
pub(super) fn socket_error(s: &Socket) -> io::Result<Outcome> {
    let note = match s.take_error()? {
        None => "no pending error".to_string(),
        Some(e) => format!("pending {}", Outcome::from_error(&e)),
    };
    Ok(Outcome::OkWith { note })
}

/// getsockname(): which family and address the socket has, and whether its port is 0.
pub(super) fn local_address(s: &Socket) -> io::Result<Outcome> {
    Ok(Outcome::OkWith {
        note: describe(&s.local_addr()?),
    })
}

pub(super) fn reuse_address(s: &Socket, on: bool) -> io::Result<Outcome> {
    s.set_reuse_address(on).map(|()| Outcome::Ok)
}

pub(super) fn reuse_port(s: &Socket, on: bool) -> io::Result<Outcome> {
    knobs::set_reuse_port(s, on).map(|()| Outcome::Ok)
}

/// An address as a statement that does not vary between runs: "AF_INET 0.0.0.0, port 0".
fn describe(a: &SockAddr) -> String {
    match a.as_socket() {
        Some(sa) => {
            let port = if sa.port() == 0 {
                "port 0"
            } else {
                "a nonzero port"
            };
            format!("{} {}, {port}", family_name(&sa), ip_kind(sa.ip()))
        }
        None => "an address that is neither AF_INET nor AF_INET6".to_string(),
    }
}

fn family_name(a: &SocketAddr) -> &'static str {
    if a.is_ipv4() {
        "AF_INET"
    } else {
        "AF_INET6"
    }
}

/// The well-known addresses a case meets (the wildcards, the loopbacks, and their IPv4-mapped
/// forms) by name; any other address only as "another address", since a lab's varies.
fn ip_kind(ip: IpAddr) -> String {
    let canonical = ip.to_canonical();
    if canonical.is_unspecified() || canonical.is_loopback() {
        ip.to_string()
    } else {
        "another address".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_described_without_numbers_that_vary() {
        let a: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert_eq!(describe(&a.into()), "AF_INET 0.0.0.0, port 0");
        let a: SocketAddr = "[::ffff:0.0.0.0]:4242".parse().unwrap();
        assert_eq!(
            describe(&a.into()),
            "AF_INET6 ::ffff:0.0.0.0, a nonzero port"
        );
        let a: SocketAddr = "10.1.2.3:80".parse().unwrap();
        assert_eq!(
            describe(&a.into()),
            "AF_INET another address, a nonzero port"
        );
    }

    #[test]
    fn the_spread_is_a_statement() {
        let l2 = Slot::new("l2");
        assert_eq!(
            spread_note([3, 17], l2, 20),
            "both listeners got connections"
        );
        assert_eq!(
            spread_note([20, 0], l2, 20),
            "only this listener got connections"
        );
        assert_eq!(spread_note([0, 1], l2, 1), "only l2 got connections");
        assert_eq!(
            spread_note([0, 0], l2, 1),
            "neither listener got a connection; 0 of 1 arrived"
        );
    }
}
