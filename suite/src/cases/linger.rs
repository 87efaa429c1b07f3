//! SO_LINGER: abortive close with a zero timeout, and a positive timeout with unsent data.

use crate::script::ops::*;
use crate::script::*;

pub fn zero_abortive_close() -> Case {
    Case::new(
        "Verify: SO_LINGER on with 0 s makes close() abortive: RST instead of FIN, no TIME_WAIT, and the peer's read fails.",
        after_connect([
            client(linger(Some(0))),
            client(Op::Close).timed(),
            Step::Checkpoint("after_close"),
            server(read(100)),
            server(read(100)),
        ]),
    )
}

/// Small buffers so that a few kilobytes fill the path, then the client's send buffer stays full.
fn stalled_sender(nonblocking: bool) -> Vec<Step> {
    let mut v = vec![
        server(ops::listen()),
        server(Op::SetRecvBuffer { bytes: 4096 }).on("listener"),
        client(ops::connect()),
        server(Op::Accept),
        client(Op::SetSendBuffer { bytes: 4096 }),
    ];
    v.push(if nonblocking {
        client(Op::SetNonblocking { on: true })
    } else {
        client(Op::SetWriteTimeout { ms: 200 })
    });
    v.extend([
        client(Op::Fill),
        client(linger(Some(1))),
        client(Op::Close).timed_vs("linger timeout", 1000),
        Step::Checkpoint("after_close"),
        server(Op::Drain),
        Step::Checkpoint("after_drain"),
    ]);
    v
}

pub fn positive_peer_not_reading() -> Case {
    Case::new(
        "Verify: SO_LINGER on with 1 s while the peer does not read and the send buffer is full: how long close() blocks, and what the peer finally reads.",
        stalled_sender(false),
    )
}

pub fn positive_nonblocking() -> Case {
    let mut steps = stalled_sender(true);
    // Where close() fails (WSAEWOULDBLOCK on Windows) the socket stays open and no FIN comes:
    // the server's drain then ends at its read timeout, and that outcome is recorded, instead
    // of the drain waiting out the step's deadline and the case failing to run to the end.
    let drain = steps
        .iter()
        .position(|s| matches!(s, Step::Do(a) if a.op == Op::Drain))
        .expect("the stalled sender drains");
    steps.insert(drain, server(Op::SetReadTimeout { ms: 2000 }));
    Case::new(
        "Verify: SO_LINGER on with 1 s on a non-blocking socket with unsent data: does close() block, fail or return at once?",
        steps,
    )
}

pub fn set_after_peer_closed() -> Case {
    Case::new(
        "Verify: setsockopt(SO_LINGER on, 0 s) once the peer has closed and its FIN was read: does it fail (EINVAL) or take effect, and does the close then send RST? (census A6)",
        after_connect([
            server(Op::Close),
            client(read(100)),
            client(linger(Some(0))),
            client(Op::Close),
            Step::Checkpoint("after_close"),
        ]),
    )
}
