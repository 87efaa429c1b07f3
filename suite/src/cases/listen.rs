//! listen(): on a socket that was never bound.

use crate::script::*;

pub fn unbound_socket() -> Case {
    Case::new(
        "Verify: listen() on a socket never bound: does it fail, or bind an ephemeral port itself, and on which address (census C4)?",
        vec![
            server(Op::OpenSocket {
                family: Family::Ipv4,
            })
            .on("listener"),
            server(Op::ListenOn { backlog: 16 }).on("listener"),
            server(Op::LocalAddress).on("listener"),
        ],
    )
    // Where listen() binds by itself it takes the wildcard: in the case's own namespace only.
    .needs(&[Need::Isolation])
}
