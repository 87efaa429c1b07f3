//! `cargo xtask <command>`: builds the suite and hands the command to its runner binary.
//! The work lives in the suite (`suite/src/cli.rs`); this crate only orchestrates cargo, so it stays
//! free of dependencies and quick to build.

use std::process::{exit, Command};

/// Static, so `cargo xtask --help` answers without building the suite; each command's own
/// `--help` (forwarded to the suite's parser) explains its flags.
const HELP: &str = "Usage: cargo xtask <COMMAND> [FLAGS]

Commands:
  conform  Run the catalog on this machine and compare with snapshots/<platform>/
  list     Print the catalog with intents and required capabilities
  diff     Render the cross-platform matrix of every platform's snapshots
  import   Copy the pending snapshots of CI artifacts or stack runs into snapshots/<platform>/
  explore  Generate scripts, run each on every stack (--on), shrink each distinct difference; --record the corpus

`cargo xtask <COMMAND> --help` lists the command's flags.";

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("conform" | "list" | "diff" | "import" | "explore") => {}
        Some("-h" | "--help") | None => {
            println!("{HELP}");
            exit(if args.is_empty() { 2 } else { 0 })
        }
        Some(other) => {
            eprintln!(
                "error: unknown xtask command {other:?} (commands: conform, list, diff, import, explore)"
            );
            exit(2)
        }
    }
    // Build the runner and the agent together: the runner starts the agent binary next to itself.
    let built = cargo()
        .args(["build", "--quiet", "--package", "sockconform", "--bins"])
        .status();
    if !matches!(built, Ok(s) if s.success()) {
        eprintln!("error: building the suite failed");
        exit(2)
    }
    let status = cargo()
        .args([
            "run",
            "--quiet",
            "--package",
            "sockconform",
            "--bin",
            "sockconform",
            "--",
        ])
        .args(&args)
        .status();
    match status {
        Ok(s) => exit(s.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("error: cannot run the suite: {e}");
            exit(2)
        }
    }
}
