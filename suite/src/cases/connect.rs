//! connect(): refused, unanswered because the backlog is full, reset before accept(), and
//! queued when the listener closes.

use crate::script::ops::*;
use crate::script::*;

pub fn closed_port() -> Case {
    Case::new(
        "Verify: connect() to a port with no listener: which error, and how long it takes.",
        vec![client(Op::Connect {
            to: Target::ClosedPort,
            timeout_ms: None,
        })
        .timed()],
    )
}

pub fn backlog_full_not_accepting() -> Case {
    let attempt = |slot| {
        client(Op::Connect {
            to: Target::Listener,
            timeout_ms: Some(300),
        })
        .on(slot)
        .timed()
    };
    Case::new(
        "Verify: connect() to a listener with backlog 1 that never accepts: how many connections complete, and what the next ones see.",
        vec![
            server(Op::Listen { backlog: 1, port: Port::Any, reuse_addr: false }),
            attempt("c1"),
            attempt("c2"),
            // Close each unanswered attempt as soon as it times out: its SYN is retransmitted
            // after 1 s, so the wire must not depend on how long the steps after it take (with
            // both closes at the end, a loaded machine let c3 retransmit once in 20 runs).
            attempt("c3"),
            client(Op::Close).on("c3"),
            attempt("c4"),
            client(Op::Close).on("c4"),
            Step::Checkpoint("after_attempts"),
        ],
    )
}

pub fn reset_before_accept() -> Case {
    Case::new(
        "Verify: a connection reset by the client before the server accepts it: does accept() return it, and what does the first read say?",
        vec![
            server(listen()),
            client(connect()),
            client(linger(Some(0))),
            client(Op::Close),
            Step::AwaitState(Side::Server, &[TcpState::Closed]),
            server(Op::Accept),
            server(read(100)),
        ],
    )
}

pub fn listener_closed_with_connection_queued() -> Case {
    Case::new(
        "Verify: the listener is closed while a completed connection waits in its queue, never accepted: is the queued connection reset, and what does its client read (found by `cargo xtask explore --on host,gvisor --cases 200 --seed 1`)?",
        vec![
            server(listen()),
            client(connect()),
            client(Op::SetReadTimeout { ms: 500 }),
            Step::Checkpoint("queued"),
            server(Op::Close).on("listener"),
            Step::Checkpoint("after_listener_close"),
            client(read(100)),
            client(write(5)),
        ],
    )
}

pub fn listener_killed_with_connection_queued() -> Case {
    Case::new(
        "Verify: the listening process is killed while a completed connection waits in its queue, never accepted: is the queued connection reset, and what does its client read (found by `cargo xtask explore --on host,gvisor --cases 200 --seed 1`)?",
        vec![
            server(listen()),
            client(connect()),
            client(Op::SetReadTimeout { ms: 500 }),
            Step::Kill(Side::Server),
            Step::Checkpoint("after_kill"),
            client(read(100)),
            client(write(5)),
        ],
    )
}

// ---- non-blocking connect and connect() again on one socket (issue 16) ----

/// The server's listener made non-blocking, so that the accept after `accept_within` answers at
/// once where no connection came (a platform that refused the client's connect).
fn nonblocking_listener() -> Step {
    server(Op::SetNonblocking { on: true }).on("listener")
}

/// Wait (bounded) for a connection in the listener's queue, then accept it: on a stack that
/// handles the client's last ACK after its connect() returned (gVisor) the queue fills a moment
/// later, and where the connect failed the accept answers that nothing came, without hanging.
fn accept_within(ms: u64) -> [Step; 2] {
    [
        server(Op::Poll { timeout_ms: ms }).on("listener"),
        server(Op::Accept),
    ]
}

pub fn nonblocking_refused() -> Case {
    Case::new(
        "Verify: a non-blocking connect() to a port with no listener: does the call itself refuse or say in progress, which events does a wait for writability report, and what does SO_ERROR hold, read twice (census B3, B4)?",
        vec![
            client(Op::ConnectNonblocking {
                to: Target::ClosedPort,
            }),
            client(Op::AwaitWritable { timeout_ms: 3000 }).timed(),
            client(Op::SocketError),
            client(Op::SocketError),
        ],
    )
}

pub fn nonblocking_second_call() -> Case {
    let filler = |slot| client(connect()).on(slot);
    Case::new(
        "Verify: connect() called again on a socket whose non-blocking connect is in progress (EALREADY?), and twice once it completed (success, then EISCONN?) (census B2, B5).",
        vec![
            // Two connections fill the backlog of 1 (see connect/backlog_full_not_accepting), so
            // the SYN of the non-blocking connect is dropped and the connect stays in progress
            // until its retransmission, 1 s later, on every stack: without that, a loopback
            // connect may complete before the second call, or not.
            server(Op::Listen {
                backlog: 1,
                port: Port::Any,
                reuse_addr: false,
            }),
            filler("c1"),
            filler("c2"),
            client(Op::ConnectNonblocking {
                to: Target::Listener,
            }),
            client(Op::ConnectSocket {
                to: Target::Listener,
            }),
            // Still in progress 200 ms later: the SYN was dropped. The wait also gives a stack
            // that handles the SYN after the call returned (gVisor) the time to drop it before
            // the accept below makes room, which would let it in at once.
            client(Op::AwaitWritable { timeout_ms: 200 }),
            // Room in the queue again: the retransmitted SYN gets in.
            server(Op::Accept),
            client(Op::AwaitWritable { timeout_ms: 3000 }),
            client(Op::SocketError),
            // Twice: Linux answers the first call after completion with success (the socket
            // only then counts as connected) and the next with EISCONN.
            client(Op::ConnectSocket {
                to: Target::Listener,
            }),
            client(Op::ConnectSocket {
                to: Target::Listener,
            }),
        ],
    )
}

pub fn again_after_refused() -> Case {
    Case::new(
        "Verify: connect() again on the same socket after its connect was refused, now to a live listener: does it connect (census B6)?",
        vec![
            server(listen()),
            nonblocking_listener(),
            client(Op::Connect {
                to: Target::ClosedPort,
                timeout_ms: None,
            }),
            client(Op::ConnectSocket {
                to: Target::Listener,
            }),
        ]
        .into_iter()
        .chain(accept_within(1000))
        .chain([Step::Checkpoint("after_second_connect")])
        .collect(),
    )
}

pub fn self_connect() -> Case {
    Case::new(
        "Verify: a socket bound to a port and connected to that same address: does it connect to itself (simultaneous open), and does a byte written come back to it (census B7)?",
        vec![
            client(Op::OpenSocket {
                family: Family::Ipv4,
            }),
            client(Op::Bind {
                to: BindTo::LowPort,
            }),
            client(Op::ConnectSocket {
                to: Target::OwnAddress,
            }),
            client(Op::SetReadTimeout { ms: 500 }),
            client(write(1)),
            client(read(10)),
        ],
    )
}

pub fn to_unspecified_address() -> Case {
    Case::new(
        "Verify: connect() to the unspecified address (0.0.0.0) with a listener's port: is it taken for the local host, and from which address does the client connect (census B8)?",
        vec![
            server(listen()),
            nonblocking_listener(),
            client(Op::Connect {
                to: Target::UnspecifiedAddress,
                timeout_ms: None,
            }),
            client(Op::LocalAddress),
        ]
        .into_iter()
        .chain(accept_within(1000))
        .collect(),
    )
}
