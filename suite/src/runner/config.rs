//! What the run can do, probed once per run: isolation, capture, the fault lab, IPv6, sysctls,
//! the TCP table, and how many cases can run at once here.

use crate::visibility::TableView;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

/// What the run can do, decided once per run by probing.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub agent_exe: PathBuf,
    /// Ok: each case gets its own network namespace. Err: why not.
    pub isolation: Result<(), String>,
    /// Ok: the wire is captured. Err: why not.
    pub capture: Result<(), String>,
    /// Ok: the fault lab can be built. Err: why not.
    pub lab: Result<(), String>,
    /// Ok: ::1 can be bound where loopback cases run (their own namespace when isolated).
    pub ipv6: Result<(), String>,
    /// What the TCP table of this platform can show (probed, not assumed).
    pub table: TableView,
    /// Ok: a `net.*` sysctl written in a case's namespace takes effect there.
    pub sysctl: Result<(), String>,
}

impl RunConfig {
    /// Probe this machine's capabilities for the given agent binary.
    pub fn probe(agent_exe: PathBuf) -> RunConfig {
        let isolation = platforms::probe_isolation();
        // Capture needs a case namespace where cases are isolated (Linux); where the platform
        // has no isolation but captures the loopback every case shares (macOS, FreeBSD: BPF on
        // lo0), the probe captures there.
        let capture = match &isolation {
            Err(_) if platforms::CAPTURE_SHARES_LOOPBACK => platforms::probe_capture(),
            Ok(()) => platforms::probe_capture(),
            Err(why) => Err(format!("needs an isolated case namespace: {why}")),
        };
        let lab = match &isolation {
            Ok(()) => platforms::lab::probe(),
            Err(why) => Err(format!("needs network namespaces: {why}")),
        };
        let ipv6 = probe_ipv6(isolation.is_ok());
        let table = TableView::probe(isolation.is_ok());
        let sysctl = match &isolation {
            Ok(()) => probe_sysctl(),
            Err(why) => Err(format!("needs an isolated case namespace: {why}")),
        };
        RunConfig {
            agent_exe,
            isolation,
            capture,
            lab,
            ipv6,
            table,
            sysctl,
        }
    }
}

impl RunConfig {
    /// How many cases run at once when the user does not say, and why when it is not all of
    /// them. Cases spend their time waiting on the kernel, so many run at once, but not more
    /// than CASES_PER_CORE per core: with all 102 at once on 2 cores the slowest case took 9.3 s
    /// instead of 6.9 s (its timings stretched by the others), and the catalog took longer than
    /// with 8. Fewer still where reading the TCP table is slow (a process per query, or an
    /// emulation layer): every case polls it, and many pollers at once would delay the waits
    /// they serve.
    pub fn default_jobs(&self, cases: usize) -> (usize, Option<String>) {
        let (jobs, why) = self.table_jobs(cases);
        if why.is_some() {
            return (jobs, why);
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cap = CASES_PER_CORE * cores;
        if cases > cap {
            let why = format!("{cap} cases at once: {CASES_PER_CORE} per core, {cores} core(s)");
            return (cap, Some(why));
        }
        (jobs, None)
    }

    /// The limit of `default_jobs` without its per-core cap (the explorer's short scripts time
    /// nothing, so only the table's limits apply to them).
    pub fn table_jobs(&self, cases: usize) -> (usize, Option<String>) {
        let slow = Duration::from_millis(10);
        if self.table.read_cost >= slow && cases > SLOW_TABLE_JOBS {
            return (
                SLOW_TABLE_JOBS,
                Some(format!(
                    "{SLOW_TABLE_JOBS} cases at once: one read of the TCP table took {} ms here",
                    self.table.read_cost.as_millis()
                )),
            );
        }
        if !self.table.synchronous && cases > ASYNC_STACK_JOBS {
            return (
                ASYNC_STACK_JOBS,
                Some(format!(
                    "{ASYNC_STACK_JOBS} cases at once: this stack processes segments after the call returns, and many cases at once delay that past a checkpoint's wait"
                )),
            );
        }
        (cases.max(1), None)
    }
}

/// Cases at once on a stack that processes segments asynchronously (gVisor: with all 57 at once
/// on 2 cores, a FIN could stay unprocessed for over 100 ms).
const ASYNC_STACK_JOBS: usize = 8;

/// Cases at once per core on a stack whose table is quick to read (see `default_jobs`).
const CASES_PER_CORE: usize = 4;

/// Cases at once where the table is slow to read (Wine: 0 failures at 4, 29 at full parallelism).
const SLOW_TABLE_JOBS: usize = 4;

/// Write `net.ipv4.ip_local_port_range` in a fresh case namespace and check that bind(0) there
/// draws from the new range: the write must take effect where it was made. (gVisor accepts it and
/// reads it back, but applies it to the sandbox's first namespace.) The old value is written back.
fn probe_sysctl() -> Result<(), String> {
    const KEY: &str = "net.ipv4.ip_local_port_range";
    std::thread::spawn(|| {
        platforms::isolate_thread()?;
        let path = format!("/proc/sys/{}", KEY.replace('.', "/"));
        let old = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {KEY}: {e}"))?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        platforms::host::set_net_sysctl_here(KEY, "40000 40009")
            .map_err(|e| format!("cannot write {KEY}: {e}"))?;
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port());
        let _ = platforms::host::set_net_sysctl_here(KEY, &old);
        match port {
            Ok(p) if (40000..=40009).contains(&p) => Ok(()),
            Ok(p) => Err(format!(
                "a {KEY} written in the case's namespace does not take effect there (bind(0) got port {p}, not 40000-40009)"
            )),
            Err(e) => Err(format!("cannot bind after writing {KEY}: {e}")),
        }
    })
    .join()
    .unwrap_or_else(|_| Err("the sysctl probe thread panicked".into()))
}

/// Bind ::1 where loopback cases will run: in a fresh namespace of its own when cases are
/// isolated (its loopback comes up with ::1 unless the kernel has IPv6 off), else on this host.
fn probe_ipv6(isolated: bool) -> Result<(), String> {
    std::thread::spawn(move || {
        if isolated {
            platforms::isolate_thread()?;
        }
        std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
            .map(drop)
            .map_err(|e| format!("cannot bind [::1]: {e}"))
    })
    .join()
    .unwrap_or_else(|_| Err("the IPv6 probe thread panicked".into()))
}
