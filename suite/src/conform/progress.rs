//! What a run prints as it goes: one line per finished case (on a terminal, with how far the run
//! is and the time left), or with `--progress-json` one JSON line per case for the run that
//! started this one inside a stack (`conform --on`); and what `--pcap` wrote.

use crate::observe::Wire;
use crate::results::{self, Finished};
use crate::runner::CaseRun;
use crate::script::Case;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    tty: bool,
    json: bool,
}

impl Progress {
    pub fn new(total: usize, json: bool) -> Progress {
        use std::io::IsTerminal;
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            tty: std::io::stdout().is_terminal(),
            json,
        }
    }

    pub fn case(&mut self, case: &Case, run: Option<&CaseRun>) {
        self.done += 1;
        let p = results::Progress {
            case: case.id(),
            finished: match run {
                None => Finished::Skipped,
                Some(r) if r.error.is_some() => Finished::Failed,
                Some(r) if r.skipped.is_some() => Finished::Skipped,
                Some(_) => Finished::Done,
            },
            elapsed_ms: run.map_or(0, |r| r.elapsed.as_millis() as u64),
        };
        if self.json {
            println!("{}", p.line());
        } else {
            let mut line = p.human();
            if self.tty {
                line += &counter(
                    self.done,
                    self.total,
                    time_left(self.started.elapsed(), self.done, self.total),
                );
            }
            println!("{line}");
        }
        let _ = std::io::stdout().flush();
    }
}

/// "  [3/20, about 10 s left]".
pub fn counter(done: usize, total: usize, left: Option<String>) -> String {
    match left {
        Some(left) => format!("  [{done}/{total}, {left}]"),
        None => format!("  [{done}/{total}]"),
    }
}

/// "about 40 s left", from the pace so far: None before the first item or after the last.
pub fn time_left(elapsed: Duration, done: usize, total: usize) -> Option<String> {
    if done == 0 || done >= total {
        return None;
    }
    let left = elapsed.as_secs_f64() / done as f64 * (total - done) as f64;
    Some(left_text(left))
}

/// "about 40 s left", "about 3 min left".
pub fn left_text(secs: f64) -> String {
    if secs >= 90.0 {
        format!("about {:.0} min left", secs / 60.0)
    } else {
        format!("about {:.0} s left", secs.max(1.0))
    }
}

/// What `--pcap` wrote (the first run of each case), and why a case has no file.
#[derive(Default)]
pub(crate) struct Pcaps {
    written: usize,
    missing: BTreeMap<String, Vec<String>>,
}

impl Pcaps {
    pub fn add(&mut self, dir: &Path, id: &str, run: Option<&CaseRun>) {
        // A run a knob not implemented here stopped is a skip: its packets are no case's.
        let run = run.filter(|r| r.skipped.is_none());
        let why = match run.map(|r| (&r.frames, &r.wire)) {
            Some((Some(frames), _)) => match crate::pcap::write(dir, id, frames) {
                Ok(_) => {
                    self.written += 1;
                    return;
                }
                Err(e) => format!("cannot write: {e}"),
            },
            Some((None, Wire::NotCaptured { reason })) => format!("not captured: {reason}"),
            Some((None, _)) => "not captured".to_string(),
            None => "skipped".to_string(),
        };
        self.missing.entry(why).or_default().push(id.to_string());
    }

    pub fn report(&self, dir: &Path) {
        println!(
            "pcap: {} file(s) in {} (tcpdump -r FILE, or open in Wireshark)",
            self.written,
            dir.display()
        );
        for (why, ids) in &self.missing {
            println!(
                "pcap: no file for {} case(s), {why}: {}",
                ids.len(),
                ids.join(", ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_follows_the_pace_so_far() {
        let s = Duration::from_secs;
        assert_eq!(time_left(s(10), 0, 4), None);
        assert_eq!(time_left(s(10), 1, 4).as_deref(), Some("about 30 s left"));
        assert_eq!(time_left(s(60), 1, 4).as_deref(), Some("about 3 min left"));
        assert_eq!(time_left(s(10), 4, 4), None);
        assert_eq!(
            counter(1, 4, time_left(s(10), 1, 4)),
            "  [1/4, about 30 s left]"
        );
        assert_eq!(counter(4, 4, None), "  [4/4]");
    }
}
