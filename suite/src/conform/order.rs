//! The order cases start in: longest first, by how long each took in this machine's previous run
//! of the same platform. A run of many short cases and one long one then ends soon after the long
//! one, instead of starting it last behind a queue (`--jobs` bounds the cases at once). Each case
//! runs in a namespace of its own, so the order changes no observation, only the wall time.
//!
//! The durations are kept beside the binaries (`target/<profile>/`), one small JSON file per
//! platform; a case never timed before starts first, in catalog order, as every case of a first
//! run does.

use crate::script::Case;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Seconds each case took in the previous run, by case id.
pub(crate) type Durations = BTreeMap<String, f64>;

fn file(platform: &str) -> Option<PathBuf> {
    let dir = crate::paths::bin_dir().ok()?;
    Some(dir.join(format!("conform-durations-{platform}.json")))
}

/// The durations of the previous run on `platform` (none when there was none, or it is
/// unreadable: the order then falls back to the catalog's).
pub(crate) fn previous(platform: &str) -> Durations {
    file(platform)
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Keep this run's durations for the next one, over the previous run's (a filtered run updates
/// only its own cases). Failing to write only loses the ordering hint.
pub(crate) fn remember(platform: &str, ran: impl IntoIterator<Item = (String, Duration)>) {
    let mut all = previous(platform);
    all.extend(ran.into_iter().map(|(id, d)| (id, d.as_secs_f64())));
    if let (Some(f), Ok(text)) = (file(platform), serde_json::to_string_pretty(&all)) {
        let _ = std::fs::write(f, text);
    }
}

/// The indices of `cases` in the order to start them: never-timed cases first (they may be
/// long), in catalog order, then the rest longest first.
pub(crate) fn longest_first(cases: &[Case], known: &Durations) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cases.len()).collect();
    // A stable sort: equal keys keep the catalog's order.
    order.sort_by(|&a, &b| {
        let key = |i: usize| known.get(&cases[i].id()).copied().unwrap_or(f64::INFINITY);
        key(b).total_cmp(&key(a))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Case;

    fn case(name: &'static str) -> Case {
        let mut c = Case::new("Verify: nothing.", Vec::new());
        c.family = "t";
        c.name = name;
        c
    }

    #[test]
    fn the_longest_known_case_starts_first_and_unknown_ones_before_it() {
        let cases = [
            case("short"),
            case("new_a"),
            case("long"),
            case("new_b"),
            case("mid"),
        ];
        let known: Durations = [("t/short", 0.1), ("t/long", 6.9), ("t/mid", 1.0)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let names: Vec<&str> = longest_first(&cases, &known)
            .into_iter()
            .map(|i| cases[i].name)
            .collect();
        assert_eq!(names, ["new_a", "new_b", "long", "mid", "short"]);
        // Without a previous run, the catalog's order.
        assert_eq!(longest_first(&cases, &Durations::new()), [0, 1, 2, 3, 4]);
    }
}
