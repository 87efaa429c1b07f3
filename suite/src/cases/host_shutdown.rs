//! Host shutdown: every process gets SIGTERM, a grace period, then SIGKILL.

use crate::script::ops::*;
use crate::script::*;

pub fn server_closes_on_sigterm() -> Case {
    Case::new(
        "Verify: host shutdown with a server that handles SIGTERM by closing its sockets and exiting 0: what the client sees, and when.",
        after_connect([
            server(Op::OnTerminate { ignore: false }),
            Step::ShutdownHost { grace_ms: 1000 },
            client(read(100)),
        ]),
    )
}

pub fn server_ignores_sigterm() -> Case {
    Case::new(
        "Verify: host shutdown with a server that ignores SIGTERM: nothing reaches the client until the SIGKILL after the grace period.",
        after_connect([
            server(Op::OnTerminate { ignore: true }),
            Step::ShutdownHost { grace_ms: 300 },
            Step::Checkpoint("after_shutdown"),
            client(read(100)),
        ]),
    )
}
