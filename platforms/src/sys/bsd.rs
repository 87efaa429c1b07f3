//! What macOS and FreeBSD share beyond POSIX: the TCP table and the run state of a process come
//! from their `netstat` and `ps`, whose text formats are the same on both (parsed in `parse.rs`).
//!
//! Why the tools and not the sysctls behind them (`net.inet.tcp.pcblist`, `kern.proc.pid`): the
//! binary records (`struct xtcpcb`, `struct kinfo_proc`) change layout between releases, while the
//! text of netstat and ps has been stable for decades. The cost is one process per query.

use crate::{parse, TcpEntry};
use std::io;
use std::process::Command;

pub fn tcp_table() -> io::Result<Vec<TcpEntry>> {
    // -a: listeners too; -n: numeric hosts and ports; -W: never truncate an IPv6 address to the
    // column width. Both tcp4 and tcp6 sockets are listed under -p tcp.
    let out = Command::new("netstat")
        .args(["-a", "-n", "-W", "-p", "tcp"])
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run netstat: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "netstat -anW -p tcp failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(parse::parse_bsd_netstat(&String::from_utf8_lossy(
        &out.stdout,
    )))
}

pub fn is_blocked(pid: u32) -> Option<bool> {
    let out = Command::new("ps")
        .args(["-o", "state=", "-p", &pid.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse::bsd_ps_blocked(&String::from_utf8_lossy(&out.stdout))
}
