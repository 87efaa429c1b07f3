//! sockconform's suite: the case language, the agent, the runner, the catalog and the reports.
//!
//! Code map:
//! - `script`: what a case is (steps, ops, needs) and the builders cases are written with.
//! - `cases/<family>.rs`: the cases, one family per file; `catalog`: the list of them all.
//! - `proto` + `agent`: the endpoint process and the JSON-lines protocol that drives it.
//! - `runner`: runs one case against two agents, with checkpoints, capture, deadlines and cleanup.
//! - `observe`: turns a run into a normalized observation (the snapshot text); `observe::event`
//!   is the typed form of every snapshot line, `observe::same` the one rule for "the same behavior".
//! - `snapshot`: snapshot files in insta's format; `results`: results.json and artifact folders.
//! - `census`: the census of runtime workarounds (suite/census.toml) and the README table of it.
//! - `cli`: the parser of every command, and `list`; `conform`: the `conform` command;
//!   `select`: `--filter` and a case's needs; `paths`: the root, the binaries, writable outputs.
//! - `explore`: generated scripts, run for divergences and shrunk by proptest.

pub mod agent;
pub mod cases;
pub mod catalog;
pub mod census;
pub mod cli;
pub mod conform;
pub mod diff;
pub mod explore;
pub mod import;
pub mod observe;
pub mod paths;
pub mod pcap;
pub mod proto;
pub mod results;
pub mod runner;
pub mod script;
pub mod select;
pub mod snapshot;
pub mod stacks;
pub mod visibility;
