//! TIME_WAIT: rebinding a listener's port while a connection of that port is in TIME_WAIT.

use crate::script::ops::*;
use crate::script::*;

fn rebind(reuse_addr: bool) -> Vec<Step> {
    vec![
        server(Op::Listen {
            backlog: 16,
            port: Port::Any,
            reuse_addr,
        }),
        client(connect()),
        server(Op::Accept),
        // The server closes first, so the TIME_WAIT is on the listener's port.
        server(Op::Close),
        client(read(100)),
        client(Op::Close),
        server(Op::Close).on("listener"),
        Step::Checkpoint("server_in_time_wait"),
        server(Op::Listen {
            backlog: 16,
            port: Port::Previous,
            reuse_addr,
        }),
    ]
}

pub fn rebind_without_reuseaddr() -> Case {
    Case::new(
        "Verify: a new listener on the port of a connection in TIME_WAIT, without SO_REUSEADDR: EADDRINUSE?",
        rebind(false),
    )
}

pub fn rebind_with_reuseaddr() -> Case {
    Case::new(
        "Verify: a new listener on the port of a connection in TIME_WAIT, with SO_REUSEADDR on both listeners: does bind succeed?",
        rebind(true),
    )
}
