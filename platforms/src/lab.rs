//! The fault lab: a three-host topology built per case, where the runner injects faults below the
//! application (a host that crashes or reboots, a cut link, an ICMP error, a middlebox's RST).
//!
//! ```text
//!   client 192.0.2.2/24 --veth-- 192.0.2.1 router 198.51.100.1 --veth-- 198.51.100.2/24 server
//! ```
//! The addresses come from the documentation ranges (RFC 5737) and exist only inside the lab's
//! namespaces; each end host routes everything via the router, which forwards.
//!
//! On Linux ([`Lab`] is implemented in `sys/linux/lab.rs`) every host is an anonymous network
//! namespace kept alive by a holder process; the host's own interfaces, routes, sysctls and
//! firewall are never touched. Elsewhere [`Lab::build`] reports [`UNAVAILABLE`] and a `Lab` cannot
//! exist (the fallback type is uninhabited, so it can never give a wrong answer).
//!
//! How the runner uses it, on the case thread (a `Lab` is tied to the thread that built it):
//! 1. [`Lab::build`] (15-45 ms on Linux, drop 2-7 ms), or fall back to loopback with the reason;
//! 2. [`Lab::capture`]`(Host::Client)`: the client's one interface sees every packet the client
//!    sends and receives exactly once (capturing on the router would record each forwarded packet
//!    twice, and the server's namespace is replaced by [`Fault::Reboot`]);
//! 3. spawn each agent with [`Lab::prepare`] (client agent in `Host::Client`, server agent in
//!    `Host::Server`) and connect to [`Host::addr`]`(Host::Server)`;
//! 4. [`Lab::inject`] faults, [`Lab::tcp_table`] per host at checkpoints;
//! 5. drop the lab (it kills whatever still runs in its namespaces, then its holders).

use std::net::{IpAddr, Ipv4Addr};

/// One host of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// Runs the client agent; the place to capture the wire.
    Client,
    /// Forwards between client and server; faults on the path are installed here.
    Router,
    /// Runs the server agent; crashes and reboots.
    Server,
}

impl Host {
    pub const ALL: [Host; 3] = [Host::Client, Host::Router, Host::Server];

    /// The host's address: the router's is the one on the client's side (its server-side address
    /// is [`ROUTER_SERVER_SIDE`]).
    pub fn addr(self) -> IpAddr {
        IpAddr::V4(match self {
            Host::Client => CLIENT,
            Host::Router => ROUTER_CLIENT_SIDE,
            Host::Server => SERVER,
        })
    }
}

/// The client's address (192.0.2.2/24).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The router on the client's link (192.0.2.1/24), the client's default gateway.
pub const ROUTER_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The router on the server's link (198.51.100.1/24), the server's default gateway.
pub const ROUTER_SERVER_SIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The server's address (198.51.100.2/24).
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// A fault below the application. Faults accumulate until [`Fault::Heal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The server host answers nothing at all: every IP packet into or out of it is dropped (its
    /// sockets keep their state and keep retransmitting into the void). The lab's hosts never
    /// need ARP, so the router never turns the silence into ICMP errors: the client sees pure
    /// silence, however long it lasts.
    Crash,
    /// The server host loses all connection state without a packet leaving, then answers again
    /// with none: its traffic is dropped, every process in it is killed, its namespace is
    /// replaced by a fresh one with the same address, the same veth and MAC. Per-namespace
    /// sysctls set on the server are back to their defaults.
    Reboot,
    /// The router forwards nothing, in either direction (silently).
    Partition,
    /// Undo every fault still in place (Partition, Crash, Unreachable, MiddleboxReset). A Reboot
    /// is not undone: the state it destroyed stays gone.
    Heal,
    /// The router answers every packet for the server with ICMP host unreachable (rate-limited by
    /// the router's kernel like any ICMP error: about one per second after a burst).
    Unreachable,
    /// The router answers every forwarded TCP segment, in either direction, with a RST forged
    /// from the segment's destination, and drops the segment.
    MiddleboxReset,
}

/// Why the lab is unavailable on platforms without a backend.
pub const UNAVAILABLE: &str =
    "unavailable: the fault lab is implemented only on Linux (network namespaces)";

#[cfg(target_os = "linux")]
pub use crate::sys::lab::{probe, Lab};

#[cfg(not(target_os = "linux"))]
pub use fallback::{probe, Lab};

#[cfg(not(target_os = "linux"))]
mod fallback {
    use super::{Fault, Host, UNAVAILABLE};
    use crate::{Capture, TcpEntry, Unavailable};
    use std::convert::Infallible;
    use std::io;
    use std::net::IpAddr;
    use std::process::Command;

    /// Can this run build a lab? Never here.
    pub fn probe() -> Result<(), Unavailable> {
        Err(UNAVAILABLE.into())
    }

    /// The fault lab: not implemented on this platform, so no value of this type can exist.
    pub struct Lab {
        never: Infallible,
    }

    impl Lab {
        pub fn build() -> Result<Lab, Unavailable> {
            Err(UNAVAILABLE.into())
        }
        pub fn addr(&self, _host: Host) -> IpAddr {
            match self.never {}
        }
        pub fn prepare(&self, _host: Host, _cmd: &mut Command) {
            match self.never {}
        }
        pub fn tcp_table(&self, _host: Host) -> io::Result<Vec<TcpEntry>> {
            match self.never {}
        }
        pub fn capture(&self, _host: Host) -> io::Result<Capture> {
            match self.never {}
        }
        pub fn sysctl(&self, _host: Host, _key: &str, _value: &str) -> io::Result<()> {
            match self.never {}
        }
        pub fn inject(&mut self, _fault: Fault) -> io::Result<()> {
            match self.never {}
        }
    }
}
