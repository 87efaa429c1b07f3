//! The end of a run: the table of every case, the differences, the counts (with what was not
//! compared: skipped cases and wires), results.json, and the exit code.

use super::rounds::{exit_code, Done};
use super::{capability_text, Options, Plan};
use crate::observe::Wire;
use crate::results::{CaseResult, RunResults, Status};
use std::collections::BTreeMap;

/// The first lines of a run: what runs where, with which capabilities.
pub(crate) fn header(plan: &Plan, o: &Options, privileges: Option<String>) {
    let (base, cfg) = (&plan.base, &plan.cfg);
    println!(
        "sockconform: {} case(s) on {} ({}; {}); isolation {}; capture {}; TCP table {}",
        plan.cases.len(),
        base.id,
        crate::snapshot::os(),
        platforms::platform_detail(),
        capability_text(&cfg.isolation),
        capability_text(&cfg.capture),
        cfg.table.describe()
    );
    if let Some(how) = privileges {
        println!("{how}");
    }
    if let (None, (_, Some(why))) = (o.jobs, cfg.default_jobs(plan.cases.len())) {
        println!("{why} (--jobs N overrides)");
    }
    if base.is_fallback() {
        println!(
            "no snapshots of {} yet: comparing with the nearest recorded platform, snapshots/{}/; differences are shown, not failures (`--bless` records {} under snapshots/{}/)",
            base.id, base.compared, base.id, base.id
        );
    }
}

/// Print the summary, write results.json when asked; the exit code.
pub(crate) fn summarize(done: &Done, o: &Options, plan: &Plan) -> i32 {
    let results = &done.results;
    let mut sorted: Vec<&CaseResult> = results.iter().collect();
    sorted.sort_by(|a, b| a.case.cmp(&b.case));
    table(&sorted);
    for r in &sorted {
        if let Some(d) = &r.diff {
            println!("\n== {} {:?}\n{d}", r.case, r.status);
        }
        if let Some(e) = &r.error {
            println!("\n== {} failed\n{e}", r.case);
        }
    }
    counts(done, o);
    println!("{}", not_compared(results));
    if plan.base.is_fallback() {
        let differ = results.iter().filter(|r| r.differs_from.is_some()).count();
        println!(
            "{differ} case(s) differ from {} (the nearest recorded platform): shown above, not a failure",
            plan.base.compared
        );
    }
    let json = o
        .json
        .clone()
        .or_else(|| o.artifact.as_ref().map(|a| a.join(crate::results::FILE)));
    if let Some(path) = &json {
        if let Err(e) = run_results(done, o, plan).write(path) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return 2;
        }
        println!("results written to {}", path.display());
    }
    advice(results, o, plan);
    exit_code(results.iter().map(|r| r.status), o.bless)
}

/// One row per case: its id, its signature, its status.
fn table(sorted: &[&CaseResult]) {
    let w_case = sorted
        .iter()
        .map(|r| r.case.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let w_sig = sorted
        .iter()
        .map(|r| r.signature.len())
        .max()
        .unwrap_or(7)
        .clamp(7, 60);
    println!();
    println!("{:<w_case$}  {:<w_sig$}  status", "case", "outcome");
    println!(
        "{}  {}  {}",
        "-".repeat(w_case),
        "-".repeat(w_sig),
        "-".repeat(8)
    );
    for r in sorted {
        let status = match (&r.status, &r.skip_reason) {
            (Status::Skipped, Some(why)) => format!("skipped: {why}"),
            (s, _) => s.to_string(),
        };
        let mut sig = r.signature.clone();
        if sig.len() > w_sig {
            sig.truncate(w_sig - 1);
            sig.push('…');
        }
        println!("{:<w_case$}  {:<w_sig$}  {status}", r.case, sig);
    }
}

fn count(results: &[CaseResult], s: Status) -> usize {
    results.iter().filter(|r| r.status == s).count()
}

/// "52 passed, 0 changed, ..." and the wall time.
fn counts(done: &Done, o: &Options) {
    let results = &done.results;
    let parts: Vec<String> = Status::ALL
        .iter()
        .map(|s| format!("{} {s}", count(results, *s)))
        .collect();
    println!("\n{}", parts.join(", "));
    let sum: u64 = results.iter().map(|r| r.elapsed_ms).sum();
    let slowest = results.iter().max_by_key(|r| r.elapsed_ms);
    println!(
        "wall time {:.2} s; sum of case times {:.2} s; slowest case {} ({:.2} s){}",
        done.wall.as_secs_f64(),
        sum as f64 / 1000.0,
        slowest.map(|r| r.case.as_str()).unwrap_or("-"),
        slowest.map(|r| r.elapsed_ms).unwrap_or(0) as f64 / 1000.0,
        if o.repeat > 1 {
            format!("; {} runs", o.repeat)
        } else {
            String::new()
        }
    );
    if o.repeat > 1 && count(results, Status::Unstable) == 0 {
        println!("all {} runs observed the same for every case", o.repeat);
    }
}

/// What this run did not compare, in one line CI's log shows: the skipped cases and the cases
/// whose wire was not compared (not captured, or the capture dropped packets), each grouped by
/// reason. "skipped 0; wire not compared for 0 case(s)" when everything was compared.
pub(crate) fn not_compared(results: &[CaseResult]) -> String {
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wires: BTreeMap<&str, usize> = BTreeMap::new();
    for r in results {
        match (&r.status, &r.wire) {
            (Status::Skipped, _) => {
                *skipped
                    .entry(r.skip_reason.as_deref().unwrap_or("no reason recorded"))
                    .or_default() += 1
            }
            (_, Some(Wire::NotCaptured { reason })) => *wires.entry(reason).or_default() += 1,
            _ => {}
        }
    }
    let groups = |m: &BTreeMap<&str, usize>| {
        if m.is_empty() {
            return String::new();
        }
        let g: Vec<String> = m.iter().map(|(why, n)| format!("{n}: {why}")).collect();
        format!(" ({})", g.join("; "))
    };
    format!(
        "skipped {}{}; wire not compared for {} case(s){}",
        skipped.values().sum::<usize>(),
        groups(&skipped),
        wires.values().sum::<usize>(),
        groups(&wires)
    )
}

/// The run as results.json holds it.
fn run_results(done: &Done, o: &Options, plan: &Plan) -> RunResults {
    let (base, cfg) = (&plan.base, &plan.cfg);
    RunResults {
        platform: base.id.clone(),
        platform_detail: platforms::platform_detail().to_string(),
        kernel: platforms::kernel_release().to_string(),
        compared_with: base.compared.clone(),
        os: crate::snapshot::os().to_string(),
        isolation: capability_text(&cfg.isolation),
        capture: capability_text(&cfg.capture),
        lab: capability_text(&cfg.lab),
        tcp_table: cfg.table.describe(),
        repeat: o.repeat,
        wall_ms: done.wall.as_millis() as u64,
        sum_of_case_ms: done.results.iter().map(|r| r.elapsed_ms).sum(),
        cases: done.results.clone(),
    }
}

/// What to do next, by what the run found.
fn advice(results: &[CaseResult], o: &Options, plan: &Plan) {
    let n = |s| count(results, s);
    if o.bless {
        let accepted =
            n(Status::Changed) + n(Status::Unstable) + n(Status::Failed) + n(Status::New);
        if accepted > 0 {
            println!(
                "accepted the observations of {accepted} case(s) into {}/",
                plan.base.write_dir.display()
            );
        }
        return;
    }
    if n(Status::New) > 0 {
        println!("{} case(s) have no snapshot yet: review them with `cargo insta review` or accept with `cargo xtask conform --bless`", n(Status::New));
    }
    if n(Status::Failed) > 0 {
        println!(
            "{} case(s) failed to run to the end: see the errors above",
            n(Status::Failed)
        );
    }
    if n(Status::Changed) + n(Status::Unstable) > 0 {
        println!("behavior differs from the snapshots: review with `cargo insta review` (or accept all with `cargo xtask conform --bless`)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_not_compared_is_counted_with_its_reasons() {
        let mut a = CaseResult::new("a/x".into());
        a.status = Status::Skipped;
        a.skip_reason = Some("needs lab: no nft".into());
        let mut b = a.clone();
        b.case = "a/y".into();
        let mut c = CaseResult::new("a/z".into());
        c.wire = Some(Wire::NotCaptured {
            reason: "incomplete: the kernel dropped 3 captured packet(s)".into(),
        });
        let mut d = CaseResult::new("a/w".into());
        d.wire = Some(Wire::Captured { events: vec![] });
        assert_eq!(
            not_compared(&[d.clone()]),
            "skipped 0; wire not compared for 0 case(s)"
        );
        assert_eq!(
            not_compared(&[a, b, c, d]),
            "skipped 2 (2: needs lab: no nft); wire not compared for 1 case(s) \
             (1: incomplete: the kernel dropped 3 captured packet(s))"
        );
    }
}
