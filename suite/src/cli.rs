//! The one parser of every `sockconform` command (reached through `cargo xtask ...`), and
//! `list`. Each command lives in its own module (`conform`, `diff`, `import`, `explore`); nothing
//! below this module imports it.

use crate::catalog;
use crate::paths::repo_root;
use crate::script::Case;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// `sockconform` (reached as `cargo xtask <COMMAND>`): one parser for every subcommand.
#[derive(Parser, Debug)]
#[command(
    name = "sockconform",
    bin_name = "cargo xtask",
    about = "What the OS really does when the peer dies: socket-behavior conformance cases run \
             between real processes, recorded as snapshots per platform and compared across them.",
    disable_help_subcommand = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the catalog on this machine and compare with snapshots/<platform>/
    Conform(crate::conform::Options),
    /// Print the catalog with intents and required capabilities
    List(ListOptions),
    /// Render the cross-platform matrix of every platform's snapshots
    Diff(crate::diff::Options),
    /// Copy the pending snapshots of CI artifacts or stack runs into snapshots/<platform>/
    Import(crate::import::Options),
    /// Generate scripts, run each on every stack (--on), shrink each distinct difference; --record the corpus
    Explore(crate::explore::Options),
}

/// The parser, its top-level help ending with every command's flags (generated from the same
/// definitions, so it cannot fall out of date).
fn command() -> clap::Command {
    let cmd = Cli::command();
    let mut flags =
        String::from("Flags of each command (`cargo xtask <COMMAND> --help` explains them):");
    for sub in cmd.get_subcommands() {
        let mut line = format!("\n  {:<8}", sub.get_name());
        let mut width = 10;
        for a in sub.get_arguments() {
            let values = a
                .get_value_names()
                .filter(|_| a.get_action().takes_values());
            let name = match (a.get_long(), values) {
                (Some(l), Some(v)) => format!("--{l} {}", v.join(" ")),
                (Some(l), None) => format!("--{l}"),
                (None, Some(v)) => v.join(" "),
                (None, None) => continue,
            };
            if name == "--help" {
                continue;
            }
            if width + name.len() + 1 > 96 {
                line += &format!("\n  {:<8}", "");
                width = 10;
            }
            line += &format!(" {name}");
            width += name.len() + 1;
        }
        flags += &line;
    }
    cmd.after_help(flags)
}

/// Entry point; returns the exit code (0 ok, 1 behavior changed or a case failed, 2 bad input).
/// `args` are the arguments after the program name.
pub fn main(args: &[String]) -> i32 {
    // Inside a stack only: the explorer's batch runner, started by `explore --on`.
    if args.first().map(String::as_str) == Some("explore-batch") {
        return crate::explore::batch_main(&args[1..]);
    }
    let argv = std::iter::once("sockconform".to_string()).chain(args.iter().cloned());
    let cli = match command()
        .try_get_matches_from(argv)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => return parse_error(&e, args.first().map(String::as_str)),
    };
    match cli.command {
        Command::Conform(o) => crate::conform::run(&o),
        Command::List(o) => list(&o),
        Command::Diff(o) => crate::diff::run(&o),
        Command::Import(o) => crate::import::run(&o),
        Command::Explore(o) => crate::explore::run(&o),
    }
}

/// Help is printed whole; an error is one line and a hint (clap's suggestion when it has one),
/// never the whole usage.
fn parse_error(e: &clap::Error, sub: Option<&str>) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return 0;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return 2;
        }
        _ => {}
    }
    let text = e.render().to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    eprintln!("{}", lines.next().unwrap_or("error: bad arguments"));
    let known = Cli::command().find_subcommand(sub.unwrap_or("")).is_some();
    let help = match sub {
        Some(s) if known => format!("cargo xtask {s} --help"),
        _ => "cargo xtask --help".to_string(),
    };
    match lines.find_map(|l| l.trim_start().strip_prefix("tip: ")) {
        Some(tip) => eprintln!("hint: {tip}; see `{help}`"),
        None => eprintln!("hint: see `{help}`"),
    }
    2
}

/// The flags of `cargo xtask list`.
#[derive(Args, Debug, Clone)]
pub struct ListOptions {
    /// As the Markdown table of the README
    #[arg(long)]
    pub markdown: bool,
    /// As the README's census table, from suite/census.toml (fails if it names a case the catalog lacks)
    #[arg(long)]
    pub census: bool,
    /// Fail if README.md's catalog or census differs from the code and suite/census.toml
    #[arg(long)]
    pub check_readme: bool,
}

fn list(o: &ListOptions) -> i32 {
    let (markdown, check) = (o.markdown, o.check_readme);
    let all = catalog::all();
    if check {
        return check_readme(&all);
    }
    if o.census {
        return census_table(&all);
    }
    if markdown {
        println!("{}", markdown_table(&all));
        return 0;
    }
    for c in &all {
        let needs: Vec<String> = c.needs.iter().map(|n| n.to_string()).collect();
        let needs = if needs.is_empty() {
            "-".to_string()
        } else {
            needs.join(", ")
        };
        println!("{:<52} needs: {needs}\n    {}", c.id(), c.intent);
    }
    0
}

/// Both generated blocks of README.md against the code: the catalog table and the census table.
fn check_readme(all: &[Case]) -> i32 {
    let text = std::fs::read_to_string(repo_root().join("README.md")).unwrap_or_default();
    let mut code = 0;
    let begin = "<!-- catalog:begin (generated by `cargo xtask list --markdown`) -->";
    let end = "<!-- catalog:end -->";
    if crate::census::block(&text, begin, end) == Some(markdown_table(all).trim()) {
        println!("README.md catalog is up to date ({} cases)", all.len());
    } else {
        eprintln!("README.md's catalog differs from the code: paste the output of `cargo xtask list --markdown` between the catalog markers");
        code = 1;
    }
    let ids: Vec<String> = all.iter().map(|c| c.id()).collect();
    match crate::census::check_readme(&text, &repo_root(), &ids) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("{e}");
            code = 1;
        }
    }
    code
}

/// `list --census`: the README's census table. A case named there that the catalog lacks is an
/// error (exit 1), reported after the table so that the table can still be read.
fn census_table(all: &[Case]) -> i32 {
    let rows = match crate::census::load(&repo_root()) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    print!("{}", crate::census::markdown(&rows));
    let ids: Vec<String> = all.iter().map(|c| c.id()).collect();
    let unknown = crate::census::unknown_cases(&rows, &ids);
    if unknown.is_empty() {
        return 0;
    }
    eprintln!(
        "{} names cases the catalog does not have: {}",
        crate::census::FILE,
        unknown.join(", ")
    );
    1
}

/// The README's catalog table.
pub fn markdown_table(all: &[Case]) -> String {
    let mut s = String::from("| case | intent | needs |\n|---|---|---|\n");
    for c in all {
        let needs: Vec<String> = c.needs.iter().map(|n| n.to_string()).collect();
        let needs = if needs.is_empty() {
            "-".to_string()
        } else {
            needs.join(", ")
        };
        s += &format!("| `{}` | {} | {} |\n", c.id(), c.intent, needs);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn conform_options(s: &str) -> Result<crate::conform::Options, clap::Error> {
        Cli::try_parse_from(
            ["sockconform", "conform"]
                .into_iter()
                .chain(s.split_whitespace()),
        )
        .map(|c| match c.command {
            Command::Conform(o) => o,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn parses_flags_and_rejects_unknown_ones() {
        let o = conform_options("--filter close --bless --repeat 3 --json r.json").unwrap();
        assert_eq!(o.filters, ["close"]);
        assert!(o.bless);
        assert_eq!(o.repeat, 3);
        assert_eq!(conform_options("").unwrap().repeat, 1);
        assert!(conform_options("--frobnicate")
            .unwrap_err()
            .to_string()
            .contains("--frobnicate"));
        assert!(conform_options("--repeat 0").is_err());
        assert!(conform_options("--jobs 0").is_err());
        assert!(conform_options("--filter").is_err());
        let o = conform_options("--require isolation,capture").unwrap();
        assert_eq!(o.require, ["isolation", "capture"]);
        assert!(conform_options("--require root").is_err());
        let o = conform_options("--on host,gvisor --on linux-6.1").unwrap();
        assert_eq!(o.on, ["host", "gvisor", "linux-6.1"]);
        assert!(conform_options("--on qemu").is_err());
    }

    #[test]
    fn unwritable_outputs_are_refused_before_anything_runs() {
        let e = conform_options("--json /nonexistent-sockconform/r.json").unwrap_err();
        assert!(e.to_string().contains("cannot write"), "{e}");
        assert!(conform_options("--json /").is_err(), "a directory");
        assert!(conform_options("--artifact /proc/sockconform-no").is_err());
        // The check leaves no file behind.
        let dir = std::env::temp_dir().join(format!("sc-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("r.json");
        conform_options(&format!("--json {}", json.display())).unwrap();
        assert!(!json.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn help_lists_every_command_with_its_flags() {
        let help = command().render_help().to_string();
        for name in ["conform", "list", "diff", "import", "explore"] {
            assert!(help.contains(&format!("\n  {name} ")), "{name}: {help}");
        }
        for flag in [
            "--filter TEXT",
            "--on STACK,...",
            "--check-readme",
            "--format F",
            "ARTIFACTS_DIR",
            "--seed N",
        ] {
            assert!(help.contains(flag), "{flag}: {help}");
        }
    }

    #[test]
    fn xtasks_static_help_names_every_command_as_the_parser_does() {
        // xtask stays dependency-free, so its help is a copy: held to the parser here.
        let xtask = include_str!("../../xtask/src/main.rs");
        for sub in Cli::command().get_subcommands() {
            let line = format!("  {:<8} {}", sub.get_name(), sub.get_about().unwrap());
            assert!(xtask.contains(&line), "xtask/src/main.rs lacks {line:?}");
            assert!(
                xtask.contains(&format!("\"{}\"", sub.get_name())),
                "xtask dispatches {}",
                sub.get_name()
            );
        }
    }

    #[test]
    fn diff_parses_its_flags_and_rejects_unknown_ones() {
        use clap::Parser;
        let parse = |s: &str| {
            Cli::try_parse_from(
                ["sockconform", "diff"]
                    .into_iter()
                    .chain(s.split_whitespace()),
            )
            .map(|c| match c.command {
                Command::Diff(o) => o,
                other => panic!("{other:?}"),
            })
        };
        let o = parse("--format html --out m.html --artifacts a --claims c.toml").unwrap();
        assert_eq!(o.format, crate::diff::Format::Html);
        assert_eq!(o.out.as_deref(), Some(std::path::Path::new("m.html")));
        assert_eq!(o.artifacts.as_deref(), Some(std::path::Path::new("a")));
        assert_eq!(
            parse("--format md").unwrap().format,
            crate::diff::Format::Markdown
        );
        assert!(parse("--format pdf").is_err());
        assert!(parse("--out").is_err());
        assert!(parse("--frob").unwrap_err().to_string().contains("--frob"));
        assert!(parse("--out /nonexistent-dir/m.html").is_err());
        assert_eq!(main(&args("diff --frob")), 2);
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(main(&args("import /nonexistent/sockconform-artifacts")), 2);
        assert_eq!(main(&args("import")), 2);
        assert_eq!(main(&args("import a b")), 2);
        assert_eq!(main(&args("import a --frob")), 2);
        assert_eq!(main(&args("conform --nope")), 2);
        assert_eq!(main(&args("frob")), 2);
        assert_eq!(main(&args("list --nope")), 2);
        assert_eq!(main(&args("")), 2);
        assert_eq!(main(&args("--help")), 0);
        assert_eq!(main(&args("conform --help")), 0);
    }
}
