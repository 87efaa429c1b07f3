//! Unix-domain sockets: the types a platform has, the length of a path name, the abstract
//! namespace, peer credentials, SO_REUSEPORT, a datagram receiver that never reads, and a pending
//! connection whose listener closes. Nothing here crosses a network interface: these cases have
//! no wire and no TCP checkpoints (`Case::unix_domain`).

use crate::script::ops::*;
use crate::script::*;

fn socket(kind: UnixType) -> Op {
    Op::UnixSocket { kind }
}

fn bind(name: UnixName) -> Op {
    Op::UnixBind { name }
}

/// The server's listener of this type on a fresh path; the client's socket of the same type in
/// `slot`, connected to it; the server accepts it into `slot`.
fn connected_pair(kind: UnixType, slot: &'static str) -> Vec<Step> {
    vec![
        server(socket(kind)).on("listener"),
        server(bind(UnixName::Path)).on("listener"),
        server(Op::UnixListen { backlog: 16 }).on("listener"),
        client(socket(kind)).on(slot),
        client(Op::UnixConnect).on(slot),
        server(Op::Accept).on(slot),
    ]
}

/// Two writes of 5 bytes, then one read of up to 100: 10 on a byte stream, 5 where each message
/// keeps its boundary.
fn two_messages(slot: &'static str) -> Vec<Step> {
    vec![
        client(write(5)).on(slot),
        client(write(5)).on(slot),
        server(read(100)).on(slot),
    ]
}

pub fn socket_types() -> Case {
    let mut steps = connected_pair(UnixType::Stream, "conn");
    steps.extend(two_messages("conn"));
    steps.push(server(Op::Close).on("listener"));
    steps.extend(connected_pair(UnixType::Seqpacket, "seqpacket"));
    steps.extend(two_messages("seqpacket"));
    steps.extend([
        server(socket(UnixType::Datagram)).on("dgram"),
        server(bind(UnixName::Path)).on("dgram"),
        client(socket(UnixType::Datagram)).on("dgram"),
        client(Op::UnixConnect).on("dgram"),
    ]);
    steps.extend(two_messages("dgram"));
    Case::new(
        "Verify: socket(AF_UNIX, ...) with SOCK_STREAM, SOCK_SEQPACKET and SOCK_DGRAM: which types the platform has, and does each carry two 5-byte writes from client to server, as one stream or as two messages (census J1)?",
        steps,
    )
    .unix_domain()
}

pub fn path_length_limit() -> Case {
    Case::new(
        "Verify: bind() of Unix-domain paths of 100 to 110 bytes: the longest the platform accepts (sun_path is 108 bytes on Linux and Windows, 104 on macOS and the BSDs), its error beyond, and whether getsockname gives the path back whole (census J2).",
        vec![client(Op::UnixPathLengths { from: 100, to: 110 })],
    )
    .unix_domain()
}

pub fn abstract_namespace() -> Case {
    let mut steps = vec![
        server(socket(UnixType::Stream)).on("listener"),
        server(bind(UnixName::Abstract)).on("listener"),
        server(Op::UnixListen { backlog: 16 }).on("listener"),
        client(socket(UnixType::Stream)),
        client(Op::UnixConnect),
        server(Op::Accept),
    ];
    steps.extend(two_messages("conn"));
    Case::new(
        "Verify: bind() to an abstract Unix-domain name (a leading NUL byte): does the platform have the namespace, does no file appear on disk, and do connect and a write work through it (census J3)?",
        steps,
    )
    .unix_domain()
}

pub fn peer_credentials() -> Case {
    let mut steps = connected_pair(UnixType::Stream, "conn");
    steps.extend([server(Op::UnixPeerCred), client(Op::UnixPeerCred)]);
    Case::new(
        "Verify: the peer credentials of a connected Unix-domain stream socket, on both ends (SO_PEERCRED, LOCAL_PEERCRED, getpeereid): which of pid, uid and gid the platform reports, and whether they are the peer process's (census J4).",
        steps,
    )
    .unix_domain()
}

pub fn reuseport() -> Case {
    Case::new(
        "Verify: setsockopt(SO_REUSEPORT) on a Unix-domain stream socket: accepted or refused (Linux refuses it from 6.12.9 on), and can a second socket with it bind the same path (census J6)?",
        vec![
            server(socket(UnixType::Stream)).on("listener"),
            server(Op::SetReusePort { on: true }).on("listener"),
            server(bind(UnixName::Path)).on("listener"),
            server(Op::UnixListen { backlog: 16 }).on("listener"),
            server(socket(UnixType::Stream)).on("l2"),
            server(Op::SetReusePort { on: true }).on("l2"),
            server(bind(UnixName::Previous)).on("l2"),
        ],
    )
    .unix_domain()
}

pub fn dgram_receiver_full() -> Case {
    Case::new(
        "Verify: 1 KiB datagrams sent on a connected Unix-domain datagram socket to a receiver that never reads: what refuses the first one that does not fit (EAGAIN, ENOBUFS), is the socket still writable then, and does a blocking send wait (1x its write timeout) or fail at once (census J7)?",
        vec![
            server(socket(UnixType::Datagram)),
            server(bind(UnixName::Path)),
            client(socket(UnixType::Datagram)),
            client(Op::UnixConnect),
            client(Op::SetNonblocking { on: true }),
            client(Op::UnixDgramFill {
                size: 1024,
                max: 100_000,
            }),
            client(Op::Poll { timeout_ms: 0 }),
            client(Op::SetNonblocking { on: false }),
            client(Op::SetWriteTimeout { ms: 200 }),
            client(write(1024)).timed_vs("write timeout", 200),
        ],
    )
    .unix_domain()
}

pub fn listener_closed_after_connect() -> Case {
    Case::new(
        "Verify: a non-blocking Unix-domain connect to a listener with backlog 1 that never accepts, then the listener is closed: what the client's poll() reports, its SO_ERROR, and what a read returns (census J5).",
        vec![
            server(socket(UnixType::Stream)).on("listener"),
            server(bind(UnixName::Path)).on("listener"),
            server(Op::UnixListen { backlog: 1 }).on("listener"),
            client(socket(UnixType::Stream)),
            client(Op::SetNonblocking { on: true }),
            client(Op::UnixConnect),
            client(Op::Poll { timeout_ms: 0 }),
            server(Op::Close).on("listener"),
            client(Op::Poll { timeout_ms: 0 }),
            client(Op::SocketError),
            client(read(100)),
            client(read(100)),
        ],
    )
    .unix_domain()
}
