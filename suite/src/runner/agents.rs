//! The agent processes of a case: spawning them, one request and one reply at a time, how they
//! end (kill, terminate, host shutdown), and cleanup that leaves none behind.

use super::host::Net;
use super::waits::{wait_until, Waited};
use crate::observe::event::{Event, Returned};
use crate::proto::{Outcome, Reply, Request};
use crate::script::{Action, Side};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One line an agent wrote on its stdout, as the reader thread saw it.
enum AgentLine {
    Reply(Reply),
    Garbage(String),
    Closed,
}

/// One running agent process.
pub(super) struct AgentProc {
    side: Side,
    pub(super) child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<AgentLine>,
    stderr: Arc<Mutex<String>>,
    /// The action a `Step::Start` began, whose reply a `Step::Finish` collects.
    pub(super) pending: Option<Action>,
    /// The id of the pending action when it runs on a second thread of the agent
    /// (`Op::InThread`), so the agent serves other requests meanwhile.
    pub(super) pending_thread: Option<u32>,
    /// Ids of second-thread calls handed out so far (each call gets the next).
    threads_started: u32,
    /// Replies of second-thread calls that arrived while another reply was awaited, by id.
    thread_replies: BTreeMap<u32, Reply>,
    /// How the process ended, once it has.
    ended: Option<String>,
}

impl AgentProc {
    fn spawn(side: Side, exe: &Path, net: &Net) -> Result<AgentProc, String> {
        let mut cmd = Command::new(exe);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        net.prepare_agent(side, &mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start agent {}: {e} (build it with `cargo build`)",
                exe.display()
            )
        })?;
        let replies = read_replies(child.stdout.take().expect("piped"));
        let stderr = collect_stderr(child.stderr.take().expect("piped"));
        Ok(AgentProc {
            side,
            stdin: child.stdin.take(),
            child,
            replies,
            stderr,
            pending: None,
            pending_thread: None,
            threads_started: 0,
            thread_replies: BTreeMap::new(),
            ended: None,
        })
    }

    pub(super) fn send(&mut self, req: &Request) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{}: its input is already closed", self.side))?;
        let line = serde_json::to_string(req).expect("requests serialize");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("{}: cannot send request: {e}", self.side))
    }

    /// An id for the next call on a second thread of the agent.
    pub(super) fn next_thread(&mut self) -> u32 {
        self.threads_started += 1;
        self.threads_started
    }

    /// The agent's acknowledgment of the second-thread call `id`: once it says the thread
    /// exists, a wait for the agent to block waits for that thread too. A call that could not
    /// start has its acknowledgment as its outcome.
    pub(super) fn thread_started(&mut self, id: u32, deadline: Instant) -> Result<(), String> {
        let ack = self.receive(deadline)?;
        if ack.outcome != Outcome::Ok {
            self.thread_replies.insert(id, ack);
        }
        Ok(())
    }

    /// The reply to the last request; if the process ended instead, how it ended. Replies of
    /// calls on a second thread that come first are kept for their `receive_thread`.
    pub(super) fn receive(&mut self, deadline: Instant) -> Result<Reply, String> {
        loop {
            let r = self.receive_any(deadline)?;
            match r.thread {
                Some(id) => {
                    self.thread_replies.insert(id, r);
                }
                None => return Ok(r),
            }
        }
    }

    /// The reply of the second-thread call `id`, if it comes before `deadline`; None when the
    /// call is still blocked then (the agent goes on; it ends with the case). If the process
    /// ends first, how it ended is the reply.
    pub(super) fn receive_thread(
        &mut self,
        id: u32,
        deadline: Instant,
    ) -> Result<Option<Reply>, String> {
        loop {
            if let Some(r) = self.thread_replies.remove(&id) {
                return Ok(Some(r));
            }
            match self.receive_any(deadline) {
                Ok(r) => match r.thread {
                    Some(other) => {
                        self.thread_replies.insert(other, r);
                    }
                    None if matches!(r.outcome, Outcome::Died { .. }) => return Ok(Some(r)),
                    None => return Err(format!("{}: a reply no request awaits", self.side)),
                },
                Err(_) if Instant::now() >= deadline => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next line the agent wrote: a reply, or how the process ended.
    fn receive_any(&mut self, deadline: Instant) -> Result<Reply, String> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.replies.recv_timeout(timeout) {
            Ok(AgentLine::Reply(r)) => Ok(r),
            Ok(AgentLine::Garbage(l)) => Err(format!("{}: unreadable reply {l:?}", self.side)),
            Ok(AgentLine::Closed) | Err(RecvTimeoutError::Disconnected) => {
                let how = self.wait_end(deadline)?;
                Ok(Reply {
                    outcome: Outcome::Died { how },
                    elapsed_us: 0,
                    local: None,
                    peer: None,
                    thread: None,
                })
            }
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("{}: no reply within the step deadline", self.side))
            }
        }
    }

    /// Wait for the process to end (polling its status), up to the deadline; returns how it
    /// ended.
    pub(super) fn wait_end(&mut self, deadline: Instant) -> Result<String, String> {
        if let Some(how) = &self.ended {
            return Ok(how.clone());
        }
        let side = self.side;
        let waited = wait_until(deadline, || match self.child.try_wait() {
            Ok(Some(status)) => {
                self.ended = Some(platforms::exit_description(status));
                Ok(Waited::Met)
            }
            Ok(None) => Ok(Waited::NotMet(String::new())),
            Err(e) => Err(format!("{side}: cannot wait for the process: {e}")),
        })?;
        match (waited, &self.ended) {
            (Waited::Met, Some(how)) => Ok(how.clone()),
            _ => Err(format!(
                "{side}: the process did not end before the deadline"
            )),
        }
    }
}

/// A thread that reads the agent's stdout, one reply per line, until it closes.
fn read_replies(stdout: ChildStdout) -> Receiver<AgentLine> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let msg = match serde_json::from_str(&line) {
                Ok(r) => AgentLine::Reply(r),
                Err(_) => AgentLine::Garbage(line),
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
        let _ = tx.send(AgentLine::Closed);
    });
    rx
}

/// A thread that keeps everything the agent writes on stderr, for a failed case's report.
fn collect_stderr(mut pipe: ChildStderr) -> Arc<Mutex<String>> {
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    stderr
}

/// What a call came to when its process died in it.
fn died(how: String) -> Returned {
    Returned::Outcome(Outcome::Died { how })
}

/// The case's two agents, by side; dropping them ends them.
#[derive(Default)]
pub(super) struct Agents(BTreeMap<Side, AgentProc>);

impl Agents {
    pub(super) fn spawn(&mut self, side: Side, exe: &Path, net: &Net) -> Result<(), String> {
        let agent = AgentProc::spawn(side, exe, net)?;
        self.0.insert(side, agent);
        Ok(())
    }

    pub(super) fn get(&mut self, side: Side) -> &mut AgentProc {
        self.0.get_mut(&side).expect("both agents exist")
    }

    /// Kill the side's process hard and say how it died.
    pub(super) fn kill(&mut self, side: Side, deadline: Instant) -> Result<Event, String> {
        let a = self.get(side);
        a.child
            .kill()
            .map_err(|e| format!("cannot kill {side}: {e}"))?;
        let how = a.wait_end(deadline)?;
        Ok(Event::runner_call(format!("hard kill {side}"), died(how)))
    }

    /// Ask the side's process to terminate and say how it died.
    pub(super) fn terminate(&mut self, side: Side, deadline: Instant) -> Result<Event, String> {
        let a = self.get(side);
        platforms::terminate(a.child.id()).map_err(|e| format!("cannot terminate {side}: {e}"))?;
        let how = a.wait_end(deadline)?;
        Ok(Event::runner_call(format!("terminate {side}"), died(how)))
    }

    /// Close the side's standard input: the child holding its socket exits.
    pub(super) fn release_holder(&mut self, side: Side) -> Event {
        drop(self.get(side).stdin.take());
        Event::runner(format!("the last holder of the {side}'s socket exits"))
    }

    /// SIGTERM to the server, up to the grace period for it to end, then SIGKILL.
    pub(super) fn shutdown_host(
        &mut self,
        grace_ms: u64,
        deadline: Instant,
    ) -> Result<Event, String> {
        let a = self.get(Side::Server);
        platforms::terminate(a.child.id())
            .map_err(|e| format!("cannot terminate the server: {e}"))?;
        let grace = Duration::from_millis(grace_ms);
        let sigterm = "host shutdown: SIGTERM to the server";
        Ok(match a.wait_end(Instant::now() + grace) {
            Ok(how) => Event::runner_call(sigterm, Returned::DiedWithin { how, grace_ms }),
            Err(_) => {
                a.child
                    .kill()
                    .map_err(|e| format!("cannot kill the server: {e}"))?;
                let how = a.wait_end(deadline)?;
                Event::runner_call(
                    format!("{sigterm}; still running after the grace period ({grace_ms} ms); hard kill"),
                    died(how),
                )
            }
        })
    }

    /// End every agent (killing those still alive) and return what they wrote to stderr.
    pub(super) fn cleanup(&mut self) -> String {
        let mut stderr = String::new();
        for (side, mut a) in std::mem::take(&mut self.0) {
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

impl Drop for Agents {
    fn drop(&mut self) {
        self.cleanup();
    }
}
