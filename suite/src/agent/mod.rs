//! The agent: one endpoint of a case, a separate OS process. It reads one request per line from
//! stdin, performs exactly that operation on one of its socket slots, and answers one reply line.
//! It has no logic of its own: every decision is in the script, so what it reports is what the
//! kernel did.
//!
//! This module reads requests and dispatches each op to the module of its concern: `connection`
//! (listen, connect, accept), `data` (write, read and their loops), `teardown` (shutdown, close,
//! linger), `options` (socket knobs), `process` (the process itself: exit, descriptors, holders,
//! signals) and `observation` (what the socket reports: readiness, state, unread bytes).

mod binding;
mod connection;
mod data;
mod inspect;
mod observation;
mod options;
mod process;
mod teardown;
mod udp;
mod unix;

use crate::proto::{Outcome, Reply, Request};
use crate::script::{Op, Slot};
use platforms::knobs;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Run the agent loop until stdin ends. Returns the process exit code.
pub fn main_loop() -> i32 {
    let mut agent = Agent::default();
    platforms::mark_operation(false);
    let stdin = io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return 1 };
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("agent: bad request {line:?}: {e}");
                return 2;
            }
        };
        // A call for a second thread is answered twice: here once the thread exists (or with
        // why it could not start), and later by the thread itself when the call returns.
        let reply = match &req.op {
            Op::InThread { call, .. } => Reply {
                outcome: match agent.start_thread(&req, call) {
                    Ok(()) => Outcome::Ok,
                    Err(e) => Outcome::from_error(&e),
                },
                elapsed_us: 0,
                local: None,
                peer: None,
                thread: None,
            },
            _ => agent.perform(req),
        };
        if !reply_line(&reply) {
            return 1;
        }
    }
    0
}

/// Write one reply line. Standard output is locked for the line alone: a call on a second thread
/// (`Op::InThread`) answers whenever it returns, between the main thread's replies.
fn reply_line(reply: &Reply) -> bool {
    let text = serde_json::to_string(reply).expect("replies serialize");
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").and_then(|_| out.flush()).is_ok()
}

/// The holder mode (`sockconform-agent --hold FD`): keep an inherited socket open until standard
/// input hangs up, then exit (closing it).
pub fn hold(fd: &str) -> i32 {
    match knobs::adopt_inherited(fd) {
        Ok(sock) => {
            knobs::wait_stdin_hangup();
            drop(sock);
            0
        }
        Err(e) => {
            eprintln!("agent --hold: {e}");
            2
        }
    }
}

#[derive(Default)]
struct Agent {
    slots: HashMap<Slot, Socket>,
    /// Descriptors opened to exhaust the limit, released by RestoreFds.
    filler: Vec<std::fs::File>,
    holders: Vec<std::process::Child>,
    /// Connections opened or accepted in bulk (ConnectMany / AcceptAll), kept open.
    many: Vec<Socket>,
    /// Local ports of the previous ConnectMany.
    previous_ports: Vec<u16>,
    /// Slots whose socket this agent made non-blocking (SetNonblocking). Only sockets it created
    /// itself are tracked: an accepted socket inherits the listener's mode on BSD and Windows, not
    /// on Linux.
    nonblocking: HashSet<Slot>,
    /// Connections accepted by calls on a second thread, held open until the process ends.
    held: Arc<Mutex<Vec<Socket>>>,
}

/// What one op produced: its outcome, and the socket's addresses where the op made a connection
/// or a listener.
struct Done {
    outcome: Outcome,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
}

impl From<Outcome> for Done {
    fn from(outcome: Outcome) -> Done {
        Done {
            outcome,
            local: None,
            peer: None,
        }
    }
}

fn addr_of(a: io::Result<SockAddr>) -> Option<SocketAddr> {
    a.ok().and_then(|a| a.as_socket())
}

fn new_socket(addr: &SocketAddr) -> io::Result<Socket> {
    Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )
}

/// The outcome of a call that returns nothing but success or an error. An error returned from an
/// op (with `?`) becomes its outcome in `Agent::run`, so both ways read the same in the reply.
fn ok(r: io::Result<()>) -> io::Result<Outcome> {
    r.map(|()| Outcome::Ok)
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The address the runner resolved for a listen or connect.
fn need_addr(req: &Request) -> io::Result<SocketAddr> {
    req.addr
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address given"))
}

/// The op named by the test variable `var`, when it is this request's op.
fn asked(var: &str, req: &Request) -> Option<String> {
    let op = std::env::var(var).ok()?;
    let named = serde_json::to_value(&req.op)
        .ok()
        .and_then(|v| v["op"].as_str().map(|s| s == op));
    (named == Some(true)).then_some(op)
}

/// Fault injection for the runner's own tests: hang on the named op, as a broken agent would.
fn hang_if_asked(req: &Request) {
    if let Some(op) = asked("SOCKCONFORM_TEST_AGENT_HANG", req) {
        eprintln!("agent: hanging in {op} (SOCKCONFORM_TEST_AGENT_HANG)");
        loop {
            std::thread::park();
        }
    }
}

/// For the tests of skipping: the named op fails as a knob this backend does not implement, so
/// what a Windows or FreeBSD run does with one can be shown on Linux, through the same error the
/// backends return.
fn refuse_if_asked(req: &Request) -> io::Result<()> {
    match asked("SOCKCONFORM_TEST_AGENT_NOT_IMPLEMENTED", req) {
        Some(op) => Err(platforms::not_implemented(format!(
            "{op} (SOCKCONFORM_TEST_AGENT_NOT_IMPLEMENTED)"
        ))),
        None => Ok(()),
    }
}

impl Agent {
    fn perform(&mut self, req: Request) -> Reply {
        hang_if_asked(&req);
        // The operating thread is marked while in the call, so the runner can see it blocked there
        // on platforms whose process state cannot tell (see `platforms::mark_operation`); the
        // marking stays outside the measured time.
        platforms::mark_operation(true);
        let start = Instant::now();
        let done = self.run(&req);
        let elapsed = start.elapsed();
        platforms::mark_operation(false);
        Reply {
            elapsed_us: elapsed.as_micros() as u64,
            outcome: done.outcome,
            local: done.local,
            peer: done.peer,
            thread: None,
        }
    }

    /// A socket this agent just created or accepted takes the slot (and its mode is no longer one
    /// this agent set).
    fn put(&mut self, slot: Slot, s: Socket) {
        self.nonblocking.remove(&slot);
        self.slots.insert(slot, s);
    }

    fn sock(&self, slot: Slot) -> io::Result<&Socket> {
        self.slots.get(&slot).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                crate::proto::NoSocket {
                    slot: slot.to_string(),
                },
            )
        })
    }

    /// Perform one op; its error becomes its outcome, where a knob this platform's backend does
    /// not implement becomes `Outcome::NotImplemented` (see `Outcome::from_error`).
    fn run(&mut self, req: &Request) -> Done {
        match refuse_if_asked(req).and_then(|()| self.try_run(req)) {
            Ok(done) => done,
            Err(e) => Outcome::from_error(&e).into(),
        }
    }

    /// Perform one op: a line per op, each handled in the module of its concern.
    fn try_run(&mut self, req: &Request) -> io::Result<Done> {
        let slot = req.slot;
        Ok(match &req.op {
            Op::Listen {
                backlog,
                reuse_addr,
                ..
            } => self.listen(slot, need_addr(req)?, *backlog, *reuse_addr)?,
            Op::ListenDualStack { v6only } => {
                self.listen_dual_stack(slot, need_addr(req)?, *v6only)?
            }
            Op::Connect { timeout_ms, .. } => self.connect(slot, need_addr(req)?, *timeout_ms)?,
            Op::Accept => self.accept(slot)?,
            Op::ConnectMany { max, compare_ports } => self
                .connect_many(need_addr(req)?, *max, *compare_ports)
                .into(),
            Op::AcceptAll { max } => self.accept_all(slot, *max)?.into(),
            Op::Write { len, nosignal } => data::write(self.sock(slot)?, *len, *nosignal)?.into(),
            Op::Fill => data::fill(self.sock(slot)?).into(),
            Op::Read { max } => data::read(self.sock(slot)?, *max)?.into(),
            Op::Drain => data::drain(self.sock(slot)?).into(),
            Op::Echo => data::echo(self.sock(slot)?).into(),
            Op::Heartbeat {
                interval_ms,
                timeout_ms,
                rounds,
            } => data::heartbeat(self.sock(slot)?, *interval_ms, *timeout_ms, *rounds)?.into(),
            Op::Shutdown { how } => teardown::shutdown(self.sock(slot)?, *how)?.into(),
            Op::Close => self.close(slot)?.into(),
            Op::SetLinger { secs } => teardown::set_linger(self.sock(slot)?, *secs)?.into(),
            Op::SetNonblocking { on } => self.set_nonblocking(slot, *on)?.into(),
            Op::SetReadTimeout { ms } => options::read_timeout(self.sock(slot)?, *ms)?.into(),
            Op::SetWriteTimeout { ms } => options::write_timeout(self.sock(slot)?, *ms)?.into(),
            Op::SetRecvBuffer { bytes } => options::recv_buffer(self.sock(slot)?, *bytes)?.into(),
            Op::SetSendBuffer { bytes } => options::send_buffer(self.sock(slot)?, *bytes)?.into(),
            Op::SetUserTimeout { ms } => options::user_timeout(self.sock(slot)?, *ms)?.into(),
            Op::SetKeepalive {
                idle_s,
                interval_s,
                count,
            } => options::keepalive(self.sock(slot)?, *idle_s, *interval_s, *count)?.into(),
            Op::Poll { timeout_ms } => observation::poll(self.sock(slot)?, *timeout_ms)?.into(),
            Op::State => observation::state(self.sock(slot)?)?.into(),
            Op::AwaitUnread { wait_ms } => {
                observation::await_unread(self.sock(slot)?, *wait_ms)?.into()
            }
            Op::SigpipeDefault => process::sigpipe_default()?.into(),
            Op::ExhaustFds => self.exhaust_fds()?.into(),
            Op::RestoreFds => self.restore_fds().into(),
            Op::RaiseFdLimit => process::raise_fd_limit()?.into(),
            Op::SetFdLimit { n } => process::set_fd_limit(*n)?.into(),
            Op::SpawnHolder => self.spawn_holder(slot)?.into(),
            Op::OnTerminate { ignore } => process::on_terminate(*ignore)?.into(),
            Op::Exit { code } => process::exit(*code),
            Op::Abort => process::abort(),
            _ => self.run_family(req)?,
        })
    }

    /// Perform one op of the families issue 16 added (UDP, Unix-domain sockets, connect, bind
    /// and listen, what a socket reports of itself), each in the module of its family.
    fn run_family(&mut self, req: &Request) -> io::Result<Done> {
        let slot = req.slot;
        Ok(match &req.op {
            // ---- UDP ops ----
            Op::UdpBind { .. }
            | Op::UdpConnect { .. }
            | Op::UdpDisconnect
            | Op::UdpSend { .. }
            | Op::UdpSendTo { .. }
            | Op::UdpRecv { .. }
            | Op::UdpRecvUntil { .. }
            | Op::UdpCountAcross { .. }
            | Op::UdpAwaitError { .. }
            | Op::UdpPeerName
            | Op::UdpLocalName
            | Op::SetBroadcast { .. }
            | Op::SetRecvErr { .. }
            | Op::UdpReadErrorQueue
            | Op::UdpFlood { .. } => self.udp(req)?,
            // ---- Unix-domain socket ops ----
            Op::UnixSocket { kind } => self.unix_socket(slot, *kind)?.into(),
            Op::UnixBind { .. } => unix::bind(self.sock(slot)?, unix::need_unix(req)?)?.into(),
            Op::UnixListen { backlog } => ok(self.sock(slot)?.listen(*backlog))?.into(),
            Op::UnixConnect => unix::connect(self.sock(slot)?, unix::need_unix(req)?)?.into(),
            Op::UnixPathLengths { from, to } => {
                unix::path_lengths(unix::need_unix(req)?, *from, *to)?.into()
            }
            Op::UnixPeerCred => unix::peer_cred(self.sock(slot)?, unix::need_unix(req)?)?.into(),
            Op::UnixDgramFill { size, max } => {
                unix::dgram_fill(self.sock(slot)?, *size, *max).into()
            }
            // ---- connect/bind/listen ops ----
            Op::OpenSocket { family } => self.open_socket(slot, *family)?.into(),
            Op::Bind { .. } => self.bind(slot, need_addr(req)?)?,
            Op::ListenOn { backlog } => self.listen_on(slot, *backlog)?,
            Op::ConnectNonblocking { .. } => self.connect_nonblocking(slot, need_addr(req)?)?,
            Op::ConnectSocket { .. } => self.connect_socket(slot, need_addr(req)?)?,
            Op::AwaitWritable { timeout_ms } => {
                binding::await_writable(self.sock(slot)?, *timeout_ms)?.into()
            }
            Op::SocketError => binding::socket_error(self.sock(slot)?)?.into(),
            Op::LocalAddress => binding::local_address(self.sock(slot)?)?.into(),
            Op::SetReuseAddress { on } => binding::reuse_address(self.sock(slot)?, *on)?.into(),
            Op::SetReusePort { on } => binding::reuse_port(self.sock(slot)?, *on)?.into(),
            Op::AcceptSpread { other, n } => self.accept_spread(slot, *other, *n)?.into(),
            // ---- accepted socket, readiness, close, options ops ----
            Op::NonblockingMode => inspect::nonblocking_mode(self.sock(slot)?)?.into(),
            Op::GetOption { name } => inspect::get_option(self.sock(slot)?, *name)?.into(),
            Op::SetOption { name, value } => {
                inspect::set_option(self.sock(slot)?, *name, *value)?.into()
            }
            Op::WriteUrgent { len } => inspect::write_urgent(self.sock(slot)?, *len)?.into(),
            Op::ReadUrgent { max } => inspect::read_urgent(self.sock(slot)?, *max)?.into(),
            Op::OpenUnconnected => self.open_unconnected(slot, need_addr(req)?)?,
            // Served by `main_loop` on a thread of its own, never here.
            Op::InThread { .. } => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a second thread's call is started, not performed",
                ))
            }
            other => unreachable!("{other:?} is served by try_run"),
        })
    }
}
