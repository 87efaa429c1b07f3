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
pub mod findings;
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Colored when stdout is a terminal and NO_COLOR is unset
    #[default]
    Terminal,
    /// For a CI job summary; kept under 900 KiB
    #[value(alias = "md")]
    Markdown,
    /// One standalone page with a family filter and a "differs only" box; the filter also reads
    /// the URL fragment, e.g. report.html#family=close&differs
    Html,
    /// The README's findings block: the differing catalog rows, each cell naming what differs
    Findings,
}

/// The flags of `cargo xtask diff`: render the cross-platform matrix, one row per catalog case,
/// one column per platform id found under snapshots/ or in the artifacts (ordered by stack, then
/// release; a stack with none keeps one "not run" column), each cell a short signature of what
/// that platform observed, rows where the platforms disagree marked with their aligned steps,
/// and the documented claims beside the cells. Exit 0 when the matrix was rendered
/// (disagreements are findings, not failures); 2 on bad input, named in the message.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct Options {
    /// The output format
    #[arg(long, value_enum, value_name = "F", default_value_t = Format::Terminal)]
    pub format: Format,
    /// Write to PATH instead of stdout
    #[arg(long, value_name = "PATH", value_parser = crate::paths::writable_file)]
    pub out: Option<PathBuf>,
    /// A CI run's downloaded artifacts or stack runs' folders: one folder per platform with
    /// results.json and pending snapshots; they replace that platform's committed snapshots case
    /// by case, and a platform id not committed yet is a new column
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// The claims file (default: suite/claims.toml)
    #[arg(long, value_name = "PATH")]
    pub claims: Option<PathBuf>,
    /// The repository root holding snapshots/ (default: found from the current dir)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Fail if README.md's findings block is not what the snapshots say (`--format findings`)
    #[arg(long, conflicts_with_all = ["format", "out"])]
    pub check_readme: bool,
}

/// Entry point; returns the exit code.
pub fn run(o: &Options) -> i32 {
    let color = o.format == Format::Terminal
        && o.out.is_none()
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let m = match load_matrix(o) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if o.check_readme {
        return check_readme(&m, o);
    }
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
        Format::Findings => findings::render(m),
    }
}

/// `--check-readme`: README.md's findings block against the snapshots; exit 1 with the fix.
fn check_readme(m: &matrix::Matrix, o: &Options) -> i32 {
    let path = o.root.clone().unwrap_or_else(repo_root).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_default();
    let want = findings::render(m);
    if findings::in_readme(&readme) == Some(want.trim()) {
        println!(
            "README.md findings are up to date ({} differing rows)",
            m.differing()
        );
        return 0;
    }
    eprintln!(
        "README.md's findings differ from the snapshots: paste the output of `cargo xtask diff --format findings` between the findings markers"
    );
    1
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

    #[test]
    fn clip_marks_the_cut() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(width(&clip("é✓é✓é✓", 3)), 3);
    }
}
