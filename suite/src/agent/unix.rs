//! Unix-domain sockets: their creation by type, names (paths in the case's directory, abstract
//! names, paths of given lengths), peer credentials, SO_REUSEPORT, a datagram receiver that never
//! reads, and the pending error. Listen, accept, write, read, poll and close are the ops every
//! socket shares (socket2's `Socket` is one type for every family).

use super::Agent;
use crate::proto::{Outcome, Request, UnixArgs};
use crate::script::{Slot, UnixType};
use platforms::knobs;
use platforms::unix_domain::{self as ud, UnixKind};
use socket2::Socket;
use std::io;

/// The runner's names for a Unix-domain op.
pub(super) fn need_unix(req: &Request) -> io::Result<&UnixArgs> {
    req.unix
        .as_ref()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no Unix-domain name given"))
}

/// The bytes of the op's name: its path, or Linux's abstract name of that tag (not supported
/// elsewhere, which is the outcome there).
fn name(args: &UnixArgs) -> io::Result<Vec<u8>> {
    if args.abstract_name {
        ud::abstract_name(&args.path)
    } else {
        Ok(ud::path_name(&args.path))
    }
}

impl Agent {
    /// socket(AF_UNIX, kind) into the slot; the OS's refusal of a type is the outcome.
    pub(super) fn unix_socket(&mut self, slot: Slot, kind: UnixType) -> io::Result<Outcome> {
        let kind = match kind {
            UnixType::Stream => UnixKind::Stream,
            UnixType::Datagram => UnixKind::Datagram,
            UnixType::Seqpacket => UnixKind::Seqpacket,
        };
        self.put(slot, ud::socket(kind)?);
        Ok(Outcome::Ok)
    }
}

/// bind() to the op's name. For an abstract name, also whether a file appeared at the path its
/// tag spells: the abstract namespace promises none.
pub(super) fn bind(s: &Socket, args: &UnixArgs) -> io::Result<Outcome> {
    s.bind(&ud::address(&name(args)?)?)?;
    if !args.abstract_name {
        return Ok(Outcome::Ok);
    }
    let note = if args.path.exists() {
        "a file appeared at the tag's path"
    } else {
        "no file on disk"
    };
    Ok(Outcome::OkWith { note: note.into() })
}

/// connect() to the op's name.
pub(super) fn connect(s: &Socket, args: &UnixArgs) -> io::Result<Outcome> {
    s.connect(&ud::address(&name(args)?)?)?;
    Ok(Outcome::Ok)
}

/// For each length from `from` to `to`, bind a fresh stream socket to a path of exactly that many
/// bytes in the case's directory (`args.path`); the outcome lists each run of lengths with the
/// same answer.
pub(super) fn path_lengths(args: &UnixArgs, from: usize, to: usize) -> io::Result<Outcome> {
    let dir = ud::path_name(&args.path);
    let mut runs: Vec<(usize, usize, String)> = Vec::new();
    for len in from..=to {
        // The directory, a slash, then padding up to the length asked.
        let Some(pad) = len.checked_sub(dir.len() + 2) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the case's directory is too long for a path of {len} bytes"),
            ));
        };
        let mut path = dir.clone();
        path.push(b'/');
        path.extend(std::iter::repeat_n(b'p', pad + 1));
        let answer = bind_path_of_length(&path);
        match runs.last_mut() {
            Some(run) if run.2 == answer => run.1 = len,
            _ => runs.push((len, len, answer)),
        }
    }
    let note = runs
        .iter()
        .map(|(a, b, answer)| match a == b {
            true => format!("{a} bytes: {answer}"),
            false => format!("{a}-{b} bytes: {answer}"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Outcome::OkWith { note })
}

/// One bind of a path on a fresh stream socket: "ok" with whether getsockname gives the path back
/// whole, or the error.
fn bind_path_of_length(path: &[u8]) -> String {
    let bound = ud::socket(UnixKind::Stream).and_then(|s| {
        s.bind(&ud::address(path)?)?;
        s.local_addr()
    });
    match bound {
        Ok(local) if ud::name_of(&local) == path => "ok, getsockname gives it back whole".into(),
        Ok(_) => "ok, getsockname gives back another name".into(),
        Err(e) => Outcome::from_error(&e).to_string(),
    }
}

/// The peer's credentials: for each of pid, uid and gid, whether the platform reports it and
/// whether it is the peer agent's (its pid as the runner started it; its uid and gid are this
/// agent's own, as the runner started both, so only the pid can tell the peer's credentials from
/// the caller's own). The numbers themselves change every run and are never written.
pub(super) fn peer_cred(s: &Socket, args: &UnixArgs) -> io::Result<Outcome> {
    let cred = ud::peer_cred(s)?;
    let (uid, gid) = ud::own_ids();
    let field = |name: &str, got: Option<u32>, want: Option<u32>| match (got, want) {
        (None, _) => format!("{name} not reported"),
        (Some(g), Some(w)) if g == w => format!("{name} the peer's"),
        (Some(_), Some(_)) => format!("{name} not the peer's"),
        (Some(_), None) => format!("{name} reported, nothing to compare it with"),
    };
    let pid = match cred.pid {
        // gVisor answers SO_PEERCRED with the caller's own credentials.
        Some(p) if p == std::process::id() && args.peer_pid != Some(p) => {
            "pid the caller's own, not the peer's".to_string()
        }
        got => field("pid", got, args.peer_pid),
    };
    let note = [
        pid,
        field("uid", cred.uid, uid),
        field("gid", cred.gid, gid),
    ]
    .join(", ");
    Ok(Outcome::OkWith { note })
}

/// Send `size`-byte datagrams until the first refusal (at most `max`): the refusal is the outcome
/// ("filled, then ..." when some went through), never the count, which varies with buffer sizes.
pub(super) fn dgram_fill(s: &Socket, size: usize, max: usize) -> Outcome {
    let buf = vec![b'd'; size];
    let mut sent = 0usize;
    while sent < max {
        match knobs::send(s, &buf, true) {
            Ok(_) => sent += 1,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if sent == 0 => return Outcome::from_error(&e),
            Err(e) => {
                return Outcome::Filled {
                    then: Box::new(Outcome::from_error(&e)),
                }
            }
        }
    }
    Outcome::OkWith {
        note: format!("no refusal after {max} datagrams"),
    }
}
