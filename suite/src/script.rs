//! The case language: a case is a name, an intent, the capabilities it needs, and a script of steps.
//! The same model is read by the runner (to execute), the catalog listing (to describe) and the
//! report (to tell the story of a case).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub use platforms::sockopt::SockOpt;
pub use platforms::TcpState;

/// One endpoint of a case. Each side is a separate agent process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Client,
    Server,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

/// One socket slot of an agent: the name a script gives one of its sockets ("conn", "listener",
/// "c2"). It is written and serialized as that name, so the protocol and every rendered line read
/// as before; the runner and the agent compare slots by value instead of by string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(&'static str);

impl Slot {
    /// The connection an op uses when the script names no slot.
    pub const CONN: Slot = Slot("conn");
    /// The server's listener when the script names no slot.
    pub const LISTENER: Slot = Slot("listener");

    /// The slot a script names (`.on("c2")`).
    pub const fn new(name: &'static str) -> Slot {
        Slot(name)
    }

    /// The slot of this name, for a name read at run time (the agent reads them from its
    /// requests). Each distinct name is kept for the life of the process: an agent serves one
    /// case, whose script names a handful of slots.
    pub fn named(name: &str) -> Slot {
        static NAMES: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
        if let Some(known) = [Slot::CONN, Slot::LISTENER]
            .into_iter()
            .find(|s| s.0 == name)
        {
            return known;
        }
        let mut names = NAMES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(kept) = names.get(name) {
            return Slot(kept);
        }
        let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.insert(kept);
        Slot(kept)
    }

    /// The slot's name as the script wrote it.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Whether this is the case's main connection (lines and wire labels leave its name out).
    pub fn is_conn(self) -> bool {
        self == Slot::CONN
    }

    /// Whether this is the server's main listener.
    pub fn is_listener(self) -> bool {
        self == Slot::LISTENER
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Written as the quoted name, as the string it replaces was (error messages print steps with it).
impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl PartialEq<&str> for Slot {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for Slot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Slot, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(Slot::named(&name))
    }
}

/// Which port a listener binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Port {
    /// Any free port (the OS chooses).
    Any,
    /// The port of the case's previous listener (to rebind while a TIME_WAIT exists).
    Previous,
}

/// Where a connect goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The server's listener.
    Listener,
    /// A port on which nothing listens (the runner makes one free before the step).
    ClosedPort,
    /// The server's listener through its IPv4 loopback address (127.0.0.1), whatever family the
    /// listener has: an IPv4 connect to a `[::]` listener asks whether it is dual-stack.
    ListenerOverIpv4,
    /// The unspecified address of the case's family (0.0.0.0, or :: in IPv6 cases) with the
    /// listener's port: Linux and macOS take it for the local host, Windows refuses it.
    UnspecifiedAddress,
    /// The address the agent's socket was last bound to (`Op::Bind`): a TCP self-connect.
    OwnAddress,
}

/// Where `Op::Bind` binds the slot's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindTo {
    /// The case's address, any port (the kernel chooses).
    AnyPort,
    /// The case's address and a free port below every platform's ephemeral range, so no socket
    /// the kernel numbers can be given it meanwhile.
    LowPort,
    /// The address and port of the case's listener, which is in use.
    ListenerAddress,
    /// 127.0.0.1, any port, whatever the socket's family.
    Ipv4Loopback,
    /// ::1, any port, whatever the socket's family.
    Ipv6Loopback,
    /// The IPv4-mapped IPv6 wildcard ::ffff:0.0.0.0, any port.
    V4MappedWildcard,
}

/// The address family of a socket an op creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Target {
    /// Where a connect goes, as a step line says it ("to the listener").
    pub fn phrase(self) -> &'static str {
        match self {
            Target::Listener => "to the listener",
            Target::ClosedPort => "to a closed port",
            Target::ListenerOverIpv4 => "to the listener's port over IPv4 (127.0.0.1)",
            Target::UnspecifiedAddress => {
                "to the unspecified address (0.0.0.0, :: in IPv6 cases) at the listener's port"
            }
            Target::OwnAddress => "to its own address",
        }
    }
}

impl BindTo {
    /// The address, as a step line says it.
    pub fn phrase(self) -> &'static str {
        match self {
            BindTo::AnyPort => "the case's address, any port",
            BindTo::LowPort => "the case's address, a free port below the ephemeral ranges",
            BindTo::ListenerAddress => "the listener's address and port",
            BindTo::Ipv4Loopback => "127.0.0.1, any port",
            BindTo::Ipv6Loopback => "::1, any port",
            BindTo::V4MappedWildcard => "::ffff:0.0.0.0, any port",
        }
    }
}

impl Family {
    /// The C name of the family.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "AF_INET",
            Family::Ipv6 => "AF_INET6",
        }
    }
}

/// Where a UDP socket binds (udp/ cases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UdpAt {
    /// The case's host address (127.0.0.1, or ::1 in an IPv6 case), any free port.
    Host,
    /// The wildcard address of the case's family (0.0.0.0), any free port: it also receives
    /// what is sent to a broadcast address.
    Wildcard,
    /// `[::]` with IPV6_V6ONLY left at the platform's default, any free port.
    Ipv6Wildcard,
    /// The case's host address and the port of this side's socket in that slot.
    SamePortAs(Slot),
    /// The case's closed port (the one a datagram went to unanswered).
    ClosedPort,
}

/// Where a UDP connect or sendto goes (udp/ cases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UdpTo {
    /// The other side's UDP socket in this slot.
    Peer(Slot),
    /// A port on which no UDP socket is bound (the runner finds one before the step).
    ClosedPort,
    /// The limited broadcast address 255.255.255.255, at the port of the other side's socket.
    Broadcast(Slot),
    /// The loopback network's broadcast address 127.255.255.255, at the port of the other
    /// side's socket.
    LoopbackBroadcast(Slot),
    /// 127.0.0.1 at the port of the other side's socket, whatever its family (an IPv4 datagram to
    /// a `[::]` socket asks whether it is dual-stack).
    PeerOverIpv4(Slot),
}

impl fmt::Display for UdpTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peer = |slot: &Slot| {
            if slot.is_conn() {
                "peer".to_string()
            } else {
                format!("peer {slot}")
            }
        };
        match self {
            UdpTo::Peer(slot) => f.write_str(&peer(slot)),
            UdpTo::ClosedPort => f.write_str("closed port"),
            UdpTo::Broadcast(slot) => write!(f, "255.255.255.255 at the {}'s port", peer(slot)),
            UdpTo::LoopbackBroadcast(slot) => {
                write!(f, "127.255.255.255 at the {}'s port", peer(slot))
            }
            UdpTo::PeerOverIpv4(slot) => write!(f, "127.0.0.1 at the {}'s port", peer(slot)),
        }
    }
}

/// shutdown(2) directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    Read,
    Write,
    Both,
}

/// The type of a Unix-domain socket (unix/ cases).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnixType {
    Stream,
    Datagram,
    Seqpacket,
}

/// Which name a Unix-domain socket binds (unix/ cases). Fresh names are the slot's name, as a
/// file in the case's private temporary directory or in the abstract namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnixName {
    /// A path in the case's directory, named after the slot.
    Path,
    /// An abstract name (Linux's namespace of names that are no file), named after the slot.
    Abstract,
    /// The name the case bound last, again.
    Previous,
}

/// One operation an agent performs. Each produces one outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    Listen {
        backlog: i32,
        port: Port,
        reuse_addr: bool,
    },
    /// Listen on the IPv6 wildcard `[::]` with IPV6_V6ONLY set as given, or left at the platform's
    /// default (None); the outcome names the value in effect.
    ListenDualStack {
        v6only: Option<bool>,
    },
    Connect {
        to: Target,
        timeout_ms: Option<u64>,
    },
    Accept,
    /// send() of `len` bytes; `nosignal` asks the kernel not to raise SIGPIPE (MSG_NOSIGNAL).
    Write {
        len: usize,
        nosignal: bool,
    },
    /// Write until the kernel refuses more (needs a write timeout or non-blocking mode first).
    Fill,
    Read {
        max: usize,
    },
    /// Read until end of stream or an error; reports the final outcome (byte counts are not kept).
    Drain,
    Shutdown {
        how: How,
    },
    Close,
    /// SO_LINGER: None turns it off, Some(s) turns it on with s seconds.
    SetLinger {
        secs: Option<u32>,
    },
    SetNonblocking {
        on: bool,
    },
    SetReadTimeout {
        ms: u64,
    },
    SetWriteTimeout {
        ms: u64,
    },
    SetRecvBuffer {
        bytes: usize,
    },
    SetSendBuffer {
        bytes: usize,
    },
    SetUserTimeout {
        ms: u64,
    },
    /// Restore the default SIGPIPE action in the agent (Rust's runtime starts with SIGPIPE ignored).
    SigpipeDefault,
    /// Lower the descriptor limit to what is open now, so the next descriptor cannot be created.
    ExhaustFds,
    /// Raise the descriptor limit again.
    RestoreFds,
    Poll {
        timeout_ms: u64,
    },
    /// The socket's TCP state as its own kernel reports it (TCP_INFO).
    State,
    /// Wait (at most `wait_ms`) until the socket holds received, unread bytes, as the socket
    /// itself reports them (FIONREAD); replies with the count. Sent by the runner for
    /// `Step::AwaitUnread`, whose success is not part of the observation.
    AwaitUnread {
        wait_ms: u64,
    },
    /// Start a child process that inherits the socket and holds it until the runner releases it.
    SpawnHolder,
    /// Exit normally with the socket still open.
    Exit {
        code: i32,
    },
    /// Die by abort().
    Abort,
    /// Keepalive on with idle time, probe interval (seconds) and probe count.
    SetKeepalive {
        idle_s: u64,
        interval_s: u64,
        count: u32,
    },
    /// Answer every byte received with the same byte, until end of stream or an error (the server
    /// side of an application heartbeat).
    Echo,
    /// An application heartbeat: send one byte and expect it back within `timeout_ms`, every
    /// `interval_ms`, until a round fails (the outcome is the failure) or `rounds` succeeded.
    Heartbeat {
        interval_ms: u64,
        timeout_ms: u64,
        rounds: Option<u32>,
    },
    /// Open connections until `max` or the first error: to the case's first listener, or with
    /// `compare_ports` to the newest one, then also reporting how many local ports the previous
    /// ConnectMany had used already (the four-tuple question).
    ConnectMany {
        max: usize,
        compare_ports: bool,
    },
    /// Accept from this listener until `max` connections, or until none arrives for 2 s.
    AcceptAll {
        max: usize,
    },
    /// Raise the descriptor limit to the hard limit.
    RaiseFdLimit,
    /// Set the soft descriptor limit.
    SetFdLimit {
        n: u64,
    },
    /// What the process does on a termination request: ignore it, or close its sockets and exit 0.
    OnTerminate {
        ignore: bool,
    },
    // ---- UDP ops (udp/ cases) go below this line ----
    /// Create a UDP socket bound where `at` says, with SO_REUSEADDR if asked.
    UdpBind {
        at: UdpAt,
        reuse_addr: bool,
    },
    /// connect() a UDP socket: it then sends to, and receives from, that address only.
    UdpConnect {
        to: UdpTo,
    },
    /// Dissolve the socket's association: connect() to an AF_UNSPEC address.
    UdpDisconnect,
    /// send() of one datagram of `len` bytes (to the connected address).
    UdpSend {
        len: usize,
    },
    /// sendto() of one datagram of `len` bytes.
    UdpSendTo {
        to: UdpTo,
        len: usize,
    },
    /// One recvmsg() into a `max`-byte buffer (peeking if asked), once the socket is readable,
    /// waiting for that at most `wait_ms`: the bytes, MSG_TRUNC and the sender, or no datagram.
    UdpRecv {
        max: usize,
        peek: bool,
        wait_ms: u64,
    },
    /// Receive (64 KiB buffer) until a datagram of `len` bytes, the script's last one, arrived;
    /// each receive waits at most `wait_ms`. Every receive's result, in order.
    UdpRecvUntil {
        len: usize,
        wait_ms: u64,
    },
    /// Receive on these slots of the agent until `total` datagrams arrived altogether, or
    /// `wait_ms` passed; how many each slot got.
    UdpCountAcross {
        slots: Vec<Slot>,
        total: usize,
        wait_ms: u64,
    },
    /// poll() until the socket reports ERR (an error is pending), at most `wait_ms`; the events
    /// then.
    UdpAwaitError {
        wait_ms: u64,
    },
    /// getpeername(): whom the socket is connected to.
    UdpPeerName,
    /// getsockname(): the socket's own address (its port may be gone after a disconnect).
    UdpLocalName,
    SetBroadcast {
        on: bool,
    },
    /// IP_RECVERR (Linux): ICMP errors of an unconnected socket are queued and reported.
    SetRecvErr {
        on: bool,
    },
    /// recvmsg(MSG_ERRQUEUE) (Linux): one queued error, its origin and the datagram's destination.
    UdpReadErrorQueue,
    /// Make the socket non-blocking and send `count` datagrams of `len` bytes as fast as it takes
    /// them: whether all went, or the first error and whether poll() said writable then.
    UdpFlood {
        count: usize,
        len: usize,
    },
    // ---- Unix-domain socket ops (unix/ cases) go below this line ----
    /// socket(AF_UNIX, type): a new, unbound Unix-domain socket in the slot.
    UnixSocket {
        kind: UnixType,
    },
    /// bind() the slot's Unix-domain socket to a name of the case.
    UnixBind {
        name: UnixName,
    },
    /// listen() on the slot's bound Unix-domain socket.
    UnixListen {
        backlog: i32,
    },
    /// connect() the slot's Unix-domain socket to the name the case bound last.
    UnixConnect,
    /// For each length from `from` to `to` bytes, a fresh stream socket binds a path of that
    /// length in the case's directory: ok or the error per length, and whether getsockname gives
    /// the path back whole.
    UnixPathLengths {
        from: usize,
        to: usize,
    },
    /// The peer's credentials on the slot's connected socket: which fields the platform reports,
    /// and whether the pid, uid and gid are the peer agent's (never the numbers themselves).
    UnixPeerCred,
    /// Send datagrams of `size` bytes on the slot's connected datagram socket until the first
    /// refusal, at most `max` of them; the refusal is the outcome, not the count.
    UnixDgramFill {
        size: usize,
        max: usize,
    },
    // ---- connect/bind/listen ops (connect/, bind/, listen/ cases) go below this line ----
    /// socket() alone: a TCP socket of this family in the slot, neither bound nor connected.
    OpenSocket {
        family: Family,
    },
    /// bind() of the slot's socket.
    Bind {
        to: BindTo,
    },
    /// listen() on the slot's socket as it is, bound or not; when it was not bound, the outcome
    /// says where listen() put it (never the port's number).
    ListenOn {
        backlog: i32,
    },
    /// A new non-blocking socket connects: the outcome is the call's own answer (EINPROGRESS,
    /// WSAEWOULDBLOCK, or a synchronous refusal).
    ConnectNonblocking {
        to: Target,
    },
    /// connect() on the slot's existing socket, in whatever mode and state it is (in progress,
    /// connected, refused, bound).
    ConnectSocket {
        to: Target,
    },
    /// Wait at most `timeout_ms` for the socket to be writable or in error, as a runtime waits for
    /// a non-blocking connect (poll for POLLOUT alone); the outcome is the events reported.
    AwaitWritable {
        timeout_ms: u64,
    },
    /// SO_ERROR: read (and so clear) the socket's pending error.
    SocketError,
    /// getsockname(): the family, which address and whether the port is 0 (never the number).
    LocalAddress,
    SetReuseAddress {
        on: bool,
    },
    /// SO_REUSEPORT (`not supported` where the OS has no such option, e.g. Windows).
    SetReusePort {
        on: bool,
    },
    /// Accept from this listener and from `other` until `n` connections in all arrived (or none
    /// arrives for 2 s): which of the two got connections, as a statement, not counts.
    AcceptSpread {
        other: Slot,
        n: usize,
    },
    // ---- accepted socket, readiness, close, options ops go below this line ----
    /// Read the socket's blocking mode back (fcntl O_NONBLOCK); the outcome names it.
    NonblockingMode,
    /// getsockopt of one option; the outcome is the raw value the platform wrote.
    GetOption {
        #[serde(with = "opt_name")]
        name: SockOpt,
    },
    /// setsockopt of one option with a raw int (SO_LINGER: on, with this many seconds).
    SetOption {
        #[serde(with = "opt_name")]
        name: SockOpt,
        value: i32,
    },
    /// send() of `len` bytes with MSG_OOB (urgent data).
    WriteUrgent {
        len: usize,
    },
    /// recv() of up to `max` bytes with MSG_OOB.
    ReadUrgent {
        max: usize,
    },
    /// socket() only: a TCP socket that is never bound or connected, in its slot.
    OpenUnconnected,
    /// Run `call` on a second thread of the agent, on the same descriptor, while the agent goes
    /// on serving requests; a `Step::Finish` collects it, waiting at most `collect_within_ms`
    /// (a call still blocked then is recorded as such; the agent ends with the case).
    InThread {
        call: Box<Op>,
        collect_within_ms: u64,
    },
}

/// Socket options travel as their C names ("SO_RCVBUF").
mod opt_name {
    use super::SockOpt;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(o: &SockOpt, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(o.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SockOpt, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        SockOpt::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown socket option {name}")))
    }
}

impl Op {
    /// Ops after which the agent process is gone, so its outcome is how the process ended.
    pub fn ends_process(&self) -> bool {
        matches!(self, Op::Exit { .. } | Op::Abort)
    }

    /// The socket slot an op uses when the script names none.
    fn default_slot(&self) -> Slot {
        match self {
            Op::Listen { .. } | Op::ListenDualStack { .. } | Op::AcceptAll { .. } => Slot::LISTENER,
            // A second thread's accept runs on the listener itself (its connection is only held).
            Op::InThread { call, .. } if **call == Op::Accept => Slot::LISTENER,
            Op::InThread { call, .. } => call.default_slot(),
            _ => Slot::CONN,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // ---- UDP ops ----
            Op::UdpBind { .. }
            | Op::UdpConnect { .. }
            | Op::UdpDisconnect
            | Op::UdpSend { .. }
            | Op::UdpSendTo { .. }
            | Op::UdpRecv { .. }
            | Op::UdpRecvUntil { .. }
            | Op::UdpCountAcross { .. }
            | Op::UdpAwaitError { .. }
            | Op::UdpPeerName
            | Op::UdpLocalName
            | Op::SetBroadcast { .. }
            | Op::SetRecvErr { .. }
            | Op::UdpReadErrorQueue
            | Op::UdpFlood { .. } => fmt_udp(self, f),
            // ---- Unix-domain socket ops ----
            Op::UnixSocket { .. }
            | Op::UnixBind { .. }
            | Op::UnixListen { .. }
            | Op::UnixConnect
            | Op::UnixPathLengths { .. }
            | Op::UnixPeerCred
            | Op::UnixDgramFill { .. } => self.fmt_unix(f),
            // ---- connect/bind/listen ops ----
            Op::OpenSocket { .. }
            | Op::Bind { .. }
            | Op::ListenOn { .. }
            | Op::ConnectNonblocking { .. }
            | Op::ConnectSocket { .. }
            | Op::AwaitWritable { .. }
            | Op::SocketError
            | Op::LocalAddress
            | Op::SetReuseAddress { .. }
            | Op::SetReusePort { .. }
            | Op::AcceptSpread { .. } => self.fmt_binding(f),
            // ---- accepted socket, readiness, close, options ops ----
            Op::NonblockingMode
            | Op::GetOption { .. }
            | Op::SetOption { .. }
            | Op::WriteUrgent { .. }
            | Op::ReadUrgent { .. }
            | Op::OpenUnconnected
            | Op::InThread { .. } => self.fmt_inspect(f),
            // ---- knobs, loops and the process ----
            Op::SetKeepalive { .. }
            | Op::Echo
            | Op::Heartbeat { .. }
            | Op::ConnectMany { .. }
            | Op::AcceptAll { .. }
            | Op::RaiseFdLimit
            | Op::SetFdLimit { .. }
            | Op::OnTerminate { .. } => self.fmt_process(f),
            _ => self.fmt_stream(f),
        }
    }
}

impl Op {
    /// The lines of the stream ops the catalog began with: listen, connect, accept, data,
    /// teardown, the basic knobs and what a socket reports.
    fn fmt_stream(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |b: bool| if b { "on" } else { "off" };
        match self {
            Op::Listen {
                backlog,
                port,
                reuse_addr,
            } => {
                write!(f, "listen(backlog {backlog}")?;
                if *port == Port::Previous {
                    f.write_str(", previous port")?;
                }
                if *reuse_addr {
                    f.write_str(", SO_REUSEADDR")?;
                }
                f.write_str(")")
            }
            Op::ListenDualStack { v6only: None } => {
                f.write_str("listen on [::] (IPV6_V6ONLY left at its default)")
            }
            Op::ListenDualStack { v6only: Some(v) } => {
                write!(f, "listen on [::] with IPV6_V6ONLY {}", on_off(*v))
            }
            Op::Connect { to, timeout_ms } => {
                f.write_str(match to {
                    Target::Listener => "connect",
                    Target::ClosedPort => "connect(closed port)",
                    Target::ListenerOverIpv4 => {
                        "connect to the listener's port over IPv4 (127.0.0.1)"
                    }
                    Target::UnspecifiedAddress | Target::OwnAddress => "connect",
                })?;
                if matches!(to, Target::UnspecifiedAddress | Target::OwnAddress) {
                    write!(f, " {}", to.phrase())?;
                }
                match timeout_ms {
                    Some(ms) => write!(f, " with timeout {ms} ms"),
                    None => Ok(()),
                }
            }
            Op::Accept => f.write_str("accept"),
            Op::Write {
                len,
                nosignal: false,
            } => write!(f, "write({len})"),
            Op::Write {
                len,
                nosignal: true,
            } => write!(f, "write({len}, MSG_NOSIGNAL)"),
            Op::Fill => f.write_str("write until full"),
            Op::Read { max } => write!(f, "read({max})"),
            Op::Drain => f.write_str("read until end"),
            Op::Shutdown { how } => write!(f, "shutdown({})", format!("{how:?}").to_lowercase()),
            Op::Close => f.write_str("close"),
            Op::SetLinger { secs: None } => f.write_str("SO_LINGER off"),
            Op::SetLinger { secs: Some(s) } => write!(f, "SO_LINGER on, {s} s"),
            Op::SetNonblocking { on } => write!(f, "non-blocking {}", on_off(*on)),
            Op::SetReadTimeout { ms } => write!(f, "read timeout {ms} ms"),
            Op::SetWriteTimeout { ms } => write!(f, "write timeout {ms} ms"),
            Op::SetRecvBuffer { bytes } => write!(f, "SO_RCVBUF {bytes}"),
            Op::SetSendBuffer { bytes } => write!(f, "SO_SNDBUF {bytes}"),
            Op::SetUserTimeout { ms } => write!(f, "user timeout {ms} ms"),
            Op::SigpipeDefault => f.write_str("SIGPIPE default action"),
            Op::ExhaustFds => f.write_str("exhaust descriptors"),
            Op::RestoreFds => f.write_str("restore descriptor limit"),
            Op::Poll { timeout_ms } => write!(f, "poll({timeout_ms} ms)"),
            Op::State => f.write_str("TCP_INFO state"),
            Op::AwaitUnread { wait_ms } => write!(f, "await unread data ({wait_ms} ms)"),
            Op::SpawnHolder => f.write_str("spawn child inheriting the socket"),
            Op::Exit { code } => write!(f, "exit({code}) with sockets open"),
            Op::Abort => f.write_str("abort()"),
            other => unreachable!("{other:?} has a line of its own family"),
        }
    }

    /// The lines of keepalive, the echo and heartbeat loops, bulk connections and the process.
    fn fmt_process(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::SetKeepalive {
                idle_s,
                interval_s,
                count,
            } => {
                write!(
                    f,
                    "keepalive on (idle {idle_s} s, interval {interval_s} s, {count} probes)"
                )
            }
            Op::Echo => f.write_str("echo every byte"),
            Op::Heartbeat {
                interval_ms,
                timeout_ms,
                rounds,
            } => {
                write!(
                    f,
                    "heartbeat every {interval_ms} ms, answer within {timeout_ms} ms"
                )?;
                match rounds {
                    Some(n) => write!(f, ", {n} rounds"),
                    None => f.write_str(", until it fails"),
                }
            }
            Op::ConnectMany {
                max,
                compare_ports: false,
            } => {
                write!(f, "connect up to {max} times to the first listener")
            }
            Op::ConnectMany {
                max,
                compare_ports: true,
            } => {
                write!(f, "connect up to {max} times to the newest listener")
            }
            Op::AcceptAll { max } => write!(f, "accept up to {max}"),
            Op::RaiseFdLimit => f.write_str("raise descriptor limit to the hard limit"),
            Op::SetFdLimit { n } => write!(f, "descriptor limit {n}"),
            Op::OnTerminate { ignore: true } => f.write_str("ignore SIGTERM"),
            Op::OnTerminate { ignore: false } => f.write_str("on SIGTERM close sockets and exit 0"),
            other => unreachable!("{other:?} is not a process or loop op"),
        }
    }
}

impl Op {
    /// The lines of the accepted socket, readiness, close and options ops (kept apart so the
    /// Display above stays one arm per family).
    fn fmt_inspect(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::NonblockingMode => f.write_str("read O_NONBLOCK"),
            Op::GetOption { name } => write!(f, "getsockopt({name})"),
            Op::SetOption { name, value } => write!(f, "setsockopt({name}, {value})"),
            Op::WriteUrgent { len } => write!(f, "send({len}, MSG_OOB)"),
            Op::ReadUrgent { max } => write!(f, "recv({max}, MSG_OOB)"),
            Op::OpenUnconnected => f.write_str("socket() (never connected)"),
            Op::InThread {
                call,
                collect_within_ms,
            } => write!(
                f,
                "{call} in a second thread (collected within {collect_within_ms} ms)"
            ),
            other => fmt::Debug::fmt(other, f),
        }
    }
}

impl Op {
    /// The line of a Unix-domain op (kept apart so `fmt` stays one arm per family).
    fn fmt_unix(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
        Op::UnixSocket { kind } => {
            let ty = match kind {
                UnixType::Stream => "SOCK_STREAM",
                UnixType::Datagram => "SOCK_DGRAM",
                UnixType::Seqpacket => "SOCK_SEQPACKET",
            };
            write!(f, "socket(AF_UNIX, {ty})")
        }
        Op::UnixBind { name } => f.write_str(match name {
            UnixName::Path => "bind to a path in the case's directory",
            UnixName::Abstract => "bind to an abstract name",
            UnixName::Previous => "bind to the name bound last",
        }),
        Op::UnixListen { backlog } => write!(f, "listen(backlog {backlog})"),
        Op::UnixConnect => f.write_str("connect to the name bound last"),
        Op::UnixPathLengths { from, to } => write!(
            f,
            "bind paths of {from} to {to} bytes (the address length counting a terminating NUL), a fresh socket each"
        ),
        Op::UnixPeerCred => f.write_str("peer credentials"),
        Op::UnixDgramFill { size, max } => write!(
            f,
            "send {size}-byte datagrams until refused (at most {max})"
        ),
            other => unreachable!("{other:?} is not a Unix-domain op"),
        }
    }

    /// The words of the connect/bind/listen ops (kept apart from `fmt`, which is long enough).
    fn fmt_binding(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |b: bool| if b { "on" } else { "off" };
        match self {
            Op::OpenSocket { family } => write!(f, "socket({})", family.name()),
            Op::Bind { to } => write!(f, "bind({})", to.phrase()),
            Op::ListenOn { backlog } => write!(f, "listen(backlog {backlog}) on this socket"),
            Op::ConnectNonblocking { to } => write!(f, "non-blocking connect {}", to.phrase()),
            Op::ConnectSocket { to } => write!(f, "connect the same socket {}", to.phrase()),
            Op::AwaitWritable { timeout_ms } => {
                write!(f, "poll for writable (at most {timeout_ms} ms)")
            }
            Op::SocketError => f.write_str("SO_ERROR"),
            Op::LocalAddress => f.write_str("getsockname"),
            Op::SetReuseAddress { on } => write!(f, "SO_REUSEADDR {}", on_off(*on)),
            Op::SetReusePort { on } => write!(f, "SO_REUSEPORT {}", on_off(*on)),
            Op::AcceptSpread { other, n } => {
                write!(f, "accept {n} connection(s) from this listener and {other}")
            }
            other => unreachable!("{other:?} is not a connect/bind/listen op"),
        }
    }
}

/// The UDP ops as step lines show them.
fn fmt_udp(op: &Op, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let on_off = |b: bool| if b { "on" } else { "off" };
    match op {
        Op::UdpBind { at, reuse_addr } => {
            f.write_str("UDP bind(")?;
            match at {
                UdpAt::Host => f.write_str("host")?,
                UdpAt::Wildcard => f.write_str("wildcard address")?,
                UdpAt::Ipv6Wildcard => f.write_str("[::], IPV6_V6ONLY left at its default")?,
                UdpAt::SamePortAs(slot) => write!(f, "host, the port of {slot}")?,
                UdpAt::ClosedPort => f.write_str("host, the closed port")?,
            }
            if *reuse_addr {
                f.write_str(", SO_REUSEADDR")?;
            }
            f.write_str(")")
        }
        Op::UdpConnect { to } => write!(f, "UDP connect({to})"),
        Op::UdpDisconnect => f.write_str("UDP connect(AF_UNSPEC)"),
        Op::UdpSend { len } => write!(f, "UDP send({len})"),
        Op::UdpSendTo { to, len } => write!(f, "UDP sendto({to}, {len})"),
        Op::UdpRecv { max, peek, wait_ms } => {
            let peek = if *peek { ", MSG_PEEK" } else { "" };
            write!(
                f,
                "UDP recvmsg(buffer {max}{peek}) once readable (up to {wait_ms} ms)"
            )
        }
        Op::UdpRecvUntil { len, wait_ms } => write!(
            f,
            "UDP receive until a {len}-byte datagram (up to {wait_ms} ms each)"
        ),
        Op::UdpCountAcross {
            slots,
            total,
            wait_ms,
        } => {
            let names: Vec<_> = slots.iter().map(|s| s.as_str()).collect();
            write!(
                f,
                "UDP receive {total} datagrams on {} (up to {wait_ms} ms)",
                names.join(" and ")
            )
        }
        Op::UdpAwaitError { wait_ms } => write!(f, "poll until ERR (up to {wait_ms} ms)"),
        Op::UdpPeerName => f.write_str("getpeername"),
        Op::UdpLocalName => f.write_str("getsockname"),
        Op::SetBroadcast { on } => write!(f, "SO_BROADCAST {}", on_off(*on)),
        Op::SetRecvErr { on } => write!(f, "IP_RECVERR {}", on_off(*on)),
        Op::UdpReadErrorQueue => f.write_str("recvmsg(MSG_ERRQUEUE)"),
        Op::UdpFlood { count, len } => write!(
            f,
            "non-blocking: UDP send {count} datagrams of {len} bytes, as fast as taken"
        ),
        other => fmt::Debug::fmt(other, f),
    }
}

/// How the duration of a step enters the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// Not at all (raw time still goes to the JSON results).
    Untimed,
    /// As an absolute bucket ("under 100 ms").
    Absolute,
    /// Relative to the knob that drives it ("about 1x the read timeout (300 ms)").
    Relative { knob: &'static str, ms: u64 },
}

/// One operation of one agent, on one of its socket slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub side: Side,
    pub slot: Slot,
    pub op: Op,
    pub timing: Timing,
}

/// One step of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Perform an action and wait for its outcome.
    Do(Action),
    /// Begin an action (typically a blocking read); `Finish` collects its outcome later.
    Start(Action),
    /// Collect the outcome of the side's started action.
    Finish(Side),
    /// Wait until the side's agent is asleep in the kernel (inside its started call).
    AwaitBlocked(Side),
    /// Kill the agent process hard (SIGKILL / TerminateProcess) and record how it ended.
    Kill(Side),
    /// Ask the agent process to terminate (SIGTERM with the default action) and record how it ended.
    Terminate(Side),
    /// Close the standard input of a side whose agent is gone: its holder child (see Op::SpawnHolder) exits.
    ReleaseHolder(Side),
    /// Record the TCP state of every connection and listener of the case.
    Checkpoint(&'static str),
    /// Wait (with a deadline) until the side's end of the connection reaches one of these states;
    /// records nothing unless the deadline passes. "gone" is written as TcpState::Closed.
    AwaitState(Side, &'static [TcpState]),
    /// Wait (with a deadline) until data waits unread in the side's receive queue, or its end is gone.
    AwaitUnread(Side),
    /// Inject a fault into the lab (lab cases only).
    Fault(Fault),
    /// Set a sysctl in the network namespace of one side's host (isolated or lab cases only; the
    /// host machine's own settings are never touched).
    Sysctl(Side, &'static str, &'static str),
    /// Shut the server's host down: SIGTERM to its processes, wait up to the grace period for them
    /// to end, then SIGKILL whatever is left.
    ShutdownHost { grace_ms: u64 },
    /// Wait (with a deadline) until the capture shows the client's data retransmitted this often;
    /// without a capture it cannot wait, and records that.
    AwaitRetransmits(u32),
    /// Wait (with a deadline) until the capture shows this many SYNs from the client; without a
    /// capture it cannot wait, and records that.
    AwaitSyns(u32),
    /// Wait (with a deadline) until the capture shows the peer's stack acknowledged every byte
    /// this side sent on the connection: the data has been processed there, even on a stack that
    /// does so after the sending call returned (gVisor). Records nothing when met; without a
    /// capture it cannot wait, and records that instead.
    AwaitAcked(Side),
    /// Record a platform default as a fact (read from the kernel, not waited for).
    Fact(Fact),
    /// Remember the kernel memory held by TCP sockets now.
    MemoryMark,
    /// Record the kernel memory per connection since MemoryMark, for this many connections.
    MemoryPerConnection(usize),
}

/// Faults below the application, injected by the lab (see `platforms::lab::Fault`).
pub use platforms::lab::Fault;

/// Kernel defaults a case records as facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    RetransmissionDefault,
    KeepaliveDefault,
    SynRetriesDefault,
}

/// Where a case's endpoints live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Both agents on loopback (in the case's own namespace when isolation is available).
    Loopback,
    /// Client, router and server hosts joined by veth links (the fault lab).
    Lab,
}

/// What a case needs from the run; probed at run time, and a case whose needs are not met is skipped
/// with the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Need {
    /// Its own network namespace (root or CAP_SYS_ADMIN).
    Isolation,
    /// Packet capture (root or CAP_NET_RAW).
    Capture,
    /// The fault lab: client, router and server hosts (root, the `ip` and `nft` tools).
    Lab,
    /// An IPv6 loopback address (::1) where the case runs.
    Ipv6,
    /// `net.*` sysctls that take effect in the case's own namespace (gVisor accepts the write
    /// but applies it to its first namespace).
    Sysctl,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Need::Isolation => "isolation",
            Need::Capture => "capture",
            Need::Lab => "lab",
            Need::Ipv6 => "ipv6",
            Need::Sysctl => "sysctl",
        })
    }
}

/// A conformance case.
#[derive(Clone, Debug)]
pub struct Case {
    pub family: &'static str,
    pub name: &'static str,
    /// One line, "Verify: ...".
    pub intent: &'static str,
    pub needs: &'static [Need],
    pub topology: Topology,
    /// Why the number of retransmissions is not stable in this case, if it is not: the wire then
    /// records that the data was retransmitted and why the count varies, not the count itself.
    pub retransmissions_vary: Option<&'static str>,
    /// Every socket of the case uses ::1 instead of 127.0.0.1 (loopback cases only).
    pub ipv6: bool,
    /// Before each step, on a stack that processes segments after the call returns, the runner
    /// waits (bounded) until nothing is in flight and the TCP table is stable: a generated script
    /// has no await steps, so without this its moves race the previous move's segments there.
    pub settle_between_moves: bool,
    /// Why the case has no wire at all (its sockets never cross a network interface): the
    /// runner then captures nothing, reads no TCP table, and records this as the reason.
    pub no_wire: Option<&'static str>,
    pub steps: Vec<Step>,
}

impl Case {
    /// A case of the catalog; its family and name come from the catalog (they are its function's).
    pub fn new(intent: &'static str, steps: Vec<Step>) -> Case {
        Case {
            family: "",
            name: "",
            intent,
            needs: &[],
            topology: Topology::Loopback,
            retransmissions_vary: None,
            ipv6: false,
            settle_between_moves: false,
            no_wire: None,
            steps,
        }
    }

    /// A case of Unix-domain sockets only: nothing of it crosses a network interface, so there
    /// is no wire to capture and no TCP table lists its sockets.
    pub fn unix_domain(mut self) -> Case {
        self.no_wire = Some("Unix-domain sockets do not cross a network interface");
        self
    }

    /// The same script over IPv6 loopback (::1), with its own intent. It needs IPv6; a `needs`
    /// after it replaces that list (name Ipv6 there too).
    pub fn over_ipv6(mut self, intent: &'static str) -> Case {
        self.intent = intent;
        self.ipv6 = true;
        self.needs = &[Need::Ipv6];
        self
    }

    /// Declare that the retransmission count races with something outside the kernel under test.
    pub fn retransmissions_vary(mut self, why: &'static str) -> Case {
        self.retransmissions_vary = Some(why);
        self
    }

    /// Let the stack go quiet before each step (see `settle_between_moves`). It changes nothing
    /// on a stack that handles each segment within the sending call (Linux loopback).
    pub fn settle_between_moves(mut self) -> Case {
        self.settle_between_moves = true;
        self
    }

    /// Run the case in the fault lab (which needs the lab and capture).
    pub fn in_lab(mut self) -> Case {
        self.topology = Topology::Lab;
        self.needs = &[Need::Lab, Need::Capture];
        self
    }

    /// Declare what the case needs from the run.
    pub fn needs(mut self, needs: &'static [Need]) -> Case {
        self.needs = needs;
        self
    }

    /// "family/name", the id used by --filter, the report and the snapshot path.
    pub fn id(&self) -> String {
        format!("{}/{}", self.family, self.name)
    }

    /// Whether the script moves bulk data, whose segmentation on the wire is not stable (a TCP
    /// fill), or floods datagrams whose number on the wire is not the point (a UDP flood).
    pub fn is_bulk(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Do(a) | Step::Start(a) if matches!(a.op, Op::Fill | Op::UdpFlood { .. })))
    }

    /// An upper bound for the whole case, used as its deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_secs(30)
    }
}

// --- builders: scripts read as the sequence they perform ------------------------------------------

fn action(side: Side, op: Op) -> Step {
    let slot = op.default_slot();
    Step::Do(Action {
        side,
        slot,
        op,
        timing: Timing::Untimed,
    })
}

/// The client performs `op` on its connection.
pub fn client(op: Op) -> Step {
    action(Side::Client, op)
}

/// The server performs `op` (on its listener for `listen`, otherwise on its accepted connection).
pub fn server(op: Op) -> Step {
    action(Side::Server, op)
}

impl Step {
    fn action_mut(&mut self) -> &mut Action {
        match self {
            Step::Do(a) | Step::Start(a) => a,
            other => panic!("{other:?} is not an action"),
        }
    }
    /// Use another socket slot of the agent ("c2", "listener").
    pub fn on(mut self, slot: &'static str) -> Step {
        self.action_mut().slot = Slot::new(slot);
        self
    }
    /// Record the duration as an absolute bucket.
    pub fn timed(mut self) -> Step {
        self.action_mut().timing = Timing::Absolute;
        self
    }
    /// Record the duration relative to the knob that drives it.
    pub fn timed_vs(mut self, knob: &'static str, ms: u64) -> Step {
        self.action_mut().timing = Timing::Relative { knob, ms };
        self
    }
    /// Begin the action without waiting; collect it with `Step::Finish`.
    pub fn start(self) -> Step {
        match self {
            Step::Do(a) => Step::Start(a),
            other => panic!("{other:?} cannot be started"),
        }
    }
}

/// Shorthands for the ops a script uses most.
pub mod ops {
    use super::*;
    pub fn listen() -> Op {
        Op::Listen {
            backlog: 16,
            port: Port::Any,
            reuse_addr: false,
        }
    }
    pub fn connect() -> Op {
        Op::Connect {
            to: Target::Listener,
            timeout_ms: None,
        }
    }
    pub fn write(len: usize) -> Op {
        Op::Write {
            len,
            nosignal: true,
        }
    }
    pub fn read(max: usize) -> Op {
        Op::Read { max }
    }
    pub fn shutdown(how: How) -> Op {
        Op::Shutdown { how }
    }
    pub fn linger(secs: Option<u32>) -> Op {
        Op::SetLinger { secs }
    }
}

/// The steps that open one connection: the server listens, the client connects, the server accepts.
pub fn connected() -> Vec<Step> {
    vec![
        server(ops::listen()),
        client(ops::connect()),
        server(Op::Accept),
    ]
}

/// A script: the connection setup followed by `rest`.
pub fn after_connect(rest: impl IntoIterator<Item = Step>) -> Vec<Step> {
    let mut v = connected();
    v.extend(rest);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_roundtrip_through_json() {
        let op = Op::Connect {
            to: Target::ClosedPort,
            timeout_ms: Some(5),
        };
        let s = serde_json::to_string(&op).unwrap();
        assert_eq!(serde_json::from_str::<Op>(&s).unwrap(), op);
    }

    #[test]
    fn builders_choose_default_slots() {
        assert_eq!(
            server(ops::listen()),
            Step::Do(Action {
                side: Side::Server,
                slot: Slot::LISTENER,
                op: ops::listen(),
                timing: Timing::Untimed
            })
        );
        let s = client(ops::read(10)).on("c2").timed().start();
        assert!(matches!(
            s,
            Step::Start(Action {
                slot,
                timing: Timing::Absolute,
                ..
            }) if slot == "c2"
        ));
    }

    #[test]
    fn slots_travel_and_print_as_their_names() {
        let c2 = Slot::new("c2");
        assert_eq!(serde_json::to_string(&c2).unwrap(), r#""c2""#);
        assert_eq!(serde_json::from_str::<Slot>(r#""c2""#).unwrap(), c2);
        let conn: Slot = serde_json::from_str(r#""conn""#).unwrap();
        assert!(conn.is_conn() && !conn.is_listener());
        assert_eq!(format!("{c2} {c2:?}"), r#"c2 "c2""#);
        // A name read twice is kept once.
        assert!(std::ptr::eq(
            Slot::named("c9").as_str(),
            Slot::named("c9").as_str()
        ));
    }

    #[test]
    fn op_descriptions_are_readable() {
        assert_eq!(
            Op::SetLinger { secs: Some(0) }.to_string(),
            "SO_LINGER on, 0 s"
        );
        assert_eq!(ops::shutdown(How::Write).to_string(), "shutdown(write)");
        assert_eq!(
            Op::Write {
                len: 5,
                nosignal: false
            }
            .to_string(),
            "write(5)"
        );
    }
}
