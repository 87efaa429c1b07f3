//! The agent binary: one endpoint of a case (see `suite::agent`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keep = match args.as_slice() {
        [flag, fd] if flag == "--hold" => Some(fd.as_str()),
        _ => None,
    };
    platforms::close_inherited_descriptors(keep);
    platforms::watch_parent();
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
