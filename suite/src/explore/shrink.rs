//! Judging what the stacks observed of a script, and shrinking a race or a finding to the fewest
//! moves that still show it. Every round of shrinking is one batch per stack holding every
//! candidate reduction (a guest's boot costs seconds, so never one launch per candidate). The
//! stacks are behind a trait, so the logic is tested with fake stacks (closures).

use super::moves::{valid_moves, Script};
use super::RunLines;
use crate::observe::event::Section;
use crate::observe::same::{self, AlignedLine, Rule, WireOrder};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What one stack observed of one script: its two runs, or why it could not run it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observed {
    Runs(Vec<RunLines>),
    Error(String),
    /// An op of the script needs a knob this stack's backend does not implement ("not
    /// implemented on windows: what"): no observation, and no error either.
    CannotRun(String),
}

/// Stacks that run batches of scripts (each script twice).
pub trait Stacks {
    /// The stacks' names, in the order indices refer to.
    fn names(&self) -> Vec<String>;
    /// Run each batch on its stack (stack index, scripts), the stacks at once. One answer per
    /// batch: an observation per script, or why the stack could not run the batch at all.
    fn run(&mut self, batches: Vec<(usize, Vec<Script>)>) -> Vec<Result<Vec<Observed>, String>>;
    /// The platform id of each stack, where known (after its first batch): a finding between
    /// two platforms is looked up in their committed snapshots.
    fn platforms(&self) -> Vec<Option<String>> {
        Vec::new()
    }
}

/// Two observations side by side as the matrix aligns them: the steps, then the wire (its
/// `wire: ` lines) connection by connection. A stack without capture shows no wire at all, so
/// wire lines never differ unless both captured.
pub fn side_by_side(rule: Rule, a: &RunLines, b: &RunLines) -> Vec<AlignedLine> {
    let split = |s: &RunLines| {
        let (wire, steps): (Vec<String>, Vec<String>) =
            s.lines.iter().cloned().partition(|l| l.starts_with(WIRE));
        let wire: Vec<String> = wire.iter().map(|l| l[WIRE.len()..].to_string()).collect();
        (steps, wire)
    };
    let ((sa, wa), (sb, wb)) = (split(a), split(b));
    let mut rows = same::align(rule, Section::Steps, &[&sa, &sb]);
    let both = !wa.is_empty() && !wb.is_empty();
    for mut row in same::align_wire(rule, WireOrder::PerConnection, &[&wa, &wb]) {
        for c in row.cells.iter_mut().flatten() {
            c.insert_str(0, WIRE);
        }
        row.differs &= both;
        rows.push(row);
    }
    rows
}

/// How `RunLines` marks a wire event.
pub(super) const WIRE: &str = "wire: ";

/// The differing lines of two observations by `rule`; what a stack cannot show is no
/// difference. Each entry is "line of a  |  line of b", errors by their portable kind.
pub fn differences(rule: Rule, a: &RunLines, b: &RunLines) -> BTreeSet<String> {
    let cell = |c: &Option<String>| match c.as_deref() {
        None => "-".to_string(),
        Some(l) if l.starts_with(WIRE) => l.to_string(),
        Some(l) => same::comparable(Section::Steps, l),
    };
    side_by_side(rule, a, b)
        .into_iter()
        .filter(|r| r.differs)
        .map(|r| format!("{}  |  {}", cell(&r.cells[0]), cell(&r.cells[1])))
        .collect()
}

/// What a script's observations on some stacks say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Every stack agreed with itself and with the others.
    Agree,
    /// A stack observed differently from run to run: the script races with the kernel there.
    Race {
        stack: usize,
        runs: [RunLines; 2],
        lines: BTreeSet<String>,
    },
    /// Two stacks each observed the same on both runs, and differently from each other.
    Finding {
        stacks: [usize; 2],
        seen: [RunLines; 2],
        lines: BTreeSet<String>,
    },
    /// A stack could not run the script (a runner error: a hang, a broken agent).
    Error { stack: usize, reason: String },
    /// A stack cannot run the script here: an op needs a knob it does not implement. Neither an
    /// agreement nor an error.
    CannotRun { stack: usize, reason: String },
}

/// Judge one script from each stack's observation (stack index, observation).
pub fn judge(obs: &[(usize, &Observed)]) -> Judgement {
    let mut stable = Vec::new();
    let mut cannot_run = None;
    for &(stack, o) in obs {
        match o {
            Observed::CannotRun(reason) => {
                cannot_run.get_or_insert_with(|| Judgement::CannotRun {
                    stack,
                    reason: reason.clone(),
                });
            }
            Observed::Error(reason) => {
                return Judgement::Error {
                    stack,
                    reason: reason.clone(),
                }
            }
            Observed::Runs(runs) => {
                // Two runs of one stack differ only where the one rule says so: not by the
                // interleaving of independent connections on the wire.
                let differ = |r: &RunLines| differences(Rule::SamePlatform, &runs[0], r);
                if let Some((k, lines)) = runs
                    .iter()
                    .map(differ)
                    .enumerate()
                    .find(|(_, l)| !l.is_empty())
                {
                    return Judgement::Race {
                        stack,
                        lines,
                        runs: [runs[0].clone(), runs[k].clone()],
                    };
                }
                if let Some(first) = runs.first() {
                    stable.push((stack, first));
                }
            }
        }
    }
    // A stack that cannot run the script has nothing to compare with the others.
    if let Some(v) = cannot_run {
        return v;
    }
    for (i, &(a, sa)) in stable.iter().enumerate() {
        for &(b, sb) in &stable[i + 1..] {
            let lines = differences(Rule::AcrossPlatforms, sa, sb);
            if !lines.is_empty() {
                return Judgement::Finding {
                    stacks: [a, b],
                    seen: [sa.clone(), sb.clone()],
                    lines,
                };
            }
        }
    }
    Judgement::Agree
}

/// What a shrunk script still has to show to count as the same result.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Race { stack: usize },
    Finding { stacks: [usize; 2] },
}

impl Kind {
    fn stacks(&self) -> Vec<usize> {
        match self {
            Kind::Race { stack } => vec![*stack],
            Kind::Finding { stacks } => stacks.to_vec(),
        }
    }
}

/// A race or a finding, shrunk.
#[derive(Clone, Debug)]
pub struct Shrunk {
    pub kind: Kind,
    pub script: Script,
    /// The judgement on the shrunk script (Race or Finding).
    pub judgement: Judgement,
    /// The generated scripts that shrank to this one (indices into the generated list).
    pub from: Vec<usize>,
}

/// The outcome of an exploration.
#[derive(Debug, Default)]
pub struct Report {
    pub scripts: usize,
    pub agreed: usize,
    pub findings: Vec<Shrunk>,
    pub races: Vec<Shrunk>,
    /// (script index, stack, reason)
    pub errors: Vec<(usize, usize, String)>,
    /// Scripts a stack cannot run (a knob not implemented there): (script index, stack, reason).
    pub cannot_run: Vec<(usize, usize, String)>,
    /// Batches sent to the stacks (one per stack per round).
    pub batches: usize,
    pub rounds: usize,
}

/// How many results shrink at once; more wait for the next wave (so a round stays a batch a
/// guest runs in a minute or two).
const WAVE: usize = 12;

/// Whether `v` still shows the result `kind` whose differing lines were `lines`: the same kind
/// on the same stacks, sharing at least one differing line (so that shrinking does not wander
/// off to another, simpler difference).
fn still(kind: &Kind, lines: &BTreeSet<String>, v: &Judgement) -> bool {
    match (kind, v) {
        (
            Kind::Race { stack },
            Judgement::Race {
                stack: s, lines: l, ..
            },
        ) => s == stack && (l.is_empty() || !l.is_disjoint(lines)),
        (
            Kind::Finding { stacks },
            Judgement::Finding {
                stacks: s,
                lines: l,
                ..
            },
        ) => s == stacks && !l.is_disjoint(lines),
        _ => false,
    }
}

/// Run the scripts on the given stacks, one batch per stack, all stacks at once; the judgement of
/// each script. Err: a stack could not run its batch.
fn run_round(
    stacks: &mut dyn Stacks,
    report: &mut Report,
    work: &[(Script, Vec<usize>)],
) -> Result<Vec<Judgement>, String> {
    let names = stacks.names();
    let mut per_stack: BTreeMap<usize, Vec<Script>> = BTreeMap::new();
    let mut where_: Vec<Vec<(usize, usize)>> = Vec::new();
    for (script, on) in work {
        let mut at = Vec::new();
        for &s in on {
            let list = per_stack.entry(s).or_default();
            let k = match list.iter().position(|x| x == script) {
                Some(k) => k,
                None => {
                    list.push(script.clone());
                    list.len() - 1
                }
            };
            at.push((s, k));
        }
        where_.push(at);
    }
    let batches: Vec<(usize, Vec<Script>)> = per_stack.into_iter().collect();
    report.batches += batches.len();
    report.rounds += 1;
    let order: Vec<usize> = batches.iter().map(|(s, _)| *s).collect();
    let answers = stacks.run(batches);
    let mut by_stack: BTreeMap<usize, Vec<Observed>> = BTreeMap::new();
    for (s, a) in order.into_iter().zip(answers) {
        match a {
            Ok(obs) => {
                by_stack.insert(s, obs);
            }
            Err(e) => return Err(format!("{}: {e}", names[s])),
        }
    }
    Ok(where_
        .iter()
        .map(|at| {
            let obs: Vec<(usize, &Observed)> =
                at.iter().map(|&(s, k)| (s, &by_stack[&s][k])).collect();
            judge(&obs)
        })
        .collect())
}

/// A result being shrunk: what it has to keep showing, its smallest script so far.
struct Active {
    kind: Kind,
    lines: BTreeSet<String>,
    script: Script,
    judgement: Judgement,
    from: Vec<usize>,
}

/// Explore: run every script on every stack, then shrink each distinct race and finding.
/// Results whose differing lines are the same are shrunk once (from the shortest script); two
/// results are the same when their shrunk scripts are.
pub fn explore(
    stacks: &mut dyn Stacks,
    scripts: &[Script],
    log: &mut dyn FnMut(&str),
) -> Result<Report, String> {
    let all: Vec<usize> = (0..stacks.names().len()).collect();
    let mut report = Report {
        scripts: scripts.len(),
        ..Default::default()
    };
    let work: Vec<(Script, Vec<usize>)> = scripts
        .iter()
        .map(|s| (valid_moves(s), all.clone()))
        .collect();
    let judgements = run_round(stacks, &mut report, &work)?;
    let mut pending = group(&mut report, &work, &judgements, log);
    pending.reverse();
    let mut done: Vec<Active> = Vec::new();
    let mut active: Vec<Active> = Vec::new();
    loop {
        while active.len() < WAVE {
            match pending.pop() {
                Some(a) => active.push(a),
                None => break,
            }
        }
        if active.is_empty() {
            break;
        }
        let improved = shrink_round(stacks, &mut report, &mut active)?;
        let mut next = Vec::new();
        for (a, better) in active.into_iter().zip(improved) {
            if better {
                next.push(a);
            } else {
                log(&format!(
                    "shrunk to {} move(s): {}",
                    a.script.len(),
                    super::moves::name_of(&a.script)
                ));
                done.push(a);
            }
        }
        active = next;
    }
    merge(&mut report, done);
    Ok(report)
}

/// Count the first round's agreements and errors; group its races and findings by what
/// differed, one result per group, from its shortest script.
fn group(
    report: &mut Report,
    work: &[(Script, Vec<usize>)],
    judgements: &[Judgement],
    log: &mut dyn FnMut(&str),
) -> Vec<Active> {
    let mut groups: BTreeMap<(Kind, BTreeSet<String>), Vec<usize>> = BTreeMap::new();
    for (i, v) in judgements.iter().enumerate() {
        let key = match v {
            Judgement::Agree => {
                report.agreed += 1;
                continue;
            }
            Judgement::Error { stack, reason } => {
                report.errors.push((i, *stack, reason.clone()));
                continue;
            }
            Judgement::CannotRun { stack, reason } => {
                report.cannot_run.push((i, *stack, reason.clone()));
                continue;
            }
            Judgement::Race { stack, lines, .. } => (Kind::Race { stack: *stack }, lines.clone()),
            Judgement::Finding { stacks, lines, .. } => {
                (Kind::Finding { stacks: *stacks }, lines.clone())
            }
        };
        groups.entry(key).or_default().push(i);
    }
    log(&format!(
        "{} of {} scripts agreed; {} race(s) or finding(s) in {} group(s) of the same differing lines; {} error(s)",
        report.agreed,
        work.len(),
        groups.values().map(Vec::len).sum::<usize>(),
        groups.len(),
        report.errors.len()
    ));
    groups
        .into_iter()
        .map(|((kind, lines), members)| {
            let best = *members
                .iter()
                .min_by_key(|&&i| (work[i].0.len(), i))
                .expect("a group has a member");
            Active {
                kind,
                lines,
                script: work[best].0.clone(),
                judgement: judgements[best].clone(),
                from: members,
            }
        })
        .collect()
}

/// One round: every single-move deletion of every active script, on the stacks its result
/// involves; each active result takes its first deletion that still shows it. Which improved.
fn shrink_round(
    stacks: &mut dyn Stacks,
    report: &mut Report,
    active: &mut [Active],
) -> Result<Vec<bool>, String> {
    let mut work = Vec::new();
    let mut owner = Vec::new();
    for (k, a) in active.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for i in 0..a.script.len() {
            let mut c = a.script.clone();
            c.remove(i);
            let c = valid_moves(&c);
            if c.len() < a.script.len() && seen.insert(c.clone()) {
                work.push((c, a.kind.stacks()));
                owner.push(k);
            }
        }
    }
    let judgements = if work.is_empty() {
        Vec::new()
    } else {
        run_round(stacks, report, &work)?
    };
    let mut improved = vec![false; active.len()];
    for ((w, k), v) in work.into_iter().zip(owner).zip(judgements) {
        let a = &mut active[k];
        if !improved[k] && still(&a.kind, &a.lines, &v) {
            a.script = w.0;
            a.judgement = v;
            improved[k] = true;
        }
    }
    Ok(improved)
}

/// Into the report: the same shrunk script is the same result.
fn merge(report: &mut Report, done: Vec<Active>) {
    let mut merged: BTreeMap<(Kind, Script), Shrunk> = BTreeMap::new();
    for a in done {
        merged
            .entry((a.kind.clone(), a.script.clone()))
            .and_modify(|s| s.from.extend(&a.from))
            .or_insert(Shrunk {
                kind: a.kind,
                script: a.script,
                judgement: a.judgement,
                from: a.from,
            });
    }
    for (_, mut s) in merged {
        s.from.sort_unstable();
        match s.kind {
            Kind::Race { .. } => report.races.push(s),
            Kind::Finding { .. } => report.findings.push(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::moves::Move;
    use super::*;
    use crate::script::Side;

    /// A fake stack: a function of the script and the run number (0 or 1).
    type FakeStack = Box<dyn Fn(&Script, usize) -> RunLines>;

    struct Fake {
        stacks: Vec<FakeStack>,
        calls: Vec<usize>,
    }

    impl Stacks for Fake {
        fn names(&self) -> Vec<String> {
            (0..self.stacks.len()).map(|i| format!("fake{i}")).collect()
        }
        fn run(
            &mut self,
            batches: Vec<(usize, Vec<Script>)>,
        ) -> Vec<Result<Vec<Observed>, String>> {
            self.calls.push(batches.len());
            batches
                .into_iter()
                .map(|(s, scripts)| {
                    Ok(scripts
                        .iter()
                        .map(|m| {
                            Observed::Runs(vec![(self.stacks[s])(m, 0), (self.stacks[s])(m, 1)])
                        })
                        .collect())
                })
                .collect()
        }
    }

    fn seen(lines: &[&str]) -> RunLines {
        RunLines {
            lines: lines.iter().map(|l| l.to_string()).collect(),
        }
    }

    /// Both stacks report the same, except where `differs` says the second answers otherwise.
    fn linux(_: &Script, _: usize) -> RunLines {
        seen(&["client: write(5) -> ok(5)", "wire: server RST"])
    }

    fn after(m: &Script, first: (Side, Move), then: (Side, Move)) -> bool {
        let a = m.iter().position(|x| *x == first);
        let b = m.iter().rposition(|x| *x == then);
        matches!((a, b), (Some(a), Some(b)) if a < b)
    }

    fn generated(n: u32, seed: u64) -> Vec<Script> {
        super::super::generate(n, seed)
    }

    #[test]
    fn a_stable_difference_between_stacks_is_a_finding_shrunk_to_its_moves() {
        let other = |m: &Script, _: usize| {
            if after(m, (Side::Server, Move::Close), (Side::Client, Move::Write)) {
                seen(&["client: write(5) -> ok(5)", "wire: server RST-ACK"])
            } else {
                linux(m, 0)
            }
        };
        let mut fake = Fake {
            stacks: vec![Box::new(linux), Box::new(other)],
            calls: Vec::new(),
        };
        let r = explore(&mut fake, &generated(300, 5), &mut |_| {}).unwrap();
        assert!(r.races.is_empty(), "{:?}", r.races);
        assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
        let f = &r.findings[0];
        assert_eq!(
            f.script,
            [(Side::Server, Move::Close), (Side::Client, Move::Write)]
        );
        assert!(f.from.len() > 1, "many generated scripts shrink to it");
        let Judgement::Finding { stacks, lines, .. } = &f.judgement else {
            panic!("{:?}", f.judgement)
        };
        assert_eq!(*stacks, [0, 1]);
        assert_eq!(
            lines.iter().collect::<Vec<_>>(),
            ["wire: server RST  |  wire: server RST-ACK"]
        );
        // One batch per stack and round: never one launch per candidate.
        assert!(fake.calls.iter().all(|&n| n <= 2), "{:?}", fake.calls);
        assert_eq!(r.batches, fake.calls.iter().sum::<usize>());
    }

    #[test]
    fn a_difference_between_runs_is_a_race_not_a_finding() {
        let flaky = |m: &Script, run: usize| {
            if run == 1 && m.contains(&(Side::Client, Move::Kill)) {
                seen(&["client: write(5) -> ok(5)", "wire: server FIN"])
            } else {
                linux(m, run)
            }
        };
        let mut fake = Fake {
            stacks: vec![Box::new(linux), Box::new(flaky)],
            calls: Vec::new(),
        };
        let r = explore(&mut fake, &generated(200, 9), &mut |_| {}).unwrap();
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.races.len(), 1, "{:?}", r.races);
        assert_eq!(r.races[0].script, [(Side::Client, Move::Kill)]);
        assert_eq!(r.races[0].kind, Kind::Race { stack: 1 });
    }

    #[test]
    fn distinct_differences_are_distinct_findings_and_agreement_is_none() {
        let other = |m: &Script, _: usize| {
            let mut lines = vec!["client: write(5) -> ok(5)", "wire: server RST"];
            if m.contains(&(Side::Server, Move::Poll)) {
                lines.push("server: poll(0 ms) -> events(IN|OUT)");
            }
            if m.contains(&(Side::Client, Move::Linger0)) {
                lines[1] = "wire: server RST-ACK";
            }
            seen(&lines)
        };
        let mut fake = Fake {
            stacks: vec![Box::new(linux), Box::new(other)],
            calls: Vec::new(),
        };
        let r = explore(&mut fake, &generated(300, 1), &mut |_| {}).unwrap();
        let mut found: Vec<Script> = r.findings.iter().map(|f| f.script.clone()).collect();
        found.sort();
        assert_eq!(
            found,
            [
                vec![(Side::Client, Move::Linger0)],
                vec![(Side::Server, Move::Poll)]
            ]
        );
        let mut same = Fake {
            stacks: vec![Box::new(linux), Box::new(linux)],
            calls: Vec::new(),
        };
        let r = explore(&mut same, &generated(50, 1), &mut |_| {}).unwrap();
        assert_eq!((r.agreed, r.findings.len(), r.races.len()), (50, 0, 0));
        assert_eq!(r.rounds, 1);
    }

    #[test]
    fn a_script_a_stack_cannot_run_is_neither_agreement_nor_error_nor_finding() {
        let runs = Observed::Runs(vec![linux(&Vec::new(), 0), linux(&Vec::new(), 1)]);
        let why = "not implemented on windows: the default SIGPIPE action".to_string();
        let cannot = Observed::CannotRun(why.clone());
        let v = judge(&[(0, &runs), (1, &cannot)]);
        assert_eq!(
            v,
            Judgement::CannotRun {
                stack: 1,
                reason: why.clone()
            }
        );
        // A runner error elsewhere is still an error.
        let broken = Observed::Error("runner error: agent hung".into());
        let v = judge(&[(0, &cannot), (1, &broken)]);
        assert!(matches!(v, Judgement::Error { stack: 1, .. }), "{v:?}");
        // Counted apart: no error, no agreement, nothing to shrink.
        struct Cannot;
        impl Stacks for Cannot {
            fn names(&self) -> Vec<String> {
                vec!["a".into(), "b".into()]
            }
            fn run(&mut self, b: Vec<(usize, Vec<Script>)>) -> Vec<Result<Vec<Observed>, String>> {
                let one = |s: usize, n: usize| match s {
                    0 => vec![Observed::Runs(vec![seen(&["x"]), seen(&["x"])]); n],
                    _ => vec![Observed::CannotRun("not implemented on windows: y".into()); n],
                };
                b.into_iter().map(|(s, v)| Ok(one(s, v.len()))).collect()
            }
        }
        let r = explore(&mut Cannot, &generated(5, 1), &mut |_| {}).unwrap();
        assert_eq!((r.agreed, r.errors.len(), r.cannot_run.len()), (0, 0, 5));
        assert!(r.findings.is_empty() && r.races.is_empty());
        assert_eq!(r.rounds, 1);
    }

    #[test]
    fn what_a_stack_cannot_show_is_no_difference() {
        let a = seen(&["checkpoint end: client TIME_WAIT, server CLOSED"]);
        let b = seen(&["checkpoint end: client not visible (CLOSED, or TIME_WAIT, which this table does not list), server CLOSED"]);
        assert!(differences(Rule::AcrossPlatforms, &a, &b).is_empty());
        let c = seen(&["checkpoint end: client FIN_WAIT2, server CLOSED"]);
        assert_eq!(differences(Rule::AcrossPlatforms, &a, &c).len(), 1);
        // A stack that captured nothing has no wire to compare.
        let d = seen(&[
            "checkpoint end: client TIME_WAIT, server CLOSED",
            "wire: client FIN",
        ]);
        assert!(differences(Rule::AcrossPlatforms, &a, &d).is_empty());
    }

    #[test]
    fn runs_that_differ_only_in_how_independent_connections_interleave_are_no_race() {
        let run = |second_syn_first: bool| {
            let mut lines = vec![
                "client c2: connect -> ok",
                "wire: client > server: SYN",
                "wire: server > client: RST",
            ];
            let at = if second_syn_first { 2 } else { 3 };
            lines.insert(at, "wire: client c2 > server: SYN");
            seen(&lines)
        };
        let runs = Observed::Runs(vec![run(false), run(true)]);
        assert_eq!(judge(&[(0, &runs)]), Judgement::Agree);
        // Inside one connection, the order is behavior: that is a race.
        let swapped = seen(&[
            "client c2: connect -> ok",
            "wire: server > client: RST",
            "wire: client > server: SYN",
            "wire: client c2 > server: SYN",
        ]);
        let runs = Observed::Runs(vec![run(false), swapped]);
        assert!(matches!(judge(&[(0, &runs)]), Judgement::Race { .. }));
    }
}
