//! The runner-agent protocol: one JSON line per request on the agent's stdin, one JSON line per reply
//! on its stdout.

use crate::script::{Op, Slot};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub slot: Slot,
    pub op: Op,
    /// The concrete address for listen/connect, resolved by the runner.
    pub addr: Option<SocketAddr>,
    /// What a Unix-domain op needs from the runner (unix/ cases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix: Option<UnixArgs>,
    /// Set for a call the agent runs on a second thread (`Op::InThread`): the agent acknowledges
    /// the request once the thread exists (a reply without an id; an error if it could not start
    /// one), answers it again when the call returns, with this id in the reply, and meanwhile
    /// serves the next requests.
    /// Absent from every other request, so they cross the pipe as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<u32>,
}

/// A Unix-domain op's name and peer, resolved by the runner: the name's path in the case's
/// private directory (or the tag of its abstract name), and the pid of the other agent, which
/// peer credentials are compared with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixArgs {
    pub path: PathBuf,
    pub abstract_name: bool,
    pub peer_pid: Option<u32>,
}

/// What one call returned, normalized: a portable kind plus the OS's symbolic name, never a number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Ok,
    /// A byte count that is part of the behavior (read/write of small, fixed sizes).
    Bytes {
        n: usize,
    },
    Eof,
    Error {
        kind: String,
        code: String,
    },
    /// Write-until-full: some data went in, then this happened.
    Filled {
        then: Box<Outcome>,
    },
    /// Readiness events, in a fixed order.
    Events {
        events: Vec<String>,
    },
    State {
        state: String,
    },
    /// How the agent process ended (it died inside the call, or the call was exit/abort).
    Died {
        how: String,
    },
    /// Many connections: how many succeeded, what stopped them, and (when asked) how many of their
    /// local ports the previous batch had used already.
    Many {
        n: usize,
        then: Option<Box<Outcome>>,
        reused_ports: Option<usize>,
    },
    /// Success, with what the call found in effect ("IPV6_V6ONLY off").
    OkWith {
        note: String,
    },
    /// The op needs a knob this platform's backend does not implement (`platforms::
    /// NotImplemented`): not something the OS did. The runner stops the case here and skips it.
    NotImplemented {
        os: String,
        what: String,
    },
    /// The platform lacks the feature the op asked for (`platforms::NotSupported`): its behavior,
    /// recorded as the step's outcome; the case runs on.
    NotSupported {
        why: String,
    },
    /// The op was not performed: its slot holds no socket, because the step that makes one
    /// failed (an accept that was refused). Not an error the OS returned.
    NoSocket {
        slot: String,
    },
    /// A bounded wait for something to receive found nothing: "no datagram within 100 ms". Used
    /// only where the question is whether anything arrived.
    Nothing {
        what: String,
        within_ms: u64,
    },
}

/// The agent's error for an op on a slot that holds no socket (see `Outcome::NoSocket`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoSocket {
    pub slot: String,
}

impl fmt::Display for NoSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no socket in slot {}", self.slot)
    }
}

impl std::error::Error for NoSocket {}

impl Outcome {
    /// A failed call's outcome; a knob the backend does not implement on this OS is told apart
    /// from an error the OS returned.
    pub fn from_error(e: &io::Error) -> Outcome {
        if let Some(n) = platforms::not_implemented_in(e) {
            return Outcome::NotImplemented {
                os: n.os.to_string(),
                what: n.what.clone(),
            };
        }
        if let Some(n) = e.get_ref().and_then(|e| e.downcast_ref::<NoSocket>()) {
            return Outcome::NoSocket {
                slot: n.slot.clone(),
            };
        }
        if let Some(n) = platforms::not_supported_in(e) {
            return Outcome::NotSupported { why: n.why.clone() };
        }
        Outcome::Error {
            kind: format!("{:?}", e.kind()),
            code: platforms::error_name(e),
        }
    }

    /// "not implemented on windows: what" when this outcome (or the outcome it ended with, after
    /// some data or connections) is a knob not implemented here: the case's skip reason.
    pub fn not_implemented(&self) -> Option<String> {
        match self {
            Outcome::NotImplemented { .. } => Some(self.to_string()),
            Outcome::Filled { then } => then.not_implemented(),
            Outcome::Many { then, .. } => then.as_ref()?.not_implemented(),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::OkWith { note } => write!(f, "ok ({note})"),
            Outcome::Bytes { n } => write!(f, "ok({n})"),
            Outcome::Eof => f.write_str("eof"),
            Outcome::Error { kind, code } => write!(f, "error({kind}, {code})"),
            Outcome::Filled { then } => write!(f, "filled, then {then}"),
            Outcome::Events { events } if events.is_empty() => f.write_str("no events"),
            Outcome::Events { events } => write!(f, "events({})", events.join("|")),
            Outcome::State { state } => write!(f, "state({state})"),
            Outcome::Died { how } => write!(f, "process died ({how})"),
            Outcome::NotImplemented { os, what } => write!(f, "not implemented on {os}: {what}"),
            Outcome::NotSupported { why } => write!(f, "not supported ({why})"),
            Outcome::NoSocket { slot } => write!(
                f,
                "not performed (no socket in slot {slot}: the step that makes it failed)"
            ),
            Outcome::Nothing { what, within_ms } => write!(f, "no {what} within {within_ms} ms"),
            Outcome::Many {
                n,
                then,
                reused_ports,
            } => {
                write!(f, "ok({n} connections)")?;
                if let Some(then) = then {
                    write!(f, ", then {then}")?;
                }
                if let Some(r) = reused_ports {
                    write!(
                        f,
                        "; {r} of {n} local ports were in use toward the previous listener"
                    )?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reply {
    pub outcome: Outcome,
    /// Time spent inside the call, measured by the agent around it.
    pub elapsed_us: u64,
    /// The socket's own address after listen/connect/accept.
    pub local: Option<SocketAddr>,
    /// The peer's address after connect/accept.
    pub peer: Option<SocketAddr>,
    /// The id of the second-thread call this reply answers (see `Request::thread`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_print_as_symbols_not_numbers() {
        let e = io::Error::from_raw_os_error(104);
        let o = Outcome::from_error(&e);
        let s = o.to_string();
        assert!(s.starts_with("error(ConnectionReset, E"), "{s}");
        assert!(!s.chars().any(|c| c.is_ascii_digit()), "{s}");
    }

    #[test]
    fn a_knob_not_implemented_is_its_own_outcome_and_names_the_skip() {
        let e = platforms::not_implemented("passing a socket to a child process");
        let o = Outcome::from_error(&e);
        let os = std::env::consts::OS;
        assert_eq!(
            o,
            Outcome::NotImplemented {
                os: os.into(),
                what: "passing a socket to a child process".into()
            }
        );
        let reason = format!("not implemented on {os}: passing a socket to a child process");
        assert_eq!(o.not_implemented().as_deref(), Some(reason.as_str()));
        // It crosses the agent's pipe as it left it.
        let line = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<Outcome>(&line).unwrap(), o);
        // After some data went in, it still names the skip.
        let filled = Outcome::Filled {
            then: Box::new(o.clone()),
        };
        assert_eq!(filled.not_implemented().as_deref(), Some(reason.as_str()));
        // An OS error, even an unsupported operation without the marker, is an outcome to record.
        let plain = io::Error::new(io::ErrorKind::Unsupported, "refused");
        assert!(matches!(Outcome::from_error(&plain), Outcome::Error { .. }));
        assert_eq!(Outcome::from_error(&plain).not_implemented(), None);
        assert_eq!(Outcome::Ok.not_implemented(), None);
    }

    #[test]
    fn a_feature_the_platform_lacks_is_an_outcome_not_a_skip() {
        let e = platforms::not_supported("no abstract socket namespace on this OS");
        let o = Outcome::from_error(&e);
        assert_eq!(
            o.to_string(),
            "not supported (no abstract socket namespace on this OS)"
        );
        assert_eq!(o.not_implemented(), None);
        let line = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<Outcome>(&line).unwrap(), o);
    }

    #[test]
    fn an_op_on_an_empty_slot_is_not_performed_not_an_os_error() {
        let e = io::Error::new(
            io::ErrorKind::NotFound,
            NoSocket {
                slot: "conn".into(),
            },
        );
        let o = Outcome::from_error(&e);
        assert_eq!(
            o.to_string(),
            "not performed (no socket in slot conn: the step that makes it failed)"
        );
        assert_eq!(
            crate::observe::event::parse_outcome(&o.to_string()),
            Some(o)
        );
    }

    #[test]
    fn filled_nests() {
        let o = Outcome::Filled {
            then: Box::new(Outcome::Error {
                kind: "WouldBlock".into(),
                code: "EAGAIN".into(),
            }),
        };
        assert_eq!(o.to_string(), "filled, then error(WouldBlock, EAGAIN)");
    }
}
