//! UDP: bind, connect and disconnect, send and sendto, receives that report what the OS said
//! (bytes, MSG_TRUNC, the sender), SO_BROADCAST, Linux's IP_RECVERR and its error queue, and a
//! non-blocking send flood.
//!
//! A receive never blocks unbounded: it first waits, with a deadline, until the socket is
//! readable (a datagram or an error is queued), then makes one call. A sender is written as
//! `<address>`; the runner, which knows the case's sockets, replaces it with their name
//! (`runner::udp`), so no port number reaches a snapshot.

use super::{addr_of, millis, need_addr, ok, Agent, Done};
use crate::proto::{Outcome, Request};
use crate::runner::waits::{wait_until, Waited};
use crate::script::{Op, Slot, UdpAt};
use platforms::{knobs, udp};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The most receives `UdpRecvUntil` makes before it stops looking for its last datagram.
const RECV_UNTIL_MAX: usize = 16;

impl Agent {
    /// Perform one UDP op (the caller dispatches only those here).
    pub(super) fn udp(&mut self, req: &Request) -> io::Result<Done> {
        let slot = req.slot;
        Ok(match &req.op {
            Op::UdpBind { at, reuse_addr } => {
                self.udp_bind(slot, need_addr(req)?, *reuse_addr, *at)?
            }
            Op::UdpConnect { .. } => self.udp_connect(slot, need_addr(req)?)?,
            Op::UdpDisconnect => ok(udp::disconnect(self.sock(slot)?))?.into(),
            Op::UdpSend { len } => Outcome::Bytes {
                n: self.sock(slot)?.send(&vec![b'u'; *len])?,
            }
            .into(),
            Op::UdpSendTo { len, .. } => {
                let to = need_addr(req)?;
                let n = self.sock(slot)?.send_to(&vec![b'u'; *len], &to.into())?;
                Outcome::Bytes { n }.into()
            }
            Op::UdpRecv { max, peek, wait_ms } => {
                recv(self.sock(slot)?, *max, *peek, millis(*wait_ms))?.into()
            }
            Op::UdpRecvUntil { len, wait_ms } => {
                recv_until(self.sock(slot)?, *len, millis(*wait_ms))?.into()
            }
            Op::UdpCountAcross {
                slots,
                total,
                wait_ms,
            } => self.count_across(slots, *total, millis(*wait_ms))?.into(),
            Op::UdpAwaitError { wait_ms } => {
                await_error(self.sock(slot)?, millis(*wait_ms))?.into()
            }
            Op::UdpPeerName => Outcome::OkWith {
                note: format!("peer {}", sender(self.sock(slot)?.peer_addr()?.as_socket())),
            }
            .into(),
            Op::UdpLocalName => {
                let local = self.sock(slot)?.local_addr()?.as_socket();
                Done {
                    outcome: Outcome::OkWith {
                        note: format!("local {}", sender(local)),
                    },
                    local,
                    peer: None,
                }
            }
            Op::SetBroadcast { on } => ok(self.sock(slot)?.set_broadcast(*on))?.into(),
            Op::SetRecvErr { on } => ok(udp::set_recv_err(self.sock(slot)?, *on))?.into(),
            Op::UdpReadErrorQueue => read_error_queue(self.sock(slot)?)?.into(),
            Op::UdpFlood { count, len } => flood(self.sock(slot)?, *count, *len)?.into(),
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a UDP op: {other}"),
                ))
            }
        })
    }

    /// A new UDP socket bound to `addr`; on `[::]` the outcome names the IPV6_V6ONLY in effect.
    fn udp_bind(
        &mut self,
        slot: Slot,
        addr: SocketAddr,
        reuse_addr: bool,
        at: UdpAt,
    ) -> io::Result<Done> {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if reuse_addr {
            s.set_reuse_address(true)?;
        }
        s.bind(&addr.into())?;
        let outcome = if at == UdpAt::Ipv6Wildcard {
            let on = s.only_v6()?;
            Outcome::OkWith {
                note: format!("IPV6_V6ONLY {}", if on { "on" } else { "off" }),
            }
        } else {
            Outcome::Ok
        };
        let local = addr_of(s.local_addr());
        self.put(slot, s);
        Ok(Done {
            outcome,
            local,
            peer: None,
        })
    }

    fn udp_connect(&mut self, slot: Slot, to: SocketAddr) -> io::Result<Done> {
        let s = self.sock(slot)?;
        s.connect(&to.into())?;
        Ok(Done {
            outcome: Outcome::Ok,
            local: addr_of(s.local_addr()),
            peer: addr_of(s.peer_addr()),
        })
    }

    /// Receive on every slot of `slots` until `total` datagrams arrived, or `wait` passed.
    fn count_across(&self, slots: &[Slot], total: usize, wait: Duration) -> io::Result<Outcome> {
        let socks = slots
            .iter()
            .map(|s| self.sock(*s))
            .collect::<io::Result<Vec<_>>>()?;
        let mut counts = vec![0usize; socks.len()];
        let mut buf = vec![0u8; 64 * 1024];
        let found = wait_until(Instant::now() + wait, || {
            for (s, count) in socks.iter().zip(counts.iter_mut()) {
                while knobs::wait_readable(s, Duration::ZERO)? {
                    udp::recv_msg(s, &mut buf, false)?;
                    *count += 1;
                }
            }
            Ok::<_, io::Error>(Waited::met_if(counts.iter().sum::<usize>() >= total))
        })?;
        let each: Vec<_> = slots
            .iter()
            .zip(&counts)
            .map(|(slot, n)| format!("{slot} got {n}"))
            .collect();
        let mut note = each.join(", ");
        if found != Waited::Met {
            note += &format!("; no more within {} ms", wait.as_millis());
        }
        Ok(Outcome::OkWith { note })
    }
}

/// The sender as the runner will name it: `<address>`, or that the OS named none.
fn sender(from: Option<SocketAddr>) -> String {
    match from {
        Some(a) => format!("<{a}>"),
        None => "unnamed".into(),
    }
}

/// One receive once the socket is readable (waiting at most `wait`), or no datagram.
fn recv(s: &Socket, max: usize, peek: bool, wait: Duration) -> io::Result<Outcome> {
    if !knobs::wait_readable(s, wait)? {
        return Ok(Outcome::Nothing {
            what: "datagram".into(),
            within_ms: wait.as_millis() as u64,
        });
    }
    let mut buf = vec![0u8; max];
    let r = udp::recv_msg(s, &mut buf, peek)?;
    let trunc = if r.truncated { ", MSG_TRUNC" } else { "" };
    Ok(Outcome::OkWith {
        note: format!("{} bytes from {}{trunc}", r.n, sender(r.from)),
    })
}

/// Receive until a datagram of `len` bytes, each receive waiting at most `wait`; the results in
/// order, errors included (a platform may report an ICMP error on the next receive).
fn recv_until(s: &Socket, len: usize, wait: Duration) -> io::Result<Outcome> {
    let mut seen = Vec::new();
    for _ in 0..RECV_UNTIL_MAX {
        let got = match recv(s, 64 * 1024, false, wait) {
            Ok(o) => o,
            Err(e) => Outcome::from_error(&e),
        };
        let marker = format!("{len} bytes ");
        let last = matches!(&got, Outcome::OkWith { note } if note.starts_with(&marker))
            || matches!(got, Outcome::Nothing { .. });
        seen.push(match got {
            Outcome::OkWith { note } => note,
            other => other.to_string(),
        });
        if last {
            break;
        }
    }
    Ok(Outcome::OkWith {
        note: seen.join("; "),
    })
}

/// Wait until poll() reports ERR, at most `wait`; the events at that moment (or at the deadline).
fn await_error(s: &Socket, wait: Duration) -> io::Result<Outcome> {
    let mut events = Vec::new();
    wait_until(Instant::now() + wait, || {
        events = knobs::poll(s, Duration::ZERO)?;
        Ok::<_, io::Error>(Waited::met_if(events.contains(&"ERR")))
    })?;
    Ok(Outcome::Events {
        events: events.iter().map(|e| e.to_string()).collect(),
    })
}

/// One entry of Linux's error queue: its error, its origin, and the datagram's destination.
fn read_error_queue(s: &Socket) -> io::Result<Outcome> {
    let q = udp::read_error_queue(s)?;
    Ok(Outcome::OkWith {
        note: format!(
            "{} from {}, for a datagram to {}",
            platforms::error_name(&q.error),
            q.origin,
            sender(q.to)
        ),
    })
}

/// Send `count` datagrams without blocking; all of them, or the first error and whether the
/// socket said writable right then (ENOBUFS with a writable socket leaves nothing to wait for).
/// The count before the error varies with the machine's load, so it is not recorded.
fn flood(s: &Socket, count: usize, len: usize) -> io::Result<Outcome> {
    s.set_nonblocking(true)?;
    let buf = vec![b'f'; len];
    for _ in 0..count {
        match s.send(&buf) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let writable = knobs::poll(s, Duration::ZERO)?.contains(&"OUT");
                let error = Outcome::from_error(&e);
                let then = if writable { "writable" } else { "not writable" };
                return Ok(Outcome::OkWith {
                    note: format!("stopped by {error}; the socket was {then} then"),
                });
            }
        }
    }
    Ok(Outcome::OkWith {
        note: format!("all {count} sent"),
    })
}
