//! Process groups for the stacks a multi-stack run starts (a gVisor sandbox, a QEMU guest): each
//! launcher is started as the leader of a group of its own, so ending the group ends everything
//! the launcher started under it (the sandbox and its gofer, QEMU under virtme-ng) and nothing
//! else. Unix only; elsewhere a stack is an ordinary child and `end_group` ends just it.

use std::io;
use std::process::{Child, Command};

/// Start `cmd` as the leader of a new process group (whose id is then the child's pid), and
/// ending with the calling thread if the runner dies (Linux: parent-death signal).
pub fn spawn_group_leader(cmd: &mut Command) -> io::Result<Child> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    crate::prepare_agent(cmd);
    cmd.spawn()
}

/// Ask the whole group led by `child` to end (SIGTERM to the group), for `grace`, then end it for
/// good (SIGKILL to the group), and reap the leader. Only this group is touched.
pub fn end_group(child: &mut Child, grace: std::time::Duration) {
    #[cfg(unix)]
    {
        let pgid = child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals exactly the group we created.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let end = std::time::Instant::now() + grace;
        while std::time::Instant::now() < end {
            if matches!(child.try_wait(), Ok(Some(_))) && !group_alive(pgid) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    #[cfg(not(unix))]
    {
        let _ = (grace, child.kill());
    }
    let _ = child.wait();
}

/// Whether any process of the group still exists (kill with signal 0 probes without signalling).
#[cfg(unix)]
fn group_alive(pgid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(-pgid, 0) == 0 }
}
