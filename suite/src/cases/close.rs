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

/// Accept on a second thread of the server, bounded when collected.
fn accept_in_thread(listener: &'static str) -> Step {
    server(Op::InThread {
        call: Box::new(Op::Accept),
        collect_within_ms: 300,
    })
    .on(listener)
    .start()
}

pub fn shutdown_wakes_blocked_accept() -> Case {
    Case::new(
        "Verify: a thread blocked in accept() while another thread shuts the listener down (SHUT_RD), then, on a second listener, closes it: does the accept return, and with what? (census A8)",
        vec![
            server(ops::listen()),
            accept_in_thread("listener"),
            Step::AwaitBlocked(Side::Server),
            server(shutdown(How::Read)).on("listener"),
            Step::Finish(Side::Server),
            server(ops::listen()).on("l2"),
            accept_in_thread("l2"),
            Step::AwaitBlocked(Side::Server),
            server(Op::Close).on("l2"),
            Step::Finish(Side::Server),
        ],
    )
}

pub fn after_peer_reset_returns() -> Case {
    Case::new(
        "Verify: close() of a socket whose peer reset the connection: does close() itself return an error (ECONNRESET)? (census A5)",
        after_connect([
            server(linger(Some(0))),
            server(Op::Close),
            Step::AwaitState(Side::Client, &[TcpState::Closed]),
            client(Op::Close),
        ]),
    )
}

pub fn rst_after_queued_data() -> Case {
    Case::new(
        "Verify: data already queued at the receiver when the peer's RST arrives (8 KiB, then an abortive close): does the receiver still read the data before the error? (census A1)",
        after_connect([
            server(write(8192)),
            Step::AwaitAcked(Side::Server),
            server(linger(Some(0))),
            server(Op::Close),
            Step::AwaitState(Side::Client, &[TcpState::Closed]),
            client(read(65536)),
            client(read(65536)),
            client(read(65536)),
        ]),
    )
}
