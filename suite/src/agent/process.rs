//! The process itself: how it ends (exit, abort, SIGTERM), its descriptor limit, its SIGPIPE
//! action, and the child that holds an inherited socket.

use super::{ok, Agent};
use crate::proto::Outcome;
use crate::script::Slot;
use platforms::knobs;
use std::io::{self, Write};

/// Restore the default SIGPIPE action (Rust's runtime starts with SIGPIPE ignored).
pub(super) fn sigpipe_default() -> io::Result<Outcome> {
    ok(knobs::sigpipe_default())
}

pub(super) fn raise_fd_limit() -> io::Result<Outcome> {
    ok(knobs::raise_fd_limit().map(drop))
}

pub(super) fn set_fd_limit(n: u64) -> io::Result<Outcome> {
    ok(platforms::host::set_soft_fd_limit(n))
}

/// What the process does on a termination request: ignore it, or close its sockets and exit 0.
pub(super) fn on_terminate(ignore: bool) -> io::Result<Outcome> {
    ok(platforms::host::on_terminate(if ignore {
        platforms::host::OnTerminate::Ignore
    } else {
        platforms::host::OnTerminate::CloseAndExit
    }))
}

/// Exit with every socket still open: the kernel closes them at exit.
pub(super) fn exit(code: i32) -> ! {
    let _ = io::stdout().flush();
    std::process::exit(code)
}

pub(super) fn abort() -> ! {
    let _ = io::stdout().flush();
    knobs::abort()
}

impl Agent {
    /// Lower the limit (so a generous default does not cost a million opens), then open
    /// descriptors until the kernel refuses; the refusal is the outcome. Where there is no limit to
    /// lower (Windows), a process out of descriptors cannot be set up: the knob is not implemented
    /// there, and the case is skipped rather than run with descriptors to spare.
    pub(super) fn exhaust_fds(&mut self) -> io::Result<Outcome> {
        knobs::set_fd_limit(64)?;
        loop {
            match std::fs::File::open(platforms::null_device()) {
                Ok(f) => self.filler.push(f),
                Err(e) => return Ok(Outcome::from_error(&e)),
            }
            if self.filler.len() > 1_000_000 {
                return Ok(Outcome::Ok);
            }
        }
    }

    pub(super) fn restore_fds(&mut self) -> Outcome {
        self.filler.clear();
        Outcome::Ok
    }

    /// Start a child that inherits the slot's socket and holds it until the runner closes the
    /// agent's standard input.
    pub(super) fn spawn_holder(&mut self, slot: Slot) -> io::Result<Outcome> {
        let exe = std::env::current_exe()?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--hold").stdout(std::process::Stdio::null());
        let child = knobs::spawn_inheriting(self.sock(slot)?, &mut cmd)?;
        self.holders.push(child);
        Ok(Outcome::Ok)
    }
}
