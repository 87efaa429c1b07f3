//! Data: write, fill, read, drain, and the application loops that do both (echo, heartbeat).

use super::millis;
use crate::proto::Outcome;
use platforms::knobs;
use socket2::Socket;
use std::io::{self, Write};

/// send() of `len` bytes.
pub(super) fn write(s: &Socket, len: usize, nosignal: bool) -> io::Result<Outcome> {
    let buf = vec![b'x'; len];
    let n = knobs::send(s, &buf, nosignal)?;
    Ok(Outcome::Bytes { n })
}

/// Write until the kernel refuses more; the refusal is the outcome ("filled, then ..." when some
/// data went in first).
pub(super) fn fill(s: &Socket) -> Outcome {
    let buf = vec![b'x'; 64 * 1024];
    let mut total = 0usize;
    let then = loop {
        match knobs::send(s, &buf, true) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Outcome::from_error(&e),
        }
    };
    if total == 0 {
        then
    } else {
        Outcome::Filled {
            then: Box::new(then),
        }
    }
}

/// One recv() of at most `max` bytes.
pub(super) fn read(s: &Socket, max: usize) -> io::Result<Outcome> {
    let mut buf = vec![0u8; max];
    Ok(match knobs::recv(s, &mut buf)? {
        0 => Outcome::Eof,
        n => Outcome::Bytes { n },
    })
}

/// Read until end of stream or an error, which is the outcome.
pub(super) fn drain(s: &Socket) -> Outcome {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match knobs::recv(s, &mut buf) {
            Ok(0) => break Outcome::Eof,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Outcome::from_error(&e),
        }
    }
}

/// Answer every byte received with the same byte, until end of stream or an error.
pub(super) fn echo(mut s: &Socket) -> Outcome {
    let mut buf = [0u8; 1024];
    loop {
        match knobs::recv(s, &mut buf) {
            Ok(0) => break Outcome::Eof,
            Ok(n) => {
                if let Err(e) = s.write_all(&buf[..n]) {
                    break Outcome::from_error(&e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Outcome::from_error(&e),
        }
    }
}

/// An application heartbeat: one byte out and back within `timeout_ms`, every `interval_ms`,
/// until a round fails (the outcome is the failure) or `rounds` succeeded.
pub(super) fn heartbeat(
    s: &Socket,
    interval_ms: u64,
    timeout_ms: u64,
    rounds: Option<u32>,
) -> io::Result<Outcome> {
    s.set_read_timeout(Some(millis(timeout_ms)))?;
    let mut pong = [0u8; 1];
    let mut done = 0;
    Ok(loop {
        if Some(done) == rounds {
            break Outcome::Ok;
        }
        done += 1;
        if let Err(e) = knobs::send(s, b"p", true) {
            break Outcome::from_error(&e);
        }
        match knobs::recv(s, &mut pong) {
            Ok(0) => break Outcome::Eof,
            // The application's own period between pings (its behavior, not a wait for a
            // condition).
            Ok(_) => std::thread::sleep(millis(interval_ms)),
            Err(e) => break Outcome::from_error(&e),
        }
    })
}
