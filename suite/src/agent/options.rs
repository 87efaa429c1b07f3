//! Socket options and modes: blocking, timeouts, buffer sizes, user timeout, keepalive.

use super::{millis, ok, Agent};
use crate::proto::Outcome;
use crate::script::Slot;
use platforms::knobs;
use socket2::Socket;
use std::io;
use std::time::Duration;

pub(super) fn read_timeout(s: &Socket, ms: u64) -> io::Result<Outcome> {
    ok(s.set_read_timeout(Some(millis(ms))))
}

pub(super) fn write_timeout(s: &Socket, ms: u64) -> io::Result<Outcome> {
    ok(s.set_write_timeout(Some(millis(ms))))
}

pub(super) fn recv_buffer(s: &Socket, bytes: usize) -> io::Result<Outcome> {
    ok(s.set_recv_buffer_size(bytes))
}

pub(super) fn send_buffer(s: &Socket, bytes: usize) -> io::Result<Outcome> {
    ok(s.set_send_buffer_size(bytes))
}

pub(super) fn user_timeout(s: &Socket, ms: u64) -> io::Result<Outcome> {
    ok(knobs::set_user_timeout(s, millis(ms)))
}

pub(super) fn keepalive(
    s: &Socket,
    idle_s: u64,
    interval_s: u64,
    count: u32,
) -> io::Result<Outcome> {
    ok(platforms::host::set_keepalive(
        s,
        Duration::from_secs(idle_s),
        Duration::from_secs(interval_s),
        count,
    ))
}

impl Agent {
    /// Set the slot's mode, and remember that this agent made it non-blocking (AcceptAll puts it
    /// back as it found it).
    pub(super) fn set_nonblocking(&mut self, slot: Slot, on: bool) -> io::Result<Outcome> {
        self.sock(slot)?.set_nonblocking(on)?;
        if on {
            self.nonblocking.insert(slot);
        } else {
            self.nonblocking.remove(&slot);
        }
        Ok(Outcome::Ok)
    }
}
