//! What macOS and FreeBSD share beyond POSIX: the TCP table comes from their `netstat`, whose
//! text format is the same on both (parsed in `parse.rs`); only the flags that keep IPv6
//! addresses whole differ (`parse::bsd_netstat_args`).
//!
//! Why the tool and not the sysctl behind it (`net.inet.tcp.pcblist`): the binary records
//! (`struct xtcpcb`) change layout between releases, while the text of netstat has been stable
//! for decades. The cost is one process per query.

use crate::{parse, Os, TcpEntry};
use std::io;
use std::process::Command;

pub fn tcp_table(os: Os) -> io::Result<Vec<TcpEntry>> {
    let args = parse::bsd_netstat_args(os);
    let out = Command::new("netstat")
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run netstat: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "netstat {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(parse::parse_bsd_netstat(&String::from_utf8_lossy(
        &out.stdout,
    )))
}
