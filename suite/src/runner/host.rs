//! Where the case's endpoints live (loopback, or the three hosts of the fault lab) and what the
//! runner does to those hosts or reads from their kernel: faults, sysctls, facts, socket memory.

use super::CaseWalk;
use crate::observe::{
    self,
    event::{Event, Gap, Returned},
};
use crate::script::{Fact, Fault, Side};
use platforms::lab::{Host, Lab};
use platforms::TcpEntry;
use std::process::Command;
use std::time::Instant;

/// Where the case's endpoints live.
pub(super) enum Net {
    /// Loopback, in the case thread's own namespace when `isolated`, else the host's.
    Local { isolated: bool },
    /// The three-host fault lab (tied to the case thread that built it).
    Lab(Box<Lab>),
}

fn host_of(side: Side) -> Host {
    match side {
        Side::Client => Host::Client,
        Side::Server => Host::Server,
    }
}

impl Net {
    /// Make a command start where the side's agent lives.
    pub(super) fn prepare_agent(&self, side: Side, cmd: &mut Command) {
        match self {
            Net::Lab(lab) => lab.prepare(host_of(side), cmd),
            Net::Local { .. } => platforms::prepare_agent(cmd),
        }
    }

    /// The TCP table that holds `side`'s sockets (one table for both on loopback).
    pub(super) fn tcp_table(&self, side: Side) -> Result<Vec<TcpEntry>, String> {
        match self {
            Net::Lab(lab) => lab.tcp_table(host_of(side)),
            Net::Local { .. } => platforms::tcp_table(),
        }
        .map_err(|e| format!("cannot read the TCP table: {e}"))
    }

    /// Set a sysctl in the network namespace of the side's host; never on the machine itself.
    pub(super) fn sysctl(&self, side: Side, key: &str, value: &str) -> Result<Event, String> {
        match self {
            Net::Lab(lab) => lab
                .sysctl(host_of(side), key, value)
                .map_err(|e| e.to_string())?,
            Net::Local { isolated: true } => {
                platforms::host::set_net_sysctl_here(key, value).map_err(|e| e.to_string())?
            }
            Net::Local { isolated: false } => {
                return Err(
                    "refusing to change a sysctl of the host itself (the case needs isolation)"
                        .into(),
                )
            }
        }
        Ok(Event::runner(format!("{side} host sysctl {key} = {value}")))
    }
}

/// A platform default, read from the kernel.
pub(super) fn fact(fact: Fact) -> Event {
    let r = match fact {
        Fact::RetransmissionDefault => platforms::host::retransmission_default(),
        Fact::KeepaliveDefault => platforms::host::keepalive_default(),
        Fact::SynRetriesDefault => platforms::host::syn_retries_default(),
    };
    match r {
        Ok(text) => Event::shown("fact (read, not waited for)", text),
        Err(e) => Event::gap("fact", Gap::unavailable(e)),
    }
}

/// The kernel memory held by TCP sockets now, where it can be read.
pub(super) fn tcp_memory() -> Option<u64> {
    platforms::host::tcp_socket_slab_bytes().ok()
}

impl CaseWalk {
    pub(super) fn fault(&mut self, fault: Fault, deadline: Instant) -> Result<Event, String> {
        let Net::Lab(lab) = &mut self.net else {
            return Err("faults need the lab topology".into());
        };
        let did = match fault {
            Fault::Crash => "fault: the server host crashes (answers nothing)",
            Fault::Reboot => "fault: the server host reboots (its state vanishes without a packet)",
            Fault::Partition => "fault: the router forwards nothing (partition)",
            Fault::Heal => "fault: the network heals",
            Fault::Unreachable => "fault: the router answers ICMP host unreachable for the server",
            Fault::MiddleboxReset => "fault: the router answers the connection with forged RSTs",
        };
        lab.inject(fault)
            .map_err(|e| format!("cannot inject {fault:?}: {e}"))?;
        if fault == Fault::Reboot {
            let how = self.agents.get(Side::Server).wait_end(deadline)?;
            return Ok(Event::runner_call(did, Returned::ServerDied { how }));
        }
        Ok(Event::runner(did))
    }

    /// The kernel memory per connection since the MemoryMark, for `n` connections.
    pub(super) fn memory_per_connection(&mut self, n: usize) -> Event {
        const SUBJECT: &str = "kernel memory per connection (both ends, TCP slab caches)";
        let now = platforms::host::tcp_socket_slab_bytes();
        match (self.memory_mark, now) {
            // The caches exist, but this run may not read them (a rootless run: only real root
            // may): not visible, which agrees with any figure root observed.
            (_, Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Event::gap(SUBJECT, Gap::not_visible(e))
            }
            (Some(before), Ok(after)) => {
                let per = after.saturating_sub(before) / n.max(1) as u64;
                self.record
                    .measurements
                    .push(("kernel_bytes_per_connection".into(), per));
                Event::shown(SUBJECT, observe::memory_bucket(per))
            }
            _ => Event::gap(
                "kernel memory per connection",
                Gap::unavailable("cannot read the slab caches here"),
            ),
        }
    }
}
