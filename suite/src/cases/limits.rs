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
            server(Op::Accept),
            Step::Checkpoint("accept_failed"),
            server(Op::RestoreFds),
            server(Op::Accept),
            server(read(100)),
        ],
    )
}
