//! The fault lab on Linux: three network namespaces (client, router, server) joined by two veth
//! pairs, configured with iproute2's `ip`, faults installed with `nft` (see `crate::lab` for the
//! topology and the faults' meaning).
//!
//! ## Invariants
//! * **Nothing leaks.** Each host is an anonymous network namespace (never named under
//!   /run/netns, never bind-mounted) whose only anchor is a holder process, `sleep infinity`,
//!   spawned by the thread that builds the lab. The holder's child side calls
//!   `prctl(PR_SET_PDEATHSIG, SIGKILL)` and then `unshare(CLONE_NEWNET)` before exec, so the
//!   namespace exists only as long as the holder, and the holder is killed by the kernel as soon
//!   as the building thread ends: on drop, on a panic, on SIGKILL or Ctrl-C of the runner. A
//!   [`Lab`] is therefore `!Send`: it must be used and dropped on the thread that built it (the
//!   case thread). Dropping it SIGKILLs every process still in its namespaces (agents included),
//!   then kills and reaps the holders. What else can keep a lab namespace alive, by the kernel's
//!   rules: an open socket created in it (e.g. by a runner thread), a running [`Capture`] started
//!   there, a prepared-but-not-spawned `Command` (it holds the namespace's file); all of these
//!   die with the runner process at the latest.
//! * **The host is never touched.** Every `ip`/`nft` command is spawned through `Ns::tool`,
//!   whose child `setns()`es into a lab namespace before exec: if that fails, the spawn fails and
//!   the tool never runs. A lab namespace is accepted only if it differs from the runner's own
//!   namespaces (process, building thread, pid 1). Sysctl writes happen on a helper thread that
//!   has entered the lab namespace (checked), and only `net.*` keys (the per-namespace ones) are
//!   accepted. No named namespace (`ip netns`) or `nsenter` is used.
//! * **Why `ip` runs under setns rather than `nsenter`/`ip -n`**: `ip -n` only knows named
//!   namespaces, and `nsenter` would add a dependency (util-linux) and an exec per command; the
//!   pre-exec `setns` on the namespace's own file cannot pick the wrong namespace even if a pid
//!   is reused. Each host is configured with one `ip -batch -` process.
//!
//! ## Layout
//! Client `eth0` 192.0.2.2/24 <-> router `to-client` 192.0.2.1/24; router `to-server`
//! 198.51.100.1/24 <-> server `eth0` 198.51.100.2/24; both end hosts route by default via the
//! router, the router has `net.ipv4.ip_forward=1`. IPv4 only. MAC addresses are fixed and every
//! neighbour is a permanent entry, so no ARP ever happens: no resolution delays, and no ICMP
//! error born from a failed resolution, however long a host stays silent.
//!
//! Capture on the client: its one non-loopback interface sees each packet of the case once (the
//! router would see each forwarded packet twice, and the server's namespace is replaced by a
//! reboot).
//!
//! ## Faults (nftables tables, one per fault, so Heal can remove exactly what was installed)
//! * Crash: server `table inet sockconform_crash`, input and output hooks with policy drop.
//!   With permanent neighbour entries the router never needs the server's ARP answers, so it
//!   never turns the silence into ICMP errors: the client sees pure silence.
//! * Reboot: Crash's rules in the old server namespace (so not one FIN/RST leaves), SIGKILL to
//!   every process in it (waited for), a fresh namespace, the server's `eth0` moved into it with
//!   `ip link set eth0 netns PID` (same device and MAC, so the router's permanent neighbour entry
//!   still fits; while the device moves, the router's packets are dropped by the veth, never
//!   answered),
//!   the address and route configured again, the old holder killed: the old namespace and every
//!   connection in it are gone.
//! * Partition: router `table inet sockconform_partition`, forward hook, policy drop.
//! * Unreachable: router `table ip sockconform_unreachable`, forward hook priority -1,
//!   `ip daddr 198.51.100.2 reject with icmp type host-unreachable`.
//! * MiddleboxReset: router `table inet sockconform_reset`, forward hook priority -2,
//!   `meta l4proto tcp reject with tcp reset` (the RST goes to the segment's sender, forged from
//!   its destination, with the sequence number the sender expects).
//! * Heal: deletes whichever of those tables are installed.

use crate::lab::{Fault, Host, CLIENT, ROUTER_CLIENT_SIDE, ROUTER_SERVER_SIDE, SERVER};
use crate::{Capture, TcpEntry, Unavailable};
use std::fs::File;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long one `ip` or `nft` invocation may take before it is killed and reported.
const TOOL_DEADLINE: Duration = Duration::from_secs(10);
/// How long processes killed by a reboot or by drop get to exit.
const KILL_DEADLINE: Duration = Duration::from_secs(5);

/// The end hosts' interface (client and server).
const END_DEV: &str = "eth0";
/// The router's interfaces towards the client and the server.
const ROUTER_TO_CLIENT: &str = "to-client";
const ROUTER_TO_SERVER: &str = "to-server";
/// Fixed, locally administered MAC addresses; every host knows its neighbour's as a permanent
/// entry, so the lab never resolves addresses (no ARP timing, no ICMP from failed resolution).
const CLIENT_MAC: &str = "02:00:c0:00:02:02";
const ROUTER_CLIENT_SIDE_MAC: &str = "02:00:c0:00:02:01";
const ROUTER_SERVER_SIDE_MAC: &str = "02:00:c6:33:64:01";
const SERVER_MAC: &str = "02:00:c6:33:64:02";

const CRASH_TABLE: &str = "inet sockconform_crash";
const PARTITION_TABLE: &str = "inet sockconform_partition";
const UNREACHABLE_TABLE: &str = "ip sockconform_unreachable";
const RESET_TABLE: &str = "inet sockconform_reset";

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

// --- namespaces --------------------------------------------------------------------------------

/// The identity of a network namespace: device and inode of its nsfs file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct NsId {
    dev: u64,
    ino: u64,
}

impl NsId {
    fn of(path: impl AsRef<Path>) -> io::Result<NsId> {
        let m = std::fs::metadata(path)?;
        Ok(NsId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// The namespaces a lab must never configure: the runner process's, the calling thread's and
/// (when readable) pid 1's.
fn outside_namespaces() -> io::Result<Vec<NsId>> {
    let mut ids = vec![
        NsId::of("/proc/self/ns/net")?,
        NsId::of("/proc/thread-self/ns/net")?,
    ];
    ids.extend(NsId::of("/proc/1/ns/net").ok());
    Ok(ids)
}

/// One lab host: an anonymous network namespace anchored by a holder process.
struct Ns {
    /// `sleep infinity`, a child of the building thread, in the namespace (see module docs).
    holder: Child,
    /// The namespace's nsfs file (close-on-exec), entered by `setns`.
    file: Arc<File>,
    id: NsId,
}

impl Ns {
    /// A fresh namespace held by a new holder process. The namespace is created by the holder
    /// itself between fork and exec, so it exists exactly as long as the holder.
    fn create(tools: &Tools, outside: &[NsId]) -> io::Result<Ns> {
        let parent = unsafe { libc::getpid() };
        let mut cmd = Command::new(&tools.sleep);
        cmd.arg("infinity")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only raw syscalls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                die_with_parent(parent)?;
                cvt(libc::unshare(libc::CLONE_NEWNET))?;
                Ok(())
            });
        }
        let mut holder = cmd.spawn()?;
        let opened = File::open(format!("/proc/{}/ns/net", holder.id())).and_then(|f| {
            let m = f.metadata()?;
            Ok((
                f,
                NsId {
                    dev: m.dev(),
                    ino: m.ino(),
                },
            ))
        });
        match opened {
            Ok((file, id)) if !outside.contains(&id) => Ok(Ns {
                holder,
                file: Arc::new(file),
                id,
            }),
            failed => {
                let _ = holder.kill();
                let _ = holder.wait();
                Err(match failed {
                    Err(e) => e,
                    Ok(_) => io::Error::other("the holder is not in a namespace of its own"),
                })
            }
        }
    }

    fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// A command for one of the lab's tools that runs inside this namespace and nowhere else.
    fn tool(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        enter_before_exec(&mut cmd, self.file.clone());
        cmd
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// In a forked child: ask for SIGKILL when the spawning thread ends, and fail if the parent
/// process is already gone (the signal would never come).
fn die_with_parent(parent: libc::pid_t) -> io::Result<()> {
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) })?;
    if unsafe { libc::getppid() } != parent {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Make `cmd`'s child enter the namespace `ns` and die with the spawning thread; if entering
/// fails, the spawn fails.
fn enter_before_exec(cmd: &mut Command, ns: Arc<File>) {
    let parent = unsafe { libc::getpid() };
    // SAFETY: only raw syscalls between fork and exec; `ns` is kept open by the closure.
    unsafe {
        cmd.pre_exec(move || {
            cvt(libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET))?;
            die_with_parent(parent)
        });
    }
}

/// Move the calling thread into the namespace `fd` and check it arrived in `id`.
fn enter_here(fd: RawFd, id: NsId) -> io::Result<()> {
    cvt(unsafe { libc::setns(fd, libc::CLONE_NEWNET) })?;
    if NsId::of("/proc/thread-self/ns/net")? != id {
        return Err(io::Error::other("setns() landed in another namespace"));
    }
    Ok(())
}

// --- processes ---------------------------------------------------------------------------------

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Wait until every pidfd reports its process's exit or `deadline` passes; returns how many
/// processes are still running.
fn wait_exits(mut fds: Vec<OwnedFd>, deadline: Instant) -> usize {
    while !fds.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfds: Vec<libc::pollfd> = fds
            .iter()
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
        let mut i = 0;
        fds.retain(|_| {
            let alive = pfds[i].revents == 0;
            i += 1;
            alive
        });
    }
    fds.len()
}

/// Pids of the processes whose (main thread's) network namespace is one of `ids`.
fn pids_in(ids: &[NsId]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| NsId::of(format!("/proc/{pid}/ns/net")).is_ok_and(|id| ids.contains(&id)))
        .collect()
}

/// SIGKILL every process in the namespaces `ids` except this process and `spare`, and wait for
/// them to exit (they are not reaped: the runner reaps its own children). Returns how many were
/// killed. Each pid is pinned with a pidfd and its namespace checked again before the signal,
/// so a reused pid is never hit.
fn kill_processes_in(ids: &[NsId], spare: &[u32]) -> usize {
    let me = std::process::id();
    let mut killed = Vec::new();
    for pid in pids_in(ids) {
        if pid == me || spare.contains(&pid) {
            continue;
        }
        let Some(fd) = pidfd_open(pid) else { continue };
        if !NsId::of(format!("/proc/{pid}/ns/net")).is_ok_and(|id| ids.contains(&id)) {
            continue;
        }
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if sent == 0 {
            killed.push(fd);
        }
    }
    let n = killed.len();
    let alive = wait_exits(killed, Instant::now() + KILL_DEADLINE);
    if alive > 0 {
        eprintln!("sockconform lab: {alive} killed process(es) did not exit in time");
    }
    n
}

/// Wait for `child` with a deadline (killing it when passed).
fn wait_deadline(child: &mut Child, timeout: Duration) -> io::Result<ExitStatus> {
    // The child is not reaped yet, so its pid is still ours to open.
    if let Some(fd) = pidfd_open(child.id()) {
        if wait_exits(vec![fd], Instant::now() + timeout) > 0 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("did not finish within {timeout:?}"),
            ));
        }
    }
    child.wait()
}

// --- tools -------------------------------------------------------------------------------------

struct Tools {
    ip: PathBuf,
    nft: PathBuf,
    sleep: PathBuf,
}

/// The external programs the lab needs, looked up once (PATH, then the sbin directories that a
/// non-root PATH often lacks).
fn tools() -> Result<&'static Tools, Unavailable> {
    static TOOLS: OnceLock<Result<Tools, Unavailable>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let mut missing = Vec::new();
            let mut find = |name: &str, why: &str| {
                let found = find_program(name);
                if found.is_none() {
                    missing.push(format!("`{name}` ({why})"));
                }
                found.unwrap_or_default()
            };
            let tools = Tools {
                ip: find("ip", "apt-get install iproute2"),
                nft: find("nft", "apt-get install nftables"),
                sleep: find("sleep", "coreutils"),
            };
            if missing.is_empty() {
                Ok(tools)
            } else {
                Err(format!(
                    "the fault lab needs {}, not found in PATH or /usr/sbin:/sbin",
                    missing.join(" and ")
                ))
            }
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A lab tool that was started and fed its script.
struct Running {
    child: Child,
    what: String,
}

/// Start `program args` inside `ns` with `script` on its standard input.
fn start(ns: &Ns, program: &Path, args: &[&str], script: &str) -> io::Result<Running> {
    let what = format!("`{} {}`", program.display(), args.join(" "));
    let mut child = ns
        .tool(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            // The tool is started inside the lab host's namespace (setns before exec): a kernel
            // that cannot move a process into another network namespace fails here, not the tool.
            let why = if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                format!("cannot run {what} inside a lab host: this kernel cannot enter another network namespace (setns: {e}), which the lab's three hosts need")
            } else {
                format!("cannot run {what}: {e}")
            };
            io::Error::new(e.kind(), why)
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    // A tool that fails early closes its input (EPIPE here); its exit status tells why.
    let _ = stdin.write_all(script.as_bytes());
    drop(stdin);
    Ok(Running { child, what })
}

/// Wait for a started tool; an error carries its stderr.
fn finish(mut run: Running) -> io::Result<()> {
    let status = wait_deadline(&mut run.child, TOOL_DEADLINE)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", run.what)))?;
    let mut stderr = String::new();
    if let Some(mut pipe) = run.child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} failed ({status}): {}",
            run.what,
            stderr.trim()
        )))
    }
}

/// Wait until every interface in `devs` of `ns` is operationally up ("state UP" in `ip -o link`).
/// A router end whose peer (re)appears gets its carrier at once but its transmit queue only when
/// the kernel's link watch handles the event, on a work queue, later; it sets this state in the
/// same step. Until then the router drops what it forwards there: the reborn server's first data
/// segment was lost under load and the wire showed its retransmission. (An end host's own end
/// needs no wait: opening it while its peer is up activates its queue in the same call. Its state
/// can lag a second behind, because that event is not urgent to the link watch; measured: 1 s per
/// lab when waited for.)
fn await_link_up(ns: &Ns, ip: &Path, devs: &[&str], within: Duration) -> io::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let mut child = ns
            .tool(ip)
            .args(["-o", "link", "show"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut out = String::new();
        // A few hundred bytes: the pipe never fills, so reading before the wait cannot block it.
        if let Some(mut pipe) = child.stdout.take() {
            let _ = pipe.read_to_string(&mut out);
        }
        wait_deadline(&mut child, TOOL_DEADLINE)?;
        let up = |dev: &str| {
            out.lines().any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|name| name.trim_end_matches(':').split('@').next() == Some(dev))
                    && l.contains(" state UP ")
            })
        };
        let down: Vec<&str> = devs.iter().copied().filter(|d| !up(d)).collect();
        if down.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("lab link(s) {} not up within {within:?}", down.join(", ")),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The `ip -batch` script of an end host: its address, its link up, the router as a permanent
/// neighbour and the default route via it.
fn end_host_script(addr: Ipv4Addr, gw: Ipv4Addr, gw_mac: &str) -> String {
    format!(
        "link set lo up\n\
         addr add {addr}/24 dev {END_DEV}\n\
         link set {END_DEV} up\n\
         neigh replace {gw} lladdr {gw_mac} dev {END_DEV} nud permanent\n\
         route add default via {gw}\n"
    )
}

fn client_script() -> String {
    end_host_script(CLIENT, ROUTER_CLIENT_SIDE, ROUTER_CLIENT_SIDE_MAC)
}

fn server_script() -> String {
    end_host_script(SERVER, ROUTER_SERVER_SIDE, ROUTER_SERVER_SIDE_MAC)
}

/// An nft script that (re)creates `table` with `body`, atomically and idempotently.
fn replace_table(table: &str, body: &str) -> String {
    format!("table {table}\ndelete table {table}\ntable {table} {{\n{body}}}\n")
}

fn nft_rules(fault: Fault) -> Option<(Host, &'static str, String)> {
    Some(match fault {
        Fault::Crash => (
            Host::Server,
            CRASH_TABLE,
            "chain input { type filter hook input priority 0; policy drop; }\n\
             chain output { type filter hook output priority 0; policy drop; }\n"
                .to_string(),
        ),
        Fault::Partition => (
            Host::Router,
            PARTITION_TABLE,
            "chain forward { type filter hook forward priority 0; policy drop; }\n".to_string(),
        ),
        Fault::Unreachable => (
            Host::Router,
            UNREACHABLE_TABLE,
            format!(
                "chain forward {{ type filter hook forward priority -1; \
                 ip daddr {SERVER} reject with icmp type host-unreachable; }}\n"
            ),
        ),
        Fault::MiddleboxReset => (
            Host::Router,
            RESET_TABLE,
            "chain forward { type filter hook forward priority -2; \
             meta l4proto tcp reject with tcp reset; }\n"
                .to_string(),
        ),
        Fault::Reboot | Fault::Heal => return None,
    })
}

// --- the lab -----------------------------------------------------------------------------------

/// Can this run build labs and inject faults? Builds one lab and has `nft` list the router's
/// (empty) ruleset, which needs nf_tables in the kernel. Tens of ms; call once per run.
pub fn probe() -> Result<(), Unavailable> {
    std::thread::spawn(|| {
        let lab = Lab::build()?;
        finish(
            start(&lab.router, &lab.tools.nft, &["-f", "-"], "list ruleset\n")
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("nftables does not work in a lab namespace: {e}"))
    })
    .join()
    .unwrap_or_else(|_| Err("the lab probe panicked".into()))
}

/// The three-host fault lab of one case (see the module docs and `crate::lab`).
///
/// `!Send`: the holders die with the thread that built the lab, so the lab must stay there.
pub struct Lab {
    client: Ns,
    router: Ns,
    server: Ns,
    tools: &'static Tools,
    outside: Vec<NsId>,
    installed: Installed,
    _same_thread: PhantomData<*const ()>,
}

/// The fault tables currently installed.
#[derive(Default)]
struct Installed {
    crash: bool,
    partition: bool,
    unreachable: bool,
    reset: bool,
}

impl Installed {
    fn flag(&mut self, fault: Fault) -> Option<&mut bool> {
        match fault {
            Fault::Crash => Some(&mut self.crash),
            Fault::Partition => Some(&mut self.partition),
            Fault::Unreachable => Some(&mut self.unreachable),
            Fault::MiddleboxReset => Some(&mut self.reset),
            Fault::Reboot | Fault::Heal => None,
        }
    }
}

impl Lab {
    /// Build the topology: three namespaces, two veth pairs, addresses, routes, forwarding.
    /// Needs root (CAP_SYS_ADMIN for the namespaces, CAP_NET_ADMIN inside them) and the `ip`
    /// (iproute2), `nft` (nftables) and `sleep` (coreutils) programs; the error says which is
    /// missing. Call it on the thread that will use and drop the lab.
    pub fn build() -> Result<Lab, Unavailable> {
        let tools = tools()?;
        let outside = outside_namespaces()
            .map_err(|e| format!("cannot identify this process's network namespace: {e}"))?;
        let ns = |what: &str| {
            Ns::create(tools, &outside).map_err(|e| {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    format!(
                        "cannot create the lab's network namespaces: {e} (run as root, or with \
                         CAP_SYS_ADMIN and CAP_NET_ADMIN)"
                    )
                } else {
                    format!("cannot create the lab's {what} namespace: {e}")
                }
            })
        };
        let lab = Lab {
            client: ns("client")?,
            router: ns("router")?,
            server: ns("server")?,
            tools,
            outside,
            installed: Installed::default(),
            _same_thread: PhantomData,
        };
        lab.wire_up()
            .map_err(|e| format!("cannot set up the lab's network: {e}"))?;
        Ok(lab)
    }

    fn wire_up(&self) -> io::Result<()> {
        // The router creates both veth pairs, with the far ends created directly in the end
        // hosts' namespaces (named eth0 there), and configures its own side.
        let (c, s) = (self.client.pid(), self.server.pid());
        let router = format!(
            "link set lo up\n\
             link add {ROUTER_TO_CLIENT} address {ROUTER_CLIENT_SIDE_MAC} type veth \
                 peer name {END_DEV} address {CLIENT_MAC} netns {c}\n\
             link add {ROUTER_TO_SERVER} address {ROUTER_SERVER_SIDE_MAC} type veth \
                 peer name {END_DEV} address {SERVER_MAC} netns {s}\n\
             addr add {ROUTER_CLIENT_SIDE}/24 dev {ROUTER_TO_CLIENT}\n\
             addr add {ROUTER_SERVER_SIDE}/24 dev {ROUTER_TO_SERVER}\n\
             link set {ROUTER_TO_CLIENT} up\n\
             link set {ROUTER_TO_SERVER} up\n\
             neigh replace {CLIENT} lladdr {CLIENT_MAC} dev {ROUTER_TO_CLIENT} nud permanent\n\
             neigh replace {SERVER} lladdr {SERVER_MAC} dev {ROUTER_TO_SERVER} nud permanent\n"
        );
        finish(start(
            &self.router,
            &self.tools.ip,
            &["-batch", "-"],
            &router,
        )?)?;
        // The end hosts in parallel, while this thread turns forwarding on.
        let client = start(
            &self.client,
            &self.tools.ip,
            &["-batch", "-"],
            &client_script(),
        )?;
        let server = start(
            &self.server,
            &self.tools.ip,
            &["-batch", "-"],
            &server_script(),
        );
        let forwarding = self.sysctl(Host::Router, "net.ipv4.ip_forward", "1");
        let client = finish(client);
        let server = server.and_then(finish);
        forwarding.and(client).and(server)?;
        let (ip, ends) = (&self.tools.ip, [ROUTER_TO_CLIENT, ROUTER_TO_SERVER]);
        await_link_up(&self.router, ip, &ends, TOOL_DEADLINE)
    }

    fn ns(&self, host: Host) -> &Ns {
        match host {
            Host::Client => &self.client,
            Host::Router => &self.router,
            Host::Server => &self.server,
        }
    }

    /// Run `f` on a helper thread inside `host`'s namespace (sockets it creates belong there).
    fn in_ns<T: Send>(
        &self,
        host: Host,
        f: impl FnOnce() -> io::Result<T> + Send,
    ) -> io::Result<T> {
        let ns = self.ns(host);
        debug_assert!(!self.outside.contains(&ns.id));
        let (fd, id) = (ns.file.as_raw_fd(), ns.id);
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("sockconform-lab".into())
                .spawn_scoped(scope, move || {
                    enter_here(fd, id)?;
                    f()
                })?
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The host's address ([`Host::addr`]).
    pub fn addr(&self, host: Host) -> IpAddr {
        host.addr()
    }

    /// Make `cmd` run in `host`: its child enters the host's namespace before exec (the spawn
    /// fails if it cannot) and is SIGKILLed when the spawning thread ends, like
    /// `platforms::prepare_agent`. The command holds the namespace open until it is dropped;
    /// prepare server commands after a [`Fault::Reboot`], not before. The lab needs no
    /// registration of what runs where: a reboot and drop find processes by namespace.
    pub fn prepare(&self, host: Host, cmd: &mut Command) {
        enter_before_exec(cmd, self.ns(host).file.clone());
    }

    /// The TCP table of `host` (its /proc/net/tcp and tcp6), listeners and lingering sockets
    /// included.
    pub fn tcp_table(&self, host: Host) -> io::Result<Vec<TcpEntry>> {
        let pid = self.ns(host).pid();
        let mut out = Vec::new();
        for file in ["tcp", "tcp6"] {
            match std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
                Ok(text) => out.extend(super::parse_proc_net_tcp(&text)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && file == "tcp6" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Start a capture of `host`'s interfaces. Use `Host::Client`: its only non-loopback
    /// interface records every packet the client sends or receives exactly once. The capture
    /// keeps its namespace alive until it is stopped.
    pub fn capture(&self, host: Host) -> io::Result<Capture> {
        self.in_ns(host, Capture::start)
    }

    /// Set a per-namespace sysctl in `host` only, e.g. `("net.ipv4.tcp_retries2", "3")` on the
    /// client. Only `net.*` keys are accepted (the rest are machine-wide); net keys that are not
    /// per-namespace do not exist inside a lab namespace (NotFound).
    pub fn sysctl(&self, host: Host, key: &str, value: &str) -> io::Result<()> {
        let path = sysctl_path(key)?;
        self.in_ns(host, move || {
            std::fs::write(&path, value)
                .map_err(|e| io::Error::new(e.kind(), format!("sysctl {key}={value}: {e}")))
        })
    }

    /// Inject a fault (see [`Fault`]). Faults accumulate; `Heal` removes every installed one.
    /// Costs: one `nft` run (5-40 ms, mostly process start-up, depending on load); a reboot
    /// runs `nft` once and `ip` twice (measured 50-160 ms on a loaded 2-core machine).
    pub fn inject(&mut self, fault: Fault) -> io::Result<()> {
        match fault {
            Fault::Heal => self.heal(),
            Fault::Reboot => self.reboot(),
            _ => {
                let (host, table, body) = nft_rules(fault).expect("a rule-based fault");
                let script = replace_table(table, &body);
                finish(start(
                    self.ns(host),
                    &self.tools.nft,
                    &["-f", "-"],
                    &script,
                )?)?;
                *self.installed.flag(fault).expect("a rule-based fault") = true;
                Ok(())
            }
        }
    }

    fn heal(&mut self) -> io::Result<()> {
        let mut router = String::new();
        for (installed, table) in [
            (self.installed.partition, PARTITION_TABLE),
            (self.installed.unreachable, UNREACHABLE_TABLE),
            (self.installed.reset, RESET_TABLE),
        ] {
            if installed {
                router += &format!("delete table {table}\n");
            }
        }
        let nft = &self.tools.nft;
        let on_router = (!router.is_empty())
            .then(|| start(&self.router, nft, &["-f", "-"], &router))
            .transpose()?;
        let on_server = self
            .installed
            .crash
            .then(|| {
                start(
                    &self.server,
                    nft,
                    &["-f", "-"],
                    &format!("delete table {CRASH_TABLE}\n"),
                )
            })
            .transpose();
        let router_done = on_router.map_or(Ok(()), finish);
        let server_done = on_server.and_then(|r| r.map_or(Ok(()), finish));
        if router_done.is_ok() {
            self.installed.partition = false;
            self.installed.unreachable = false;
            self.installed.reset = false;
        }
        if server_done.is_ok() {
            self.installed.crash = false;
        }
        router_done.and(server_done)
    }

    fn reboot(&mut self) -> io::Result<()> {
        // 1. From now on nothing leaves the old server: not the FIN or RST of its dying sockets.
        if !self.installed.crash {
            self.inject(Fault::Crash)?;
        }
        // 2. Every process there dies (the runner reaps its own agents later).
        kill_processes_in(&[self.server.id], &[self.server.pid()]);
        // 3. A fresh host receives the same veth end (same MAC), and is configured as before.
        let fresh = Ns::create(self.tools, &self.outside)?;
        let new_pid = fresh.pid().to_string();
        finish(start(
            &self.server,
            &self.tools.ip,
            &["link", "set", END_DEV, "netns", &new_pid],
            "",
        )?)?;
        finish(start(
            &fresh,
            &self.tools.ip,
            &["-batch", "-"],
            &server_script(),
        )?)?;
        // 4. The old namespace goes with its holder, and every connection state with it.
        drop(std::mem::replace(&mut self.server, fresh));
        self.installed.crash = false;
        // 5. The host is back when the router forwards to it again.
        await_link_up(
            &self.router,
            &self.tools.ip,
            &[ROUTER_TO_SERVER],
            TOOL_DEADLINE,
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Whatever still runs in the lab (agents, a stuck tool) dies first; the holders go when
        // the fields drop right after this, and their namespaces with them.
        let ids = [self.client.id, self.router.id, self.server.id];
        let holders = [self.client.pid(), self.router.pid(), self.server.pid()];
        kill_processes_in(&ids, &holders);
    }
}

/// `/proc/sys/...` for a `net.*` key; anything else is refused.
fn sysctl_path(key: &str) -> io::Result<PathBuf> {
    let parts: Vec<&str> = key.split('.').collect();
    let fine = parts.len() >= 2
        && parts[0] == "net"
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.contains(['/', '\0']));
    if !fine {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "sysctl `{key}` refused: only net.* keys are per network namespace (a dotted \
                 name such as net.ipv4.tcp_retries2)"
            ),
        ));
    }
    Ok(Path::new("/proc/sys").join(parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Segment;
    use socket2::{Domain, Socket, Type};
    use std::collections::BTreeSet;
    use std::io::BufRead;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::{PoisonError, RwLock, RwLockReadGuard};

    /// The cleanup test compares the machine's namespaces before and after, so it runs alone;
    /// every other lab test holds this for reading.
    static EXCLUSIVE: RwLock<()> = RwLock::new(());

    fn shared() -> RwLockReadGuard<'static, ()> {
        EXCLUSIVE.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether labs can be built here; says why not past libtest's capture (which hides
    /// `eprintln!` of a passing test). Under CI as root the lab is expected (`.ci/run` installs
    /// its tools): missing tools fail there instead of passing having checked nothing.
    fn can_build() -> bool {
        let skip = |why: &str| {
            let _ = writeln!(io::stderr().lock(), "skipped: {why}");
            false
        };
        if unsafe { libc::geteuid() } != 0 {
            return skip("the fault lab needs root");
        }
        if let Err(why) = tools() {
            let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            assert!(!ci, "CI runs as root and expects the fault lab: {why}");
            return skip(&why);
        }
        true
    }

    fn lab() -> Option<Lab> {
        can_build().then(|| Lab::build().unwrap_or_else(|e| panic!("{e}")))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A listener in the server host.
    fn listen(lab: &Lab) -> TcpListener {
        lab.in_ns(Host::Server, || TcpListener::bind((SERVER, 0)))
            .unwrap()
    }

    /// A client socket in the client host connected to `to` (with an optional user timeout).
    fn dial(lab: &Lab, to: SocketAddr, user_timeout: Option<Duration>) -> io::Result<TcpStream> {
        lab.in_ns(Host::Client, move || {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            s.set_tcp_user_timeout(user_timeout)?;
            s.connect_timeout(&to.into(), Duration::from_secs(5))?;
            Ok(TcpStream::from(s))
        })
    }

    /// A connection from the client host to the server host through the router:
    /// (client end, server end).
    fn connected(lab: &Lab, user_timeout: Option<Duration>) -> (TcpStream, TcpStream) {
        let listener = listen(lab);
        let client = dial(lab, listener.local_addr().unwrap(), user_timeout).unwrap();
        let (server, peer) = listener.accept().unwrap();
        // Routed, not translated: the server sees the client's own address.
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(peer.ip(), IpAddr::V4(CLIENT));
        for s in [&client, &server] {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        (client, server)
    }

    fn dump(segs: &[Segment]) -> String {
        segs.iter().map(|s| format!("\n  {s}")).collect()
    }

    fn errno(e: &io::Error) -> String {
        crate::error_name(e)
    }

    fn sleeper() -> Command {
        let mut cmd = Command::new(&tools().unwrap().sleep);
        cmd.arg("infinity");
        cmd
    }

    /// Every network namespace any process or thread is in right now.
    fn net_namespaces() -> BTreeSet<(u64, u64)> {
        let mut set = BTreeSet::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if e.file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
                .is_none()
            {
                continue;
            }
            let Ok(tasks) = std::fs::read_dir(e.path().join("task")) else {
                continue;
            };
            for t in tasks.flatten() {
                if let Ok(id) = NsId::of(t.path().join("ns/net")) {
                    set.insert((id.dev, id.ino));
                }
            }
        }
        set
    }

    /// Gone, or a zombie (exited; holds no namespace anymore).
    fn gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .unwrap()
                .1
                .trim_start()
                .starts_with('Z'),
        }
    }

    #[test]
    fn a_link_that_is_down_is_awaited_and_named() {
        let Some(lab) = lab() else { return };
        let ip = &lab.tools.ip;
        finish(
            start(
                &lab.router,
                ip,
                &["link", "set", ROUTER_TO_SERVER, "down"],
                "",
            )
            .unwrap(),
        )
        .unwrap();
        let e = await_link_up(
            &lab.router,
            ip,
            &[ROUTER_TO_CLIENT, ROUTER_TO_SERVER],
            ms(300),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("link(s) to-server not up"), "{e}");
        finish(
            start(
                &lab.router,
                ip,
                &["link", "set", ROUTER_TO_SERVER, "up"],
                "",
            )
            .unwrap(),
        )
        .unwrap();
        await_link_up(
            &lab.router,
            ip,
            &[ROUTER_TO_CLIENT, ROUTER_TO_SERVER],
            TOOL_DEADLINE,
        )
        .unwrap();
    }

    fn wait_gone(pids: &[u32]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pids.iter().all(|p| gone(*p)) {
            assert!(Instant::now() < deadline, "still running: {pids:?}");
            std::thread::sleep(ms(5));
        }
    }

    fn host_sysctl(key: &str) -> String {
        std::fs::read_to_string(sysctl_path(key).unwrap()).unwrap()
    }

    #[test]
    fn lab_sysctl_keys_are_checked() {
        assert_eq!(
            sysctl_path("net.ipv4.tcp_retries2").unwrap(),
            Path::new("/proc/sys/net/ipv4/tcp_retries2")
        );
        for bad in [
            "kernel.pid_max",
            "net",
            "net..ipv4",
            "net.ipv4/../../kernel",
            "",
            "vm.x",
        ] {
            assert_eq!(
                sysctl_path(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }

    #[test]
    fn lab_routes_client_to_server_through_router() {
        let _g = shared();
        let Some(lab) = lab() else { return };
        let cap = lab.capture(Host::Client).unwrap();
        let (mut client, mut server) = connected(&lab, None);
        let (c, s) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        assert_eq!(s.ip(), lab.addr(Host::Server));
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).unwrap();
        server.write_all(b"pong").unwrap();
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        // Each host's table holds its own end, and only that.
        let est = |host| {
            lab.tcp_table(host)
                .unwrap()
                .into_iter()
                .filter(|e| e.state == crate::TcpState::Established)
                .map(|e| (e.local, e.remote))
                .collect::<Vec<_>>()
        };
        assert_eq!(est(Host::Client), [(c, s)]);
        assert_eq!(est(Host::Server), [(s, c)]);
        assert_eq!(est(Host::Router), []);
        // Permanent neighbours only (flags 0x6 = complete + permanent): the lab never ARPs.
        for (host, n) in [(Host::Client, 1), (Host::Router, 2), (Host::Server, 1)] {
            let arp = std::fs::read_to_string(format!("/proc/{}/net/arp", lab.ns(host).pid()));
            let arp = arp.unwrap();
            let flags: Vec<&str> = arp
                .lines()
                .skip(1)
                .map(|l| l.split_whitespace().nth(2).unwrap())
                .collect();
            assert_eq!(flags, vec!["0x6"; n], "{host:?}: {arp}");
        }
        assert!(!crate::tcp_table()
            .unwrap()
            .iter()
            .any(|e| e.local == c || e.local == s));
        // The router is reachable at its address, and the client's capture sees each packet once.
        let router = dial(&lab, SocketAddr::new(lab.addr(Host::Router), 9), None).unwrap_err();
        assert_eq!(errno(&router), "ECONNREFUSED");
        drop((client, server));
        let both_fins = |segs: &[Segment]| segs.iter().filter(|x| x.fin).count() >= 2;
        assert!(cap.wait_for(Instant::now() + Duration::from_secs(5), both_fins));
        let segs = cap.stop();
        let events = |from: SocketAddr| {
            segs.iter()
                .filter(|x| x.src == from && x.dst != SocketAddr::new(lab.addr(Host::Router), 9))
                .filter_map(Segment::event)
                .collect::<Vec<_>>()
        };
        assert_eq!(events(c), ["SYN", "data 4", "FIN"], "{}", dump(&segs));
        assert_eq!(events(s), ["SYN-ACK", "data 4", "FIN"], "{}", dump(&segs));
    }

    #[test]
    fn lab_crash_leaves_data_unacked_until_the_user_timeout() {
        let _g = shared();
        let Some(mut lab) = lab() else { return };
        let cap = lab.capture(Host::Client).unwrap();
        let (mut client, _server) = connected(&lab, Some(ms(1000)));
        let (c, s) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        lab.inject(Fault::Crash).unwrap();
        let t = Instant::now();
        client.write_all(b"hello").unwrap();
        let err = client.read(&mut [0u8; 8]).unwrap_err();
        let took = t.elapsed();
        let segs = cap.stop();
        assert_eq!(errno(&err), "ETIMEDOUT", "{err}");
        assert!(took >= ms(950) && took < ms(3000), "{took:?}");
        let data: Vec<&Segment> = segs
            .iter()
            .filter(|x| x.src == c && x.payload == 5)
            .collect();
        assert!(data.len() >= 2, "no retransmission:{}", dump(&segs));
        assert!(data.iter().all(|x| x.seq == data[0].seq), "{}", dump(&segs));
        // Not a single segment from the server after the data was first sent: pure silence.
        let first = segs
            .iter()
            .position(|x| x.src == c && x.payload == 5)
            .unwrap();
        assert!(!segs[first..].iter().any(|x| x.src == s), "{}", dump(&segs));
        eprintln!(
            "crash: ETIMEDOUT after {took:?}, {} transmissions",
            data.len()
        );
    }

    #[test]
    fn lab_reboot_forgets_connections_and_kills_the_server_processes() {
        let _g = shared();
        let Some(mut lab) = lab() else { return };
        let cap = lab.capture(Host::Client).unwrap();
        let (mut client, server_end) = connected(&lab, Some(Duration::from_secs(5)));
        let (c, s) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let mut agent = sleeper();
        lab.prepare(Host::Server, &mut agent);
        let mut agent = agent.spawn().unwrap();
        let old = lab.server.id;
        assert_eq!(
            NsId::of(format!("/proc/{}/ns/net", agent.id())).unwrap(),
            old
        );
        let t = Instant::now();
        lab.inject(Fault::Reboot).unwrap();
        let took = t.elapsed();
        // The server's processes were killed, its namespace replaced, its table is empty.
        let status = agent.try_wait().unwrap().expect("killed and exited");
        assert_eq!(crate::exit_description(status), "signal SIGKILL");
        assert_ne!(lab.server.id, old);
        assert!(pids_in(&[old]).is_empty());
        assert_eq!(lab.tcp_table(Host::Server).unwrap(), []);
        // The client's next send is answered by RST.
        client.write_all(b"after reboot").unwrap();
        let err = client.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(errno(&err), "ECONNRESET", "{err}");
        // The host answers again, with no state: a fresh listener there accepts.
        let (c2, s2) = connected(&lab, None);
        assert_eq!(c2.peer_addr().unwrap().ip(), IpAddr::V4(SERVER));
        drop((c2, s2, server_end));
        let segs = cap.stop();
        let from_server: Vec<String> = segs
            .iter()
            .filter(|x| x.src == s && x.dst == c)
            .filter_map(Segment::event)
            .collect();
        // SYN-ACK, then nothing but the RST: the dying server's FIN never left.
        assert_eq!(from_server, ["SYN-ACK", "RST"], "{}", dump(&segs));
        eprintln!("reboot took {took:?}");
    }

    #[test]
    fn lab_partition_healed_before_the_user_timeout_keeps_the_connection() {
        let _g = shared();
        let Some(mut lab) = lab() else { return };
        let cap = lab.capture(Host::Client).unwrap();
        let (mut client, mut server) = connected(&lab, Some(Duration::from_secs(5)));
        let c = client.local_addr().unwrap();
        lab.inject(Fault::Partition).unwrap();
        client.write_all(b"through the partition").unwrap();
        server.set_read_timeout(Some(ms(400))).unwrap();
        let mut buf = [0u8; 21];
        assert_eq!(
            server.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        lab.inject(Fault::Heal).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"through the partition");
        server.write_all(b"ok").unwrap();
        client.read_exact(&mut buf[..2]).unwrap();
        assert_eq!(&buf[..2], b"ok");
        let segs = cap.stop();
        let sent = segs
            .iter()
            .filter(|x| x.src == c && x.payload == 21)
            .count();
        assert!(sent >= 2, "not retransmitted:{}", dump(&segs));
    }

    #[test]
    fn lab_unreachable_fails_a_new_connect_quickly() {
        let _g = shared();
        let Some(mut lab) = lab() else { return };
        let listener = listen(&lab);
        let to = listener.local_addr().unwrap();
        lab.inject(Fault::Unreachable).unwrap();
        // Installing twice leaves one rule (the table is replaced).
        lab.inject(Fault::Unreachable).unwrap();
        let t = Instant::now();
        let err = dial(&lab, to, None).unwrap_err();
        let took = t.elapsed();
        assert_eq!(errno(&err), "EHOSTUNREACH", "{err}");
        assert!(took < ms(500), "{took:?}");
        lab.inject(Fault::Heal).unwrap();
        dial(&lab, to, None).unwrap();
        eprintln!("unreachable: EHOSTUNREACH after {took:?}");
    }

    #[test]
    fn lab_middlebox_reset_resets_the_client() {
        let _g = shared();
        let Some(mut lab) = lab() else { return };
        let cap = lab.capture(Host::Client).unwrap();
        let (mut client, mut server) = connected(&lab, None);
        let (c, s) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        lab.inject(Fault::MiddleboxReset).unwrap();
        client.write_all(b"x").unwrap();
        let err = client.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(errno(&err), "ECONNRESET", "{err}");
        // The server never got the byte; its own next segment is reset too.
        server.write_all(b"y").unwrap();
        let err = server.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(errno(&err), "ECONNRESET", "{err}");
        let segs = cap.stop();
        assert!(
            segs.iter().any(|x| x.src == s && x.dst == c && x.rst),
            "{}",
            dump(&segs)
        );
        lab.inject(Fault::Heal).unwrap();
        connected(&lab, None);
    }

    #[test]
    fn lab_sysctl_changes_only_the_namespace() {
        let _g = shared();
        let Some(lab) = lab() else { return };
        let key = "net.ipv4.tcp_retries2";
        let host_before = host_sysctl(key);
        let read = |host| lab.in_ns(host, || Ok(host_sysctl(key))).unwrap();
        let (router, server) = (read(Host::Router), read(Host::Server));
        let new = if read(Host::Client).trim() == "3" {
            "4"
        } else {
            "3"
        };
        lab.sysctl(Host::Client, key, new).unwrap();
        assert_eq!(read(Host::Client).trim(), new);
        assert_eq!(read(Host::Router), router);
        assert_eq!(read(Host::Server), server);
        assert_eq!(host_sysctl(key), host_before);
        let forwarding = lab.in_ns(Host::Router, || Ok(host_sysctl("net.ipv4.ip_forward")));
        assert_eq!(forwarding.unwrap().trim(), "1");
        let err = lab
            .sysctl(Host::Client, "kernel.hostname", "x")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = lab
            .sysctl(Host::Client, "net.ipv4.no_such_knob", "1")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn lab_never_touches_the_host() {
        let _g = shared();
        if !can_build() {
            return;
        }
        let snapshot = || {
            let nft = Command::new(&tools().unwrap().nft)
                .args(["list", "ruleset"])
                .output()
                .unwrap();
            (
                std::fs::read_to_string("/proc/self/net/dev")
                    .unwrap()
                    .lines()
                    .skip(2)
                    .map(|l| l.split(':').next().unwrap().trim().to_string())
                    .collect::<Vec<_>>(),
                std::fs::read_to_string("/proc/self/net/route").unwrap(),
                String::from_utf8_lossy(&nft.stdout).into_owned(),
                host_sysctl("net.ipv4.ip_forward"),
            )
        };
        let before = snapshot();
        let mut lab = Lab::build().unwrap();
        for f in [
            Fault::Crash,
            Fault::Partition,
            Fault::Unreachable,
            Fault::MiddleboxReset,
        ] {
            lab.inject(f).unwrap();
        }
        lab.sysctl(Host::Router, "net.ipv4.tcp_retries2", "2")
            .unwrap();
        let during = snapshot();
        lab.inject(Fault::Reboot).unwrap();
        lab.inject(Fault::Heal).unwrap();
        drop(lab);
        assert_eq!(during, before);
        assert_eq!(snapshot(), before);
    }

    #[test]
    fn lab_build_and_drop_time() {
        let _g = shared();
        if !can_build() {
            return;
        }
        const N: u32 = 10;
        let (mut build, mut drop_t, mut worst) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for _ in 0..N {
            let t = Instant::now();
            let lab = Lab::build().unwrap();
            let b = t.elapsed();
            let t = Instant::now();
            drop(lab);
            let d = t.elapsed();
            build += b;
            drop_t += d;
            worst = worst.max(b + d);
        }
        eprintln!(
            "lab build {:?} + drop {:?} on average, worst build+drop {worst:?} ({N} labs, one at a time)",
            build / N,
            drop_t / N
        );
        // Two case threads at once, as on a 2-core machine running cases in parallel.
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..5 {
                        let lab = Lab::build().unwrap();
                        // Both labs use the same names and addresses without clashing.
                        let mut lab = lab;
                        lab.inject(Fault::Partition).unwrap();
                        drop(lab);
                    }
                });
            }
        });
        eprintln!(
            "10 labs on 2 threads (with one nft run each): {:?}",
            t.elapsed()
        );
        assert!((build + drop_t) / N < ms(200), "too slow");
    }

    const HELPER_ENV: &str = "SOCKCONFORM_LAB_HELPER";

    /// Not a test on its own: the child process of `lab_leaves_nothing_behind`, which builds a
    /// lab with an agent inside, prints its holders and namespaces, then waits to be SIGKILLed.
    /// Run by hand (`--ignored`), it refuses rather than pass having checked nothing.
    #[test]
    #[ignore = "helper process of lab_leaves_nothing_behind"]
    fn lab_helper_killed_while_a_lab_exists() {
        assert!(
            std::env::var_os(HELPER_ENV).is_some(),
            "not a test on its own: lab_leaves_nothing_behind runs it with {HELPER_ENV}=1 and \
             checks what it leaves behind when killed"
        );
        let lab = Lab::build().unwrap();
        let mut agent = sleeper();
        lab.prepare(Host::Client, &mut agent);
        let mut agent = agent.spawn().unwrap();
        // What the parent then checks is gone must first be there: the agent in the client host.
        let agent_ns = NsId::of(format!("/proc/{}/ns/net", agent.id())).unwrap();
        assert_eq!(agent_ns, lab.client.id);
        let ns = [lab.client.id, lab.router.id, lab.server.id].map(|i| i.ino);
        let pids = [
            lab.client.pid(),
            lab.router.pid(),
            lab.server.pid(),
            agent.id(),
        ];
        println!("LAB {pids:?} {ns:?}");
        std::thread::sleep(Duration::from_secs(60));
        let _ = agent.kill();
        let _ = agent.wait();
    }

    fn ids(lab: &Lab) -> (Vec<u32>, Vec<(u64, u64)>) {
        (
            vec![lab.client.pid(), lab.router.pid(), lab.server.pid()],
            [lab.client.id, lab.router.id, lab.server.id]
                .iter()
                .map(|i| (i.dev, i.ino))
                .collect(),
        )
    }

    #[test]
    fn lab_leaves_nothing_behind() {
        let _alone = EXCLUSIVE.write().unwrap_or_else(PoisonError::into_inner);
        if !can_build() {
            return;
        }
        let before = net_namespaces();

        // 1. Dropped normally, with an agent still running inside.
        let lab = Lab::build().unwrap();
        let (holders, namespaces) = ids(&lab);
        let during = net_namespaces();
        assert!(namespaces
            .iter()
            .all(|n| during.contains(n) && !before.contains(n)));
        let mut agent = sleeper();
        lab.prepare(Host::Server, &mut agent);
        let mut agent = agent.spawn().unwrap();
        drop(lab);
        assert!(holders.iter().all(|p| gone(*p)), "{holders:?}");
        let status = agent.try_wait().unwrap().expect("the agent was killed");
        assert_eq!(crate::exit_description(status), "signal SIGKILL");
        assert_eq!(net_namespaces(), before);

        // 2. A panic on the thread that owns a lab.
        let (tx, rx) = std::sync::mpsc::channel();
        let panicked = std::thread::spawn(move || {
            let lab = Lab::build().unwrap();
            tx.send(ids(&lab)).unwrap();
            panic!("a case failed while its lab existed");
        })
        .join();
        assert!(panicked.is_err());
        let (holders, _) = rx.recv().unwrap();
        assert!(holders.iter().all(|p| gone(*p)), "{holders:?}");
        assert_eq!(net_namespaces(), before);

        // 3. The runner process is SIGKILLed while a lab exists: no destructor runs, the
        //    holders die with it (PR_SET_PDEATHSIG), so do agents prepared for the lab.
        let me = module_path!().split_once("::").unwrap().1;
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("{me}::lab_helper_killed_while_a_lab_exists"),
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(helper.stdout.take().unwrap());
        let line = out
            .lines()
            .map_while(Result::ok)
            .find_map(|l| Some(l.split_once("LAB [")?.1.to_string()))
            .expect("the helper printed its lab");
        let _ = helper.kill();
        helper.wait().unwrap();
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        let pids: Vec<u32> = nums[..4].iter().map(|p| *p as u32).collect();
        wait_gone(&pids);
        let inos = &nums[4..];
        assert!(!net_namespaces().iter().any(|(_, ino)| inos.contains(ino)));
        assert_eq!(net_namespaces(), before);
        eprintln!("cleanup: drop, panic and SIGKILL of the owner all left nothing behind");
    }
}
