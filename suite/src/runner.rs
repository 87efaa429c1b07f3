//! The runner: walks a case's script against two real agent processes, takes checkpoints, captures
//! the wire, and always cleans up. Every wait has a deadline; nothing here can hang a run.
//!
//! Each case runs on a thread of its own. With isolation, that thread moves into a fresh network
//! namespace first, so the agents it spawns, the TCP table it reads and the packets it captures are
//! the case's alone; the namespace disappears with the thread and its processes.

use crate::observe::{self, Observation, RawTiming, Wire};
use crate::proto::{Outcome, Reply, Request};
use crate::script::{Action, Case, Fact, Fault, Op, Port, Side, Step, Target, TcpState, Topology};
use crate::visibility::TableView;
use platforms::lab::{Host, Lab};
use platforms::{Capture, TcpEntry};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one step may take before the case is declared hung (SOCKCONFORM_STEP_DEADLINE_MS
/// overrides it, so tests of the runner itself need not wait 10 s).
fn step_deadline() -> Duration {
    std::env::var("SOCKCONFORM_STEP_DEADLINE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
}

/// Every agent of this process's runs carries this tag in its environment (SOCKCONFORM_RUN_ID), so
/// a test can prove that none outlived its run.
pub fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::env::var("SOCKCONFORM_RUN_ID")
            .unwrap_or_else(|_| format!("run-{}", std::process::id()))
    })
}
/// How long a checkpoint waits for transient TCP states (FIN_WAIT1, LAST_ACK...) to settle.
const SETTLE_DEADLINE: Duration = Duration::from_secs(1);
/// What identifies one table entry of the case, for telling whether the table still changes.
type EntryKey = (SocketAddr, SocketAddr, TcpState);

/// How long the case's table entries must stay the same before a checkpoint reads them, on a
/// stack that processes segments after the sending call returns.
const QUIET: Duration = Duration::from_millis(300);
/// How long a checkpoint on such a stack waits for a closed endpoint's FIN or RST on the wire.
const CLOSING_DEADLINE: Duration = Duration::from_secs(5);
/// How long an explicit await may wait for a state.
const AWAIT_DEADLINE: Duration = Duration::from_secs(5);

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
        let capture = match &isolation {
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
    /// them. Cases spend their time waiting on the kernel, so all run at once, unless reading
    /// the TCP table is slow here (a process per query, or an emulation layer): every case polls
    /// it, and many pollers at once would delay the waits they serve.
    pub fn default_jobs(&self, cases: usize) -> (usize, Option<String>) {
        let slow = Duration::from_millis(5);
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

/// Pauses between polls of an observable condition: 1 ms at first, growing to 10 ms, so a quick
/// condition is seen at once while a slow one does not flood a platform whose table is costly to
/// read (GetTcpTable2 under Wine took about 20 ms a call; polling it every 1 ms from every case
/// stalled the run).
pub struct Backoff(Duration);

impl Backoff {
    pub fn new() -> Backoff {
        Backoff(Duration::from_millis(1))
    }

    pub fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 3 / 2).min(Duration::from_millis(10));
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

/// Everything one run of one case produced.
#[derive(Clone, Debug)]
pub struct CaseRun {
    pub observation: Observation,
    pub wire: Wire,
    pub raw_timings: Vec<RawTiming>,
    /// Raw measurements behind the snapshot's buckets (bytes, counts), for the JSON results.
    pub measurements: Vec<(String, u64)>,
    /// Every captured segment with its time since the capture started, for the JSON results.
    pub wire_raw: Vec<String>,
    /// The packets behind `wire_raw`, as captured (for `--pcap`); None when nothing was captured.
    pub frames: Option<Vec<platforms::wire::Frame>>,
    /// Set when the run itself failed (an agent hung or broke protocol): the observation is partial.
    pub error: Option<String>,
    pub elapsed: Duration,
}

/// Run one case on a fresh thread (so a namespace change never leaks into the caller).
pub fn run_case(case: &Case, cfg: &RunConfig) -> CaseRun {
    std::thread::scope(|s| {
        s.spawn(|| run_here(case, cfg))
            .join()
            .unwrap_or_else(|panic| {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                CaseRun {
                    observation: Observation::new(case),
                    wire: Wire::NotCaptured {
                        reason: "the runner panicked".into(),
                    },
                    raw_timings: Vec::new(),
                    measurements: Vec::new(),
                    wire_raw: Vec::new(),
                    frames: None,
                    error: Some(format!("runner panicked: {msg}")),
                    elapsed: Duration::ZERO,
                }
            })
    })
}

fn run_here(case: &Case, cfg: &RunConfig) -> CaseRun {
    let started = Instant::now();
    let mut run = Run::new(case, cfg);
    let result = run.setup(case, cfg).and_then(|()| run.walk(case));
    // Let in-flight closes finish before the capture stops, so the last FIN/ACK exchange is stable.
    // A script that ended with a checkpoint has just done so: the wire then ends where the states
    // were read (waiting again would only cost the settle deadline once more where a state stays
    // transient, e.g. FIN_WAIT1 behind a zero window).
    if result.is_ok() && !run.settled {
        run.settle();
    }
    let mut wire_raw = Vec::new();
    let mut frames = None;
    let wire = match run.capture.take() {
        Some(c) => {
            // Read before stop: the case's traffic is over, so no drop can come after this.
            let dropped = c.dropped();
            let (segs, packets) = c.stop_with_frames();
            frames = Some(packets);
            let labels = run.endpoint_labels();
            wire_raw = observe::raw_wire(&segs, &labels);
            let vary = case.retransmissions_vary;
            let mut events = observe::wire_events(&segs, &labels, case.is_bulk(), vary);
            if let (Some(port), None) = (run.client_ports.get("conn"), vary) {
                events.extend(observe::retransmission_schedule(&segs, *port));
            }
            if dropped > 0 {
                // A partial wire is not an observation of the platform: neither compared nor
                // written, like a run without capture (the segments still go to the JSON).
                Wire::NotCaptured {
                    reason: format!(
                        "incomplete: the kernel dropped {dropped} captured packet(s) (capture buffer full)"
                    ),
                }
            } else {
                Wire::Captured { events }
            }
        }
        None => Wire::NotCaptured {
            reason: run.no_capture_reason.clone(),
        },
    };
    let stderr = run.cleanup();
    let error = result.err().map(|e| {
        if stderr.trim().is_empty() {
            e
        } else {
            format!("{e}\n--- agent stderr ---\n{stderr}")
        }
    });
    CaseRun {
        observation: std::mem::replace(&mut run.obs, Observation::new(case)),
        wire,
        raw_timings: std::mem::take(&mut run.raw),
        measurements: std::mem::take(&mut run.measurements),
        wire_raw,
        frames,
        error,
        elapsed: started.elapsed(),
    }
}

enum Line {
    Reply(Reply),
    Garbage(String),
    Closed,
}

struct AgentProc {
    side: Side,
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<Line>,
    stderr: Arc<Mutex<String>>,
    pending: Option<Action>,
    ended: Option<String>,
}

impl AgentProc {
    fn spawn(side: Side, exe: &PathBuf, net: &Net) -> Result<AgentProc, String> {
        let mut cmd = Command::new(exe);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match net {
            Net::Lab(lab) => lab.prepare(host_of(side), &mut cmd),
            Net::Local { .. } => platforms::prepare_agent(&mut cmd),
        }
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start agent {}: {e} (build it with `cargo build`)",
                exe.display()
            )
        })?;
        let stdout = child.stdout.take().expect("piped");
        let mut stderr_pipe = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let msg = match serde_json::from_str(&line) {
                    Ok(r) => Line::Reply(r),
                    Err(_) => Line::Garbage(line),
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
            let _ = tx.send(Line::Closed);
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Ok(AgentProc {
            side,
            stdin: child.stdin.take(),
            child,
            replies: rx,
            stderr,
            pending: None,
            ended: None,
        })
    }

    fn send(&mut self, req: &Request) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}: its input is already closed", self.side))?;
        let line = serde_json::to_string(req).expect("requests serialize");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("{}: cannot send request: {e}", self.side))
    }

    /// The reply to the last request; if the process ended instead, how it ended.
    fn receive(&mut self, deadline: Instant) -> Result<Reply, String> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.replies.recv_timeout(timeout) {
            Ok(Line::Reply(r)) => Ok(r),
            Ok(Line::Garbage(l)) => Err(format!("{}: unreadable reply {l:?}", self.side)),
            Ok(Line::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let how = self.wait_end(deadline)?;
                Ok(Reply {
                    outcome: Outcome::Died { how },
                    elapsed_us: 0,
                    local: None,
                    peer: None,
                })
            }
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("{}: no reply within the step deadline", self.side))
            }
        }
    }

    /// Wait for the process to end (polling its status), up to the deadline.
    fn wait_end(&mut self, deadline: Instant) -> Result<String, String> {
        if let Some(how) = &self.ended {
            return Ok(how.clone());
        }
        let mut pause = Backoff::new();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    let how = platforms::exit_description(status);
                    self.ended = Some(how.clone());
                    return Ok(how);
                }
                Ok(None) if Instant::now() < deadline => pause.wait(),
                Ok(None) => {
                    return Err(format!(
                        "{}: the process did not end before the deadline",
                        self.side
                    ))
                }
                Err(e) => return Err(format!("{}: cannot wait for the process: {e}", self.side)),
            }
        }
    }
}

/// Where the case's endpoints live.
enum Net {
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

struct Run {
    net: Net,
    measurements: Vec<(String, u64)>,
    memory_mark: Option<u64>,
    obs: Observation,
    raw: Vec<RawTiming>,
    agents: BTreeMap<Side, AgentProc>,
    capture: Option<Capture>,
    no_capture_reason: String,
    /// The address every socket of the case uses (127.0.0.1, ::1 for IPv6 cases, or the lab's).
    host: IpAddr,
    listener: Option<SocketAddr>,
    previous_listener: Option<SocketAddr>,
    closed_port: Option<SocketAddr>,
    /// The client's connections by slot: (client address, server address).
    conns: BTreeMap<&'static str, (SocketAddr, SocketAddr)>,
    listeners: Vec<SocketAddr>,
    /// Every client socket's port by slot, connected or not (for naming wire endpoints).
    client_ports: BTreeMap<&'static str, u16>,
    bulk: bool,
    /// What this platform's table can show.
    view: TableView,
    /// Connection endpoints whose FIN or RST a step has caused (close, shutdown, the process's
    /// end) and a checkpoint on an asynchronous stack waits to see on the wire.
    closing: Vec<SocketAddr>,
    /// The last step was a checkpoint, which settled the table (or waited its deadline for it).
    settled: bool,
    /// Sides whose calls put data into connection "conn" (a write or fill that took bytes).
    wrote: BTreeSet<Side>,
}

impl Run {
    fn new(case: &Case, cfg: &RunConfig) -> Run {
        Run {
            net: Net::Local { isolated: false },
            measurements: Vec::new(),
            memory_mark: None,
            obs: Observation::new(case),
            raw: Vec::new(),
            agents: BTreeMap::new(),
            capture: None,
            no_capture_reason: cfg.capture.clone().err().unwrap_or_default(),
            host: if case.ipv6 {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            },
            listener: None,
            previous_listener: None,
            closed_port: None,
            conns: BTreeMap::new(),
            listeners: Vec::new(),
            client_ports: BTreeMap::new(),
            bulk: case.is_bulk(),
            view: cfg.table.clone(),
            closing: Vec::new(),
            settled: false,
            wrote: BTreeSet::new(),
        }
    }

    fn setup(&mut self, case: &Case, cfg: &RunConfig) -> Result<(), String> {
        let capture = match case.topology {
            Topology::Lab => {
                let lab = Lab::build()?;
                self.host = Host::Server.addr();
                let capture = lab.capture(Host::Client);
                self.net = Net::Lab(Box::new(lab));
                Some(capture)
            }
            Topology::Loopback if cfg.isolation.is_ok() => {
                platforms::isolate_thread()?;
                self.net = Net::Local { isolated: true };
                cfg.capture.is_ok().then(Capture::start)
            }
            Topology::Loopback => None,
        };
        match capture {
            Some(Ok(c)) => self.capture = Some(c),
            Some(Err(e)) => self.no_capture_reason = format!("capture failed to start: {e}"),
            None => {}
        }
        for side in [Side::Client, Side::Server] {
            let agent = AgentProc::spawn(side, &cfg.agent_exe, &self.net)?;
            self.agents.insert(side, agent);
        }
        Ok(())
    }

    fn agent(&mut self, side: Side) -> &mut AgentProc {
        self.agents.get_mut(&side).expect("both agents exist")
    }

    fn walk(&mut self, case: &Case) -> Result<(), String> {
        let case_deadline = Instant::now() + case.deadline();
        for (i, step) in case.steps.iter().enumerate() {
            if Instant::now() > case_deadline {
                return Err(format!(
                    "the case passed its deadline of {:?} before step {}",
                    case.deadline(),
                    i + 1
                ));
            }
            self.settled = false;
            self.step(i + 1, step)
                .map_err(|e| format!("step {} ({step:?}): {e}", i + 1))?;
            self.note_closing(step);
            self.settled = matches!(step, Step::Checkpoint(_));
        }
        Ok(())
    }

    fn step(&mut self, n: usize, step: &Step) -> Result<(), String> {
        // Bulk connects and accepts (10,000 connections) get three deadlines: gVisor needs
        // about 10 s for them.
        let bulk = matches!(
            step,
            Step::Do(a) if matches!(a.op, Op::ConnectMany { .. } | Op::AcceptAll { .. })
        );
        let deadline = Instant::now() + step_deadline() * if bulk { 3 } else { 1 };
        match step {
            Step::Do(a) => {
                if !self.begin_or_record_gone(a)? {
                    return Ok(());
                }
                let reply = self.agent(a.side).receive(deadline)?;
                self.finish(n, a, reply);
            }
            Step::Start(a) => {
                if !self.begin_or_record_gone(a)? {
                    return Ok(());
                }
                self.obs.step(format!("{}: {} begins", who(a), a.op));
                self.agent(a.side).pending = Some(a.clone());
            }
            Step::Finish(side) => {
                let a = self
                    .agent(*side)
                    .pending
                    .take()
                    .ok_or("nothing was started")?;
                let reply = self.agent(*side).receive(deadline)?;
                self.finish(n, &a, reply);
            }
            Step::AwaitBlocked(side) => {
                let pid = self.agent(*side).child.id();
                let mut pause = Backoff::new();
                let blocked = loop {
                    match platforms::is_blocked(pid) {
                        Some(true) => break Some(true),
                        None => break None,
                        Some(false) if Instant::now() > deadline => break Some(false),
                        Some(false) => pause.wait(),
                    }
                };
                match blocked {
                    Some(true) => {}
                    // A wait this platform cannot perform is not a timeout: say which it was.
                    None => self.obs.step(format!(
                        "runner: cannot observe whether the {side} is blocked in its call on this platform; not waited for"
                    )),
                    Some(false) => self.obs.step(format!(
                        "runner: could not observe {side} blocked in its call"
                    )),
                }
            }
            Step::Kill(side) => {
                let a = self.agent(*side);
                a.child
                    .kill()
                    .map_err(|e| format!("cannot kill {side}: {e}"))?;
                let how = a.wait_end(deadline)?;
                self.obs
                    .step(format!("runner: hard kill {side} -> process died ({how})"));
            }
            Step::Terminate(side) => {
                let a = self.agent(*side);
                platforms::terminate(a.child.id())
                    .map_err(|e| format!("cannot terminate {side}: {e}"))?;
                let how = a.wait_end(deadline)?;
                self.obs
                    .step(format!("runner: terminate {side} -> process died ({how})"));
            }
            Step::ReleaseHolder(side) => {
                drop(self.agent(*side).stdin.take());
                self.obs.step(format!(
                    "runner: the last holder of the {side}'s socket exits"
                ));
            }
            Step::Checkpoint(name) => {
                let line = self.checkpoint(name)?;
                self.obs.step(line);
            }
            Step::AwaitUnread(side) => {
                // Ask the socket itself (FIONREAD), which every platform answers; kernel tables
                // may show no receive queue at all (Windows, gVisor).
                let req = Request {
                    slot: "conn".into(),
                    op: Op::AwaitUnread {
                        wait_ms: AWAIT_DEADLINE.as_millis() as u64,
                    },
                    addr: None,
                };
                let agent = self.agent(*side);
                agent.send(&req)?;
                let reply = agent.receive(Instant::now() + AWAIT_DEADLINE + step_deadline())?;
                match reply.outcome {
                    Outcome::Bytes { n } if n > 0 => {}
                    Outcome::Bytes { .. } => self.obs.step(format!(
                        "runner: no data reached the {side} within {AWAIT_DEADLINE:?}"
                    )),
                    other => self.obs.step(format!(
                        "runner: cannot see the {side}'s unread data here (FIONREAD -> {other}); not waited for"
                    )),
                }
            }
            Step::Fault(fault) => self.fault(*fault, deadline)?,
            Step::Sysctl(side, key, value) => {
                match &self.net {
                    Net::Lab(lab) => lab
                        .sysctl(host_of(*side), key, value)
                        .map_err(|e| e.to_string())?,
                    Net::Local { isolated: true } => {
                        platforms::host::set_net_sysctl_here(key, value)
                            .map_err(|e| e.to_string())?
                    }
                    Net::Local { isolated: false } => return Err(
                        "refusing to change a sysctl of the host itself (the case needs isolation)"
                            .into(),
                    ),
                }
                self.obs
                    .step(format!("runner: {side} host sysctl {key} = {value}"));
            }
            Step::ShutdownHost { grace_ms } => {
                let a = self.agent(Side::Server);
                platforms::terminate(a.child.id())
                    .map_err(|e| format!("cannot terminate the server: {e}"))?;
                let grace = Duration::from_millis(*grace_ms);
                let line = match a.wait_end(Instant::now() + grace) {
                    Ok(how) => format!("runner: host shutdown: SIGTERM to the server -> process died ({how}) within the grace period ({grace_ms} ms)"),
                    Err(_) => {
                        a.child.kill().map_err(|e| format!("cannot kill the server: {e}"))?;
                        let how = a.wait_end(deadline)?;
                        format!("runner: host shutdown: SIGTERM to the server; still running after the grace period ({grace_ms} ms); hard kill -> process died ({how})")
                    }
                };
                self.obs.step(line);
            }
            Step::AwaitRetransmits(n) => {
                let port = self.client_ports.get("conn").copied();
                let seen = match (&self.capture, port) {
                    (Some(c), Some(port)) => c.wait_for(deadline, |segs| {
                        observe::retransmissions(segs, port) >= *n as usize
                    }),
                    _ => false,
                };
                if !seen {
                    self.obs.step(format!(
                        "runner: did not observe {n} retransmission(s) of the client's data"
                    ));
                }
            }
            Step::AwaitAcked(side) => {
                // Without a capture the wait cannot be made: said so, never passed in silence.
                let acked = if let (Some(c), Some(&(client, server))) =
                    (&self.capture, self.conns.get("conn"))
                {
                    let (from, to) = match side {
                        Side::Client => (canonical(client), canonical(server)),
                        Side::Server => (canonical(server), canonical(client)),
                    };
                    let wrote = self.wrote.contains(side);
                    Some(c.wait_for(deadline, |segs| {
                        let sent_end = segs
                            .iter()
                            .filter(|s| {
                                canonical(s.src) == from && canonical(s.dst) == to && s.payload > 0
                            })
                            .map(|s| s.seq.wrapping_add(s.payload as u32))
                            .next_back();
                        // Acknowledged (ack_no at or past the end, modulo 2^32), or answered
                        // with a reset: either way the peer's stack has processed it. Data the
                        // side wrote but the capture has not seen yet is still to come: gVisor
                        // sends after write() returns (a wait that passed on "nothing sent"
                        // let a failed accept() race the data in limits/accept_out_of_fds).
                        if sent_end.is_none() && wrote {
                            return false;
                        }
                        sent_end.is_none_or(|end| {
                            segs.iter().any(|s| {
                                canonical(s.src) == to
                                    && (s.rst || (s.ack && s.ack_no.wrapping_sub(end) < (1 << 31)))
                            })
                        })
                    }))
                } else {
                    None
                };
                match acked {
                    Some(true) => {}
                    Some(false) => self.obs.step(format!(
                        "runner: did not observe the {side}'s data acknowledged"
                    )),
                    None => self.obs.step(format!(
                        "runner: cannot wait for the {side}'s data to be acknowledged (no capture)"
                    )),
                }
            }
            Step::AwaitSyns(n) => {
                let seen = match &self.capture {
                    Some(c) => c.wait_for(deadline, |segs| {
                        segs.iter()
                            .filter(|s| s.syn && !s.ack && s.dst.ip() == self.host)
                            .count()
                            >= *n as usize
                    }),
                    None => false,
                };
                if !seen {
                    self.obs.step(format!(
                        "runner: did not observe {n} SYN(s) from the client"
                    ));
                }
            }
            Step::Fact(fact) => {
                let r = match fact {
                    Fact::RetransmissionDefault => platforms::host::retransmission_default(),
                    Fact::KeepaliveDefault => platforms::host::keepalive_default(),
                    Fact::SynRetriesDefault => platforms::host::syn_retries_default(),
                };
                self.obs.step(match r {
                    Ok(text) => format!("fact (read, not waited for): {text}"),
                    Err(e) => format!("fact: unavailable ({e})"),
                });
            }
            Step::MemoryMark => self.memory_mark = platforms::host::tcp_socket_slab_bytes().ok(),
            Step::MemoryPerConnection(n) => {
                let now = platforms::host::tcp_socket_slab_bytes();
                let line = match (self.memory_mark, now) {
                    // The caches exist, but this run may not read them (a rootless run: only
                    // real root may): not visible, which agrees with any figure root observed.
                    (_, Err(e)) if e.kind() == std::io::ErrorKind::PermissionDenied => format!(
                        "kernel memory per connection (both ends, TCP slab caches): not visible ({e})"
                    ),
                    (Some(before), Ok(after)) => {
                        let per = after.saturating_sub(before) / (*n).max(1) as u64;
                        self.measurements.push(("kernel_bytes_per_connection".into(), per));
                        format!(
                            "kernel memory per connection (both ends, TCP slab caches): {}",
                            observe::memory_bucket(per)
                        )
                    }
                    _ => "kernel memory per connection: unavailable (cannot read the slab caches here)".into(),
                };
                self.obs.step(line);
            }
            Step::AwaitState(side, states) => {
                // A wait for states this table never lists cannot be performed: say so at once
                // instead of timing out.
                if states.iter().all(|s| self.view.unlisted.contains(s)) {
                    let want: Vec<_> = states.iter().map(|s| state_word(*s)).collect();
                    self.obs.step(format!(
                        "runner: cannot wait for the {side} end to reach {}: this platform's table does not list it",
                        want.join(" or ")
                    ));
                    return Ok(());
                }
                let end = Instant::now() + AWAIT_DEADLINE;
                let mut pause = Backoff::new();
                loop {
                    let st = self.end_state(*side, "conn")?;
                    if states.contains(&st) {
                        break;
                    }
                    if Instant::now() > end {
                        let want: Vec<_> = states.iter().map(|s| state_word(*s)).collect();
                        self.obs.step(format!(
                            "runner: {side} end never reached {} within {AWAIT_DEADLINE:?}; it is {}",
                            want.join(" or "),
                            state_word(st)
                        ));
                        break;
                    }
                    pause.wait();
                }
            }
        }
        Ok(())
    }

    fn fault(&mut self, fault: Fault, deadline: Instant) -> Result<(), String> {
        let Net::Lab(lab) = &mut self.net else {
            return Err("faults need the lab topology".into());
        };
        let words = match fault {
            Fault::Crash => "the server host crashes (answers nothing)",
            Fault::Reboot => "the server host reboots (its state vanishes without a packet)",
            Fault::Partition => "the router forwards nothing (partition)",
            Fault::Heal => "the network heals",
            Fault::Unreachable => "the router answers ICMP host unreachable for the server",
            Fault::MiddleboxReset => "the router answers the connection with forged RSTs",
        };
        lab.inject(fault)
            .map_err(|e| format!("cannot inject {fault:?}: {e}"))?;
        let mut line = format!("runner: fault: {words}");
        if fault == Fault::Reboot {
            let how = self.agent(Side::Server).wait_end(deadline)?;
            line += &format!(" -> the server process died ({how})");
        }
        self.obs.step(line);
        Ok(())
    }

    /// Send the action; if its agent has already ended (say, killed by SIGPIPE one step earlier),
    /// record that the step could not be performed and return false.
    fn begin_or_record_gone(&mut self, a: &Action) -> Result<bool, String> {
        match self.begin(a) {
            Ok(()) => Ok(true),
            Err(e) => {
                let agent = self.agent(a.side);
                let how = agent
                    .wait_end(Instant::now() + Duration::from_millis(500))
                    .map_err(|_| e)?;
                self.obs.step(format!(
                    "{}: {} -> not performed (the process had ended: {how})",
                    who(a),
                    a.op
                ));
                Ok(false)
            }
        }
    }

    /// Resolve the addresses of a request and send it.
    fn begin(&mut self, a: &Action) -> Result<(), String> {
        let addr = match &a.op {
            Op::Listen { port, .. } => Some(match port {
                Port::Any => SocketAddr::new(self.host, 0),
                Port::Previous => self.previous_listener.ok_or("no previous listener")?,
            }),
            Op::ListenDualStack { .. } => Some(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0)),
            Op::Connect {
                to: Target::ListenerOverIpv4,
                ..
            } => {
                let port = self.listener.ok_or("no listener to connect to")?.port();
                Some(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port))
            }
            Op::Connect {
                to: Target::Listener,
                ..
            }
            | Op::ConnectMany {
                compare_ports: true,
                ..
            } => Some(self.listener.ok_or("no listener to connect to")?),
            Op::ConnectMany {
                compare_ports: false,
                ..
            } => Some(*self.listeners.first().ok_or("no listener to connect to")?),
            Op::Connect {
                to: Target::ClosedPort,
                ..
            } => Some(self.make_closed_port()?),
            _ => None,
        };
        let req = Request {
            slot: a.slot.into(),
            op: a.op.clone(),
            addr,
        };
        self.agent(a.side).send(&req)
    }

    fn finish(&mut self, n: usize, a: &Action, reply: Reply) {
        let mut outcome = reply.outcome.to_string();
        match (&a.op, a.side) {
            (Op::Listen { .. } | Op::ListenDualStack { .. }, _) => {
                if let Some(l) = reply.local {
                    self.listener = Some(l);
                    self.previous_listener = Some(l);
                    self.listeners.push(l);
                }
            }
            (Op::Connect { .. }, Side::Client) => {
                if let Some(local) = reply.local {
                    self.client_ports.insert(a.slot, local.port());
                }
                if let (Some(local), Some(peer)) = (reply.local, reply.peer) {
                    self.conns.insert(a.slot, (local, peer));
                }
            }
            (Op::Write { .. } | Op::Fill, side)
                if a.slot == "conn"
                    && (matches!(reply.outcome, Outcome::Bytes { n } if n > 0)
                        || matches!(reply.outcome, Outcome::Filled { .. })) =>
            {
                self.wrote.insert(side);
            }
            (Op::Accept, Side::Server) => {
                // How a dual-stack listener presents an IPv4 client (its address only; the port
                // is the client's ephemeral one).
                if let Some(ip) = reply.peer.map(|p| p.ip()).filter(is_ipv4_mapped) {
                    outcome += &format!(" (peer {ip}, IPv4-mapped)");
                }
            }
            _ => {}
        }
        if a.op == Op::Close && a.slot == "listener" {
            self.listener = None;
        }
        self.obs.step(format!("{}: {} -> {outcome}", who(a), a.op));
        let label = format!("{n}. {}: {}", who(a), a.op);
        if let Some(line) = observe::timing_line(&label, a.timing, reply.elapsed_us) {
            self.obs.timing.push(line);
        }
        self.raw.push(RawTiming {
            step: label,
            elapsed_us: reply.elapsed_us,
        });
    }

    /// A port on which nothing listens: bind one, read its number, close it. It is taken below
    /// every platform's default ephemeral range (Linux 32768+, the others 49152+), so the
    /// client's own ephemeral port can never be it: a connect to one's own address and port is
    /// a TCP self-connect, which succeeds (`--repeat 20` met it once with a bind(0) port).
    fn make_closed_port(&mut self) -> Result<SocketAddr, String> {
        let free = (23_000..23_500).find_map(|port| {
            let l = std::net::TcpListener::bind(SocketAddr::new(self.host, port)).ok()?;
            l.local_addr().ok()
        });
        let addr = free.ok_or("no free port in 23000..23500 to serve as the closed port")?;
        self.closed_port = Some(addr);
        Ok(addr)
    }

    /// The TCP table that holds `side`'s sockets (one table for both on loopback).
    fn table(&self, side: Side) -> Result<Vec<TcpEntry>, String> {
        match &self.net {
            Net::Lab(lab) => lab.tcp_table(host_of(side)),
            Net::Local { .. } => platforms::tcp_table(),
        }
        .map_err(|e| format!("cannot read the TCP table: {e}"))
    }

    /// Both sides' tables, client first.
    fn tables(&self) -> Result<[Vec<TcpEntry>; 2], String> {
        Ok([self.table(Side::Client)?, self.table(Side::Server)?])
    }

    /// The state of one end of a client connection; a socket the kernel no longer has is CLOSED.
    fn end_state(&self, side: Side, slot: &str) -> Result<TcpState, String> {
        let &(c, s) = self
            .conns
            .get(slot)
            .ok_or_else(|| format!("no connection in slot {slot}"))?;
        let t = self.table(side)?;
        Ok(find(&t, side, c, s)
            .map(|e| e.state)
            .unwrap_or(TcpState::Closed))
    }

    /// Remember which connection endpoints this step ends the sending side of, for `settle`.
    fn note_closing(&mut self, step: &Step) {
        let (side, slot) = match step {
            Step::Do(a) | Step::Start(a) => match &a.op {
                Op::Close if a.slot != "listener" => (a.side, Some(a.slot)),
                Op::Shutdown { how } if *how != crate::script::How::Read => (a.side, Some(a.slot)),
                op if op.ends_process() => (a.side, None),
                _ => return,
            },
            Step::Kill(side) | Step::Terminate(side) | Step::ReleaseHolder(side) => (*side, None),
            Step::ShutdownHost { .. } => (Side::Server, None),
            _ => return,
        };
        for (s, &(c, srv)) in &self.conns {
            if slot.is_none_or(|slot| slot == *s) {
                let end = if side == Side::Client { c } else { srv };
                if !self.closing.contains(&end) {
                    self.closing.push(end);
                }
            }
        }
    }

    /// Wait (at most 2 s) until the wire shows the FIN or RST of every endpoint a step closed:
    /// the peer's state can only follow once it was sent. Linux's loopback has sent it before
    /// the call returns, so this costs nothing there but where nothing is sent (a child still
    /// holds the socket); gVisor may send it after the call, or after a killed process was
    /// reaped.
    fn await_closing_on_wire(&mut self) {
        // A stack that sends within the call (the probe saw it: Linux) on loopback has put the
        // FIN or RST on the wire by now, or never will (a child still holds the socket; the
        // connection was reset already): waiting would only cost the deadline in the second case.
        let loopback = matches!(self.net, Net::Local { .. });
        if self.closing.is_empty() || (loopback && self.view.synchronous) {
            self.closing.clear();
            return;
        }
        let Some(capture) = &self.capture else {
            return;
        };
        let want: Vec<SocketAddr> = self.closing.iter().map(|a| canonical(*a)).collect();
        capture.wait_for(Instant::now() + CLOSING_DEADLINE, |segs| {
            want.iter().all(|w| {
                segs.iter()
                    .any(|s| (s.fin || s.rst) && canonical(s.src) == *w)
            })
        });
        self.closing.clear();
    }

    /// Wait (bounded) until no socket of the case is in a transient state; return the table.
    fn settle(&self) -> [Vec<TcpEntry>; 2] {
        let end = Instant::now() + SETTLE_DEADLINE;
        let mut pause = Backoff::new();
        // On a stack that processes segments after the call returns (gVisor), the case's entries
        // must also have stopped changing for a while: a RST sent by close() may still be on its
        // way. Linux's loopback has done that work by the time the call returns.
        let mut last: Option<(Vec<EntryKey>, Instant)> = None;
        loop {
            let t = self.tables().unwrap_or_default();
            let ours = |e: &&TcpEntry| {
                self.conns.values().any(|&(c, s)| {
                    let (l, r) = (canonical(e.local), canonical(e.remote));
                    (l == canonical(c) && r == canonical(s))
                        || (l == canonical(s) && r == canonical(c))
                })
            };
            let transient = t
                .iter()
                .flatten()
                .filter(ours)
                .any(|e| e.state.is_transient());
            // Linux-like stacks (a complete table, segments handled within the call) are settled
            // as soon as nothing is transient; on others the entries must also stop changing.
            let stable = (self.view.synchronous && self.view.is_complete()) || {
                let mut now: Vec<_> = t
                    .iter()
                    .flatten()
                    .filter(ours)
                    .map(|e| (e.local, e.remote, e.state))
                    .collect();
                now.sort_by_key(|(l, r, st)| (*l, *r, st.name()));
                match &last {
                    Some((prev, since)) if *prev == now => since.elapsed() >= QUIET,
                    _ => {
                        last = Some((now, Instant::now()));
                        false
                    }
                }
            };
            if (!transient && stable) || Instant::now() > end {
                return t;
            }
            pause.wait();
        }
    }

    fn checkpoint(&mut self, name: &str) -> Result<String, String> {
        self.await_closing_on_wire();
        let [tc, ts] = self.settle();
        let mut parts = Vec::new();
        for (slot, &(c, s)) in &self.conns {
            let end = |side| match find(if side == Side::Client { &tc } else { &ts }, side, c, s) {
                None => self.view.absent_word(side == Side::Server),
                Some(e) => {
                    let mut w = e.state.name().to_string();
                    // The kernel's receive-queue figure (Linux: rcv_nxt - copied_seq, so a received FIN
                    // counts as 1), shown as the kernel reports it; bulk cases hide the unstable size.
                    // A table whose queues are not real shows none rather than a false 0.
                    // Linux counts a received FIN as one byte of the queue: taken off here (the
                    // probe found out which convention this table follows).
                    let fin_in_queue = self.view.fin_counted
                        && matches!(
                            e.state,
                            TcpState::CloseWait
                                | TcpState::LastAck
                                | TcpState::Closing
                                | TcpState::TimeWait
                        );
                    let unread = e.recv_queue.saturating_sub(u64::from(fin_in_queue));
                    if unread > 0 && self.view.recv_queue {
                        w += &if self.bulk {
                            " rx_queue>0".to_string()
                        } else {
                            format!(" rx_queue={unread}")
                        };
                    }
                    w
                }
            };
            let label = if *slot == "conn" {
                String::new()
            } else {
                format!("{slot} ")
            };
            parts.push(format!(
                "{label}client {}, server {}",
                end(Side::Client),
                end(Side::Server)
            ));
        }
        if let Some(l) = self.previous_listener {
            let listening = ts
                .iter()
                .any(|e| canonical(e.local) == canonical(l) && e.state == TcpState::Listen);
            parts.push(format!(
                "listener {}",
                if listening { "LISTEN" } else { "CLOSED" }
            ));
        }
        Ok(format!("checkpoint {name}: {}", parts.join("; ")))
    }

    /// Names for the wire: the server's listening ports, each client connection's port.
    fn endpoint_labels(&self) -> BTreeMap<u16, String> {
        let mut labels = BTreeMap::new();
        for l in &self.listeners {
            labels.insert(l.port(), "server".to_string());
        }
        for (slot, port) in &self.client_ports {
            let name = if *slot == "conn" {
                "client".to_string()
            } else {
                format!("client {slot}")
            };
            labels.insert(*port, name);
        }
        if let Some(p) = self.closed_port {
            labels.insert(p.port(), "closed port".to_string());
        }
        labels
    }

    /// End every agent (killing those still alive) and return what they wrote to stderr.
    fn cleanup(&mut self) -> String {
        let mut stderr = String::new();
        for (side, mut a) in std::mem::take(&mut self.agents) {
            drop(a.stdin.take());
            if a.ended.is_none() {
                let _ = a.child.kill();
            }
            let _ = a.child.wait();
            let text = a.stderr.lock().map(|s| s.clone()).unwrap_or_default();
            if !text.trim().is_empty() {
                stderr += &format!("[{side}] {text}");
            }
        }
        stderr
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn find(t: &[TcpEntry], side: Side, client: SocketAddr, server: SocketAddr) -> Option<&TcpEntry> {
    let (local, remote) = match side {
        Side::Client => (client, server),
        Side::Server => (server, client),
    };
    let (local, remote) = (canonical(local), canonical(remote));
    t.iter().find(|e| {
        canonical(e.local) == local && canonical(e.remote) == remote && e.state != TcpState::Listen
    })
}

/// An address with an IPv4-mapped IPv6 address (::ffff:a.b.c.d) written as the IPv4 one, so the
/// two ends of an IPv4 connection to a dual-stack listener compare equal; without IPv6 flow info
/// and scope id, which tables fill in differently (Wine reported scope 4096 for ::1).
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn is_ipv4_mapped(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

fn who(a: &Action) -> String {
    match a.slot {
        "conn" | "listener" => a.side.to_string(),
        slot => format!("{} {slot}", a.side),
    }
}

fn state_word(s: TcpState) -> &'static str {
    s.name()
}
