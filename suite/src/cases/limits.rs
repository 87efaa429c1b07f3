//! Limits: a process out of file descriptors.

use crate::script::ops::*;
use crate::script::*;

pub fn accept_out_of_fds() -> Case {
    Case::new(
        "Verify: accept() in a process that is out of file descriptors: what the server and the client see, and whether the connection survives until descriptors are free.",
        vec![
            server(listen()),
            server(Op::ExhaustFds),
            client(connect()),
            client(write(5)),
            // The data must have reached the queued connection before accept() fails: gVisor
            // delivers it after write() returns, and whether it arrived before the failed
            // accept closed the connection decides between RST and FIN-then-RST there.
            Step::AwaitAcked(Side::Client),
            server(Op::Accept),
            Step::Checkpoint("accept_failed"),
            server(Op::RestoreFds),
            // A non-blocking accept asks whether the connection is still queued without waiting
            // for it: gVisor's failed accept() took it off the queue and reset it, so a blocking
            // accept would wait forever there.
            server(Op::SetNonblocking { on: true }).on("listener"),
            server(Op::Accept),
            server(read(100)),
        ],
    )
}
