//! The classic experiment of UNIX Network Programming 5.12 and its variants: what calls return
//! after the peer is gone, including SIGPIPE and a reader blocked at the moment FIN or RST arrives.

use crate::script::ops::*;
use crate::script::*;

pub fn killed_write_read_write() -> Case {
    Case::new(
        "Verify (UNP 5.12): the peer is killed; we write (succeeds?), the RST comes back, then we read (EOF or ECONNRESET?) and write again (EPIPE?).",
        after_connect([
            Step::Kill(Side::Server),
            Step::AwaitState(Side::Client, &[TcpState::CloseWait]),
            client(write(5)),
            Step::AwaitState(Side::Client, &[TcpState::Closed]),
            client(read(100)),
            client(write(5)),
            client(write(5)),
        ]),
    )
}

pub fn read_twice_after_reset() -> Case {
    Case::new(
        "Verify: two reads after the peer's RST: ECONNRESET once, then EOF?",
        after_connect([
            server(linger(Some(0))),
            server(Op::Close),
            Step::AwaitState(Side::Client, &[TcpState::Closed]),
            client(read(100)),
            client(read(100)),
        ]),
    )
}

fn write_after_reset(nosignal: bool) -> Vec<Step> {
    after_connect([
        client(Op::SigpipeDefault),
        server(linger(Some(0))),
        server(Op::Close),
        Step::AwaitState(Side::Client, &[TcpState::Closed]),
        client(Op::Write { len: 5, nosignal }),
        client(Op::Write { len: 5, nosignal }),
        client(Op::Write { len: 5, nosignal }),
    ])
}

pub fn write_after_reset_sigpipe_default() -> Case {
    Case::new(
        "Verify: writes after the peer's RST with the default SIGPIPE action: which write kills the process?",
        write_after_reset(false),
    )
}

pub fn write_after_reset_sigpipe_suppressed() -> Case {
    Case::new(
        "Verify: writes after the peer's RST with SIGPIPE suppressed per call (MSG_NOSIGNAL): the errors instead of a signal.",
        write_after_reset(true),
    )
}

pub fn reader_blocked_when_fin_arrives() -> Case {
    Case::new(
        "Verify: a reader blocked in read() when the peer's FIN arrives wakes with EOF.",
        after_connect([
            client(read(100)).start(),
            Step::AwaitBlocked(Side::Client),
            server(Op::Close),
            Step::Finish(Side::Client),
        ]),
    )
}

pub fn reader_blocked_when_rst_arrives() -> Case {
    Case::new(
        "Verify: a reader blocked in read() when the peer's RST arrives wakes with ECONNRESET.",
        after_connect([
            server(linger(Some(0))),
            client(read(100)).start(),
            Step::AwaitBlocked(Side::Client),
            server(Op::Close),
            Step::Finish(Side::Client),
        ]),
    )
}
