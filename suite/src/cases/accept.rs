//! accept(): what the accepted socket takes over from its listener (census C1, C2).

use crate::script::ops::*;
use crate::script::*;

/// The listener's options are set before the client connects; the server waits until the
/// connection is ready to accept (poll, bounded), so a non-blocking accept cannot race it.
fn accept_when_ready(listener_setup: Vec<Step>) -> Vec<Step> {
    let mut v = vec![server(listen())];
    v.extend(listener_setup);
    v.extend([
        client(connect()),
        server(Op::Poll { timeout_ms: 2000 }).on("listener"),
        server(Op::Accept),
    ]);
    v
}

pub fn inherits_nonblocking() -> Case {
    let mut steps = accept_when_ready(vec![
        server(Op::SetNonblocking { on: true }).on("listener"),
        server(Op::NonblockingMode).on("listener"),
    ]);
    // Where the mode cannot be read back (Windows), a read with nothing to read tells it: at once
    // (non-blocking) or after the read timeout (blocking).
    steps.extend([
        server(Op::NonblockingMode),
        server(Op::SetReadTimeout { ms: 100 }),
        server(read(10)).timed_vs("read timeout", 100),
    ]);
    Case::new(
        "Verify: accept() on a non-blocking listener: is the accepted socket non-blocking too (O_NONBLOCK read back, and a read with no data: at once or after the read timeout)? (census C1)",
        steps,
    )
}

pub fn inherits_options() -> Case {
    let opts = [
        SockOpt::KeepAlive,
        SockOpt::NoDelay,
        SockOpt::RcvBuf,
        SockOpt::Linger,
    ];
    let mut setup = vec![
        server(Op::SetOption {
            name: SockOpt::KeepAlive,
            value: 1,
        })
        .on("listener"),
        server(Op::SetOption {
            name: SockOpt::NoDelay,
            value: 1,
        })
        .on("listener"),
        server(Op::SetOption {
            name: SockOpt::RcvBuf,
            value: 32768,
        })
        .on("listener"),
        server(linger(Some(3))).on("listener"),
    ];
    setup.extend(opts.map(|name| server(Op::GetOption { name }).on("listener")));
    let mut steps = accept_when_ready(setup);
    steps.extend(opts.map(|name| server(Op::GetOption { name })));
    Case::new(
        "Verify: options set on the listener (SO_KEEPALIVE, TCP_NODELAY, SO_RCVBUF 32768, SO_LINGER 3 s): which of them, with which raw values, the accepted socket reports (census C2).",
        steps,
    )
}
