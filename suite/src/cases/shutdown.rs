//! shutdown(): half-close in either direction, and shutdown meeting the peer's FIN.

use crate::script::ops::*;
use crate::script::*;

pub fn write_half_close() -> Case {
    Case::new(
        "Verify: shutdown(write) sends FIN while the other direction keeps working, then the full close.",
        after_connect([
            client(shutdown(How::Write)),
            Step::Checkpoint("half_closed"),
            server(read(100)),
            server(write(5)),
            client(read(100)),
            server(Op::Close),
            Step::Checkpoint("server_closed"),
            client(Op::Close),
            Step::Checkpoint("both_closed"),
        ]),
    )
}

pub fn read_then_peer_sends() -> Case {
    Case::new(
        "Verify: shutdown(read), then the peer sends: is the data kept, discarded, or answered with RST?",
        after_connect([
            client(shutdown(How::Read)),
            Step::Checkpoint("read_shut"),
            server(write(5)),
            Step::AwaitUnread(Side::Client),
            Step::Checkpoint("after_peer_sent"),
            client(read(100)),
            client(read(100)),
            server(write(5)),
            Step::Checkpoint("after_second_send"),
        ]),
    )
}

pub fn write_after_own_shutdown() -> Case {
    Case::new(
        "Verify: write() after one's own shutdown(write) fails (EPIPE?) while the connection stays half-open.",
        after_connect([
            client(shutdown(How::Write)),
            client(write(5)),
            Step::Checkpoint("after_write"),
            server(read(100)),
        ]),
    )
}

pub fn both_after_peer_fin() -> Case {
    Case::new(
        "Verify: shutdown(both) after the peer's FIN has arrived: does it succeed or fail with ENOTCONN?",
        after_connect([
            server(Op::Close),
            client(read(100)),
            client(shutdown(How::Both)),
            Step::Checkpoint("after_shutdown"),
        ]),
    )
}
