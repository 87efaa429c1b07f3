//! Readiness: the events poll() reports once the peer's FIN or RST has arrived.

use crate::script::ops::*;
use crate::script::*;

pub fn poll_on_peer_fin() -> Case {
    Case::new(
        "Verify: the poll() events of a socket whose peer sent FIN (readable? RDHUP? HUP?).",
        after_connect([
            client(Op::Poll { timeout_ms: 0 }),
            server(Op::Close),
            Step::AwaitState(Side::Client, &[TcpState::CloseWait]),
            client(Op::Poll { timeout_ms: 0 }),
        ]),
    )
}

pub fn poll_on_peer_rst() -> Case {
    Case::new(
        "Verify: the poll() events of a socket whose peer sent RST (ERR? HUP?), before and after the error is read.",
        after_connect([
            server(linger(Some(0))),
            server(Op::Close),
            Step::AwaitState(Side::Client, &[TcpState::Closed]),
            client(Op::Poll { timeout_ms: 0 }),
            client(read(100)),
            client(Op::Poll { timeout_ms: 0 }),
        ]),
    )
}

pub fn poll_after_own_shutdown_read() -> Case {
    Case::new(
        "Verify: the poll() events of a socket after its own shutdown(SHUT_RD), with nothing received (readable at end of stream? RDHUP?), then what a read returns (found by `cargo xtask explore --on host,gvisor --cases 200 --seed 1`).",
        after_connect([
            client(shutdown(How::Read)),
            client(Op::Poll { timeout_ms: 0 }),
            client(read(100)),
        ]),
    )
}
