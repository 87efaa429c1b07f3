//! The peer's process ends while its socket is open: killed, exited, terminated, aborted, or with
//! the socket still held by a child.

use crate::script::ops::*;
use crate::script::*;

pub fn killed_idle() -> Case {
    Case::new(
        "Verify: the server process is killed (SIGKILL) with nothing unread: FIN or RST, and the states left behind.",
        after_connect([
            Step::Kill(Side::Server),
            Step::Checkpoint("after_kill"),
            client(read(100)),
        ]),
    )
}

pub fn killed_with_unread_data() -> Case {
    Case::new(
        "Verify: the server process is killed while data it received is unread: RST instead of FIN?",
        after_connect([
            client(write(5)),
            Step::AwaitUnread(Side::Server),
            Step::Kill(Side::Server),
            Step::Checkpoint("after_kill"),
            client(read(100)),
            client(read(100)),
        ]),
    )
}

pub fn exit_with_open_socket() -> Case {
    Case::new(
        "Verify: the server process exits normally without closing its socket: the kernel closes it with FIN.",
        after_connect([
            server(Op::Exit { code: 0 }),
            Step::Checkpoint("after_exit"),
            client(read(100)),
        ]),
    )
}

pub fn sigterm_default_action() -> Case {
    Case::new(
        "Verify: the server process is terminated (SIGTERM, default action) with an open socket: what the client sees.",
        after_connect([
            Step::Terminate(Side::Server),
            Step::Checkpoint("after_terminate"),
            client(read(100)),
        ]),
    )
}

pub fn abort() -> Case {
    Case::new(
        "Verify: the server process dies by abort() with an open socket: FIN or RST?",
        after_connect([
            server(Op::Abort),
            Step::Checkpoint("after_abort"),
            client(read(100)),
        ]),
    )
}

pub fn inherited_socket_parent_killed() -> Case {
    Case::new(
        "Verify: a socket inherited by a child process: killing the parent sends nothing until the last holder closes it.",
        after_connect([
            server(Op::SpawnHolder),
            Step::Kill(Side::Server),
            Step::Checkpoint("parent_killed"),
            Step::ReleaseHolder(Side::Server),
            Step::AwaitState(Side::Client, &[TcpState::CloseWait, TcpState::Closed]),
            Step::Checkpoint("holder_gone"),
            client(read(100)),
        ]),
    )
}
