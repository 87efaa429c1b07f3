//! bind(): what an unbound socket's name is, an address of the other family, a port in use by a
//! listener (SO_REUSEADDR, SO_REUSEPORT), and the IPv4-mapped wildcard.

use crate::script::ops::*;
use crate::script::*;

pub fn getsockname_unbound() -> Case {
    Case::new(
        "Verify: getsockname() on a TCP socket never bound, IPv4 and IPv6: the wildcard with port 0, or an error (census C5)?",
        vec![
            client(Op::OpenSocket {
                family: Family::Ipv4,
            }),
            client(Op::LocalAddress),
            client(Op::OpenSocket {
                family: Family::Ipv6,
            })
            .on("c6"),
            client(Op::LocalAddress).on("c6"),
        ],
    )
}

pub fn family_mismatch() -> Case {
    Case::new(
        "Verify: bind() of an IPv4 address on an IPv6 socket, and of an IPv6 address on an IPv4 socket: which error each (census D7)?",
        vec![
            client(Op::OpenSocket {
                family: Family::Ipv6,
            }),
            client(Op::Bind {
                to: BindTo::Ipv4Loopback,
            }),
            client(Op::OpenSocket {
                family: Family::Ipv4,
            })
            .on("c4"),
            client(Op::Bind {
                to: BindTo::Ipv6Loopback,
            })
            .on("c4"),
        ],
    )
}

pub fn reuseaddr_over_listener() -> Case {
    Case::new(
        "Verify: a second socket with SO_REUSEADDR binds the address of an active listener that did not set it: refused (EADDRINUSE), or allowed and then taking its connections (census D1)?",
        vec![
            server(listen()),
            server(Op::OpenSocket {
                family: Family::Ipv4,
            })
            .on("l2"),
            server(Op::SetReuseAddress { on: true }).on("l2"),
            server(Op::Bind {
                to: BindTo::ListenerAddress,
            })
            .on("l2"),
            server(Op::ListenOn { backlog: 16 }).on("l2"),
            client(connect()),
            server(Op::AcceptSpread {
                other: Slot::new("l2"),
                n: 1,
            })
            .on("listener"),
        ],
    )
    // Where the bind is refused, listen() binds l2 itself, on the wildcard: in the case's own
    // namespace only.
    .needs(&[Need::Isolation])
}

pub fn reuseport_two_listeners() -> Case {
    let reusing = |slot: &'static str, to| {
        [
            server(Op::OpenSocket {
                family: Family::Ipv4,
            })
            .on(slot),
            server(Op::SetReusePort { on: true }).on(slot),
            server(Op::Bind { to }).on(slot),
            server(Op::ListenOn { backlog: 64 }).on(slot),
        ]
    };
    let mut steps = Vec::new();
    steps.extend(reusing("l1", BindTo::AnyPort));
    steps.extend(reusing("l2", BindTo::ListenerAddress));
    steps.extend([
        // 20 connections from 20 source ports: where the kernel balances by a hash of them
        // (Linux), all 20 land on one listener with a chance of 2 in a million.
        client(Op::ConnectMany {
            max: 20,
            compare_ports: false,
        }),
        server(Op::AcceptSpread {
            other: Slot::new("l2"),
            n: 20,
        })
        .on("l1"),
    ]);
    Case::new(
        "Verify: two listeners with SO_REUSEPORT on one port: may both bind, and do both get some of 20 connections, or only one of them (census D4)?",
        steps,
    )
    .needs(&[Need::Isolation])
}

pub fn v4mapped_wildcard() -> Case {
    Case::new(
        "Verify: bind() of an IPv6 socket to the IPv4-mapped wildcard ::ffff:0.0.0.0: refused, or bound (and then which name and does listen work) (census E4)?",
        vec![
            server(Op::OpenSocket {
                family: Family::Ipv6,
            })
            .on("listener"),
            server(Op::Bind {
                to: BindTo::V4MappedWildcard,
            })
            .on("listener"),
            server(Op::LocalAddress).on("listener"),
            server(Op::ListenOn { backlog: 16 }).on("listener"),
        ],
    )
    .needs(&[Need::Isolation, Need::Ipv6])
}
