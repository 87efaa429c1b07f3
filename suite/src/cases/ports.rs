//! Capacity: ephemeral ports, the four-tuple, descriptor limits and kernel memory per connection.

use crate::script::*;

pub fn ephemeral_exhaustion() -> Case {
    Case::new(
        "Verify: with a 10-port ephemeral range, which error ends connect() and after how many connections; then whether the same local ports serve a second destination (the four-tuple).",
        vec![
            // Both listeners first: bind(0) draws from the same ephemeral range.
            server(Op::Listen { backlog: 64, port: Port::Any, reuse_addr: false }),
            server(Op::Listen { backlog: 64, port: Port::Any, reuse_addr: false }).on("listener2"),
            Step::Sysctl(Side::Client, "net.ipv4.ip_local_port_range", "40000 40009"),
            client(Op::ConnectMany { max: 100, compare_ports: false }),
            server(Op::Listen { backlog: 64, port: Port::Any, reuse_addr: false }).on("listener3"),
            client(Op::ConnectMany { max: 100, compare_ports: true }),
        ],
    )
    .needs(&[Need::Isolation, Need::Sysctl])
}

pub fn capacity_10k_idle() -> Case {
    Case::new(
        "Verify: 10,000 idle connections in one namespace: they all open, and the kernel memory each takes.",
        vec![
            server(Op::RaiseFdLimit),
            client(Op::RaiseFdLimit),
            server(Op::Listen { backlog: 4096, port: Port::Any, reuse_addr: false }),
            server(Op::AcceptAll { max: 10_000 }).start(),
            Step::MemoryMark,
            client(Op::ConnectMany { max: 10_000, compare_ports: false }),
            Step::Finish(Side::Server),
            Step::MemoryPerConnection(10_000),
        ],
    )
    .needs(&[Need::Isolation])
}

pub fn capacity_fd_limit() -> Case {
    Case::new(
        "Verify: with the client's descriptor limit lowered to 1000, which limit stops new connections first, after how many, and with which error.",
        vec![
            server(Op::Listen { backlog: 4096, port: Port::Any, reuse_addr: false }),
            client(Op::SetFdLimit { n: 1000 }),
            client(Op::ConnectMany { max: 10_000, compare_ports: false }),
        ],
    )
    .needs(&[Need::Isolation])
}
