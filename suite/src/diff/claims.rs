//! Claims: documented per-platform behavior (docs, kernel sources, issues, the background articles),
//! kept in `suite/claims.toml` and shown beside the observations. A claim never fills a cell; it is
//! checked against an observation when one exists and flagged when the observation contradicts it.

use super::load::{Cell, Seen};
use super::DiffError;
use platforms::id::{compare_releases, release_of, stack_of, STACKS};
use serde::Deserialize;
use std::cmp::Ordering;
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
    /// The stack the claim is about (linux, gvisor, macos, windows, freebsd): it is shown beside
    /// every column of that stack whose release is in `releases`.
    pub platform: String,
    /// The releases the claim holds for, as comparisons joined by commas, all of which must hold:
    /// ">=6.5", "<6.5", ">=6.1, <6.5", "=14.3". None: every release.
    #[serde(default)]
    pub releases: Option<String>,
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
    /// Why an observation contradicts the claim, when that is known and understood (a finding that
    /// stays, the claim kept as its source wrote it). The matrix shows it beside the contradiction;
    /// the repository's test fails on a contradiction without it, and on it without a contradiction.
    #[serde(default)]
    pub known_contradiction: Option<String>,
}

/// One comparison of a release range (`>=6.5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

/// Parse a release range (">=6.5", ">=6.1, <6.5"): each part an operator and a release made of
/// digits and dots.
fn parse_range(text: &str) -> Result<Vec<(Cmp, String)>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let (cmp, rest) = [
            (">=", Cmp::Ge),
            ("<=", Cmp::Le),
            (">", Cmp::Gt),
            ("<", Cmp::Lt),
            ("=", Cmp::Eq),
        ]
        .iter()
        .find_map(|(op, c)| part.strip_prefix(op).map(|r| (*c, r.trim())))
        .ok_or_else(|| {
            format!("release range {text:?}: {part:?} needs an operator (>=, >, <=, < or =)")
        })?;
        let well_formed = !rest.is_empty()
            && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
            && !rest.starts_with('.')
            && !rest.ends_with('.');
        if !well_formed {
            return Err(format!(
                "release range {text:?}: {rest:?} is not a release (digits and dots, e.g. 6.5)"
            ));
        }
        out.push((cmp, rest.to_string()));
    }
    Ok(out)
}

/// Whether a claim applies to a column, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applies {
    /// Another stack, or a release outside the claim's range: not shown beside this column.
    No,
    /// Shown and checked.
    Yes,
    /// Shown but not checked: the claim is for a release range and this column's release is
    /// unknown (a bare stack id such as `linux`).
    ReleaseUnknown,
}

impl Claim {
    /// The stack and release range the claim is about, as shown: "linux >=6.5", "gvisor".
    pub fn scope(&self) -> String {
        match &self.releases {
            Some(r) => format!("{} {}", self.platform, r.trim()),
            None => self.platform.clone(),
        }
    }

    /// Whether `release` is in the claim's range (true when the claim has none).
    pub fn in_range(&self, release: &str) -> bool {
        let Some(text) = &self.releases else {
            return true;
        };
        // Validated by `parse`; a range that does not parse matches nothing.
        let Ok(bounds) = parse_range(text) else {
            return false;
        };
        bounds.iter().all(|(cmp, bound)| {
            let o = compare_releases(release, bound);
            match cmp {
                Cmp::Ge => o != Ordering::Less,
                Cmp::Gt => o == Ordering::Greater,
                Cmp::Le => o != Ordering::Greater,
                Cmp::Lt => o == Ordering::Less,
                Cmp::Eq => o == Ordering::Equal,
            }
        })
    }

    /// Whether the claim applies to the column of platform id `column` (`linux-6.18`, `macos`).
    /// `observed`: the column has data (a column that is only a "not run" placeholder for its
    /// stack shows every claim of the stack).
    pub fn applies_to(&self, column: &str, observed: bool) -> Applies {
        if stack_of(column) != Some(self.platform.as_str()) {
            return Applies::No;
        }
        if self.releases.is_none() {
            return Applies::Yes;
        }
        match release_of(column) {
            Some(r) if self.in_range(r) => Applies::Yes,
            Some(_) => Applies::No,
            None if observed => Applies::ReleaseUnknown,
            None => Applies::Yes,
        }
    }

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
    /// The column (platform id) it was checked against.
    pub column: String,
    pub verdict: Verdict,
}

/// Parse and validate a claims file; errors name the file and the claim.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Claim>, DiffError> {
    let err = |why: String| DiffError::input(path, why);
    let file: ClaimsFile =
        toml::from_str(text).map_err(|e| err(format!("not a claims file: {e}")))?;
    for (i, c) in file.claim.iter().enumerate() {
        let at = format!("claim #{} ({} on {})", i + 1, c.case, c.scope());
        if !c.case.contains('/') {
            return Err(err(format!("{at}: case must be a case id \"family/name\"")));
        }
        if !STACKS.contains(&c.platform.as_str()) {
            let hint = match (stack_of(&c.platform), release_of(&c.platform)) {
                (Some(stack), Some(r)) => format!(
                    "; a claim names the stack and its releases: platform = \"{stack}\", releases = \"={r}\""
                ),
                _ => String::new(),
            };
            return Err(err(format!(
                "{at}: unknown platform {:?} (a stack: one of {}){hint}",
                c.platform,
                STACKS.join(", ")
            )));
        }
        if let Some(r) = &c.releases {
            parse_range(r).map_err(|e| err(format!("{at}: {e}")))?;
        }
        if !TAGS.contains(&c.tag.as_str()) {
            return Err(err(format!(
                "{at}: unknown tag {:?} (one of {})",
                c.tag,
                TAGS.join(", ")
            )));
        }
        if c.known_contradiction
            .as_ref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err(err(format!(
                "{at}: known_contradiction must say why the observation contradicts the claim"
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
        return Verdict::Holds;
    }
    let mut why = problems.join("; ");
    if let Some(known) = &claim.known_contradiction {
        why += &format!(" (known: {known})");
    }
    Verdict::Contradicted(why)
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
    fn a_known_contradiction_is_shown_with_its_reason_and_never_hides_one() {
        let cell = seen(&["client: read(100) -> eof"], None);
        let c = claim("expect = \"RST\"\nknown_contradiction = \"Linux sends FIN here\"");
        assert_eq!(
            check(&c, &cell),
            Verdict::Contradicted(
                "expected `RST` not observed (known: Linux sends FIN here)".into()
            )
        );
        // The mark explains a contradiction; it never turns a holding claim into one.
        let holds = claim("expect = \"-> eof\"\nknown_contradiction = \"x\"");
        assert_eq!(check(&holds, &cell), Verdict::Holds);
        let empty = "[[claim]]\ncase = \"x/y\"\nplatform = \"linux\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"src\"\nknown_contradiction = \" \"\n";
        let e = parse(empty, Path::new("claims.toml")).unwrap_err();
        assert!(
            e.to_string().contains("known_contradiction must say why"),
            "{e}"
        );
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
    fn a_release_range_limits_a_claim_to_the_columns_of_its_stack_in_range() {
        let c = claim("releases = \">=6.5\"");
        assert_eq!(c.scope(), "linux >=6.5");
        assert_eq!(c.applies_to("linux-6.18", true), Applies::Yes);
        assert_eq!(c.applies_to("linux-6.5", true), Applies::Yes);
        assert_eq!(c.applies_to("linux-6.1", true), Applies::No);
        assert_eq!(c.applies_to("gvisor-20221219", true), Applies::No);
        assert_eq!(c.applies_to("macos-15", true), Applies::No);
        // A bare stack id: shown, but its release cannot be checked against the range...
        assert_eq!(c.applies_to("linux", true), Applies::ReleaseUnknown);
        // ...and a "not run" placeholder column shows every claim of its stack.
        assert_eq!(c.applies_to("linux", false), Applies::Yes);
        let between = claim("releases = \">=6.1, <6.5\"");
        assert!(between.in_range("6.1") && between.in_range("6.4") && !between.in_range("6.5"));
        assert!(!between.in_range("5.15") && !between.in_range("6.18"));
        let exact = claim("releases = \"=14.3\"");
        assert!(exact.in_range("14.3") && !exact.in_range("14.2"));
        assert!(claim("releases = \"> 6.9\"").in_range("6.10"));
        assert!(claim("releases = \"<=6.9\"").in_range("6.9"));
        // Without a range, every column of the stack.
        let any = claim("");
        assert_eq!(any.applies_to("linux", true), Applies::Yes);
        assert_eq!(any.applies_to("linux-5.15", true), Applies::Yes);
        assert_eq!(any.applies_to("freebsd-14.3", true), Applies::No);
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
            // A platform id is not a stack: the release goes in `releases`.
            "[[claim]]\ncase = \"x/y\"\nplatform = \"linux-6.18\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"src\"\n",
            "[[claim]]\ncase = \"x/y\"\nplatform = \"linux\"\nreleases = \"6.5+\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"src\"\n",
            "[[claim]]\ncase = \"x/y\"\nplatform = \"linux\"\nreleases = \">=6.x\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"src\"\n",
            "[[claim]]\ncase = \"x/y\"\nplatform = \"linux\"\nreleases = \">=6.5,\"\nclaim = \"c\"\nsource = \"s\"\ntag = \"src\"\n",
        ];
        for b in bad {
            let e = parse(b, Path::new("dir/claims.toml")).unwrap_err();
            assert!(e.to_string().contains("dir/claims.toml"), "{e}");
        }
        let e = parse(bad[6], Path::new("claims.toml")).unwrap_err();
        assert!(e.to_string().contains("releases = \"=6.18\""), "{e}");
    }

    #[test]
    fn the_repository_claims_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("suite/claims.toml");
        let claims = load(&path).unwrap();
        assert!(claims.len() >= 40, "{}", claims.len());
        for platform in ["linux", "gvisor", "macos", "windows"] {
            assert!(claims.iter().any(|c| c.platform == platform));
        }
        let gvisor = claims.iter().filter(|c| c.platform == "gvisor").count();
        assert!((4..=8).contains(&gvisor), "{gvisor} gVisor claims");
        assert!(claims.iter().any(|c| c.releases.is_some()));
    }
}
