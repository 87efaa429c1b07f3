//! The rounds of a run: round 1 is compared with the snapshots, every later round (`--repeat`)
//! with round 1. The decisions are pure functions (`judge_round`, `exit_code`), tested without
//! running a case: no real case is reliably unstable.

use super::progress::{Pcaps, Progress};
use super::{compare, order, Options, Plan};
use crate::results::{CaseResult, Status};
use crate::runner::{self, CaseRun, RunConfig};
use crate::script::Case;
use crate::select::unmet_needs;
use crate::snapshot;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the rounds produced: one result per case, in catalog order, and the wall time.
pub(crate) struct Done {
    pub results: Vec<CaseResult>,
    pub wall: Duration,
}

/// Run the plan's cases `o.repeat` times; round 1 decides each status from the snapshots, later
/// rounds can only make a case unstable or failed.
pub(crate) fn run(plan: &Plan, o: &Options) -> Done {
    let started = Instant::now();
    let mut results: Vec<CaseResult> = Vec::new();
    let mut first: BTreeMap<String, Rendered> = BTreeMap::new();
    let mut progress = Progress::new(plan.cases.len() * o.repeat as usize, o.progress_json);
    let mut pcaps = Pcaps::default();
    for round in 1..=o.repeat {
        if o.repeat > 1 {
            println!("-- run {round} of {}", o.repeat);
        }
        let runs = run_all(&plan.cases, &plan.cfg, o.jobs, |c, r| progress.case(c, r));
        for (case, run) in plan.cases.iter().zip(runs) {
            let id = case.id();
            if round == 1 {
                let r = compare::compare(
                    case,
                    &run,
                    &plan.stored[&id],
                    &plan.base,
                    o.bless,
                    &plan.cfg,
                );
                results.push(r);
                if let Some(dir) = &o.pcap {
                    pcaps.add(dir, &id, run.as_ref());
                }
                if let Some(run) = &run {
                    first.insert(id, rendered(run, &case.id()));
                }
                continue;
            }
            let (Some(run), Some(first)) = (run, first.get(&id)) else {
                continue;
            };
            let r = results
                .iter_mut()
                .find(|r| r.case == id)
                .expect("reported in round 1");
            judge_round(r, round, first, &rendered(&run, &id), run.error.as_ref());
        }
    }
    if let Some(dir) = &o.pcap {
        pcaps.report(dir);
    }
    Done {
        results,
        wall: started.elapsed(),
    }
}

/// What a round observed of a case, as compared between rounds: the observation and the wire.
pub fn rendered(run: &CaseRun, id: &str) -> Rendered {
    Rendered {
        observation: run.observation.render(),
        wire: run.wire.render(id),
    }
}

/// A round's snapshot bodies: the observation and, where captured, the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub observation: String,
    pub wire: Option<String>,
}

impl Rendered {
    /// Whether another round of the same case on this platform observed the same, by the one rule
    /// (`SamePlatform`): the order in which independent connections interleave on the wire is no
    /// difference, the order inside one connection is. A wire one round could not capture is not
    /// compared (that round's wire is not an observation).
    pub fn same_as(&self, other: &Rendered) -> bool {
        let rule = crate::observe::same::Rule::SamePlatform;
        let agree = |a: &str, b: &str| crate::observe::agrees_by(rule, a, b);
        agree(&self.observation, &other.observation)
            && match (&self.wire, &other.wire) {
                (Some(a), Some(b)) => agree(a, b),
                _ => true,
            }
    }

    fn text(&self) -> String {
        self.observation.clone() + self.wire.as_deref().unwrap_or_default()
    }
}

/// A later round of a case, against round 1's observation `first`: a different observation makes
/// the case unstable (with the difference, the first time), a runner error makes it failed.
pub fn judge_round(
    r: &mut CaseResult,
    round: u32,
    first: &Rendered,
    this: &Rendered,
    error: Option<&String>,
) {
    if !first.same_as(this) && r.status != Status::Unstable {
        r.status = Status::Unstable;
        r.diff = Some(format!(
            "run 1 and run {round} differ:\n{}",
            snapshot::diff(&first.text(), &this.text())
        ));
    }
    if let (Some(e), None) = (error, &r.error) {
        r.status = Status::Failed;
        r.error = Some(e.clone());
    }
}

/// The exit code the statuses give: 1 when behavior changed, was unstable, or a case failed; with
/// `--bless`, changes are accepted, so only unstable and failed cases give 1.
pub fn exit_code(statuses: impl IntoIterator<Item = Status>, bless: bool) -> i32 {
    let fails = |s: &Status| match s {
        Status::Unstable | Status::Failed => true,
        Status::Changed => !bless,
        Status::Passed | Status::New | Status::Skipped => false,
    };
    i32::from(statuses.into_iter().any(|s| fails(&s)))
}

/// Run every case (in parallel up to `jobs`, the longest first: see `order`), calling `done` as
/// each finishes; returns the runs in catalog order (None for a skipped case).
fn run_all(
    cases: &[Case],
    cfg: &RunConfig,
    jobs: Option<usize>,
    mut done: impl FnMut(&Case, Option<&CaseRun>),
) -> Vec<Option<CaseRun>> {
    let jobs = jobs
        .unwrap_or_else(|| cfg.default_jobs(cases.len()).0)
        .max(1);
    let mut results: Vec<Option<CaseRun>> = (0..cases.len()).map(|_| None).collect();
    let platform = platforms::platform_id();
    let order = order::longest_first(cases, &order::previous(platform));
    let (tx, rx) = mpsc::channel::<(usize, CaseRun)>();
    std::thread::scope(|s| {
        let mut next = 0;
        let mut running = 0;
        let mut finished = 0;
        while finished < cases.len() {
            while running < jobs && next < cases.len() {
                let i = order[next];
                next += 1;
                if unmet_needs(&cases[i], cfg).is_some() {
                    done(&cases[i], None);
                    finished += 1;
                    continue;
                }
                let tx = tx.clone();
                let case = &cases[i];
                running += 1;
                s.spawn(move || {
                    let _ = tx.send((i, runner::run_case(case, cfg)));
                });
            }
            if running == 0 {
                continue;
            }
            let (i, run) = rx.recv().expect("case threads send before they end");
            running -= 1;
            finished += 1;
            done(&cases[i], Some(&run));
            results[i] = Some(run);
        }
    });
    let ran = cases.iter().zip(&results);
    order::remember(
        platform,
        ran.filter_map(|(c, r)| Some((c.id(), r.as_ref()?.elapsed))),
    );
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed() -> CaseResult {
        CaseResult::new("close/orderly_idle".into())
    }

    /// A round's bodies: an observation with these steps and, if given, a wire of these events.
    fn seen(steps: &[&str], wire: Option<&[&str]>) -> Rendered {
        let obs = crate::observe::Observation {
            case: "x/y".into(),
            intent: String::new(),
            steps: steps.iter().map(|s| s.to_string()).collect(),
            timing: Vec::new(),
        };
        let wire = wire.map(|w| crate::observe::Wire::Captured {
            events: w.iter().map(|s| s.to_string()).collect(),
        });
        Rendered {
            observation: obs.render(),
            wire: wire.and_then(|w| w.render("x/y")),
        }
    }

    #[test]
    fn rounds_that_observe_differently_make_the_case_unstable_and_the_run_exit_1() {
        let mut r = passed();
        let ok = seen(&["client: close -> ok"], None);
        judge_round(&mut r, 2, &ok, &ok.clone(), None);
        assert_eq!(r.status, Status::Passed);
        assert_eq!(exit_code([r.status], false), 0);
        let reset = seen(
            &["client: close -> error(ConnectionReset, ECONNRESET)"],
            None,
        );
        judge_round(&mut r, 3, &ok, &reset, None);
        assert_eq!(r.status, Status::Unstable);
        let diff = r.diff.clone().unwrap();
        assert!(diff.starts_with("run 1 and run 3 differ:"), "{diff}");
        assert!(diff.contains("client: close -> error"), "{diff}");
        // The first difference is the one shown.
        judge_round(&mut r, 4, &ok, &seen(&["client: close -> eof"], None), None);
        assert_eq!(r.diff.as_deref(), Some(diff.as_str()));
        assert_eq!(exit_code([Status::Passed, r.status], false), 1);
        assert_eq!(
            exit_code([r.status], true),
            1,
            "--bless does not accept instability"
        );
    }

    #[test]
    fn rounds_are_compared_by_the_one_rule_per_connection_not_by_bytes() {
        let steps = ["client: connect -> ok", "client c2: connect -> ok"];
        let a = [
            "client > server: SYN",
            "server > client: RST",
            "client c2 > server: SYN",
        ];
        // The second connection's SYN before the first connection's RST: independent connections
        // interleaved differently, the same behavior.
        let b = [a[0], a[2], a[1]];
        let mut r = passed();
        judge_round(
            &mut r,
            2,
            &seen(&steps, Some(&a)),
            &seen(&steps, Some(&b)),
            None,
        );
        assert_eq!(r.status, Status::Passed, "{:?}", r.diff);
        // Inside one connection the order is behavior.
        let c = ["server > client: RST", "client > server: SYN", a[2]];
        judge_round(
            &mut r,
            3,
            &seen(&steps, Some(&a)),
            &seen(&steps, Some(&c)),
            None,
        );
        assert_eq!(r.status, Status::Unstable);
        // A round whose wire was not captured compares its observation only.
        let mut q = passed();
        judge_round(
            &mut q,
            2,
            &seen(&steps, Some(&a)),
            &seen(&steps, None),
            None,
        );
        assert_eq!(q.status, Status::Passed);
    }

    #[test]
    fn a_runner_error_in_a_later_round_fails_the_case() {
        let mut r = passed();
        let x = seen(&["client: close -> ok"], None);
        judge_round(&mut r, 2, &x, &x.clone(), Some(&"agent hung".to_string()));
        assert_eq!(
            (r.status, r.error.as_deref()),
            (Status::Failed, Some("agent hung"))
        );
        assert_eq!(exit_code([r.status], true), 1);
    }

    #[test]
    fn only_changes_and_failures_exit_1_and_bless_accepts_changes() {
        use Status::*;
        assert_eq!(exit_code([Passed, New, Skipped], false), 0);
        assert_eq!(exit_code([Passed, Changed], false), 1);
        assert_eq!(exit_code([Passed, Changed, New], true), 0);
        assert_eq!(exit_code([Failed], false), 1);
        assert_eq!(exit_code([], false), 0);
    }
}
