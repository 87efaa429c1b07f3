//! Teardown: shutdown, close, and the linger setting that decides how a close ends.

use super::{ok, Agent};
use crate::proto::Outcome;
use crate::script::{How, Slot};
use platforms::knobs;
use socket2::Socket;
use std::io;
use std::net::Shutdown;
use std::time::Duration;

pub(super) fn shutdown(s: &Socket, how: How) -> io::Result<Outcome> {
    ok(s.shutdown(match how {
        How::Read => Shutdown::Read,
        How::Write => Shutdown::Write,
        How::Both => Shutdown::Both,
    }))
}

/// SO_LINGER: None turns it off, Some(s) turns it on with s seconds.
pub(super) fn set_linger(s: &Socket, secs: Option<u32>) -> io::Result<Outcome> {
    ok(s.set_linger(secs.map(|s| Duration::from_secs(s.into()))))
}

impl Agent {
    pub(super) fn close(&mut self, slot: Slot) -> io::Result<Outcome> {
        let s = self.slots.remove(&slot).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no socket in slot {slot:?}"),
            )
        })?;
        let was_nonblocking = self.nonblocking.remove(&slot);
        // Closed explicitly, not dropped, so the close's own result is recorded (dropping
        // ignores it): a lingering close blocks right here, which the elapsed time shows, and a
        // non-blocking one may fail (WSAEWOULDBLOCK on Windows, which leaves the socket open: it
        // goes back into its slot).
        match knobs::close(s) {
            Ok(()) => Ok(Outcome::Ok),
            Err((e, still_open)) => {
                if let Some(s) = still_open {
                    self.slots.insert(slot, s);
                    if was_nonblocking {
                        self.nonblocking.insert(slot);
                    }
                }
                Ok(Outcome::from_error(&e))
            }
        }
    }
}
