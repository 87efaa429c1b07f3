//! The runner CLI behind `cargo xtask conform` and `cargo xtask list`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(suite::cli::main(&args))
}
