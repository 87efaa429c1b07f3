//! Looking at processes from outside, for the runner's own tests: which processes carry a run's tag,
//! which network namespace they are in, and sending the interrupt a terminal's Ctrl-C sends.
//! Linux reads /proc; elsewhere these answer None/Unsupported and the tests say they were skipped.

use std::io;

/// Pids of the processes whose environment holds `key=value`, or None where this cannot be read.
pub fn pids_with_env(key: &str, value: &str) -> Option<Vec<u32>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let needle = format!("{key}={value}");
    let has_tag = |pid: &u32| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
    };
    Some(all_pids()?.into_iter().filter(has_tag).collect())
}

/// A process's command line, arguments joined by spaces, or None.
pub fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Whether a process sleeps inside a socket call (its kernel wait channel is a socket wait),
/// or None where this cannot be read.
pub fn waiting_on_socket(pid: u32) -> Option<bool> {
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
    Some(wchan.starts_with("sk_wait") || wchan == "wait_woken" || wchan.starts_with("inet_wait"))
}

/// The identity of a process's network namespace ("net:[4026532]"), or None.
pub fn net_namespace(pid: u32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// Whether any live process is in the network namespace `ns` (as returned by `net_namespace`).
pub fn namespace_in_use(ns: &str) -> Option<bool> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    Some(
        all_pids()?
            .into_iter()
            .any(|pid| net_namespace(pid).as_deref() == Some(ns)),
    )
}

/// Every pid in /proc.
fn all_pids() -> Option<Vec<u32>> {
    let dir = std::fs::read_dir("/proc").ok()?;
    Some(
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

/// Send the interrupt signal (what Ctrl-C sends) to one process.
pub fn interrupt(pid: u32) -> io::Result<()> {
    if !cfg!(unix) {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no SIGINT on this platform",
        ));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -INT {pid} failed: {status}"
        )))
    }
}

/// Start `cmd` with `n` extra open descriptors that lack close-on-exec, as a careless shell or CI
/// runner leaves them, so a test can check that nothing the agents report depends on them.
/// Returns false where descriptors are not inherited this way (Windows): nothing was changed.
pub fn leak_descriptors_into(cmd: &mut std::process::Command, n: usize) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: dup is async-signal-safe; a duplicate never carries close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                for _ in 0..n {
                    if libc::dup(2) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        true
    }
    #[cfg(not(unix))]
    {
        let _ = (cmd, n);
        false
    }
}
