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
        "Verify: urgent data (send MSG_OOB) after 3 normal bytes: does the receiver's poll() report PRI, what recv(MSG_OOB) returns, and what is left to read (census G6).",
        after_connect([
            client(write(3)),
            client(Op::WriteUrgent { len: 1 }),
            // The receiving stack has taken all four bytes in (gVisor does so after send returns).
            Step::AwaitAcked(Side::Client),
            server(Op::Poll { timeout_ms: 0 }),
            server(Op::ReadUrgent { max: 10 }),
            server(Op::Poll { timeout_ms: 0 }),
            server(read(10)),
            server(Op::ReadUrgent { max: 10 }),
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
