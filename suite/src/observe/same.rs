//! The one rule for "the same behavior", used by `conform` (through `observe::agrees`), the
//! matrix (`diff`) and the explorer (its races, findings and shrinking).
//!
//! What a platform cannot show is never a difference: a reading or a checkpoint end written
//! `not visible (...)` or `unavailable (...)` agrees with any value of the same subject. Across
//! platforms, an error compares by its portable kind (a platform spells its codes its own way);
//! and a receive queue one table does not report agrees with the other's figure.
//!
//! The wire is compared per flow: the order of one connection's segments is behavior, the order
//! between independent connections is the scheduler's (`WireOrder`). UDP has no connection, so
//! its flow is the pair of ends a datagram goes between (either way, as a connection's two
//! directions): one socket's datagrams leave in the order it sent them, and an answer follows
//! what it answers. An ICMP error belongs to the flow of the packet it quotes, right after what
//! provoked it: a port unreachable to its datagram's flow, a host unreachable to its TCP
//! connection. Lines of different transports never share a flow.

use super::event::{Call, Checkpoint, End, Event, Part, Returned, Section, Value, WireEvent};
use crate::proto::Outcome;
use similar::{capture_diff_slices, Algorithm, DiffOp};

/// Which two observations are compared, which decides what may stand for what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Two platforms (the matrix, the explorer's findings): codes by portable kind, a gap on
    /// either side, a queue figure only one side reports. Neither side is the reference, so the
    /// rule is symmetric.
    AcrossPlatforms,
    /// Two runs on one platform (the explorer's races): the code is part of what was observed
    /// (ETIMEDOUT and `none` are both TimedOut) and a table that reports queues reports them on
    /// every run. A gap on either side agrees: neither run is the reference.
    SamePlatform,
    /// A stored snapshot (first) and a run (second) on its platform (`conform`): as
    /// `SamePlatform`, but only the run's gap agrees with a stored value. A run that sees what
    /// the snapshot could not is a change worth recording; a run that cannot see what the
    /// snapshot recorded (a rootless run) must not erase it.
    StoredThenRun,
}

impl Rule {
    fn codes_by_kind(self) -> bool {
        self == Rule::AcrossPlatforms
    }
    fn queue_may_be_unreported(self) -> bool {
        self == Rule::AcrossPlatforms
    }
    fn gap_in_first_agrees(self) -> bool {
        self != Rule::StoredThenRun
    }
}

/// Whether the order between connections on the wire counts. No catalog case needs `Global`
/// yet: the multi-connection ones (connect/backlog_full_not_accepting, the corpus's `connect2`
/// scripts) order their connections by their steps, and what they ask is per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireOrder {
    PerConnection,
    Global,
}

/// Whether two events (of one aligned line) say the same.
pub fn same(rule: Rule, a: &Event, b: &Event) -> bool {
    match (a, b) {
        (Event::Call(x), Event::Call(y)) => {
            x.who == y.who && x.op == y.op && same_returned(rule, &x.result, &y.result)
        }
        (Event::Checkpoint(x), Event::Checkpoint(y)) => same_checkpoint(rule, x, y),
        (
            Event::Reading {
                subject: sa,
                value: va,
            },
            Event::Reading {
                subject: sb,
                value: vb,
            },
        ) => {
            (sa == sb && va == vb)
                || (topic(sa) == topic(sb)
                    && (matches!(vb, Value::Gap(_))
                        || (rule.gap_in_first_agrees() && matches!(va, Value::Gap(_)))))
        }
        _ => a == b,
    }
}

/// The subject of a reading without its parenthesis: "kernel memory per connection (both
/// ends, TCP slab caches)" and "kernel memory per connection" are one subject, measured or not.
fn topic(subject: &str) -> &str {
    subject.split('(').next().unwrap_or(subject).trim()
}

fn same_returned(rule: Rule, a: &Returned, b: &Returned) -> bool {
    match (a, b) {
        (Returned::Outcome(x), Returned::Outcome(y)) => same_outcome(rule, x, y),
        _ => a == b,
    }
}

fn same_outcome(rule: Rule, a: &Outcome, b: &Outcome) -> bool {
    match (a, b) {
        (Outcome::Error { .. }, Outcome::Error { .. }) if rule.codes_by_kind() => {
            portable(a) == portable(b)
        }
        (Outcome::Filled { then: x }, Outcome::Filled { then: y }) => same_outcome(rule, x, y),
        (
            Outcome::Many {
                n: na,
                then: ta,
                reused_ports: ra,
            },
            Outcome::Many {
                n: nb,
                then: tb,
                reused_ports: rb,
            },
        ) => {
            na == nb
                && ra == rb
                && match (ta, tb) {
                    (Some(x), Some(y)) => same_outcome(rule, x, y),
                    (x, y) => x == y,
                }
        }
        _ => a == b,
    }
}

/// An outcome as it compares across platforms: `error(Kind)`, or for `Uncategorized`, where
/// the code is all there is, `error(Uncategorized, CODE)` without Windows' WSA prefix.
pub fn portable(o: &Outcome) -> String {
    match o {
        Outcome::Error { kind, code } if kind == "Uncategorized" => {
            format!(
                "error({kind}, {})",
                code.strip_prefix("WSA").unwrap_or(code)
            )
        }
        Outcome::Error { kind, .. } => format!("error({kind})"),
        Outcome::Filled { then } => format!("filled, then {}", portable(then)),
        Outcome::Many { then: Some(t), .. } => {
            let full = o.to_string();
            let tail = format!(", then {t}");
            full.replacen(&tail, &format!(", then {}", portable(t)), 1)
        }
        other => other.to_string(),
    }
}

/// A line as it compares across platforms: its error codes by portable kind. The explorer
/// groups its results by these, so that one difference spelled two ways is one result.
pub fn comparable(section: Section, line: &str) -> String {
    match Event::parse(section, line) {
        Event::Call(Call {
            who,
            op,
            result: Returned::Outcome(o),
        }) => format!("{who}: {op} -> {}", portable(&o)),
        _ => line.to_string(),
    }
}

fn same_checkpoint(rule: Rule, a: &Checkpoint, b: &Checkpoint) -> bool {
    a.name == b.name
        && a.parts.len() == b.parts.len()
        && a.parts.iter().zip(&b.parts).all(|(x, y)| match (x, y) {
            (
                Part::Conn {
                    slot: sa,
                    client: ca,
                    server: va,
                },
                Part::Conn {
                    slot: sb,
                    client: cb,
                    server: vb,
                },
            ) => sa == sb && same_end(rule, ca, cb) && same_end(rule, va, vb),
            _ => x == y,
        })
}

/// Whether two versions of one end of a connection at a checkpoint agree.
pub fn same_end(rule: Rule, a: &End, b: &End) -> bool {
    match (a, b) {
        (_, End::Gap(_)) => true,
        (End::Gap(_), _) => rule.gap_in_first_agrees(),
        (
            End::State {
                state: sa,
                queue: qa,
            },
            End::State {
                state: sb,
                queue: qb,
            },
        ) => {
            sa == sb
                && (qa == qb || (rule.queue_may_be_unreported() && (qa.is_none() || qb.is_none())))
        }
    }
}

/// The part of a line that identifies it across platforms, so that alignment pairs the same
/// operation: the call without its outcome, the checkpoint's name, the timed step.
pub fn key(e: &Event) -> String {
    match e {
        Event::Call(c) => format!("{}: {}", c.who, c.op),
        Event::Checkpoint(c) => format!("checkpoint {}", c.name),
        Event::Timing { step, .. } => step.clone(),
        other => other.to_string(),
    }
}

/// The flow a wire event belongs to (see the module docs): its transport and its two ends in a
/// fixed order (`tcp`, `client c2` and `server`); None for a summary naming none.
pub fn flow(e: &Event) -> Option<(&str, [&str; 2])> {
    let (transport, a, b) = match e {
        Event::Wire(WireEvent::Sent { from, to, .. }) => ("tcp", from, to),
        Event::Wire(WireEvent::Datagram { from, to, .. }) => ("udp", from, to),
        Event::Wire(WireEvent::Icmp { about, .. }) => {
            (about.transport.as_str(), &about.from, &about.to)
        }
        _ => return None,
    };
    let (a, b) = (a.as_str(), b.as_str());
    Some((transport, if a <= b { [a, b] } else { [b, a] }))
}

/// The wire's lines grouped by flow (a TCP connection, a UDP pair of ends, each with the ICMP
/// errors about it), in the order each flow first appears in any column; each column's lines
/// of a flow keep their order. With `WireOrder::Global`, one group holds everything.
pub fn by_connection<'a>(order: WireOrder, columns: &[&'a [String]]) -> Vec<Vec<Vec<&'a String>>> {
    if order == WireOrder::Global {
        return vec![columns.iter().map(|c| c.iter().collect()).collect()];
    }
    let conn = |l: &String| {
        flow(&Event::parse(Section::Wire, l))
            .map(|(t, [a, b])| (t.to_string(), a.to_string(), b.to_string()))
    };
    let mut keys: Vec<Option<(String, String, String)>> = Vec::new();
    for l in columns.iter().flat_map(|c| c.iter()) {
        let k = conn(l);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.iter()
        .map(|k| {
            columns
                .iter()
                .map(|c| c.iter().filter(|l| conn(l) == *k).collect())
                .collect()
        })
        .collect()
}

/// Whether a stored list and a run's list of one section agree line by line (no alignment: a
/// line more or less is a difference).
pub fn lists_agree(rule: Rule, section: Section, a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x == y || same(rule, &Event::parse(section, x), &Event::parse(section, y))
        })
}

/// Whether two wires agree: per connection unless `order` says the interleaving counts.
pub fn wires_agree(rule: Rule, order: WireOrder, a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && by_connection(order, &[a, b]).iter().all(|g| {
            let (x, y): (Vec<String>, Vec<String>) = (
                g[0].iter().map(|s| s.to_string()).collect(),
                g[1].iter().map(|s| s.to_string()).collect(),
            );
            lists_agree(rule, Section::Wire, &x, &y)
        })
}

/// One line of several platforms' aligned lists: None where a platform has no such line.
#[derive(Clone, Debug)]
pub struct AlignedLine {
    pub cells: Vec<Option<String>>,
    pub differs: bool,
}

/// Whether the present cells of a line disagree: any two of them, or a missing line where
/// another column has one. Every pair is compared: a gap agrees with both of two values that
/// differ, so comparing each column with the first alone could miss the difference.
pub fn cells_differ(rule: Rule, section: Section, cells: &[Option<&str>]) -> bool {
    let events: Vec<Option<Event>> = cells
        .iter()
        .map(|c| c.map(|l| Event::parse(section, l)))
        .collect();
    events.iter().enumerate().any(|(i, a)| {
        events[i + 1..].iter().any(|b| match (a, b) {
            (Some(a), Some(b)) => !same(rule, a, b),
            (a, b) => a.is_some() != b.is_some(),
        })
    })
}

/// Align the lines of several platforms: each platform in turn is diffed (by `key`) against the
/// rows built so far, so equal operations share a row and a platform's extra lines get rows of
/// their own.
pub fn align(rule: Rule, section: Section, columns: &[&[String]]) -> Vec<AlignedLine> {
    let owned: Vec<Vec<&String>> = columns.iter().map(|c| c.iter().collect()).collect();
    align_refs(rule, section, &owned)
}

/// The wire aligned connection by connection (see `by_connection`).
pub fn align_wire(rule: Rule, order: WireOrder, columns: &[&[String]]) -> Vec<AlignedLine> {
    by_connection(order, columns)
        .iter()
        .flat_map(|group| align_refs(rule, Section::Wire, group))
        .collect()
}

fn align_refs(rule: Rule, section: Section, columns: &[Vec<&String>]) -> Vec<AlignedLine> {
    let width = columns.len();
    let key_of = |l: &str| key(&Event::parse(section, l));
    let mut grid: Vec<Vec<Option<String>>> = Vec::new();
    for (c, lines) in columns.iter().enumerate() {
        let old_keys: Vec<String> = grid
            .iter()
            .map(|row| key_of(row.iter().flatten().next().map_or("", |s| s.as_str())))
            .collect();
        let new_keys: Vec<String> = lines.iter().map(|l| key_of(l)).collect();
        let ops = capture_diff_slices(Algorithm::Myers, &old_keys, &new_keys);
        let mut next = Vec::with_capacity(grid.len() + lines.len());
        for (old, new) in ops.iter().flat_map(pairs) {
            let mut row = old.map_or_else(|| vec![None; width], |i| grid[i].clone());
            if let Some(j) = new {
                row[c] = Some(lines[j].to_string());
            }
            next.push(row);
        }
        grid = next;
    }
    grid.into_iter()
        .map(|cells| {
            let refs: Vec<Option<&str>> = cells.iter().map(|c| c.as_deref()).collect();
            let differs = cells_differ(rule, section, &refs);
            AlignedLine { cells, differs }
        })
        .collect()
}

/// The (old row, new line) pairs of one diff operation. Replaced lines are paired one to one:
/// they are the same steps done differently.
fn pairs(op: &DiffOp) -> Vec<(Option<usize>, Option<usize>)> {
    match *op {
        DiffOp::Equal {
            old_index,
            new_index,
            len,
        } => (0..len)
            .map(|k| (Some(old_index + k), Some(new_index + k)))
            .collect(),
        DiffOp::Delete {
            old_index, old_len, ..
        } => (0..old_len).map(|k| (Some(old_index + k), None)).collect(),
        DiffOp::Insert {
            new_index, new_len, ..
        } => (0..new_len).map(|k| (None, Some(new_index + k))).collect(),
        DiffOp::Replace {
            old_index,
            old_len,
            new_index,
            new_len,
        } => (0..old_len.max(new_len))
            .map(|k| {
                (
                    (k < old_len).then_some(old_index + k),
                    (k < new_len).then_some(new_index + k),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    fn agree(rule: Rule, a: &str, b: &str) -> bool {
        same(
            rule,
            &Event::parse(Section::Steps, a),
            &Event::parse(Section::Steps, b),
        )
    }

    #[test]
    fn code_names_do_not_count_across_platforms_but_kinds_do() {
        let across = Rule::AcrossPlatforms;
        assert!(agree(
            across,
            "client: read(100) -> error(ConnectionReset, WSAECONNRESET)",
            "client: read(100) -> error(ConnectionReset, ECONNRESET)"
        ));
        assert!(!agree(
            across,
            "x: a -> error(ConnectionReset, ECONNRESET)",
            "x: a -> error(ConnectionAborted, WSAECONNABORTED)"
        ));
        assert!(agree(
            across,
            "x: a -> error(Uncategorized, WSAEMFILE)",
            "x: a -> error(Uncategorized, EMFILE)"
        ));
        assert!(!agree(
            across,
            "x: a -> error(Uncategorized, EMFILE)",
            "x: a -> error(Uncategorized, ENOBUFS)"
        ));
        assert_eq!(
            comparable(
                Section::Steps,
                "s: write until full -> filled, then error(WouldBlock, EAGAIN)"
            ),
            "s: write until full -> filled, then error(WouldBlock)"
        );
        // On one platform the code is what was observed.
        let (a, b) = (
            "c: read(1) -> error(TimedOut, ETIMEDOUT)",
            "c: read(1) -> error(TimedOut, none)",
        );
        assert!(agree(across, a, b));
        assert!(!agree(Rule::SamePlatform, a, b));
        assert!(!agree(Rule::StoredThenRun, a, b));
    }

    #[test]
    fn a_gap_agrees_with_any_value_of_its_subject_and_only_the_run_may_have_it_in_conform() {
        let linux = "checkpoint k: client CLOSE_WAIT rx_queue=1, server FIN_WAIT2; listener CLOSED";
        let gvisor = "checkpoint k: client CLOSE_WAIT, server not visible (CLOSED, or FIN_WAIT2 or TIME_WAIT, which this table does not list); listener CLOSED";
        assert!(agree(Rule::AcrossPlatforms, linux, gvisor));
        assert!(agree(Rule::AcrossPlatforms, gvisor, linux));
        // On one platform, a missing queue figure means an empty queue.
        assert!(!agree(Rule::StoredThenRun, linux, gvisor));
        let gap_only = linux.replace("server FIN_WAIT2", "server not visible (x)");
        assert!(agree(Rule::StoredThenRun, linux, &gap_only));
        assert!(!agree(Rule::StoredThenRun, &gap_only, linux));
        let other = "checkpoint k: client ESTABLISHED, server not visible (x); listener CLOSED";
        assert!(!agree(Rule::AcrossPlatforms, linux, other));
        let q2 = linux.replace("rx_queue=1", "rx_queue=2");
        assert!(!agree(Rule::AcrossPlatforms, linux, &q2));
        let measured = "kernel memory per connection (both ends, TCP slab caches): about 4 KiB";
        let unmeasured =
            "kernel memory per connection: unavailable (cannot read the slab caches here)";
        assert!(agree(Rule::AcrossPlatforms, measured, unmeasured));
        assert!(agree(Rule::StoredThenRun, measured, unmeasured));
        assert!(!agree(Rule::StoredThenRun, unmeasured, measured));
        assert!(!agree(
            Rule::AcrossPlatforms,
            "kernel pages: not visible (x)",
            measured
        ));
    }

    #[test]
    fn a_gap_between_two_values_that_differ_does_not_hide_them() {
        let [a, gap, b] = [
            "checkpoint k: client TIME_WAIT, server CLOSED",
            "checkpoint k: client not visible (x), server CLOSED",
            "checkpoint k: client FIN_WAIT2, server CLOSED",
        ];
        assert!(cells_differ(
            Rule::AcrossPlatforms,
            Section::Steps,
            &[Some(gap), Some(a), Some(b)]
        ));
        assert!(!cells_differ(
            Rule::AcrossPlatforms,
            Section::Steps,
            &[Some(gap), Some(a), Some(a)]
        ));
    }

    #[test]
    fn the_wire_is_compared_per_connection_unless_the_order_between_them_counts() {
        let first = v(&[
            "client > server: SYN",
            "server > client: SYN-ACK",
            "server > client: RST",
            "client c2 > server: SYN",
            "server > client c2: SYN-ACK",
        ]);
        let second = v(&[
            "client > server: SYN",
            "server > client: SYN-ACK",
            "client c2 > server: SYN",
            "server > client: RST",
            "server > client c2: SYN-ACK",
        ]);
        let rule = Rule::SamePlatform;
        assert!(wires_agree(rule, WireOrder::PerConnection, &first, &second));
        assert!(!wires_agree(rule, WireOrder::Global, &first, &second));
        let lines = align_wire(rule, WireOrder::PerConnection, &[&first, &second]);
        assert!(lines.iter().all(|l| !l.differs), "{lines:#?}");
        assert!(align_wire(rule, WireOrder::Global, &[&first, &second])
            .iter()
            .any(|l| l.differs));
        // Inside one connection the order is behavior.
        let mut swapped = first.clone();
        swapped.swap(1, 2);
        assert!(!wires_agree(
            rule,
            WireOrder::PerConnection,
            &first,
            &swapped
        ));
    }

    #[test]
    fn datagrams_group_by_their_pair_of_ends_and_icmp_errors_join_what_they_quote() {
        let first = v(&[
            "client > server: SYN",
            "client > closed port: udp 5",
            "server > client: ICMP port unreachable (about udp client > closed port)",
            "server > client: SYN-ACK",
            "client > server: udp 0",
            "router > client: ICMP host unreachable (about tcp client > server)",
        ]);
        // Another interleaving of the same flows: the TCP connection, the datagrams to the
        // closed port and to the server (UDP, apart from the TCP connection of the same ends).
        let second = v(&[
            "client > closed port: udp 5",
            "client > server: udp 0",
            "client > server: SYN",
            "server > client: SYN-ACK",
            "server > client: ICMP port unreachable (about udp client > closed port)",
            "router > client: ICMP host unreachable (about tcp client > server)",
        ]);
        let rule = Rule::SamePlatform;
        assert!(wires_agree(rule, WireOrder::PerConnection, &first, &second));
        assert!(!wires_agree(rule, WireOrder::Global, &first, &second));
        let groups = by_connection(WireOrder::PerConnection, &[&first]);
        assert_eq!(groups.len(), 3, "{groups:#?}");
        assert_eq!(
            groups[0][0].len(),
            3,
            "the TCP connection and its ICMP error"
        );
        // An error before the datagram it is about is another behavior.
        let mut early = first.clone();
        early.swap(1, 2);
        assert!(!wires_agree(rule, WireOrder::PerConnection, &first, &early));
        // So is the router's error before the segment it answers.
        let mut before = first.clone();
        before.swap(3, 5);
        assert!(!wires_agree(
            rule,
            WireOrder::PerConnection,
            &first,
            &before
        ));
        assert_eq!(
            flow(&Event::parse(
                Section::Wire,
                "server > client: ICMP port unreachable (about udp client > closed port)"
            )),
            Some(("udp", ["client", "closed port"]))
        );
    }

    #[test]
    fn alignment_keeps_equal_steps_on_one_row_and_gives_extra_lines_their_own() {
        let a = v(&[
            "server: listen(backlog 16) -> ok",
            "client: read(100) -> eof",
            "client: write(5) -> error(BrokenPipe, EPIPE)",
        ]);
        let b = v(&[
            "server: listen(backlog 16) -> ok",
            "checkpoint extra: client CLOSED, server CLOSED",
            "client: read(100) -> error(ConnectionReset, ECONNRESET)",
            "client: write(5) -> error(BrokenPipe, EPIPE)",
        ]);
        let lines = align(Rule::AcrossPlatforms, Section::Steps, &[&a, &b]);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(!lines[0].differs);
        assert_eq!(lines[1].cells[0], None);
        assert!(lines[1].differs);
        assert!(lines[2].differs);
        assert_eq!(
            lines[2].cells[0].as_deref(),
            Some("client: read(100) -> eof")
        );
        assert!(!lines[3].differs);
        let c = v(&["client: read(100) -> eof"]);
        let three = align(Rule::AcrossPlatforms, Section::Steps, &[&a, &b, &c]);
        assert!(three.iter().all(|l| l.cells.len() == 3));
    }
}
