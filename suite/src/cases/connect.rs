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
