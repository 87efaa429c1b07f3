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

pub fn poll_unconnected_socket() -> Case {
    Case::new(
        "Verify: the poll() events of a TCP socket that was never bound or connected (OUT? HUP at once?) (census G5).",
        vec![
            client(Op::OpenUnconnected),
            client(Op::Poll { timeout_ms: 0 }),
        ],
    )
}

pub fn urgent_data() -> Case {
    Case::new(
        "Verify: one byte of urgent data (send MSG_OOB) with no normal data before it: does the receiver's poll() report PRI (and IN?), what recv(MSG_OOB) returns, and then normal data behind it (census G6).",
        after_connect([
            // The urgent byte is the only data in flight, so its acknowledgment on the wire says
            // the receiving stack has taken it in (gVisor does so after send returns).
            // Bounded reads: a stack without urgent data blocks in recv(MSG_OOB) as in a read.
            server(Op::SetReadTimeout { ms: 500 }),
            client(Op::WriteUrgent { len: 1 }),
            Step::AwaitAcked(Side::Client),
            server(Op::Poll { timeout_ms: 0 }),
            server(Op::ReadUrgent { max: 10 }),
            server(Op::Poll { timeout_ms: 0 }),
            server(Op::ReadUrgent { max: 10 }),
            client(write(3)),
            server(read(10)),
        ]),
    )
}

pub fn poll_after_own_shutdown_write() -> Case {
    Case::new(
        "Verify: the poll() events of a socket after its own shutdown(SHUT_WR) (still writable? any event for the closed half?), then after the peer closes too (census G1).",
        after_connect([
            client(shutdown(How::Write)),
            client(Op::Poll { timeout_ms: 0 }),
            server(read(100)),
            server(Op::Close),
            Step::AwaitState(Side::Client, &[TcpState::TimeWait, TcpState::Closed]),
            client(Op::Poll { timeout_ms: 0 }),
        ]),
    )
}
