//! A middlebox on the path that resets connections.

use crate::script::ops::*;
use crate::script::*;

pub fn reset_established() -> Case {
    Case::new(
        "Verify: a middlebox answers an established connection's data with a forged RST: what the client sees, and the server, which saw nothing.",
        after_connect([
            Step::Fault(Fault::MiddleboxReset),
            client(write(5)),
            Step::AwaitState(Side::Client, &[TcpState::Closed]),
            client(read(100)),
            Step::Checkpoint("after_reset"),
        ]),
    )
    .in_lab()
}
