//! The agent binary: one endpoint of a case (see `suite::agent`).

fn main() {
    platforms::watch_parent();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.as_slice() {
        [] => suite::agent::main_loop(),
        [flag, fd] if flag == "--hold" => suite::agent::hold(fd),
        _ => {
            eprintln!("usage: sockconform-agent [--hold FD]  (started by the runner, not by hand)");
            2
        }
    };
    std::process::exit(code)
}
