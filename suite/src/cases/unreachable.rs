//! A router that reports the server unreachable with ICMP.

use crate::script::ops::*;
use crate::script::*;

pub fn while_sending() -> Case {
    Case::new(
        "Verify: the router answers ICMP host unreachable while the client sends on an established connection (user timeout 2000 ms): which error, and after how long compared with the user timeout.",
        after_connect([
            client(Op::SetUserTimeout { ms: 2000 }),
            Step::Fault(Fault::Unreachable),
            client(write(5)),
            client(read(100)).timed_vs("user timeout", 2000),
            Step::Checkpoint("after_error"),
        ]),
    )
    .in_lab()
    // Each ICMP reverts the RTO backoff (RFC 6069), so retransmissions come at the base RTO until
    // the router's ICMP rate limit (a burst, then one per second) withholds one.
    .retransmissions_vary("every ICMP reverts the backoff; the router's ICMP rate limit decides how many")
}

pub fn during_connect() -> Case {
    Case::new(
        "Verify: the router answers ICMP host unreachable to a connect() in progress (its first SYN was lost, the retransmission meets the ICMP): which error, and when.",
        vec![
            server(listen()),
            // The first SYN is dropped so that the ICMP answers the timer's retransmission: an
            // ICMP that arrives while connect() itself still holds the socket lock is only a soft
            // error on Linux, a race this script avoids rather than records twice.
            Step::Fault(Fault::Partition),
            client(Op::Connect { to: Target::Listener, timeout_ms: Some(5000) }).timed().start(),
            Step::AwaitSyns(1),
            // No heal first: the router's reject comes before the partition's drop, so one nft
            // run, not two, must finish before the retransmission 1 s later. A heal and then the
            // reject took longer than that in a loaded emulated guest (the ICMP met the third SYN).
            Step::Fault(Fault::Unreachable),
            Step::Finish(Side::Client),
        ],
    )
    .in_lab()
}
