//! What an accepted or fresh socket reports and carries: its blocking mode, raw option values,
//! urgent data, a socket that is never connected, and a call run on a second thread of the agent
//! (so the main thread can shut down or close the socket under it).

use super::{new_socket, ok, reply_line, Agent, Done};
use crate::proto::{Outcome, Reply, Request};
use crate::script::{Op, Slot};
use platforms::sockopt::{self, SockOpt};
use socket2::Socket;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// O_NONBLOCK as the OS reports it.
pub(super) fn nonblocking_mode(s: &Socket) -> io::Result<Outcome> {
    let on = sockopt::is_nonblocking(s)?;
    Ok(Outcome::OkWith {
        note: format!("O_NONBLOCK {}", if on { "on" } else { "off" }),
    })
}

/// The option's raw value, as the platform wrote it.
pub(super) fn get_option(s: &Socket, name: SockOpt) -> io::Result<Outcome> {
    Ok(Outcome::OkWith {
        note: sockopt::get(s, name)?.to_string(),
    })
}

pub(super) fn set_option(s: &Socket, name: SockOpt, value: i32) -> io::Result<Outcome> {
    ok(sockopt::set(s, name, value))
}

/// send(MSG_OOB) of `len` bytes.
pub(super) fn write_urgent(s: &Socket, len: usize) -> io::Result<Outcome> {
    let n = s.send_out_of_band(&vec![b'u'; len])?;
    Ok(Outcome::Bytes { n })
}

/// recv(MSG_OOB) of up to `max` bytes; a count of 0 is written as such (it is no end of stream).
pub(super) fn read_urgent(s: &Socket, max: usize) -> io::Result<Outcome> {
    let mut buf = vec![MaybeUninit::<u8>::uninit(); max];
    let n = s.recv_out_of_band(&mut buf)?;
    Ok(Outcome::Bytes { n })
}

/// One call on a second thread, on the same descriptor as the slot's socket: an accept (whose
/// connection, if any, is only held) or a read.
fn call_alone(s: &Socket, call: &Op, held: &Mutex<Vec<Socket>>) -> io::Result<Outcome> {
    match call {
        Op::Accept => {
            let (conn, _) = s.accept()?;
            held.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
            Ok(Outcome::Ok)
        }
        Op::Read { max } => super::data::read(s, *max),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{other} cannot run in a second thread"),
        )),
    }
}

impl Agent {
    /// A TCP socket of the case's family that is never bound or connected.
    pub(super) fn open_unconnected(&mut self, slot: Slot, addr: SocketAddr) -> io::Result<Done> {
        let s = new_socket(&addr)?;
        self.put(slot, s);
        Ok(Outcome::Ok.into())
    }

    /// Start `call` on a second thread and return at once (the main loop acknowledges the
    /// request): the thread answers it itself, with its id, when the call returns (maybe never: a call still blocked when the
    /// case ends goes with the process). It works on the slot's own descriptor, not a duplicate,
    /// so that a close in the main thread is a close of the socket the call is blocked on.
    pub(super) fn start_thread(&mut self, req: &Request, call: &Op) -> io::Result<()> {
        let id = req.thread.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a second thread's call must be started",
            )
        })?;
        let sock = sockopt::same_descriptor(self.sock(req.slot)?)?;
        let held = Arc::clone(&self.held);
        let call = call.clone();
        std::thread::spawn(move || {
            platforms::mark_operation(true);
            let start = Instant::now();
            let outcome =
                call_alone(&sock, &call, &held).unwrap_or_else(|e| Outcome::from_error(&e));
            let elapsed = start.elapsed();
            platforms::mark_operation(false);
            reply_line(&Reply {
                outcome,
                elapsed_us: elapsed.as_micros() as u64,
                local: None,
                peer: None,
                thread: Some(id),
            });
        });
        Ok(())
    }
}
