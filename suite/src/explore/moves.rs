//! The moves a generated script is made of, the rules that keep each move where it is valid, and
//! the case (and the Rust source of the case) a list of moves stands for.

use crate::script::ops::{linger, read, shutdown, write};
use crate::script::{client, connected, server, Case, Fault, How, Op, Side, Step};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// One move of a generated script, by the side that makes it. Moves that are not valid where
/// they stand (a side acting after its close, kill or exit; a second accept with nothing queued)
/// are dropped when the script is built, so shrinking can remove any move freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Move {
    Write,
    Read,
    ShutdownWrite,
    ShutdownRead,
    Linger0,
    /// SO_LINGER on with 1 s: a later close may wait for unsent data.
    LingerPositive,
    Close,
    Kill,
    /// exit(0) with the sockets open.
    Exit,
    /// poll() with a zero timeout: the readiness events right now.
    Poll,
    /// Write until the kernel refuses more (a 50 ms write timeout first).
    Fill,
    /// The server closes its listener (with a second connection queued, if the client made one).
    CloseListener,
    /// The client opens a second connection (slot c2), which waits in the listener's queue.
    Connect2,
    /// The server accepts the queued second connection.
    Accept2,
    /// The server's host crashes: nothing enters or leaves it, its sockets keep their state (lab
    /// only, like the three below; made by the server side, which makes no move until healed).
    Crash,
    /// The server's host reboots: its processes die and its connection state is gone.
    Reboot,
    /// The router forwards nothing (made by the client side, which stands for the network).
    Partition,
    /// Every partition or crash still in place is undone.
    Heal,
}

impl Move {
    /// A fault of the lab's hosts or network rather than a call of an agent.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            Move::Crash | Move::Reboot | Move::Partition | Move::Heal
        )
    }
}

/// A script as data: the moves after the connection is set up.
pub type Script = Vec<(Side, Move)>;

/// The read (and write) timeout both ends get, so that no call waits long.
pub const READ_TIMEOUT_MS: u64 = 50;

/// Sequences of up to eight moves, each by the client or the server. The corpus and every
/// exploration without `--faults` use these (a seed names the same scripts on every platform).
pub fn moves() -> impl Strategy<Value = Script> {
    let side = prop_oneof![Just(Side::Client), Just(Side::Server)];
    prop::collection::vec((side, agent_move()), 1..=8)
}

/// `moves()` with the lab's faults among them (`explore --faults`, where every stack has the
/// lab): one move in four is a crash, reboot, partition or heal.
pub fn moves_with_faults() -> impl Strategy<Value = Script> {
    let side = prop_oneof![Just(Side::Client), Just(Side::Server)];
    let fault = prop_oneof![
        2 => Just((Side::Server, Move::Crash)),
        1 => Just((Side::Server, Move::Reboot)),
        2 => Just((Side::Client, Move::Partition)),
        2 => Just((Side::Client, Move::Heal)),
    ];
    let mv = prop_oneof![3 => (side, agent_move()), 1 => fault];
    prop::collection::vec(mv, 1..=8)
}

/// One call of an agent, weighted.
fn agent_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        3 => Just(Move::Write),
        3 => Just(Move::Read),
        1 => Just(Move::ShutdownWrite),
        1 => Just(Move::ShutdownRead),
        1 => Just(Move::Linger0),
        1 => Just(Move::LingerPositive),
        2 => Just(Move::Close),
        1 => Just(Move::Kill),
        1 => Just(Move::Exit),
        2 => Just(Move::Poll),
        1 => Just(Move::Fill),
        1 => Just(Move::CloseListener),
        1 => Just(Move::Connect2),
        1 => Just(Move::Accept2),
    ]
}

/// What the script has done so far, to tell which moves are still valid.
#[derive(Default)]
struct State {
    /// Sides whose connection is closed or whose process is gone.
    closed: [bool; 2],
    gone: [bool; 2],
    listener_closed: bool,
    /// The client's second connection: made, accepted.
    c2: bool,
    c2_accepted: bool,
    /// Sides that set their write timeout (before their first fill).
    write_timeout: [bool; 2],
    /// The server's host is crashed (until a heal) or was rebooted; the router forwards nothing.
    crashed: bool,
    rebooted: bool,
    partitioned: bool,
}

fn ix(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

impl State {
    fn valid(&self, side: Side, m: Move) -> bool {
        let s = ix(side);
        match m {
            // Faults are the runner's: valid by the state of the lab, whoever is gone.
            Move::Crash => return side == Side::Server && !self.crashed && !self.rebooted,
            Move::Reboot => return side == Side::Server && !self.rebooted,
            Move::Partition => return side == Side::Client && !self.partitioned,
            Move::Heal => return side == Side::Client && (self.partitioned || self.crashed),
            _ => {}
        }
        // A crashed host runs nothing (its processes are frozen with it).
        if self.gone[s] || (side == Side::Server && self.crashed) {
            return false;
        }
        match m {
            Move::Kill | Move::Exit => true,
            Move::CloseListener => side == Side::Server && !self.listener_closed,
            // A connect() that cannot reach the listener would wait out its SYN retries.
            Move::Connect2 => {
                side == Side::Client
                    && !self.listener_closed
                    && !self.c2
                    && !self.crashed
                    && !self.partitioned
                    && !self.rebooted
            }
            // The connection waits in the queue only while the listener is open; a client that
            // is gone may have reset it, which some stacks then never hand to accept().
            Move::Accept2 => {
                side == Side::Server
                    && self.c2
                    && !self.c2_accepted
                    && !self.listener_closed
                    && !self.gone[0]
            }
            _ => !self.closed[s],
        }
    }

    fn apply(&mut self, side: Side, m: Move) {
        let s = ix(side);
        match m {
            Move::Close => self.closed[s] = true,
            Move::Kill | Move::Exit => {
                self.closed[s] = true;
                self.gone[s] = true;
            }
            Move::CloseListener => self.listener_closed = true,
            Move::Connect2 => self.c2 = true,
            Move::Accept2 => self.c2_accepted = true,
            Move::Fill => self.write_timeout[s] = true,
            Move::Crash => self.crashed = true,
            Move::Reboot => {
                // Every process of the host dies, the listener with it.
                self.rebooted = true;
                self.crashed = false;
                self.closed[1] = true;
                self.gone[1] = true;
                self.listener_closed = true;
            }
            Move::Partition => self.partitioned = true,
            Move::Heal => {
                self.partitioned = false;
                self.crashed = false;
            }
            _ => {}
        }
    }
}

/// The moves of `m` that the script performs: those valid where they stand. Two move lists with
/// the same valid moves are the same script.
pub fn valid_moves(m: &[(Side, Move)]) -> Script {
    let mut st = State::default();
    let mut out = Vec::new();
    for &(side, mv) in m {
        if st.valid(side, mv) {
            st.apply(side, mv);
            out.push((side, mv));
        }
    }
    out
}

/// The case a list of moves stands for (its invalid moves dropped).
pub fn script(moves: &[(Side, Move)]) -> Case {
    let mut steps = connected();
    for side in [Side::Client, Side::Server] {
        steps.push(act(
            side,
            Op::SetReadTimeout {
                ms: READ_TIMEOUT_MS,
            },
        ));
    }
    let mut st = State::default();
    let mut lab = false;
    for &(side, m) in moves {
        if !st.valid(side, m) {
            continue;
        }
        lab |= m.is_fault();
        if m == Move::Fill && !st.write_timeout[ix(side)] {
            steps.push(act(
                side,
                Op::SetWriteTimeout {
                    ms: READ_TIMEOUT_MS,
                },
            ));
        }
        st.apply(side, m);
        steps.push(step_of(side, m));
    }
    steps.push(Step::Checkpoint("end"));
    // A generated script has no await steps: on a stack that handles segments after the call
    // returns, each move waits for the previous one's segments to be processed instead.
    let mut case = Case::new(
        "Verify: a generated script observes the same on every run, over IPv4 and IPv6, and on every stack.",
        steps,
    )
    .settle_between_moves();
    if lab {
        case = case.in_lab().retransmissions_vary(FAULT_RETRANSMISSIONS);
    }
    case.family = "explore";
    case.name = "generated";
    case
}

/// Why a script with faults names its retransmissions instead of counting them.
pub const FAULT_RETRANSMISSIONS: &str =
    "how many fall into a fault depends on how long its moves take";

fn act(side: Side, op: Op) -> Step {
    match side {
        Side::Client => client(op),
        Side::Server => server(op),
    }
}

fn step_of(side: Side, m: Move) -> Step {
    match m {
        Move::Write => act(side, write(5)),
        Move::Read => act(side, read(100)),
        Move::ShutdownWrite => act(side, shutdown(How::Write)),
        Move::ShutdownRead => act(side, shutdown(How::Read)),
        Move::Linger0 => act(side, linger(Some(0))),
        Move::LingerPositive => act(side, linger(Some(1))),
        Move::Close => act(side, Op::Close),
        Move::Kill => Step::Kill(side),
        Move::Exit => act(side, Op::Exit { code: 0 }),
        Move::Poll => act(side, Op::Poll { timeout_ms: 0 }),
        Move::Fill => act(side, Op::Fill),
        Move::CloseListener => server(Op::Close).on("listener"),
        Move::Connect2 => client(crate::script::ops::connect()).on("c2"),
        Move::Accept2 => server(Op::Accept).on("c2"),
        Move::Crash => Step::Fault(Fault::Crash),
        Move::Reboot => Step::Fault(Fault::Reboot),
        Move::Partition => Step::Fault(Fault::Partition),
        Move::Heal => Step::Fault(Fault::Heal),
    }
}

/// A move as words with its maker: "server close", "server host crash", "network partition".
pub fn move_words(side: Side, m: Move) -> Vec<String> {
    let who = match m {
        Move::Crash | Move::Reboot => "server host".to_string(),
        Move::Partition | Move::Heal => "network".to_string(),
        _ => side.to_string(),
    };
    let mut w: Vec<String> = who.split(' ').map(String::from).collect();
    w.extend(words(m));
    w
}

/// A move's name as lowercase words (`CloseListener`: "close", "listener").
pub fn words(m: Move) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in format!("{m:?}").chars() {
        match out.last_mut() {
            Some(w) if !c.is_ascii_uppercase() => w.push(c),
            _ => out.push(c.to_ascii_lowercase().to_string()),
        }
    }
    out
}

/// A snake_case name for a script: its moves in order ("server_close_client_write").
pub fn name_of(m: &[(Side, Move)]) -> String {
    let words: Vec<String> = m
        .iter()
        .map(|(side, mv)| move_words(*side, *mv).join("_"))
        .collect();
    if words.is_empty() {
        "idle".into()
    } else {
        words.join("_")
    }
}

/// The script as a ready-to-paste catalog case: a function in the case language, as in
/// `suite/src/cases/*.rs` (which `use crate::script::ops::*; use crate::script::*;`).
pub fn rust_case(m: &[(Side, Move)], intent: &str) -> String {
    let case = script(m);
    let mut body = Vec::new();
    // connected() is what after_connect() adds; the rest are the script's own steps.
    for s in &case.steps[connected().len()..] {
        body.push(format!("            {},", rust_step(s)));
    }
    let lab = match case.retransmissions_vary {
        Some(why) => format!("\n    .in_lab()\n    .retransmissions_vary({why:?})"),
        None => String::new(),
    };
    // The case runs as the explorer ran it: settled between moves where the stack needs it.
    format!(
        "pub fn {}() -> Case {{\n    Case::new(\n        {intent:?},\n        after_connect([\n{}\n        ]),\n    )\n    .settle_between_moves(){lab}\n}}\n",
        name_of(m),
        body.join("\n")
    )
}

fn rust_step(s: &Step) -> String {
    match s {
        Step::Do(a) => {
            let who = match a.side {
                Side::Client => "client",
                Side::Server => "server",
            };
            let op = match &a.op {
                Op::Write {
                    len,
                    nosignal: true,
                } => format!("write({len})"),
                Op::Read { max } => format!("read({max})"),
                Op::Shutdown { how } => format!("shutdown(How::{how:?})"),
                Op::SetLinger { secs } => format!("linger({secs:?})"),
                Op::Connect { .. } => "connect()".into(),
                other => format!("Op::{other:?}"),
            };
            let on = match a.slot.as_str() {
                "conn" => String::new(),
                slot => format!(".on({slot:?})"),
            };
            format!("{who}({op}){on}")
        }
        Step::Kill(side) => format!("Step::Kill(Side::{side:?})"),
        Step::Fault(f) => format!("Step::Fault(Fault::{f:?})"),
        Step::Checkpoint(name) => format!("Step::Checkpoint({name:?})"),
        other => format!("/* {other:?} */"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn a_script_never_acts_on_a_side_that_closed_or_died(m in moves()) {
            let case = script(&m);
            let (mut closed, mut dead) = (BTreeSet::new(), BTreeSet::new());
            for s in &case.steps {
                match s {
                    Step::Do(a) => {
                        prop_assert!(!dead.contains(&a.side), "{:?} acts after it died", a.side);
                        if a.slot == "conn" && !a.op.ends_process() {
                            prop_assert!(!closed.contains(&a.side), "{:?} uses its closed socket", a.side);
                        }
                        if a.op == Op::Close && a.slot == "conn" {
                            closed.insert(a.side);
                        }
                        if a.op.ends_process() {
                            dead.insert(a.side);
                        }
                    }
                    Step::Kill(side) => prop_assert!(dead.insert(*side), "{side:?} killed after it died"),
                    _ => {}
                }
            }
            prop_assert!(matches!(case.steps.last(), Some(Step::Checkpoint("end"))));
        }

        #[test]
        fn a_crashed_or_rebooted_server_makes_no_move(m in moves_with_faults()) {
            let (mut crashed, mut rebooted) = (false, false);
            for (side, mv) in valid_moves(&m) {
                match mv {
                    Move::Crash => { prop_assert!(!crashed && !rebooted); crashed = true; }
                    Move::Reboot => { prop_assert!(!rebooted); rebooted = true; crashed = false; }
                    Move::Heal => crashed = false,
                    Move::Partition => {}
                    Move::Connect2 => prop_assert!(!crashed && !rebooted, "connect into a dead host"),
                    _ => prop_assert!(side == Side::Client || !(crashed || rebooted), "{mv:?} by a dead server"),
                }
            }
            let lab = valid_moves(&m).iter().any(|(_, mv)| mv.is_fault());
            prop_assert_eq!(script(&m).topology == crate::script::Topology::Lab, lab);
        }

        #[test]
        fn dropping_invalid_moves_changes_nothing_with_faults(m in moves_with_faults()) {
            let v = valid_moves(&m);
            prop_assert_eq!(valid_moves(&v), v.clone());
            prop_assert_eq!(script(&v).steps, script(&m).steps);
        }

        #[test]
        fn dropping_invalid_moves_changes_nothing(m in moves()) {
            let v = valid_moves(&m);
            prop_assert_eq!(valid_moves(&v), v.clone());
            prop_assert_eq!(script(&v).steps, script(&m).steps);
        }
    }

    #[test]
    fn a_script_starts_connected_with_read_timeouts() {
        let case = script(&[(Side::Client, Move::Read)]);
        let ops: Vec<String> = case
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Do(a) => Some(format!("{}: {}", a.side, a.op)),
                _ => None,
            })
            .collect();
        assert_eq!(
            ops,
            [
                "server: listen(backlog 16)",
                "client: connect",
                "server: accept",
                "client: read timeout 50 ms",
                "server: read timeout 50 ms",
                "client: read(100)",
            ]
        );
    }

    #[test]
    fn moves_stand_only_where_valid() {
        use Move::*;
        use Side::*;
        let m = [
            (Server, Accept2),
            (Client, Connect2),
            (Client, CloseListener),
            (Server, CloseListener),
            (Server, Accept2),
            (Client, Close),
            (Client, Write),
            (Client, Kill),
            (Client, Kill),
        ];
        assert_eq!(
            valid_moves(&m),
            [
                (Client, Connect2),
                (Server, CloseListener),
                (Client, Close),
                (Client, Kill)
            ]
        );
    }

    #[test]
    fn faults_stand_only_where_the_lab_state_allows() {
        use Move::*;
        use Side::*;
        let m = [
            (Client, Heal),
            (Client, Crash),
            (Server, Crash),
            (Server, Write),
            (Server, Crash),
            (Client, Connect2),
            (Server, Partition),
            (Client, Partition),
            (Client, Heal),
            (Server, Write),
            (Server, Reboot),
            (Server, Read),
            (Server, Crash),
            (Client, Read),
        ];
        assert_eq!(
            valid_moves(&m),
            [
                (Server, Crash),
                (Client, Partition),
                (Client, Heal),
                (Server, Write),
                (Server, Reboot),
                (Client, Read)
            ]
        );
        assert!(script(&[(Client, Write)]).retransmissions_vary.is_none());
        assert_eq!(
            name_of(&valid_moves(&m)[..3]),
            "server_host_crash_network_partition_network_heal"
        );
    }

    #[test]
    fn a_script_with_faults_prints_as_a_lab_case() {
        use Move::*;
        use Side::*;
        let text = rust_case(&[(Client, Partition), (Client, Write)], "Verify: x.");
        assert!(
            text.contains(
                "            Step::Fault(Fault::Partition),\n            client(write(5)),\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("    )\n    .settle_between_moves()\n    .in_lab()\n    .retransmissions_vary(\"how many fall into a fault depends on how long its moves take\")\n}\n"), "{text}");
    }

    #[test]
    fn a_script_prints_as_a_catalog_case() {
        use Move::*;
        use Side::*;
        let text = rust_case(&[(Server, CloseListener), (Client, Fill)], "Verify: x.");
        assert_eq!(
            text,
            r#"pub fn server_close_listener_client_fill() -> Case {
    Case::new(
        "Verify: x.",
        after_connect([
            client(Op::SetReadTimeout { ms: 50 }),
            server(Op::SetReadTimeout { ms: 50 }),
            server(Op::Close).on("listener"),
            client(Op::SetWriteTimeout { ms: 50 }),
            client(Op::Fill),
            Step::Checkpoint("end"),
        ]),
    )
    .settle_between_moves()
}
"#
        );
    }
}
