//! A host that crashes and reboots: its TCP has no memory of the connection and answers the next
//! segment with RST.

use crate::script::ops::*;
use crate::script::*;

pub fn client_sends() -> Case {
    Case::new(
        "Verify: the server host reboots, then the client sends: the reborn host answers RST; what write and read return.",
        after_connect([
            Step::Fault(Fault::Reboot),
            client(write(5)),
            Step::AwaitState(Side::Client, &[TcpState::Closed]),
            client(read(100)),
            client(write(5)),
        ]),
    )
    .in_lab()
}

pub fn idle_keepalive_meets_rst() -> Case {
    Case::new(
        "Verify: the server host reboots under an idle connection with keepalive (idle 1 s): the first probe meets a RST; when and how a blocked read learns of it.",
        after_connect([
            Step::Fault(Fault::Reboot),
            // Armed after the reboot has completed, so the first probe meets the new host rather
            // than a namespace still being rebuilt (the connection has been idle since before it).
            client(Op::SetKeepalive { idle_s: 1, interval_s: 1, count: 2 }),
            // Untimed: the reboot itself takes part of the idle time, by an amount that varies.
            client(read(100)),
        ]),
    )
    .in_lab()
}
