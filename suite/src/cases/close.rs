//! close(): the orderly four-way close, and close() meeting data in either direction.

use crate::script::ops::*;
use crate::script::*;

pub fn orderly_idle() -> Case {
    Case::new(
        "Verify: close() of an idle connection by the client, then by the server: the states of both ends, then the TIME_WAIT of the active closer.",
        after_connect([
            Step::Checkpoint("connected"),
            client(Op::Close),
            Step::Checkpoint("after_client_close"),
            server(read(100)),
            server(Op::Close),
            Step::Checkpoint("after_both_closed"),
        ]),
    )
}

pub fn with_unread_data() -> Case {
    Case::new(
        "Verify: close() while received data is still unread: does the closer send RST instead of FIN, and what does the peer read?",
        after_connect([
            client(write(5)),
            Step::AwaitUnread(Side::Server),
            Step::Checkpoint("data_unread"),
            server(Op::Close),
            Step::Checkpoint("after_server_close"),
            client(read(100)),
            client(read(100)),
        ]),
    )
}

pub fn data_after_peer_closed() -> Case {
    Case::new(
        "Verify: data that arrives after the peer called close(): the peer answers with RST, and what the sender's next read and write return.",
        after_connect([
            server(Op::Close),
            Step::AwaitState(Side::Client, &[TcpState::CloseWait]),
            client(write(5)),
            Step::AwaitState(Side::Client, &[TcpState::Closed]),
            Step::Checkpoint("after_rst"),
            client(read(100)),
            client(write(5)),
        ]),
    )
}
