//! Socket timeouts: SO_RCVTIMEO on an idle connection, SO_SNDTIMEO when the peer does not read.

use crate::script::ops::*;
use crate::script::*;

pub fn read_timeout_idle() -> Case {
    Case::new(
        "Verify: a read timeout on an idle connection: which error, after how long, and is the connection still usable after it?",
        after_connect([
            client(Op::SetReadTimeout { ms: 300 }),
            client(read(100)).timed_vs("read timeout", 300),
            server(write(5)),
            client(read(100)),
            Step::Checkpoint("after_timeout"),
        ]),
    )
}

pub fn write_timeout_peer_not_reading() -> Case {
    Case::new(
        "Verify: a write timeout while the peer does not read: which error, after how long, and the connection's state after it.",
        vec![
            server(listen()),
            server(Op::SetRecvBuffer { bytes: 4096 }).on("listener"),
            client(connect()),
            server(Op::Accept),
            client(Op::SetSendBuffer { bytes: 4096 }),
            client(Op::SetWriteTimeout { ms: 300 }),
            client(Op::Fill),
            client(write(5)).timed_vs("write timeout", 300),
            Step::Checkpoint("after_timeout"),
        ],
    )
}
