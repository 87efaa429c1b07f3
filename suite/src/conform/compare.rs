//! Round 1 of a case against its snapshots: passed, changed or new, the difference shown, and the
//! run's observation written beside the snapshot (pending, or accepted with --bless).

use super::{Baseline, Stored};
use crate::observe;
use crate::results::{CaseResult, Status};
use crate::runner::{CaseRun, RunConfig};
use crate::script::Case;
use crate::select::unmet_needs;
use crate::snapshot;
use std::path::{Path, PathBuf};

/// The result of a case's first round; a skipped case (no run) says why.
pub(crate) fn compare(
    case: &Case,
    run: &Option<CaseRun>,
    stored: &Stored,
    base: &Baseline,
    bless: bool,
    cfg: &RunConfig,
) -> CaseResult {
    let id = case.id();
    let mut r = CaseResult::new(id.clone());
    let Some(run) = run else {
        r.status = Status::Skipped;
        r.skip_reason = unmet_needs(case, cfg);
        return r;
    };
    // A knob not implemented here stopped the walk: what ran before it is no observation of the
    // case, so nothing is compared or written. A runner failure is never hidden as a skip.
    if let (Some(why), None) = (&run.skipped, &run.error) {
        r.status = Status::Skipped;
        r.skip_reason = Some(why.clone());
        r.elapsed_ms = run.elapsed.as_millis() as u64;
        return r;
    }
    record_run(&mut r, run);
    if let Some(e) = &run.error {
        r.status = Status::Failed;
        r.error = Some(e.clone());
        return r;
    }
    let (obs_path, wire_path) = snapshot::case_paths(&base.write_dir, &id);
    let (old_obs, old_wire) = snapshot::case_paths(&base.compared_dir, &id);
    let files = [
        (obs_path, old_obs, Some(run.observation.render()), &stored.0),
        // A run that could not capture compares what it observed and leaves the wire alone.
        (wire_path, old_wire, run.wire.render(&id), &stored.1),
    ];
    let mut diffs = Vec::new();
    for (path, old_path, new, old) in files {
        let Some(new) = new else { continue };
        let file = File {
            path: &path,
            old_path: &old_path,
            new: &new,
            old: old.as_deref(),
        };
        if judge_file(&mut r, &file, base, bless, &mut diffs) {
            write_file(&mut r, &path, &new, base, bless);
        }
    }
    if !diffs.is_empty() {
        r.diff = Some(diffs.join("\n"));
    }
    r
}

/// What a run saw of a case, into its result.
fn record_run(r: &mut CaseResult, run: &CaseRun) {
    r.signature = observe::signature(&run.observation, &run.wire);
    r.observation = Some(run.observation.clone());
    r.wire = Some(run.wire.clone());
    r.raw_timings = run.raw_timings.clone();
    r.measurements = run.measurements.clone();
    r.wire_raw = run.wire_raw.clone();
    r.elapsed_ms = run.elapsed.as_millis() as u64;
}

/// One snapshot file of a case: where this run writes it, the one compared, and both bodies.
struct File<'a> {
    path: &'a PathBuf,
    old_path: &'a PathBuf,
    new: &'a str,
    old: Option<&'a str>,
}

/// Judge one file into the case's status (and its difference into `diffs`); whether the run's
/// body is to be written.
fn judge_file(
    r: &mut CaseResult,
    f: &File,
    base: &Baseline,
    bless: bool,
    diffs: &mut Vec<String>,
) -> bool {
    match f.old {
        // Another platform's snapshot: this platform has none of its own, so every case is new
        // here; what differs from the nearest platform is shown, never a failure.
        Some(old) if base.is_fallback() => {
            r.status = Status::New;
            if old != f.new {
                r.differs_from = Some(base.compared.clone());
                diffs.push(format!(
                    "{} (of {})\n{}",
                    f.old_path.display(),
                    base.compared,
                    snapshot::diff(old, f.new)
                ));
            }
        }
        Some(old) if observe::agrees(old, f.new) => {
            // The observation is unchanged; --bless still refreshes a header that is not this
            // run's (the kernel that confirmed it, insta's exact format). A run that agrees only
            // through "not visible" lines (rootless) never overwrites what root saw.
            return bless && old == f.new && snapshot::differs_from_this_run(f.old_path, f.new);
        }
        Some(old) => {
            r.status = Status::Changed;
            diffs.push(format!(
                "{}\n{}",
                f.path.display(),
                snapshot::diff(old, f.new)
            ));
        }
        None => {
            if r.status == Status::Passed {
                r.status = Status::New;
            }
        }
    }
    true
}

/// Write the run's body: into an artifact, even --bless writes pending files (`import --accept`,
/// and `conform --on ... --bless`, accept them into the checkout).
fn write_file(r: &mut CaseResult, path: &Path, new: &str, base: &Baseline, bless: bool) {
    let written = if bless && base.write_dir == base.compared_dir {
        snapshot::write_accepted(path, new).map(|_| path.to_path_buf())
    } else {
        snapshot::write_pending(path, new)
    };
    if let Err(e) = written {
        r.status = Status::Failed;
        r.error = Some(format!("cannot write {}: {e}", path.display()));
    }
}
