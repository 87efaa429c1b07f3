//! IPv6: the loopback cases that matter most over ::1, and the dual-stack question (does a `[::]`
//! listener accept IPv4 clients, by default and with IPV6_V6ONLY set).

use crate::script::ops::*;
use crate::script::*;

pub fn orderly_idle() -> Case {
    super::close::orderly_idle().over_ipv6(
        "Verify: close/orderly_idle over ::1: the same states and TIME_WAIT as over IPv4?",
    )
}

pub fn killed_with_unread_data() -> Case {
    super::process_exit::killed_with_unread_data().over_ipv6(
        "Verify: process_exit/killed_with_unread_data over ::1: RST instead of FIN, as over IPv4?",
    )
}

pub fn closed_port() -> Case {
    super::connect::closed_port().over_ipv6(
        "Verify: connect/closed_port over ::1: the same error, in the same time, as over IPv4?",
    )
}

/// The listener binds the wildcard `[::]`, so these run only in the case's own namespace, where
/// the only interface is its loopback: nothing of the host is listened on.
fn dual_stack(v6only: Option<bool>, rest: impl IntoIterator<Item = Step>) -> Vec<Step> {
    let mut v = vec![
        server(Op::ListenDualStack { v6only }),
        client(Op::Connect {
            to: Target::ListenerOverIpv4,
            timeout_ms: None,
        }),
    ];
    v.extend(rest);
    v
}

pub fn dual_stack_default() -> Case {
    Case::new(
        "Verify: a listener on [::] with IPV6_V6ONLY at the platform's default: is it on, and does an IPv4 client get in (seen as ::ffff:127.0.0.1)?",
        dual_stack(
            None,
            [
                server(Op::Accept),
                Step::Checkpoint("connected"),
                client(write(5)),
                server(read(100)),
                client(Op::Close),
                server(read(100)),
            ],
        ),
    )
    .needs(&[Need::Isolation, Need::Ipv6])
}

pub fn dual_stack_v6only() -> Case {
    Case::new(
        "Verify: a listener on [::] with IPV6_V6ONLY on: an IPv4 client is refused, as if nothing listened?",
        dual_stack(Some(true), []),
    )
    .needs(&[Need::Isolation, Need::Ipv6])
}
