//! The case's UDP sockets: where a bind, a connect or a sendto goes (which needs the acting side:
//! "the other side's socket in slot b"), each socket's bound address by side and slot, their
//! names on the wire, and the senders a receive names (`<address>` in the agent's note, replaced
//! here by the socket's name, so no port number reaches a snapshot).

use super::endpoints::{canonical, Endpoints};
use crate::proto::{Outcome, Reply};
use crate::script::{Action, Op, Side, Slot, UdpAt, UdpTo};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// The ports a UDP closed port is taken from: below every platform's ephemeral range, like the
/// TCP closed port, so no socket of the case can be given it by a bind to port 0.
const CLOSED_PORTS: std::ops::Range<u16> = 23_000..23_500;

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

/// The name of a UDP socket, as step lines name who acts: "client", "server b".
fn name(side: Side, slot: Slot) -> String {
    if slot.is_conn() {
        side.to_string()
    } else {
        format!("{side} {slot}")
    }
}

impl Endpoints {
    /// The address a UDP op binds, connects or sends to; None for every other op.
    pub(super) fn udp_address(&mut self, a: &Action) -> Result<Option<SocketAddr>, String> {
        Ok(Some(match &a.op {
            Op::UdpBind { at, .. } => match at {
                UdpAt::Host => SocketAddr::new(self.host, 0),
                UdpAt::Wildcard => SocketAddr::new(unspecified(self.host), 0),
                UdpAt::Ipv6Wildcard => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
                UdpAt::SamePortAs(slot) => {
                    SocketAddr::new(self.host, self.udp_of(a.side, *slot)?.port())
                }
                UdpAt::ClosedPort => self.udp_closed_port()?,
            },
            Op::UdpConnect { to } | Op::UdpSendTo { to, .. } => {
                self.udp_target(other(a.side), *to)?
            }
            _ => return Ok(None),
        }))
    }

    fn udp_of(&self, side: Side, slot: Slot) -> Result<SocketAddr, String> {
        self.udp
            .get(&(side, slot))
            .and_then(|addrs| addrs.last().copied())
            .ok_or_else(|| format!("the {} has no UDP socket bound", name(side, slot)))
    }

    /// Where a datagram to `to` goes, `peer` being the side that owns the slot it names.
    fn udp_target(&mut self, peer: Side, to: UdpTo) -> Result<SocketAddr, String> {
        let port = |slot| self.udp_of(peer, slot).map(|a| a.port());
        Ok(match to {
            UdpTo::Peer(slot) => {
                let a = self.udp_of(peer, slot)?;
                // A socket on the wildcard address is reached at the case's host address.
                let ip = if a.ip().is_unspecified() {
                    self.host
                } else {
                    a.ip()
                };
                SocketAddr::new(ip, a.port())
            }
            UdpTo::ClosedPort => self.udp_closed_port()?,
            UdpTo::Broadcast(slot) => SocketAddr::new(Ipv4Addr::BROADCAST.into(), port(slot)?),
            UdpTo::LoopbackBroadcast(slot) => {
                SocketAddr::new(Ipv4Addr::new(127, 255, 255, 255).into(), port(slot)?)
            }
            UdpTo::PeerOverIpv4(slot) => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port(slot)?),
        })
    }

    /// The case's closed port for UDP, found once: a port no UDP socket is bound to (bound here,
    /// read, and released), the same for every later step of the case.
    fn udp_closed_port(&mut self) -> Result<SocketAddr, String> {
        if let Some(p) = self.closed_port {
            return Ok(p);
        }
        let host = self.host;
        let free = CLOSED_PORTS.into_iter().find_map(|port| {
            UdpSocket::bind(SocketAddr::new(host, port))
                .ok()?
                .local_addr()
                .ok()
        });
        let addr = free.ok_or("no free UDP port in 23000..23500 to serve as the closed port")?;
        self.closed_port = Some(addr);
        Ok(addr)
    }

    /// What a UDP reply tells: a bind's address is kept, and the senders a receive names get
    /// their socket's name. None for every other op.
    pub(super) fn note_udp_reply(&mut self, a: &Action, reply: &Reply) -> Option<Outcome> {
        match &a.op {
            Op::UdpBind { .. } => {
                if let Some(local) = reply.local {
                    self.udp.insert((a.side, a.slot), vec![local]);
                }
                Some(reply.outcome.clone())
            }
            // A socket that lost its port (Linux unhashes one bound to port 0 when it
            // disconnects) gets a new one with its next send: the runner learns it here, so
            // later steps reach it and the wire names both ports.
            Op::UdpLocalName => {
                let moved = reply.local.filter(|l| l.port() != 0);
                if let (Some(local), Some(addrs)) = (moved, self.udp.get_mut(&(a.side, a.slot))) {
                    if addrs.last() != Some(&local) {
                        addrs.push(local);
                    }
                }
                Some(self.named_outcome(&reply.outcome))
            }
            Op::UdpRecv { .. }
            | Op::UdpRecvUntil { .. }
            | Op::UdpPeerName
            | Op::UdpReadErrorQueue => Some(self.named_outcome(&reply.outcome)),
            _ => None,
        }
    }

    fn named_outcome(&self, outcome: &Outcome) -> Outcome {
        match outcome {
            Outcome::OkWith { note } => Outcome::OkWith {
                note: self.name_senders(note),
            },
            other => other.clone(),
        }
    }

    /// Replace each `<address>` in an agent's note with the name of the case's socket at that
    /// port ("another port" where none of the case's is, "no port" for port 0); an IPv4 sender
    /// seen by an IPv6 socket is said to be IPv4-mapped.
    fn name_senders(&self, note: &str) -> String {
        let labels = self.labels();
        let mut out = String::new();
        let mut rest = note;
        while let Some((before, after)) = rest.split_once('<') {
            let Some((addr, tail)) = after.split_once('>') else {
                break;
            };
            out.push_str(before);
            out.push_str(&match addr.parse::<SocketAddr>() {
                Ok(a) if a.port() == 0 => "no port".to_string(),
                Ok(a) => {
                    let who = labels.get(&a.port()).cloned();
                    let who = who.unwrap_or_else(|| "another port".into());
                    let mapped = canonical(a).ip() != a.ip();
                    if mapped {
                        format!("{who} (IPv4-mapped)")
                    } else {
                        who
                    }
                }
                Err(_) => format!("<{addr}>"),
            });
            rest = tail;
        }
        out.push_str(rest);
        out
    }

    /// The server side's UDP ports (each of the case's datagrams has one at an end, or the
    /// closed port).
    pub(super) fn udp_server_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.udp
            .iter()
            .filter(|((side, _), _)| *side == Side::Server)
            .flat_map(|(_, addrs)| addrs.iter().map(|a| a.port()))
    }

    /// Wire names for the UDP sockets' ports ("client > server: udp 5"); two sockets that share
    /// a port (SO_REUSEADDR) share a name: "server r1 and server r2"; a socket bound to the
    /// closed port is "closed port, later server".
    pub(super) fn label_udp(&self, labels: &mut BTreeMap<u16, String>) {
        let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for (&(side, slot), addrs) in &self.udp {
            for a in addrs {
                by_port.entry(a.port()).or_default().push(name(side, slot));
            }
        }
        for (port, names) in by_port {
            let names = names.join(" and ");
            // A socket bound to the closed port later keeps the name of what it was first.
            let name = match labels.get(&port) {
                Some(before) => format!("{before}, later {names}"),
                None => names,
            };
            labels.insert(port, name);
        }
    }
}

/// The wildcard address of `host`'s family.
fn unspecified(host: IpAddr) -> IpAddr {
    match host {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(ends: &mut Endpoints, side: Side, slot: &'static str, port: u16) {
        let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        ends.udp.insert((side, Slot::new(slot)), vec![addr]);
    }

    #[test]
    fn senders_are_named_by_their_sockets_never_by_port() {
        let mut ends = Endpoints::new(false);
        bound(&mut ends, Side::Client, "conn", 40_001);
        bound(&mut ends, Side::Server, "b", 40_002);
        let note = "5 bytes from <127.0.0.1:40001>, MSG_TRUNC; 3 bytes from <127.0.0.1:40002>";
        assert_eq!(
            ends.name_senders(note),
            "5 bytes from client, MSG_TRUNC; 3 bytes from server b"
        );
        assert_eq!(
            ends.name_senders("1 bytes from <[::ffff:127.0.0.1]:40001>"),
            "1 bytes from client (IPv4-mapped)"
        );
        assert_eq!(
            ends.name_senders("local <127.0.0.1:0>; <127.0.0.1:40999>"),
            "local no port; another port"
        );
    }

    #[test]
    fn sockets_sharing_a_port_share_a_wire_name_and_server_ports_are_kept() {
        let mut ends = Endpoints::new(false);
        bound(&mut ends, Side::Server, "r1", 40_010);
        bound(&mut ends, Side::Server, "r2", 40_010);
        bound(&mut ends, Side::Client, "conn", 40_011);
        let labels = ends.labels();
        assert_eq!(labels[&40_010], "server r1 and server r2");
        assert_eq!(labels[&40_011], "client");
        assert!(ends.server_ports().contains(&40_010));
        assert!(!ends.server_ports().contains(&40_011));
    }
}
