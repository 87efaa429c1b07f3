//! Which cases a run takes (`--filter`), and which of them this machine can run (a case's needs
//! against the capabilities probed in `RunConfig`; `--require`).

use crate::runner::RunConfig;
use crate::script::{Case, Need};

/// The capabilities `--require` and `--filter needs:` name.
pub const NEEDS: [&str; 5] = ["isolation", "capture", "lab", "ipv6", "sysctl"];

/// The first required capability this run lacks, with why.
pub fn missing_requirement(require: &[String], cfg: &RunConfig) -> Option<String> {
    require.iter().find_map(|need| {
        let r = match need.as_str() {
            "isolation" => &cfg.isolation,
            "capture" => &cfg.capture,
            "lab" => &cfg.lab,
            "ipv6" => &cfg.ipv6,
            "sysctl" => &cfg.sysctl,
            _ => return Some(format!("{need}: not a capability")),
        };
        r.as_ref()
            .err()
            .map(|why| format!("{need} is required (--require) but unavailable: {why}"))
    })
}

/// Whether a filter selects a case: a prefix of its id ("close", "close/", "close/orderly_idle"),
/// a part of its name ("unread"), or `needs:<capability>` ("needs:lab").
pub fn matches(case: &Case, filter: &str) -> bool {
    if let Some(need) = filter.strip_prefix("needs:") {
        return case.needs.iter().any(|n| n.to_string() == need);
    }
    case.id().starts_with(filter) || case.name.contains(filter)
}

/// Select cases by filters; an unknown filter is an error that lists the closest ids.
pub fn select(all: Vec<Case>, filters: &[String]) -> Result<Vec<Case>, String> {
    if filters.is_empty() {
        return Ok(all);
    }
    for f in filters {
        if !all.iter().any(|c| matches(c, f)) {
            let mut near: Vec<(usize, String)> =
                all.iter().map(|c| (distance(f, &c.id()), c.id())).collect();
            near.sort();
            let names: Vec<String> = near.into_iter().take(5).map(|(_, id)| id).collect();
            return Err(format!(
                "no case matches --filter {f:?}; closest: {}",
                names.join(", ")
            ));
        }
    }
    Ok(all
        .into_iter()
        .filter(|c| filters.iter().any(|f| matches(c, f)))
        .collect())
}

/// Edit distance of `needle` to the closest substring-sized window of `id` (so "lnger" finds linger/...).
fn distance(needle: &str, id: &str) -> usize {
    let a: Vec<char> = needle.chars().collect();
    let b: Vec<char> = id.chars().collect();
    // Semi-global alignment: free start and end in `id`.
    let mut prev = vec![0usize; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev.into_iter().min().unwrap_or(0)
}

/// Why a case cannot run here, if it cannot.
pub fn unmet_needs(case: &Case, cfg: &RunConfig) -> Option<String> {
    case.needs.iter().find_map(|n| {
        let r = match n {
            Need::Isolation => &cfg.isolation,
            Need::Capture => &cfg.capture,
            Need::Lab => &cfg.lab,
            Need::Ipv6 => &cfg.ipv6,
            Need::Sysctl => &cfg.sysctl,
        };
        r.as_ref().err().map(|why| format!("needs {n}: {why}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    #[test]
    fn unknown_filter_lists_close_matches() {
        let e = select(catalog::all(), &["lnger/zero".to_string()]).unwrap_err();
        assert!(e.contains("linger/zero_abortive_close"), "{e}");
        let ok = select(catalog::all(), &["linger/".to_string()]).unwrap();
        assert!(ok.iter().all(|c| c.family == "linger") && !ok.is_empty());
        let close = select(catalog::all(), &["close".to_string()]).unwrap();
        assert!(
            close
                .iter()
                .all(|c| c.family == "close" || c.name.contains("close")),
            "a family prefix"
        );
        assert!(!close
            .iter()
            .any(|c| c.family == "after_close" && !c.name.contains("close")));
    }
}
