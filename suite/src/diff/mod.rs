//! `sockconform diff` (`cargo xtask diff`): the cross-platform matrix.
//!
//! Reads the snapshots of every platform (`snapshots/<platform-id>/`), lays a CI run's or a stack
//! run's artifacts over them when given, checks the documented claims of `suite/claims.toml` against
//! what each platform observed, and renders one row per catalog case and one column per platform id
//! (ordered by stack, then release; a stack with no platform at all keeps one "not run" column named
//! by the stack), as a terminal table, Markdown for a CI job summary, or one standalone HTML page.
//!
//! - `load`: snapshots and artifacts into cells (observed, skipped, failed, not run).
//! - `claims`: the claims file and the verdict of a claim against a cell.
//! - `matrix`: the rows, whether the platforms disagree, and the aligned step difference.
//! - `terminal`, `markdown`, `html`: the three renderings of one `Matrix`.

pub mod claims;
pub mod html;
pub mod load;
pub mod markdown;
pub mod matrix;
pub mod terminal;

use crate::catalog;
use crate::snapshot::SnapshotError;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

pub const USAGE: &str = "usage: cargo xtask diff [--format terminal|markdown|html] [--out PATH]
                        [--artifacts DIR] [--claims PATH] [--root DIR]

Render the cross-platform matrix: one row per catalog case, one column per platform id found under
snapshots/ or in the artifacts (linux-6.18, gvisor-20221219, macos-15, ...; ordered by stack, then
release; a stack with none keeps one \"not run\" column), each cell a short signature of what that
platform observed, rows where the platforms disagree marked with their aligned steps, and the
documented claims of each stack (and release range) beside its cells (a contradicted claim is
flagged; a claim never fills a cell).

  --format F       terminal (default; colored when stdout is a terminal and NO_COLOR is unset),
                   markdown (for a CI job summary; kept under 900 KiB), or
                   html (one standalone page with a family filter and a \"differs only\" box;
                   the filter also reads the URL fragment, e.g. report.html#family=close&differs)
  --out PATH       write to PATH instead of stdout
  --artifacts DIR  a CI run's downloaded artifacts or stack runs' folders: one folder per platform
                   (conform-macos-15/, ...) with results.json and pending snapshots
                   (snapshots/<platform-id>/); they replace that platform's committed snapshots
                   case by case, and a platform id not committed yet is a new column
  --claims PATH    the claims file (default: suite/claims.toml)
  --root DIR       the repository root holding snapshots/ (default: found from the current dir)

Exit status: 0 when the matrix was rendered (disagreements and contradicted claims are findings,
not failures); 2 on bad input (a corrupt snapshot, results.json or claims file, named in the
message) or a bad flag.";

/// Bad input, with the file named.
#[derive(Debug)]
pub struct DiffError(pub String);

impl DiffError {
    pub fn input(path: &Path, why: String) -> DiffError {
        DiffError(format!("{}: {why}", path.display()))
    }
}

impl fmt::Display for DiffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SnapshotError> for DiffError {
    fn from(e: SnapshotError) -> DiffError {
        DiffError(e.to_string())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Terminal,
    Markdown,
    Html,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub format: Format,
    pub out: Option<PathBuf>,
    pub artifacts: Option<PathBuf>,
    pub claims: Option<PathBuf>,
    pub root: Option<PathBuf>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--format" => {
                    o.format = match value("--format")?.as_str() {
                        "terminal" => Format::Terminal,
                        "markdown" | "md" => Format::Markdown,
                        "html" => Format::Html,
                        other => {
                            return Err(format!(
                                "unknown format {other:?} (terminal, markdown or html)"
                            ))
                        }
                    }
                }
                "--out" => o.out = Some(value("--out")?.into()),
                "--artifacts" => o.artifacts = Some(value("--artifacts")?.into()),
                "--claims" => o.claims = Some(value("--claims")?.into()),
                "--root" => o.root = Some(value("--root")?.into()),
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        Ok(o)
    }
}

/// Entry point; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return 0;
    }
    let o = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return 2;
        }
    };
    let color = o.format == Format::Terminal
        && o.out.is_none()
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let m = match load_matrix(&o) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let text = render(&m, o.format, color);
    match &o.out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return 2;
            }
            println!(
                "matrix written to {} ({} cases, {} differing, {} claims, {} contradicted)",
                path.display(),
                m.rows.len(),
                m.differing(),
                m.claim_count(),
                m.contradicted().len()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
        }
    }
    0
}

pub fn render(m: &matrix::Matrix, format: Format, color: bool) -> String {
    match format {
        Format::Terminal => terminal::render(m, color),
        Format::Markdown => markdown::render(m),
        Format::Html => html::render(m),
    }
}

/// Read everything the options name and build the matrix.
pub fn load_matrix(o: &Options) -> Result<matrix::Matrix, DiffError> {
    let root = o.root.clone().unwrap_or_else(repo_root);
    // The catalog and the explorer's recorded corpus (`explore/`, the same scripts everywhere).
    let mut cases = catalog::all();
    cases.extend(crate::explore::corpus());
    let mut data = load::platform_ids(&root)
        .iter()
        .map(|n| load::committed(&root, n, &cases))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(dir) = &o.artifacts {
        for a in load::artifacts(dir, &cases)? {
            let i = match data.iter().position(|d| d.name == a.platform) {
                Some(i) => i,
                None => {
                    data.push(load::PlatformData {
                        name: a.platform.clone(),
                        ..Default::default()
                    });
                    data.len() - 1
                }
            };
            let committed = std::mem::take(&mut data[i]);
            data[i] = load::overlay(committed, a);
        }
    }
    let data = load::arrange(data);
    let default_claims = root.join("suite").join("claims.toml");
    let (claims, origin) = match &o.claims {
        Some(p) => (claims::load(p)?, Some(p.display().to_string())),
        None if default_claims.is_file() => (
            claims::load(&default_claims)?,
            Some("suite/claims.toml".into()),
        ),
        None => (Vec::new(), None),
    };
    Ok(matrix::build(&cases, &data, &claims, origin))
}

/// The repository root (see `snapshot::find_repo_root`), else the current directory.
fn repo_root() -> PathBuf {
    crate::snapshot::find_repo_root().unwrap_or_else(|| PathBuf::from("."))
}

/// How a cell reads, for styling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    Observed,
    /// Not run on that platform.
    Missing,
    /// Skipped or failed.
    Problem,
}

/// The text of a cell: the signature of what happened, or why nothing was observed.
pub fn cell_text(cell: &load::Cell) -> (String, CellKind) {
    match cell {
        load::Cell::Observed(seen) => (seen.signature(), CellKind::Observed),
        load::Cell::NotRun => ("not run".into(), CellKind::Missing),
        load::Cell::Skipped(why) => (format!("skipped: {why}"), CellKind::Problem),
        load::Cell::Failed(why) => (
            format!("failed: {}", why.lines().next().unwrap_or("")),
            CellKind::Problem,
        ),
    }
}

/// A column's heading with its detail when known: "linux-6.18 (6.18.44-fc-v1045)".
pub fn column_title(c: &matrix::Column) -> String {
    match &c.detail {
        Some(d) => format!("{} ({d})", c.name),
        None => c.name.clone(),
    }
}

/// Display width, counted in characters (the text is ASCII plus a few symbols).
pub fn width(s: &str) -> usize {
    s.chars().count()
}

/// Cut to at most `n` characters, marking the cut with an ellipsis.
pub fn clip(s: &str, n: usize) -> String {
    if width(s) <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_flags_and_rejects_unknown_ones() {
        let o = Options::parse(&args(
            "--format html --out m.html --artifacts a --claims c.toml",
        ))
        .unwrap();
        assert_eq!(o.format, Format::Html);
        assert_eq!(o.out.as_deref(), Some(Path::new("m.html")));
        assert_eq!(o.artifacts.as_deref(), Some(Path::new("a")));
        assert!(Options::parse(&args("--format pdf")).is_err());
        assert!(Options::parse(&args("--out")).is_err());
        assert!(Options::parse(&args("--frob"))
            .unwrap_err()
            .contains("--frob"));
        assert_eq!(main(&args("--frob")), 2);
    }

    #[test]
    fn clip_marks_the_cut() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(width(&clip("é✓é✓é✓", 3)), 3);
    }
}
