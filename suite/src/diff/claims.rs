//! Claims: documented per-platform behavior (docs, kernel sources, issues, the background articles),
//! kept in `suite/claims.toml` and shown beside the observations. A claim never fills a cell; it is
//! checked against an observation when one exists and flagged when the observation contradicts it.

use super::load::{Cell, Seen};
use super::{DiffError, PLATFORMS};
use serde::Deserialize;
use std::path::Path;

/// How a claim is known, as tagged in PLATFORM-CLAIMS.md.
pub const TAGS: [&str; 5] = ["doc", "src", "derived", "obs", "unsourced"];

/// One string or a list of them (TOML `expect = "x"` or `expect = ["x", "y"]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Texts {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Texts {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Texts::None => &[],
            Texts::One(s) => std::slice::from_ref(s),
            Texts::Many(v) => v,
        }
    }
}

/// One documented behavior of one platform in one case.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// The case id ("family/name"); it may name a case the catalog does not have yet.
    pub case: String,
    pub platform: String,
    /// Short text of what is claimed.
    pub claim: String,
    /// Where it is said, as cited in PLATFORM-CLAIMS.md or the background article.
    pub source: String,
    /// doc / src / derived / obs / unsourced.
    pub tag: String,
    /// Every one of these must appear in the observation (steps, timing or wire lines). A string may
    /// span lines ("a\nb") to require consecutive lines.
    #[serde(default)]
    pub expect: Texts,
    /// At least one of these must appear (for claims that allow alternatives: "EOF or ECONNRESET").
    #[serde(default)]
    pub expect_any: Texts,
    /// None of these may appear.
    #[serde(default)]
    pub absent: Texts,
    /// The check reads the wire: without a capture it cannot be decided (rather than passing an
    /// `absent` check vacuously or failing an `expect` on a missing line).
    #[serde(default)]
    pub wire: bool,
}

impl Claim {
    pub fn has_check(&self) -> bool {
        !(self.expect.as_slice().is_empty()
            && self.expect_any.as_slice().is_empty()
            && self.absent.as_slice().is_empty())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsFile {
    #[serde(default)]
    claim: Vec<Claim>,
}

/// What an observation says about a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The observation contains what the claim expects.
    Holds,
    /// The observation contradicts the claim; the text says how.
    Contradicted(String),
    /// There is an observation but the claim cannot be checked against it (no check given, or
    /// the check needs a wire capture that this platform did not make).
    Unchecked(String),
    /// No observation for this platform (not run, skipped or failed).
    NoObservation(String),
}

impl Verdict {
    pub fn symbol(&self) -> &'static str {
        match self {
            Verdict::Holds => "✓",
            Verdict::Contradicted(_) => "✗",
            Verdict::Unchecked(_) => "?",
            Verdict::NoObservation(_) => "·",
        }
    }

    /// A short word for the verdict (CSS class, legend).
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Contradicted(_) => "contradicted",
            Verdict::Unchecked(_) => "unchecked",
            Verdict::NoObservation(_) => "no-observation",
        }
    }

    /// The explanation, if any.
    pub fn why(&self) -> Option<&str> {
        match self {
            Verdict::Holds => None,
            Verdict::Contradicted(s) | Verdict::Unchecked(s) | Verdict::NoObservation(s) => Some(s),
        }
    }
}

/// A claim together with its verdict against one cell.
#[derive(Clone, Debug)]
pub struct Checked {
    pub claim: Claim,
    pub verdict: Verdict,
}

/// Parse and validate a claims file; errors name the file and the claim.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Claim>, DiffError> {
    let err = |why: String| DiffError::input(path, why);
    let file: ClaimsFile =
        toml::from_str(text).map_err(|e| err(format!("not a claims file: {e}")))?;
    for (i, c) in file.claim.iter().enumerate() {
        let at = format!("claim #{} ({} on {})", i + 1, c.case, c.platform);
        if !c.case.contains('/') {
            return Err(err(format!("{at}: case must be a case id \"family/name\"")));
        }
        if !PLATFORMS.contains(&c.platform.as_str()) {
            return Err(err(format!(
                "{at}: unknown platform {:?} (one of {})",
                c.platform,
                PLATFORMS.join(", ")
            )));
        }
        if !TAGS.contains(&c.tag.as_str()) {
            return Err(err(format!(
                "{at}: unknown tag {:?} (one of {})",
                c.tag,
                TAGS.join(", ")
            )));
        }
        if c.claim.trim().is_empty() || c.source.trim().is_empty() {
            return Err(err(format!(
                "{at}: every claim needs its text and its source (an unsourced claim says where it was read)"
            )));
        }
        let checks = c
            .expect
            .as_slice()
            .iter()
            .chain(c.expect_any.as_slice())
            .chain(c.absent.as_slice());
        if checks.clone().any(|s| s.trim().is_empty()) {
            return Err(err(format!("{at}: an empty check matches everything")));
        }
    }
    Ok(file.claim)
}

/// Read a claims file.
pub fn load(path: &Path) -> Result<Vec<Claim>, DiffError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DiffError::input(path, format!("unreadable: {e}")))?;
    parse(&text, path)
}

/// Check a claim against the cell of its platform.
pub fn check(claim: &Claim, cell: &Cell) -> Verdict {
    let seen = match cell {
        Cell::Observed(seen) => seen,
        Cell::NotRun => return Verdict::NoObservation("not run".into()),
        Cell::Skipped(_) => return Verdict::NoObservation("skipped".into()),
        Cell::Failed(_) => return Verdict::NoObservation("the run failed".into()),
    };
    if !claim.has_check() {
        return Verdict::Unchecked("no machine check given".into());
    }
    if claim.wire && seen.wire.is_none() {
        return Verdict::Unchecked("needs the wire, which was not captured".into());
    }
    let texts = haystacks(seen);
    let found = |needle: &str| texts.iter().any(|t| t.contains(needle));
    let mut problems = Vec::new();
    for e in claim.expect.as_slice() {
        if !found(e) {
            problems.push(format!("expected `{}` not observed", one_line(e)));
        }
    }
    let any = claim.expect_any.as_slice();
    if !any.is_empty() && !any.iter().any(|e| found(e)) {
        let list: Vec<String> = any.iter().map(|e| format!("`{}`", one_line(e))).collect();
        problems.push(format!("none of {} observed", list.join(" or ")));
    }
    for a in claim.absent.as_slice() {
        if found(a) {
            problems.push(format!("`{}` observed", one_line(a)));
        }
    }
    if problems.is_empty() {
        Verdict::Holds
    } else {
        Verdict::Contradicted(problems.join("; "))
    }
}

/// The texts a check searches: the steps, the timing lines and the wire events, each block joined
/// with newlines so that a check may require consecutive lines.
fn haystacks(seen: &Seen) -> Vec<String> {
    let mut out = vec![
        seen.observation.steps.join("\n"),
        seen.observation.timing.join("\n"),
    ];
    if let Some(w) = &seen.wire {
        out.push(w.join("\n"));
    }
    out
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ⏎ ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Observation;

    fn claim(extra: &str) -> Claim {
        let text = format!(
            "[[claim]]\ncase = \"x/y\"\nplatform = \"linux\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"src\"\n{extra}"
        );
        parse(&text, Path::new("claims.toml")).unwrap().remove(0)
    }

    fn seen(steps: &[&str], wire: Option<&[&str]>) -> Cell {
        Cell::Observed(Seen {
            observation: Observation {
                case: "x/y".into(),
                intent: String::new(),
                steps: steps.iter().map(|s| s.to_string()).collect(),
                timing: vec!["client: close: under 100 ms".into()],
            },
            wire: wire.map(|w| w.iter().map(|s| s.to_string()).collect()),
            note: None,
        })
    }

    #[test]
    fn expect_all_any_and_absent() {
        let cell = seen(
            &["client: read(100) -> eof", "client: write(5) -> ok(5)"],
            Some(&["server > client: FIN"]),
        );
        assert_eq!(check(&claim("expect = \"-> eof\""), &cell), Verdict::Holds);
        assert_eq!(
            check(&claim("expect = [\"-> eof\", \"under 100 ms\"]"), &cell),
            Verdict::Holds
        );
        assert!(matches!(
            check(&claim("expect = [\"-> eof\", \"RST\"]"), &cell),
            Verdict::Contradicted(w) if w.contains("`RST`")
        ));
        assert_eq!(
            check(&claim("expect_any = [\"ECONNRESET\", \"-> eof\"]"), &cell),
            Verdict::Holds
        );
        assert!(matches!(
            check(&claim("absent = \"FIN\""), &cell),
            Verdict::Contradicted(_)
        ));
        // Consecutive lines.
        assert_eq!(
            check(
                &claim("expect = \"read(100) -> eof\\nclient: write(5) -> ok(5)\""),
                &cell
            ),
            Verdict::Holds
        );
        assert!(matches!(
            check(
                &claim("expect = \"write(5) -> ok(5)\\nclient: read(100) -> eof\""),
                &cell
            ),
            Verdict::Contradicted(_)
        ));
    }

    #[test]
    fn wire_checks_wait_for_a_capture_and_claims_never_fill_a_cell() {
        let uncaptured = seen(&["client: read(100) -> eof"], None);
        let c = claim("absent = \"RST\"\nwire = true");
        assert!(matches!(check(&c, &uncaptured), Verdict::Unchecked(_)));
        assert!(matches!(
            check(&c, &Cell::NotRun),
            Verdict::NoObservation(_)
        ));
        assert!(matches!(
            check(&claim(""), &uncaptured),
            Verdict::Unchecked(_)
        ));
    }

    #[test]
    fn bad_claims_are_rejected_with_the_file_named() {
        let bad = [
            "[[claim]]\ncase = \"x/y\"\nplatform = \"plan9\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"src\"\n",
            "[[claim]]\ncase = \"x/y\"\nplatform = \"linux\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"rumor\"\n",
            "[[claim]]\ncase = \"x/y\"\nplatform = \"linux\"\nclaim = \"c\"\nsource = \"\"\ntag = \"src\"\n",
            "[[claim]]\ncase = \"x/y\"\nplatform = \"linux\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"src\"\nexpects = \"typo\"\n",
            "[[claim]]\ncase = \"xy\"\nplatform = \"linux\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"src\"\n",
            "[[claim]]\ncase = \"x/y\"\nplatform = \"linux\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"src\"\nexpect = \"\"\n",
        ];
        for b in bad {
            let e = parse(b, Path::new("dir/claims.toml")).unwrap_err();
            assert!(e.to_string().contains("dir/claims.toml"), "{e}");
        }
    }

    #[test]
    fn the_repository_claims_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("suite/claims.toml");
        let claims = load(&path).unwrap();
        assert!(claims.len() >= 40, "{}", claims.len());
        for platform in ["linux", "macos", "windows"] {
            assert!(claims.iter().any(|c| c.platform == platform));
        }
    }
}
