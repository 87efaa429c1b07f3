//! The runner: walks a case's script against two real agent processes, takes checkpoints, captures
//! the wire, and always cleans up. Every wait has a deadline; nothing here can hang a run.
//!
//! Each case runs on a thread of its own. With isolation, that thread moves into a fresh network
//! namespace first, so the agents it spawns, the TCP table it reads and the packets it captures are
//! the case's alone; the namespace disappears with the thread and its processes.
//!
//! This module walks the script and dispatches each step; the rest is split by concern: `config`
//! (what the run can do), `host` (loopback or the lab, and what is done to it), `agents` (the
//! processes), `endpoints` (addresses and socket slots), `waits` (the one wait loop and every
//! wait), `checkpoint` (the TCP tables) and `wire` (the capture).

mod agents;
mod checkpoint;
mod config;
mod endpoints;
mod host;
mod quiet;
mod udp;
pub(crate) mod waits;
mod wire;

pub use config::RunConfig;
pub use waits::Backoff;

use crate::observe::event::Returned;
use crate::observe::{self, event::Event, Observation, RawTiming, Wire};
use crate::proto::{Reply, Request};
use crate::script::{Action, Case, Op, Side, Step, Topology};
use agents::Agents;
use checkpoint::Tables;
use endpoints::{who, Endpoints};
use host::Net;
use platforms::lab::{Host, Lab};
use platforms::Capture;
use quiet::Quiet;
use std::time::{Duration, Instant};
use wire::Tap;

/// How long one step may take before the case is declared hung (SOCKCONFORM_STEP_DEADLINE_MS
/// overrides it, so tests of the runner itself need not wait 10 s).
fn step_deadline() -> Duration {
    std::env::var("SOCKCONFORM_STEP_DEADLINE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
}

/// How long this step may take: bulk connects and accepts (10,000 connections) get three step
/// deadlines, as gVisor needs about 10 s for them.
fn step_budget(step: &Step) -> Duration {
    let bulk = matches!(
        step,
        Step::Do(a) if matches!(a.op, Op::ConnectMany { .. } | Op::AcceptAll { .. })
    );
    step_deadline() * if bulk { 3 } else { 1 }
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
    /// Set when an op needed a knob this platform's backend does not implement ("not implemented
    /// on windows: what"): the walk stopped there, so the case is skipped, and the partial
    /// observation is no behavior of the platform.
    pub skipped: Option<String>,
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
                    skipped: None,
                    elapsed: Duration::ZERO,
                }
            })
    })
}

fn run_here(case: &Case, cfg: &RunConfig) -> CaseRun {
    let started = Instant::now();
    let mut walk = CaseWalk::new(case, cfg);
    let result = walk.setup(case, cfg).and_then(|()| walk.walk(case));
    // Let in-flight closes finish before the capture stops, so the last FIN/ACK exchange is stable.
    // A script that ended with a checkpoint has just done so: the wire then ends where the states
    // were read (waiting again would only cost the settle deadline once more where a state stays
    // transient, e.g. FIN_WAIT1 behind a zero window).
    if result.is_ok() && !walk.tables.settled && walk.skipped.is_none() && case.no_wire.is_none() {
        walk.settle();
    }
    let mut wire = walk.tap.finish(case, &walk.ends);
    if let Some(why) = case.no_wire {
        wire.wire = Wire::NotCaptured { reason: why.into() };
    }
    let stderr = walk.agents.cleanup();
    let error = result.err().map(|e| {
        if stderr.trim().is_empty() {
            e
        } else {
            format!("{e}\n--- agent stderr ---\n{stderr}")
        }
    });
    CaseRun {
        observation: walk.record.obs,
        wire: wire.wire,
        raw_timings: walk.record.raw,
        measurements: walk.record.measurements,
        wire_raw: wire.raw,
        frames: wire.frames,
        error,
        skipped: walk.skipped,
        elapsed: started.elapsed(),
    }
}

/// What the run records: the observation (the snapshot's text) and the raw figures behind it.
struct Record {
    obs: Observation,
    raw: Vec<RawTiming>,
    measurements: Vec<(String, u64)>,
}

/// One walk of one case's script: where it runs, its agents, the addresses and slots its steps
/// made, its capture, what it knows of the TCP tables, and what it records.
struct CaseWalk {
    net: Net,
    agents: Agents,
    ends: Endpoints,
    tap: Tap,
    tables: Tables,
    /// Whether the walk waits for the stack to go quiet before each step.
    quiet: Quiet,
    record: Record,
    /// The kernel memory held by TCP sockets at the script's MemoryMark.
    memory_mark: Option<u64>,
    /// Why the walk stopped early: an op needed a knob not implemented on this platform.
    skipped: Option<String>,
}

impl CaseWalk {
    fn new(case: &Case, cfg: &RunConfig) -> CaseWalk {
        CaseWalk {
            net: Net::Local { isolated: false },
            agents: Agents::default(),
            ends: Endpoints::new(case.ipv6),
            tap: Tap::new(cfg),
            tables: Tables::new(case, cfg),
            quiet: Quiet::new(case.settle_between_moves, cfg.table.synchronous),
            record: Record {
                obs: Observation::new(case),
                raw: Vec::new(),
                measurements: Vec::new(),
            },
            memory_mark: None,
            skipped: None,
        }
    }

    /// Build where the case runs (its namespace or the lab), start the capture, spawn the agents.
    fn setup(&mut self, case: &Case, cfg: &RunConfig) -> Result<(), String> {
        let capture = match case.topology {
            Topology::Lab => {
                let lab = Lab::build()?;
                self.ends.host = Host::Server.addr();
                let capture = lab.capture(Host::Client);
                self.net = Net::Lab(Box::new(lab));
                Some(capture)
            }
            Topology::Loopback if cfg.isolation.is_ok() => {
                platforms::isolate_thread()?;
                self.net = Net::Local { isolated: true };
                cfg.capture.is_ok().then(Capture::start)
            }
            // No isolation: a capture of the loopback every case shares (macOS, FreeBSD), whose
            // segments are kept by the case's ports when it stops (runner/wire.rs).
            Topology::Loopback => {
                (platforms::CAPTURE_SHARES_LOOPBACK && cfg.capture.is_ok()).then(Capture::start)
            }
        };
        // A case whose sockets cross no interface has nothing to capture.
        self.tap.started(capture.filter(|_| case.no_wire.is_none()));
        for side in [Side::Client, Side::Server] {
            self.agents.spawn(side, &cfg.agent_exe, &self.net)?;
        }
        let mut pid = |side| self.agents.get(side).child.id();
        self.ends.unix.pids = Some([pid(Side::Client), pid(Side::Server)]);
        Ok(())
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
            self.tables.settled = false;
            if i > 0 && quiet::looks_or_sends(step) {
                if let Some(event) = self.quiet_before_step() {
                    self.record.obs.push(event);
                }
            }
            let event = self
                .step(i + 1, step)
                .map_err(|e| format!("step {} ({step:?}): {e}", i + 1))?;
            if let Some(event) = event {
                self.record.obs.push(event);
            }
            // Without the knob the rest of the script would be another scenario than the one the
            // case compares: it stops here, and the case is skipped.
            if self.skipped.is_some() {
                return Ok(());
            }
            self.note_closing(step);
            self.tables.settled = matches!(step, Step::Checkpoint(_));
        }
        Ok(())
    }

    /// Perform step `n`; returns the event it adds to the observation, if any.
    fn step(&mut self, n: usize, step: &Step) -> Result<Option<Event>, String> {
        let deadline = Instant::now() + step_budget(step);
        Ok(match step {
            Step::Do(a) => self.perform(n, a, deadline)?,
            Step::Start(a) => self.start(a)?,
            Step::Finish(side) => Some(self.finish_started(n, *side, deadline)?),
            Step::AwaitBlocked(side) => self.await_blocked(*side, deadline)?,
            Step::AwaitUnread(side) => self.await_unread(*side)?,
            Step::AwaitState(side, states) => self.await_state(*side, states)?,
            Step::AwaitAcked(side) => self.await_acked(*side, deadline),
            Step::AwaitSyns(n) => self.await_syns(*n, deadline),
            Step::AwaitRetransmits(n) => self.await_retransmits(*n, deadline),
            Step::Checkpoint(name) => Some(self.checkpoint(name)),
            Step::Kill(side) => Some(self.agents.kill(*side, deadline)?),
            Step::Terminate(side) => Some(self.agents.terminate(*side, deadline)?),
            Step::ReleaseHolder(side) => Some(self.agents.release_holder(*side)),
            Step::ShutdownHost { grace_ms } => {
                Some(self.agents.shutdown_host(*grace_ms, deadline)?)
            }
            Step::Fault(fault) => Some(self.fault(*fault, deadline)?),
            Step::Sysctl(side, key, value) => Some(self.net.sysctl(*side, key, value)?),
            Step::Fact(fact) => Some(host::fact(*fact)),
            Step::MemoryMark => {
                self.memory_mark = host::tcp_memory();
                None
            }
            Step::MemoryPerConnection(n) => Some(self.memory_per_connection(*n)),
        })
    }

    /// Perform an action and record its outcome.
    fn perform(
        &mut self,
        n: usize,
        a: &Action,
        deadline: Instant,
    ) -> Result<Option<Event>, String> {
        if let Some(gone) = self.begin(a, None)? {
            return Ok(Some(gone));
        }
        let reply = self.agents.get(a.side).receive(deadline)?;
        Ok(Some(self.finished(n, a, reply)))
    }

    /// Begin an action whose outcome a later `Finish` collects.
    fn start(&mut self, a: &Action) -> Result<Option<Event>, String> {
        // A call on a second thread of the agent gets an id its reply comes back with.
        let thread =
            matches!(a.op, Op::InThread { .. }).then(|| self.agents.get(a.side).next_thread());
        if let Some(gone) = self.begin(a, thread)? {
            return Ok(Some(gone));
        }
        if let Some(id) = thread {
            let deadline = Instant::now() + step_deadline();
            self.agents.get(a.side).thread_started(id, deadline)?;
        }
        self.agents.get(a.side).pending_thread = thread;
        self.agents.get(a.side).pending = Some(a.clone());
        Ok(Some(Event::begins(who(a), &a.op)))
    }

    /// Collect the outcome of the side's started action.
    fn finish_started(&mut self, n: usize, side: Side, deadline: Instant) -> Result<Event, String> {
        let agent = self.agents.get(side);
        let a = agent.pending.take().ok_or("nothing was started")?;
        if let (
            Some(id),
            Op::InThread {
                collect_within_ms, ..
            },
        ) = (agent.pending_thread.take(), &a.op)
        {
            let bound = Instant::now() + Duration::from_millis(*collect_within_ms);
            return Ok(match agent.receive_thread(id, bound.min(deadline))? {
                Some(reply) => self.finished(n, &a, reply),
                None => Event::returned(
                    who(&a),
                    &a.op,
                    Returned::StillBlocked {
                        after_ms: *collect_within_ms,
                    },
                ),
            });
        }
        let reply = agent.receive(deadline)?;
        Ok(self.finished(n, &a, reply))
    }

    /// Resolve the action's addresses and send it. If its agent has already ended (say, killed by
    /// SIGPIPE one step earlier), the step cannot be performed: returns the event that says so.
    fn begin(&mut self, a: &Action, thread: Option<u32>) -> Result<Option<Event>, String> {
        let sent = self
            .ends
            .request(a)
            .map(|req| Request { thread, ..req })
            .and_then(|req| self.agents.get(a.side).send(&req));
        let Err(e) = sent else {
            return Ok(None);
        };
        let how = self
            .agents
            .get(a.side)
            .wait_end(Instant::now() + Duration::from_millis(500))
            .map_err(|_| e)?;
        Ok(Some(Event::not_performed(who(a), &a.op, how)))
    }

    /// Note what the reply tells of the endpoints, record its timing, and return its event.
    fn finished(&mut self, n: usize, a: &Action, reply: Reply) -> Event {
        self.skipped = reply.outcome.not_implemented();
        let outcome = self.ends.note_reply(a, &reply);
        let who = who(a);
        if let Some(timing) = observe::timing_event(&who, &a.op, a.timing, reply.elapsed_us) {
            self.record.obs.push(timing);
        }
        // The raw figure goes to the JSON results only, under the step's number.
        self.record.raw.push(RawTiming {
            step: format!("{n}. {who}: {}", a.op),
            elapsed_us: reply.elapsed_us,
        });
        Event::call(who, &a.op, outcome)
    }
}
