//! The case's addresses and socket slots: its listeners (and the previous one), the closed port,
//! its connections and client ports by slot, the names of wire endpoints, the addresses a request
//! is sent with, and what each reply tells of them.

use crate::proto::{Outcome, Reply, Request};
use crate::script::{Action, Op, Port, Side, Slot, Step, Target};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub(super) struct Endpoints {
    /// The address every socket of the case uses (127.0.0.1, ::1 for IPv6 cases, or the lab's).
    pub(super) host: IpAddr,
    listener: Option<SocketAddr>,
    pub(super) previous_listener: Option<SocketAddr>,
    pub(super) closed_port: Option<SocketAddr>,
    /// The client's connections by slot: (client address, server address).
    pub(super) conns: BTreeMap<Slot, (SocketAddr, SocketAddr)>,
    listeners: Vec<SocketAddr>,
    /// Every client socket's port by slot, connected or not (for naming wire endpoints).
    pub(super) client_ports: BTreeMap<Slot, u16>,
    /// Sides whose calls put data into the main connection (a write or fill that took bytes).
    pub(super) wrote: BTreeSet<Side>,
    /// Every UDP socket's bound addresses by side and slot, the current one last (see
    /// `runner::udp`).
    pub(super) udp: BTreeMap<(Side, Slot), Vec<SocketAddr>>,
}

impl Endpoints {
    pub(super) fn new(ipv6: bool) -> Endpoints {
        Endpoints {
            host: if ipv6 {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            },
            listener: None,
            previous_listener: None,
            closed_port: None,
            conns: BTreeMap::new(),
            listeners: Vec::new(),
            client_ports: BTreeMap::new(),
            wrote: BTreeSet::new(),
            udp: BTreeMap::new(),
        }
    }

    /// The request for an action, with the address its op listens on or connects to.
    pub(super) fn request(&mut self, a: &Action) -> Result<Request, String> {
        // A UDP address depends on the acting side ("the other side's socket"), so the UDP ops
        // are resolved with the action (`runner::udp`).
        let addr = match self.udp_address(a)? {
            Some(addr) => Some(addr),
            None => self.address(&a.op)?,
        };
        Ok(Request {
            slot: a.slot,
            op: a.op.clone(),
            addr,
        })
    }

    fn address(&mut self, op: &Op) -> Result<Option<SocketAddr>, String> {
        let listener = || self.listener.ok_or("no listener to connect to");
        Ok(Some(match op {
            Op::Listen {
                port: Port::Any, ..
            } => SocketAddr::new(self.host, 0),
            Op::Listen {
                port: Port::Previous,
                ..
            } => self.previous_listener.ok_or("no previous listener")?,
            Op::ListenDualStack { .. } => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
            Op::Connect {
                to: Target::ListenerOverIpv4,
                ..
            } => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listener()?.port()),
            Op::Connect {
                to: Target::Listener,
                ..
            }
            | Op::ConnectMany {
                compare_ports: true,
                ..
            } => listener()?,
            Op::ConnectMany {
                compare_ports: false,
                ..
            } => *self.listeners.first().ok_or("no listener to connect to")?,
            Op::Connect {
                to: Target::ClosedPort,
                ..
            } => self.make_closed_port()?,
            // ---- UDP addresses ----
            // (resolved in `request` by `udp_address`, which knows the acting side)

            // ---- Unix-domain socket addresses ----

            // ---- connect/bind/listen addresses ----

            // ---- accepted socket, readiness, close, options addresses ----
            _ => return Ok(None),
        }))
    }

    /// A port on which nothing listens: bind one, read its number, close it. It is taken below
    /// every platform's default ephemeral range (Linux 32768+, the others 49152+), so the
    /// client's own ephemeral port can never be it: a connect to one's own address and port is
    /// a TCP self-connect, which succeeds (`--repeat 20` met it once with a bind(0) port).
    fn make_closed_port(&mut self) -> Result<SocketAddr, String> {
        let free = (23_000..23_500).find_map(|port| {
            let l = std::net::TcpListener::bind(SocketAddr::new(self.host, port)).ok()?;
            l.local_addr().ok()
        });
        let addr = free.ok_or("no free port in 23000..23500 to serve as the closed port")?;
        self.closed_port = Some(addr);
        Ok(addr)
    }

    /// Keep what a reply tells of the endpoints (the listener's address, a connection's ends, who
    /// wrote data); returns the outcome as the step's line shows it.
    pub(super) fn note_reply(&mut self, a: &Action, reply: &Reply) -> Outcome {
        if let Some(udp) = self.note_udp_reply(a, reply) {
            return udp;
        }
        let mut outcome = reply.outcome.clone();
        match (&a.op, a.side) {
            (Op::Listen { .. } | Op::ListenDualStack { .. }, _) => {
                if let Some(l) = reply.local {
                    self.listener = Some(l);
                    self.previous_listener = Some(l);
                    self.listeners.push(l);
                }
            }
            (Op::Connect { .. }, Side::Client) => {
                if let Some(local) = reply.local {
                    self.client_ports.insert(a.slot, local.port());
                }
                if let (Some(local), Some(peer)) = (reply.local, reply.peer) {
                    self.conns.insert(a.slot, (local, peer));
                }
            }
            (Op::Write { .. } | Op::Fill, side)
                if a.slot.is_conn() && took_data(&reply.outcome) =>
            {
                self.wrote.insert(side);
            }
            (Op::Accept, Side::Server) => {
                // How a dual-stack listener presents an IPv4 client (its address only; the port
                // is the client's ephemeral one). The agent names a peer only with an accept
                // that succeeded (`ok`).
                let mapped = reply.peer.map(|p| p.ip()).filter(is_ipv4_mapped);
                if let (Some(ip), Outcome::Ok) = (mapped, &outcome) {
                    outcome = Outcome::OkWith {
                        note: format!("peer {ip}, IPv4-mapped"),
                    };
                }
            }
            _ => {}
        }
        if a.op == Op::Close && a.slot.is_listener() {
            self.listener = None;
        }
        outcome
    }

    /// The connection endpoints whose FIN or RST this step causes: the side's end of the slot it
    /// closes or shuts down for writing, or of every connection when its process ends.
    pub(super) fn closed_by(&self, step: &Step) -> Vec<SocketAddr> {
        let (side, slot) = match step {
            Step::Do(a) | Step::Start(a) => match &a.op {
                Op::Close if !a.slot.is_listener() => (a.side, Some(a.slot)),
                Op::Shutdown { how } if *how != crate::script::How::Read => (a.side, Some(a.slot)),
                op if op.ends_process() => (a.side, None),
                _ => return Vec::new(),
            },
            Step::Kill(side) | Step::Terminate(side) | Step::ReleaseHolder(side) => (*side, None),
            Step::ShutdownHost { .. } => (Side::Server, None),
            _ => return Vec::new(),
        };
        self.conns
            .iter()
            .filter(|(s, _)| slot.is_none_or(|slot| slot == **s))
            .map(|(_, &(c, srv))| if side == Side::Client { c } else { srv })
            .collect()
    }

    /// The case's listening ports and its closed port: one end of each of its connections.
    pub(super) fn server_ports(&self) -> std::collections::BTreeSet<u16> {
        let listeners = self.listeners.iter().map(|l| l.port());
        listeners
            .chain(self.closed_port.map(|p| p.port()))
            .chain(self.udp_server_ports())
            .collect()
    }

    /// The name of one end of one of the case's connections: "client", "server", "client c2"...
    pub(super) fn name_of(&self, end: SocketAddr) -> String {
        let end = canonical(end);
        let found = self.conns.iter().find_map(|(slot, &(c, s))| {
            let side = if canonical(c) == end {
                Side::Client
            } else if canonical(s) == end {
                Side::Server
            } else {
                return None;
            };
            Some(if slot.is_conn() {
                side.to_string()
            } else {
                format!("{side} {slot}")
            })
        });
        found.unwrap_or_else(|| "an unknown end".into())
    }

    /// Names for the wire: the server's listening ports, each client connection's port.
    pub(super) fn labels(&self) -> BTreeMap<u16, String> {
        let mut labels = BTreeMap::new();
        for l in &self.listeners {
            labels.insert(l.port(), "server".to_string());
        }
        for (slot, port) in &self.client_ports {
            let name = if slot.is_conn() {
                "client".to_string()
            } else {
                format!("client {slot}")
            };
            labels.insert(*port, name);
        }
        if let Some(p) = self.closed_port {
            labels.insert(p.port(), "closed port".to_string());
        }
        self.label_udp(&mut labels);
        labels
    }
}

/// Whether a write or fill put bytes into the connection.
fn took_data(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Bytes { n } if *n > 0) || matches!(outcome, Outcome::Filled { .. })
}

/// Who performed an action, as step lines name it: the side, and the slot unless it is the main
/// connection or listener.
pub(super) fn who(a: &Action) -> String {
    if a.slot.is_conn() || a.slot.is_listener() {
        a.side.to_string()
    } else {
        format!("{} {}", a.side, a.slot)
    }
}

/// An address with an IPv4-mapped IPv6 address (::ffff:a.b.c.d) written as the IPv4 one, so the
/// two ends of an IPv4 connection to a dual-stack listener compare equal; without IPv6 flow info
/// and scope id, which tables fill in differently (Wine reported scope 4096 for ::1).
pub(super) fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn is_ipv4_mapped(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}
