//! Socket options read back raw: buffer sizes, SO_ACCEPTCONN, boolean options (census I3, I5, I6).

use crate::script::*;

fn set(name: SockOpt, value: i32) -> Step {
    client(Op::SetOption { name, value })
}

fn get(name: SockOpt) -> Step {
    client(Op::GetOption { name })
}

pub fn buffer_size_doubling() -> Case {
    let mut steps = vec![client(Op::OpenUnconnected)];
    for name in [SockOpt::RcvBuf, SockOpt::SndBuf] {
        // 4096 is above every platform's minimum; 1 is below it, so the floor shows.
        steps.extend([set(name, 4096), get(name), set(name, 1), get(name)]);
    }
    Case::new(
        "Verify: SO_RCVBUF and SO_SNDBUF set to 4096, then to 1, on a TCP socket: the value getsockopt returns (the value set, doubled, or a floor)? (census I3)",
        steps,
    )
}

pub fn accept_conn() -> Case {
    Case::new(
        "Verify: getsockopt(SO_ACCEPTCONN) on a listener, on the accepted socket and on the connecting socket: the value, or the error where the option does not exist (census I6).",
        vec![
            server(ops::listen()),
            server(Op::GetOption {
                name: SockOpt::AcceptConn,
            })
            .on("listener"),
            client(ops::connect()),
            server(Op::Accept),
            server(Op::GetOption {
                name: SockOpt::AcceptConn,
            }),
            get(SockOpt::AcceptConn),
        ],
    )
}

pub fn boolean_value() -> Case {
    let mut steps = vec![client(Op::OpenUnconnected)];
    for name in [
        SockOpt::ReuseAddr,
        SockOpt::KeepAlive,
        SockOpt::Broadcast,
        SockOpt::NoDelay,
    ] {
        steps.extend([set(name, 1), get(name)]);
    }
    // A boolean set with another non-zero value: stored as given, or as 1?
    steps.extend([set(SockOpt::KeepAlive, 5), get(SockOpt::KeepAlive)]);
    Case::new(
        "Verify: boolean options (SO_REUSEADDR, SO_KEEPALIVE, SO_BROADCAST, TCP_NODELAY) set to 1, and SO_KEEPALIVE to 5: the raw int getsockopt returns (1, or a flag bit)? (census I5)",
        steps,
    )
}
