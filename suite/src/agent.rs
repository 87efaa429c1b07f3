//! The agent: one endpoint of a case, a separate OS process. It reads one request per line from
//! stdin, performs exactly that operation on one of its socket slots, and answers one reply line.
//! It has no logic of its own: every decision is in the script, so what it reports is what the
//! kernel did.

use crate::proto::{Outcome, Reply, Request};
use crate::script::{How, Op};
use platforms::knobs;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

/// How long AcceptAll waits for one more connection before it stops (so a client that gave up
/// cannot hang it).
const ACCEPT_ALL_IDLE: Duration = Duration::from_secs(2);

/// Run the agent loop until stdin ends. Returns the process exit code.
pub fn main_loop() -> i32 {
    let mut agent = Agent::default();
    platforms::mark_operation(false);
    let stdin = io::stdin();
    let mut out = io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return 1 };
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("agent: bad request {line:?}: {e}");
                return 2;
            }
        };
        let reply = agent.perform(req);
        let text = serde_json::to_string(&reply).expect("replies serialize");
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            return 1;
        }
    }
    0
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
    slots: HashMap<String, Socket>,
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
    nonblocking: HashSet<String>,
}

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

fn ok_or(r: io::Result<()>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::from_error(&e),
    }
}

impl Agent {
    fn perform(&mut self, req: Request) -> Reply {
        // Fault injection for the runner's own tests: hang on the named op, as a broken agent would.
        if let Ok(op) = std::env::var("SOCKCONFORM_TEST_AGENT_HANG") {
            if serde_json::to_value(&req.op)
                .ok()
                .and_then(|v| v["op"].as_str().map(|s| s == op))
                == Some(true)
            {
                eprintln!("agent: hanging in {op} (SOCKCONFORM_TEST_AGENT_HANG)");
                loop {
                    std::thread::park();
                }
            }
        }
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
        }
    }

    /// A socket this agent just created or accepted takes the slot (and its mode is no longer one
    /// this agent set).
    fn put(&mut self, slot: &str, s: Socket) {
        self.nonblocking.remove(slot);
        self.slots.insert(slot.into(), s);
    }

    fn sock(&self, slot: &str) -> io::Result<&Socket> {
        self.slots.get(slot).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("agent has no socket in slot {slot:?}"),
            )
        })
    }

    fn run(&mut self, req: &Request) -> Done {
        match self.try_run(req) {
            Ok(done) => done,
            Err(e) => Outcome::from_error(&e).into(),
        }
    }

    fn try_run(&mut self, req: &Request) -> io::Result<Done> {
        let slot = req.slot.as_str();
        let need_addr = || {
            req.addr
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address given"))
        };
        Ok(match &req.op {
            Op::Listen {
                backlog,
                reuse_addr,
                ..
            } => {
                let addr = need_addr()?;
                let s = new_socket(&addr)?;
                s.set_reuse_address(*reuse_addr)?;
                if let Err(e) = s.bind(&addr.into()).and_then(|_| s.listen(*backlog)) {
                    return Ok(Outcome::from_error(&e).into());
                }
                let local = addr_of(s.local_addr());
                self.put(slot, s);
                Done {
                    outcome: Outcome::Ok,
                    local,
                    peer: None,
                }
            }
            Op::ListenDualStack { v6only } => {
                let addr = need_addr()?;
                let s = new_socket(&addr)?;
                let listened = match v6only {
                    Some(on) => s.set_only_v6(*on),
                    None => Ok(()),
                }
                .and_then(|_| s.bind(&addr.into()))
                .and_then(|_| s.listen(128))
                .and_then(|_| s.only_v6());
                let on = match listened {
                    Ok(on) => on,
                    Err(e) => return Ok(Outcome::from_error(&e).into()),
                };
                let local = addr_of(s.local_addr());
                self.put(slot, s);
                Done {
                    outcome: Outcome::OkWith {
                        note: format!("IPV6_V6ONLY {}", if on { "on" } else { "off" }),
                    },
                    local,
                    peer: None,
                }
            }
            Op::Connect { timeout_ms, .. } => {
                let addr = need_addr()?;
                let s = new_socket(&addr)?;
                let r = match timeout_ms {
                    Some(ms) => s.connect_timeout(&addr.into(), Duration::from_millis(*ms)),
                    None => s.connect(&addr.into()),
                };
                let done = Done {
                    outcome: ok_or(r),
                    local: addr_of(s.local_addr()),
                    peer: addr_of(s.peer_addr()),
                };
                // Keep even a failed socket: later steps may ask for its state.
                self.put(slot, s);
                done
            }
            Op::Accept => {
                let listener = self.sock("listener")?;
                match listener.accept() {
                    Ok((s, peer)) => {
                        let local = addr_of(s.local_addr());
                        self.put(slot, s);
                        Done {
                            outcome: Outcome::Ok,
                            local,
                            peer: peer.as_socket(),
                        }
                    }
                    Err(e) => Outcome::from_error(&e).into(),
                }
            }
            Op::Write { len, nosignal } => {
                let buf = vec![b'x'; *len];
                match knobs::send(self.sock(slot)?, &buf, *nosignal) {
                    Ok(n) => Outcome::Bytes { n }.into(),
                    Err(e) => Outcome::from_error(&e).into(),
                }
            }
            Op::Fill => {
                let s = self.sock(slot)?;
                let buf = vec![b'x'; 64 * 1024];
                let mut total = 0usize;
                let then = loop {
                    match knobs::send(s, &buf, true) {
                        Ok(n) => total += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Outcome::from_error(&e),
                    }
                };
                if total == 0 {
                    then.into()
                } else {
                    Outcome::Filled {
                        then: Box::new(then),
                    }
                    .into()
                }
            }
            Op::Read { max } => {
                let mut buf = vec![0u8; *max];
                match knobs::recv(self.sock(slot)?, &mut buf) {
                    Ok(0) => Outcome::Eof.into(),
                    Ok(n) => Outcome::Bytes { n }.into(),
                    Err(e) => Outcome::from_error(&e).into(),
                }
            }
            Op::Drain => {
                let mut buf = vec![0u8; 64 * 1024];
                let s = self.sock(slot)?;
                loop {
                    match knobs::recv(s, &mut buf) {
                        Ok(0) => break Outcome::Eof.into(),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Outcome::from_error(&e).into(),
                    }
                }
            }
            Op::Shutdown { how } => {
                let how = match how {
                    How::Read => Shutdown::Read,
                    How::Write => Shutdown::Write,
                    How::Both => Shutdown::Both,
                };
                ok_or(self.sock(slot)?.shutdown(how)).into()
            }
            Op::Close => {
                let s = self.slots.remove(slot).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no socket in slot {slot:?}"),
                    )
                })?;
                let was_nonblocking = self.nonblocking.remove(slot);
                // Closed explicitly, not dropped, so the close's own result is recorded (dropping
                // ignores it): a lingering close blocks right here, which the elapsed time shows,
                // and a non-blocking one may fail (WSAEWOULDBLOCK on Windows, which leaves the
                // socket open: it goes back into its slot).
                match knobs::close(s) {
                    Ok(()) => Outcome::Ok.into(),
                    Err((e, still_open)) => {
                        if let Some(s) = still_open {
                            self.slots.insert(slot.into(), s);
                            if was_nonblocking {
                                self.nonblocking.insert(slot.into());
                            }
                        }
                        Outcome::from_error(&e).into()
                    }
                }
            }
            Op::SetLinger { secs } => {
                let d = secs.map(|s| Duration::from_secs(s.into()));
                ok_or(self.sock(slot)?.set_linger(d)).into()
            }
            Op::SetNonblocking { on } => {
                let r = self.sock(slot)?.set_nonblocking(*on);
                if r.is_ok() {
                    if *on {
                        self.nonblocking.insert(slot.into());
                    } else {
                        self.nonblocking.remove(slot);
                    }
                }
                ok_or(r).into()
            }
            Op::SetReadTimeout { ms } => ok_or(
                self.sock(slot)?
                    .set_read_timeout(Some(Duration::from_millis(*ms))),
            )
            .into(),
            Op::SetWriteTimeout { ms } => ok_or(
                self.sock(slot)?
                    .set_write_timeout(Some(Duration::from_millis(*ms))),
            )
            .into(),
            Op::SetRecvBuffer { bytes } => {
                ok_or(self.sock(slot)?.set_recv_buffer_size(*bytes)).into()
            }
            Op::SetSendBuffer { bytes } => {
                ok_or(self.sock(slot)?.set_send_buffer_size(*bytes)).into()
            }
            Op::SetUserTimeout { ms } => ok_or(knobs::set_user_timeout(
                self.sock(slot)?,
                Duration::from_millis(*ms),
            ))
            .into(),
            Op::SigpipeDefault => ok_or(knobs::sigpipe_default()).into(),
            Op::ExhaustFds => {
                // Lower the limit (so a generous default does not cost a million opens), then open
                // descriptors until the kernel refuses; the refusal is the outcome. Where there is
                // no limit to lower (Windows), there is none to exhaust: that is the outcome.
                if let Err(e) = knobs::set_fd_limit(64) {
                    return Ok(Outcome::from_error(&e).into());
                }
                loop {
                    match std::fs::File::open(platforms::null_device()) {
                        Ok(f) => self.filler.push(f),
                        Err(e) => break Outcome::from_error(&e).into(),
                    }
                    if self.filler.len() > 1_000_000 {
                        break Outcome::Ok.into();
                    }
                }
            }
            Op::RestoreFds => {
                self.filler.clear();
                Outcome::Ok.into()
            }
            Op::Poll { timeout_ms } => {
                match knobs::poll(self.sock(slot)?, Duration::from_millis(*timeout_ms)) {
                    Ok(ev) => Outcome::Events {
                        events: ev.iter().map(|s| s.to_string()).collect(),
                    }
                    .into(),
                    Err(e) => Outcome::from_error(&e).into(),
                }
            }
            Op::AwaitUnread { wait_ms } => {
                let sock = self.sock(slot)?;
                let end = Instant::now() + Duration::from_millis(*wait_ms);
                let mut pause = Duration::from_micros(200);
                loop {
                    match platforms::host::unread_bytes(sock) {
                        Ok(n) if n > 0 => break Outcome::Bytes { n }.into(),
                        Ok(_) if Instant::now() >= end => break Outcome::Bytes { n: 0 }.into(),
                        Ok(_) => {
                            std::thread::sleep(pause);
                            pause = (pause * 2).min(Duration::from_millis(10));
                        }
                        Err(e) => break Outcome::from_error(&e).into(),
                    }
                }
            }
            Op::State => match knobs::socket_state(self.sock(slot)?) {
                Ok(st) => Outcome::State {
                    state: st.name().into(),
                }
                .into(),
                Err(e) => Outcome::from_error(&e).into(),
            },
            Op::SpawnHolder => {
                let exe = std::env::current_exe()?;
                let mut cmd = std::process::Command::new(exe);
                cmd.arg("--hold").stdout(std::process::Stdio::null());
                let child = knobs::spawn_inheriting(self.sock(slot)?, &mut cmd)?;
                self.holders.push(child);
                Outcome::Ok.into()
            }
            Op::Exit { code } => {
                // Leave every socket open: the kernel closes them at exit.
                let _ = io::stdout().flush();
                std::process::exit(*code)
            }
            Op::Abort => {
                let _ = io::stdout().flush();
                knobs::abort()
            }
            Op::SetKeepalive {
                idle_s,
                interval_s,
                count,
            } => ok_or(platforms::host::set_keepalive(
                self.sock(slot)?,
                Duration::from_secs(*idle_s),
                Duration::from_secs(*interval_s),
                *count,
            ))
            .into(),
            Op::Echo => {
                let mut s = self.sock(slot)?;
                let mut buf = [0u8; 1024];
                loop {
                    match knobs::recv(s, &mut buf) {
                        Ok(0) => break Outcome::Eof.into(),
                        Ok(n) => {
                            if let Err(e) = s.write_all(&buf[..n]) {
                                break Outcome::from_error(&e).into();
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Outcome::from_error(&e).into(),
                    }
                }
            }
            Op::Heartbeat {
                interval_ms,
                timeout_ms,
                rounds,
            } => {
                let s = self.sock(slot)?;
                s.set_read_timeout(Some(Duration::from_millis(*timeout_ms)))?;
                let mut pong = [0u8; 1];
                let mut done = 0;
                loop {
                    if Some(done) == *rounds {
                        break Outcome::Ok.into();
                    }
                    done += 1;
                    if let Err(e) = knobs::send(s, b"p", true) {
                        break Outcome::from_error(&e).into();
                    }
                    match knobs::recv(s, &mut pong) {
                        Ok(0) => break Outcome::Eof.into(),
                        // The application's own period between pings (its behavior, not a wait
                        // for a condition).
                        Ok(_) => std::thread::sleep(Duration::from_millis(*interval_ms)),
                        Err(e) => break Outcome::from_error(&e).into(),
                    }
                }
            }
            Op::ConnectMany { max, compare_ports } => {
                let addr = need_addr()?;
                let mut ports = Vec::new();
                let mut then = None;
                while ports.len() < *max {
                    let s = match new_socket(&addr) {
                        Ok(s) => s,
                        Err(e) => {
                            then = Some(Box::new(Outcome::from_error(&e)));
                            break;
                        }
                    };
                    if let Err(e) = s.connect(&addr.into()) {
                        then = Some(Box::new(Outcome::from_error(&e)));
                        break;
                    }
                    ports.push(addr_of(s.local_addr()).map(|a| a.port()).unwrap_or(0));
                    self.many.push(s);
                }
                let reused_ports = compare_ports.then(|| {
                    ports
                        .iter()
                        .filter(|p| self.previous_ports.contains(p))
                        .count()
                });
                let n = ports.len();
                self.previous_ports = ports;
                Outcome::Many {
                    n,
                    then,
                    reused_ports,
                }
                .into()
            }
            Op::AcceptAll { max } => {
                let listener = self.sock(slot)?;
                // Accept without blocking, and wait for the next connection with poll, bounded:
                // an accept timeout (SO_RCVTIMEO on the listener) exists only on Linux. Nothing
                // more within ACCEPT_ALL_IDLE stops the loop with the kernel's own answer to the
                // last accept (EAGAIN, WSAEWOULDBLOCK).
                let was_nonblocking = self.nonblocking.contains(slot);
                listener.set_nonblocking(true)?;
                let mut accepted = Vec::new();
                let then = loop {
                    if accepted.len() == *max {
                        break None;
                    }
                    match listener.accept() {
                        Ok((s, _)) => accepted.push(s),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            match knobs::wait_readable(listener, ACCEPT_ALL_IDLE) {
                                Ok(true) => {}
                                Ok(false) => break Some(Box::new(Outcome::from_error(&e))),
                                Err(e) => break Some(Box::new(Outcome::from_error(&e))),
                            }
                        }
                        Err(e) => break Some(Box::new(Outcome::from_error(&e))),
                    }
                };
                if !was_nonblocking {
                    listener.set_nonblocking(false)?;
                }
                // The accepted connections are only held open (BSD and Windows made them
                // non-blocking like the listener; nothing reads them).
                let n = accepted.len();
                self.many.extend(accepted);
                Outcome::Many {
                    n,
                    then,
                    reused_ports: None,
                }
                .into()
            }
            Op::RaiseFdLimit => ok_or(knobs::raise_fd_limit().map(drop)).into(),
            Op::SetFdLimit { n } => ok_or(platforms::host::set_soft_fd_limit(*n)).into(),
            Op::OnTerminate { ignore } => {
                let what = if *ignore {
                    platforms::host::OnTerminate::Ignore
                } else {
                    platforms::host::OnTerminate::CloseAndExit
                };
                ok_or(platforms::host::on_terminate(what)).into()
            }
        })
    }
}
