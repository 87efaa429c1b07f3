//! What the socket itself reports: readiness (poll), its TCP state, its unread bytes.

use super::millis;
use crate::proto::Outcome;
use crate::runner::waits::{wait_until, Waited};
use platforms::knobs;
use socket2::Socket;
use std::io;
use std::time::Instant;

pub(super) fn poll(s: &Socket, timeout_ms: u64) -> io::Result<Outcome> {
    let events = knobs::poll(s, millis(timeout_ms))?;
    Ok(Outcome::Events {
        events: events.iter().map(|s| s.to_string()).collect(),
    })
}

/// The TCP state as the socket's own kernel reports it (TCP_INFO).
pub(super) fn state(s: &Socket) -> io::Result<Outcome> {
    Ok(Outcome::State {
        state: knobs::socket_state(s)?.name().into(),
    })
}

/// Wait (at most `wait_ms`) until the socket holds received, unread bytes (FIONREAD), on the
/// runner's wait loop; the count is the outcome, 0 when the deadline passed first.
pub(super) fn await_unread(s: &Socket, wait_ms: u64) -> io::Result<Outcome> {
    let mut n = 0;
    wait_until(Instant::now() + millis(wait_ms), || {
        n = platforms::host::unread_bytes(s)?;
        Ok::<_, io::Error>(Waited::met_if(n > 0))
    })?;
    Ok(Outcome::Bytes { n })
}
