//! The case's addresses and socket slots: its listeners (and the previous one), the closed port,
//! its connections and client ports by slot, the names of wire endpoints, the addresses a request
//! is sent with, and what each reply tells of them.

use crate::proto::{Outcome, Reply, Request, UnixArgs};
use crate::script::{Action, BindTo, Op, Port, Side, Slot, Step, Target, UnixName};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// The case's Unix-domain names (unix/ cases).
    pub(super) unix: UnixNames,
    /// The address the case's last successful `Op::Bind` gave its socket (a self-connect's target).
    bound: Option<SocketAddr>,
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
            unix: UnixNames::default(),
            bound: None,
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
            unix: self.unix.args(a)?,
            thread: None,
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
            // (Unix-domain names are no socket address: `UnixNames::args` resolves them.)

            // ---- connect/bind/listen addresses ----
            Op::Bind { to } => self.bind_address(*to)?,
            Op::ConnectNonblocking { to } | Op::ConnectSocket { to } => self.target(*to)?,
            Op::Connect {
                to: to @ (Target::UnspecifiedAddress | Target::OwnAddress),
                ..
            } => self.target(*to)?,

            // ---- accepted socket, readiness, close, options addresses ----
            // A socket that is never connected still has the case's family.
            Op::OpenUnconnected => SocketAddr::new(self.host, 0),
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
        self.note_binding(a, reply);
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
            (Op::Write { .. } | Op::Fill | Op::WriteUrgent { .. }, side)
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

/// The addresses of the connect/bind/listen cases' ops, and what their replies tell.
impl Endpoints {
    /// Where a connect goes, for the ops that name a target.
    fn target(&mut self, to: Target) -> Result<SocketAddr, String> {
        let listener = self.listener.ok_or("no listener to connect to");
        Ok(match to {
            Target::Listener => listener?,
            Target::ClosedPort => self.make_closed_port()?,
            Target::ListenerOverIpv4 => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listener?.port())
            }
            Target::UnspecifiedAddress => SocketAddr::new(unspecified(self.host), listener?.port()),
            Target::OwnAddress => self.bound.ok_or("no socket was bound to connect to")?,
        })
    }

    fn bind_address(&mut self, to: BindTo) -> Result<SocketAddr, String> {
        Ok(match to {
            BindTo::AnyPort => SocketAddr::new(self.host, 0),
            BindTo::LowPort => free_low_port(self.host)?,
            BindTo::ListenerAddress => self.listener.ok_or("no listener to bind beside")?,
            BindTo::Ipv4Loopback => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            BindTo::Ipv6Loopback => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0),
            BindTo::V4MappedWildcard => {
                SocketAddr::new(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().into(), 0)
            }
        })
    }

    /// Keep what the replies of these ops tell: a bound address (a self-connect's target), a
    /// listener made by listen() on a socket (one on the wildcard is reached through the case's
    /// address; it becomes the case's listener only if it has none yet, so a second listener
    /// beside the first does not change where connects go), a connecting client's ends.
    fn note_binding(&mut self, a: &Action, reply: &Reply) {
        match (&a.op, &reply.outcome) {
            (Op::Bind { .. }, Outcome::Ok) => self.bound = reply.local,
            (Op::ListenOn { .. }, Outcome::Ok | Outcome::OkWith { .. }) => {
                let Some(l) = reply.local else { return };
                let l = if l.ip().to_canonical().is_unspecified() {
                    SocketAddr::new(self.host, l.port())
                } else {
                    l
                };
                self.listener.get_or_insert(l);
                self.previous_listener = Some(l);
                self.listeners.push(l);
            }
            (Op::ConnectNonblocking { .. } | Op::ConnectSocket { .. }, _)
                if a.side == Side::Client =>
            {
                if let Some(local) = reply.local {
                    self.keep_earlier_port(a.slot, local.port());
                    self.client_ports.insert(a.slot, local.port());
                }
                if let (Some(local), Some(peer)) = (reply.local, reply.peer) {
                    self.conns.insert(a.slot, (local, peer));
                }
            }
            _ => {}
        }
    }

    /// A socket connected again after a failed connect may have been given another port (Linux
    /// releases the first one): the first attempt's segments keep a name on the wire, "client
    /// (earlier port)", instead of counting as a connection of no one's.
    fn keep_earlier_port(&mut self, slot: Slot, port: u16) {
        let Some(&earlier) = self.client_ports.get(&slot) else {
            return;
        };
        if earlier != port && earlier != 0 {
            let name = if slot.is_conn() {
                "(earlier port)".to_string()
            } else {
                format!("{slot} (earlier port)")
            };
            self.client_ports.insert(Slot::named(&name), earlier);
        }
    }
}

/// The unspecified address of `host`'s family.
fn unspecified(host: IpAddr) -> IpAddr {
    match host {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// A free port on `host` below every platform's default ephemeral range (Linux 32768+, the
/// others 49152+; apart from the closed port's 23000..23500), so no socket the kernel numbers
/// itself can take it between the search and the bind.
fn free_low_port(host: IpAddr) -> Result<SocketAddr, String> {
    // A probe without SO_REUSEADDR (std's listener sets it on Unix), so a port still in
    // TIME_WAIT from an earlier run on a shared loopback counts as taken, as it is for the bind.
    let free = (24_000..24_500).find_map(|port| {
        let addr = SocketAddr::new(host, port);
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .ok()?;
        s.bind(&addr.into()).ok().map(|()| addr)
    });
    free.ok_or_else(|| "no free port in 24000..24500 to bind".to_string())
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

// ---- Unix-domain names ----------------------------------------------------------------------------

/// The Unix-domain names of a case: its private temporary directory, made when the first name is
/// asked for and removed when the walk ends (`Drop`, so also after a failure or a panic), the
/// name bound last, and the agents' pids, which peer credentials are compared with.
#[derive(Default)]
pub(super) struct UnixNames {
    dir: Option<CaseDir>,
    /// The path (or abstract tag) bound last, and whether it is an abstract name.
    last: Option<(PathBuf, bool)>,
    /// The agents' pids, client first.
    pub(super) pids: Option<[u32; 2]>,
    /// How many fresh names the case has made.
    made: usize,
}

/// A directory of one case, removed with everything in it when dropped.
struct CaseDir(PathBuf);

impl Drop for CaseDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl UnixNames {
    /// What a Unix-domain op needs from the runner, or None for any other op.
    fn args(&mut self, a: &Action) -> Result<Option<UnixArgs>, String> {
        let (path, abstract_name) = match &a.op {
            Op::UnixBind {
                name: UnixName::Path,
            } => self.fresh(a.slot, false)?,
            Op::UnixBind {
                name: UnixName::Abstract,
            } => self.fresh(a.slot, true)?,
            Op::UnixBind {
                name: UnixName::Previous,
            }
            | Op::UnixConnect => self.last.clone().ok_or("no Unix-domain name bound yet")?,
            Op::UnixPathLengths { .. } => (self.dir()?.to_path_buf(), false),
            Op::UnixPeerCred => (PathBuf::new(), false),
            _ => return Ok(None),
        };
        let peer = usize::from(a.side == Side::Client);
        Ok(Some(UnixArgs {
            path,
            abstract_name,
            peer_pid: self.pids.map(|p| p[peer]),
        }))
    }

    /// A new name for the slot, which becomes the name bound last: a file of the case's directory
    /// named after the slot or, for an abstract name, that path as the tag (unique to the run and the case, as the
    /// abstract namespace is shared by every process of the network namespace).
    fn fresh(&mut self, slot: Slot, abstract_name: bool) -> Result<(PathBuf, bool), String> {
        // Numbered, as a slot may bind again after its first socket closed (its file stays).
        self.made += 1;
        let file = format!("{slot}{}", self.made);
        let path = self.dir()?.join(file);
        self.last = Some((path.clone(), abstract_name));
        Ok((path, abstract_name))
    }

    /// The case's private directory, made on first use.
    fn dir(&mut self) -> Result<&Path, String> {
        if self.dir.is_none() {
            self.dir = Some(make_case_dir()?);
        }
        Ok(&self.dir.as_ref().expect("made above").0)
    }
}

/// A new, empty directory under the system's temporary directory, named by the run's process and
/// a counter, so concurrent cases never share one.
fn make_case_dir() -> Result<CaseDir, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("sockconform-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(CaseDir(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot make {}: {e}", dir.display())),
        }
    }
    Err(format!("no free directory name under {}", base.display()))
}
