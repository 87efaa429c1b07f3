//! UDP: what the ICMP port unreachable does to connected and unconnected sockets, Linux's
//! IP_RECVERR, truncation, zero-length datagrams and buffers, sendto on a connected socket,
//! disconnecting, broadcast permission, SO_REUSEADDR on a unicast port, the IPv6 wildcard's
//! V6ONLY default, and a non-blocking send flood (census rows F1-F11, D6, E2).
//!
//! A receive waits for the socket to be readable, bounded, and returns as soon as it is; where a
//! case asks which socket a datagram reached, a last datagram sent after it (the marker) ends the
//! receives instead of a timeout. Where it asks whether an ICMP error has been handled, a
//! connected socket's pending error (poll ERR) tells, rather than a sleep.

use crate::script::*;

/// How long a receive waits for a datagram the script expects; it returns once one is queued.
const WAIT_MS: u64 = 1000;

/// The other side's main UDP socket.
const PEER: UdpTo = UdpTo::Peer(Slot::CONN);

fn bind(at: UdpAt) -> Op {
    Op::UdpBind {
        at,
        reuse_addr: false,
    }
}

fn sendto(to: UdpTo, len: usize) -> Op {
    Op::UdpSendTo { to, len }
}

fn send(len: usize) -> Op {
    Op::UdpSend { len }
}

/// One receive into a buffer of `max` bytes, waiting at most `wait_ms` for a datagram.
fn recv(max: usize, wait_ms: u64) -> Op {
    Op::UdpRecv {
        max,
        peek: false,
        wait_ms,
    }
}

/// Receive until the `len`-byte marker arrives.
fn recv_until(len: usize) -> Op {
    Op::UdpRecvUntil {
        len,
        wait_ms: WAIT_MS,
    }
}

fn await_error() -> Op {
    Op::UdpAwaitError { wait_ms: WAIT_MS }
}

/// Both sides bind a UDP socket on the case's host address.
fn both_bound() -> Vec<Step> {
    vec![server(bind(UdpAt::Host)), client(bind(UdpAt::Host))]
}

fn with_both_bound(rest: impl IntoIterator<Item = Step>) -> Vec<Step> {
    let mut v = both_bound();
    v.extend(rest);
    v
}

/// A connected probe sends to the closed port and waits for its own ICMP error to be pending:
/// the stack has then handled the ICMP for every datagram sent there before it too, so what an
/// unconnected socket shows next is its answer, not a race with the ICMP.
fn probe_closed_port() -> Vec<Step> {
    vec![
        client(bind(UdpAt::Host)).on("probe"),
        client(Op::UdpConnect {
            to: UdpTo::ClosedPort,
        })
        .on("probe"),
        client(send(1)).on("probe"),
        client(await_error()).on("probe"),
    ]
}

pub fn icmp_unreachable_unconnected() -> Case {
    let mut steps = both_bound();
    steps.push(client(sendto(UdpTo::ClosedPort, 5)));
    steps.extend(probe_closed_port());
    steps.extend([
        server(sendto(PEER, 3)),
        client(recv_until(3)),
        client(recv(64, 0)),
    ]);
    Case::new(
        "Verify: an unconnected UDP socket sent a datagram to a closed port; do its next receives report the ICMP port unreachable (an error before the data?) or only the peer's datagram (census F1)?",
        steps,
    )
}

pub fn icmp_unreachable_connected() -> Case {
    Case::new(
        "Verify: a UDP socket connected to a closed port: once the ICMP port unreachable is pending, what do the next send and receive return, and does a send succeed again once a socket is bound there (census F2)?",
        vec![
            client(bind(UdpAt::Host)),
            client(Op::UdpConnect {
                to: UdpTo::ClosedPort,
            }),
            client(send(5)),
            client(await_error()),
            client(send(5)),
            client(send(5)),
            client(await_error()),
            client(recv(64, 0)),
            client(recv(64, 0)),
            server(bind(UdpAt::ClosedPort)),
            client(send(6)),
            server(recv(64, WAIT_MS)),
        ],
    )
}

pub fn recverr_next_send() -> Case {
    let mut steps = both_bound();
    steps.extend([
        client(Op::SetRecvErr { on: true }),
        client(sendto(UdpTo::ClosedPort, 5)),
    ]);
    steps.extend(probe_closed_port());
    steps.extend([
        client(Op::Poll { timeout_ms: 0 }),
        client(sendto(PEER, 6)),
        client(sendto(PEER, 7)),
        client(Op::UdpReadErrorQueue),
        server(recv_until(7)),
    ]);
    Case::new(
        "Verify: with IP_RECVERR (Linux only), an unconnected UDP socket's ICMP port unreachable fails its next send, to another destination; what the error queue then holds (census F3).",
        steps,
    )
}

pub fn truncated_datagram() -> Case {
    Case::new(
        "Verify: a 1000-byte datagram received into a 100-byte buffer: what the call returns (MSG_TRUNC, or an error), and whether the next receive gets the next datagram (census F4).",
        with_both_bound([
            server(sendto(PEER, 1000)),
            server(sendto(PEER, 10)),
            client(recv(100, WAIT_MS)),
            client(recv(100, WAIT_MS)),
        ]),
    )
}

pub fn zero_length_datagram() -> Case {
    Case::new(
        "Verify: a zero-length datagram is received as 0 bytes with its sender, told apart from the 3-byte datagram after it (census F7).",
        with_both_bound([
            server(sendto(PEER, 0)),
            server(sendto(PEER, 3)),
            client(recv(64, WAIT_MS)),
            client(recv(64, WAIT_MS)),
        ]),
    )
}

pub fn zero_length_buffer() -> Case {
    Case::new(
        "Verify: a receive into a zero-length buffer, peeking and then not: what each returns, and whether the second consumed the datagram (the next receive gets the 5-byte one or the 7-byte one after it) (census F6).",
        with_both_bound([
            server(sendto(PEER, 5)),
            server(sendto(PEER, 7)),
            client(Op::UdpRecv {
                max: 0,
                peek: true,
                wait_ms: WAIT_MS,
            }),
            client(recv(0, WAIT_MS)),
            client(recv(64, WAIT_MS)),
        ]),
    )
}

pub fn sendto_on_connected() -> Case {
    let b = Slot::new("b");
    let c = Slot::new("c");
    Case::new(
        "Verify: sendto() with an explicit address on a connected UDP socket: to another address (EISCONN, or sent, and to which socket?) and to the connected one (census F8).",
        vec![
            server(bind(UdpAt::Host)).on("b"),
            server(bind(UdpAt::Host)).on("c"),
            client(bind(UdpAt::Host)),
            client(Op::UdpConnect { to: UdpTo::Peer(b) }),
            client(sendto(UdpTo::Peer(c), 5)),
            client(sendto(UdpTo::Peer(b), 6)),
            client(send(7)),
            // The last datagram each server socket gets comes from a socket that can send
            // there: the receives end with it.
            client(bind(UdpAt::Host)).on("m"),
            client(sendto(UdpTo::Peer(c), 9)).on("m"),
            server(recv_until(9)).on("c"),
            server(recv_until(7)).on("b"),
        ],
    )
}

pub fn disconnect() -> Case {
    let other = Slot::new("other");
    Case::new(
        "Verify: connect(AF_UNSPEC) on a connected UDP socket: what it returns, whether getpeername() and send() then fail, whether the socket keeps its port, and whether datagrams to and from other addresses flow again (census F9).",
        with_both_bound([
            server(bind(UdpAt::Host)).on("other"),
            client(Op::UdpConnect { to: PEER }),
            // While connected, a datagram from another address is filtered out: the receive
            // ends with the peer's 5 bytes.
            server(sendto(PEER, 4)).on("other"),
            server(sendto(PEER, 5)),
            client(recv_until(5)),
            client(Op::UdpDisconnect),
            client(Op::UdpPeerName),
            client(Op::UdpLocalName),
            client(send(5)),
            client(sendto(UdpTo::Peer(other), 7)),
            // Where the socket has a new port now, the runner learns it here, and the datagram
            // below goes to it.
            client(Op::UdpLocalName),
            server(recv(64, WAIT_MS)).on("other"),
            server(sendto(PEER, 6)).on("other"),
            client(recv_until(6)),
        ]),
    )
}

pub fn broadcast_without_option() -> Case {
    Case::new(
        "Verify: sendto() to 255.255.255.255 and to the loopback broadcast 127.255.255.255 without and with SO_BROADCAST (EACCES?), and which of them a socket on the wildcard address receives (census F11).",
        vec![
            server(bind(UdpAt::Wildcard)),
            client(bind(UdpAt::Host)),
            client(sendto(UdpTo::Broadcast(Slot::CONN), 5)),
            client(sendto(UdpTo::LoopbackBroadcast(Slot::CONN), 6)),
            client(Op::SetBroadcast { on: true }),
            client(sendto(UdpTo::Broadcast(Slot::CONN), 7)),
            client(sendto(UdpTo::LoopbackBroadcast(Slot::CONN), 8)),
            client(sendto(PEER, 9)),
            server(recv_until(9)),
        ],
    )
    // A socket on 0.0.0.0 outside the case's own namespace would be bound on the host.
    .needs(&[Need::Isolation])
}

pub fn reuseaddr_unicast() -> Case {
    let r1 = Slot::new("r1");
    let r2 = Slot::new("r2");
    Case::new(
        "Verify: two UDP sockets with SO_REUSEADDR bind the same unicast address and port; which of them receives 100 datagrams sent there (census D6).",
        vec![
            server(Op::UdpBind {
                at: UdpAt::Host,
                reuse_addr: true,
            })
            .on("r1"),
            server(Op::UdpBind {
                at: UdpAt::SamePortAs(r1),
                reuse_addr: true,
            })
            .on("r2"),
            client(bind(UdpAt::Host)),
            client(Op::UdpConnect { to: UdpTo::Peer(r1) }),
            client(Op::UdpFlood { count: 100, len: 5 }),
            server(Op::UdpCountAcross {
                slots: vec![r1, r2],
                total: 100,
                wait_ms: WAIT_MS,
            }),
        ],
    )
}

pub fn v6only_default() -> Case {
    Case::new(
        "Verify: a UDP socket bound to [::] with IPV6_V6ONLY left at its default: its value, and whether it receives an IPv4 datagram sent to 127.0.0.1 at its port (census E2).",
        vec![
            server(bind(UdpAt::Ipv6Wildcard)),
            client(bind(UdpAt::Host)),
            client(sendto(UdpTo::PeerOverIpv4(Slot::CONN), 5)),
            server(recv(64, WAIT_MS)),
        ],
    )
    // A socket on [::] outside the case's own namespace would be bound on the host.
    .needs(&[Need::Isolation, Need::Ipv6])
}

pub fn send_flood_nonblocking() -> Case {
    Case::new(
        "Verify: a non-blocking UDP socket sends 2000 datagrams of 1400 bytes to a peer that never reads: do all sends succeed (dropped quietly), or which error stops them (EAGAIN, ENOBUFS) and is the socket writable then (census F10)?",
        with_both_bound([
            client(Op::UdpConnect { to: PEER }),
            client(Op::UdpFlood {
                count: 2_000,
                len: 1400,
            }),
        ]),
    )
}
