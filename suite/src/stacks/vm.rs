//! Another Linux kernel: the suite runs in a QEMU guest booted with virtme-ng (`vng`) on a Debian
//! kernel, so a kernel series ("5.10", "6.1", "6.12", "7.2") is a platform next to the host's own.
//!
//! The kernel is found unpacked in the cache (`.ci/stacks-install` runs `dpkg-deb -x` on Debian's
//! `linux-image-<release>`, and from sid on the `linux-binary-`, `linux-modules-` and `linux-base-`
//! packages it depends on, into `<cache>/linux-image-<release>/` and indexes its modules with
//! `depmod`) or installed under /boot. The guest (measured with virtme-ng 1.42, QEMU 7.2):
//!
//! * sees the host's root file system read-only over 9p (`--force-9p`); /etc, /usr, /tmp, ... are
//!   writable overlays that live in guest memory; only the artifact folder `out` is written
//!   through to the host (`--rwdir`);
//! * has no network device: vng adds one only with `--network`, so QEMU runs with `-net none`;
//! * is software-emulated (`--disable-kvm`): /dev/kvm may exist yet fail to boot these kernels
//!   when the host is itself a VM; boot takes about 10 s;
//! * loads its modules (veth, nf_tables, ...) on demand: vng finds `lib/modules/<release>` (or
//!   `usr/lib/modules/<release>`) in the folder above the image it boots and links it into the
//!   guest's /lib/modules, and the guest's kernel runs the host's /sbin/modprobe (kmod) on it;
//! * runs one shell script, written into `<cache>/vm/` (the kernel's command line, which carries
//!   `--exec`, holds 2048 bytes and a longer one hangs the guest at a prompt): it takes the
//!   virtio ports for its standard streams (see `GUEST_PORTS`), raises the descriptor limit,
//!   then `exec`s `sockconform`, whose exit code virtme-ng-init writes to its return port, and
//!   vng exits with it (255 when the guest died without one, e.g. a kernel panic).
//!
//! Processes: vng -> sh -> virtme-run -> qemu. Measured: SIGTERM or SIGKILL to vng alone leaves
//! virtme-run and QEMU running (SIGINT to vng alone does nothing); SIGTERM to the whole process
//! group ends them all. So that nothing outlives even a runner killed with SIGKILL (when only the
//! group leader gets the parent-death signal), vng runs under `unshare --pid --fork --kill-child`:
//! a small shell (`LAUNCHER`) is the init of a PID namespace of its own and gets SIGKILL when
//! `unshare` dies, and the kernel then kills everything in that namespace, QEMU included.
//!
//! A guest that cannot boot says why. Before the boot, a kernel without what the guest boots with
//! (9p, its virtio transport, virtio-pci, virtio console: `BOOT_NEEDS`) is refused, naming the
//! module and its option. During it, the guest's kernel log goes to `<out>/console.log` (a virtio
//! console); the launcher waits on it for the guest script's first line, and when the guest dies
//! first (a panic: vng exits 255) or has not booted by `BOOT_DEADLINE_S`, it prints the console's
//! lines that say why (a module the initramfs lacks, a panic) instead of leaving the run to the
//! stack's deadline.

use super::Launch;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A kernel this machine can boot: found in the cache (unpacked Debian packages) or under /boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The kernel's release as `uname -r` prints it, e.g. "6.1.0-57-amd64".
    pub release: String,
    /// The bootable image (vmlinuz).
    pub image: PathBuf,
    /// Its modules, `lib/modules/<release>` or `usr/lib/modules/<release>`, when they are there.
    pub modules: Option<PathBuf>,
}

/// Guest memory: the catalog with 10,000 idle connections fits in well under 1 GiB.
const MEMORY: &str = "2G";
/// Virtual CPUs: each is one host thread of software emulation. One: the guest then takes one of
/// this 2-core machine's cores and leaves the other to the host's and gVisor's runs beside it.
/// Measured (`conform --on ...`, quiet machine, labs then waiting a needless second each): with
/// 2 CPUs and 2 cases at once the guest alone took 64.3 s and 104.1 s beside host and gVisor
/// (1.62x; its emulated threads starved by their 60 cases at once); with 1 CPU and 1 case at a
/// time 118.2 s and 123.1 s (1.04x). Without that second: 88.1 s alone, 96.3 s beside (1.09x).
const CPUS: &str = "1";
/// Descriptors in the guest (its default is 1024, hard 4096): `ports/capacity_10k_idle` opens
/// 10,000 connections in one process.
const FD_LIMIT: u32 = 65536;
/// Where the guest runs sockconform and its agent from: a tmpfs in guest memory they are copied
/// into at boot (stripped first: see `guest_bins`). Run from the 9p root instead, every agent start pages its 70 MB (debug) binary
/// in over 9p, and 2 of 8 catalog runs hung with every guest process that touched 9p in D state
/// (`p9_virtio_zc_request`) and QEMU spinning, until the stack's 40 min deadline. Suspected
/// trigger: agents killed while their binary was still paging in (a flushed 9p request). From
/// memory an agent touches 9p only for shared libraries, which the page cache already holds.
const GUEST_BIN: &str = "/run/sockconform-bin";
/// The guest's PATH: `ip` and `nft` live in /usr/sbin or /sbin.
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// virtme-ng-init connects the script to its virtio ports (stdin, stdout, stderr, and the return
/// port read back as vng's exit code) through the /dev/virtio-ports links that udev makes. Where
/// the host's root has no udev (Debian's udev package is not installed by default), it runs the
/// script on the serial console instead, which vng discards, and vng exits with 255 whatever the
/// script did. The script then makes the links itself and takes the ports; after it exits,
/// virtme-ng-init finds the return port through the same links.
const GUEST_PORTS: &str = r#"if [ ! -e /dev/virtio-ports/virtme.stdout ]; then
  mkdir -p /dev/virtio-ports
  for p in /sys/class/virtio-ports/*; do
    ln -sf "/dev/${p##*/}" "/dev/virtio-ports/$(cat "$p/name")"
  done
  exec </dev/virtio-ports/virtme.stdin >/dev/virtio-ports/virtme.stdout 2>/dev/virtio-ports/virtme.stderr
fi
"#;

/// Where the guest's kernel log lands, in the artifact folder: a virtio console (hvc0, from the
/// moment virtio_console loads in the initramfs) written by QEMU to this file. vng's own console
/// (ttyS0) goes to /dev/null in a run with --exec, so without it a guest that cannot boot dies
/// in silence (vng exits 255).
const CONSOLE_LOG: &str = "console.log";
/// The line the guest script writes to the kernel log first: the guest has booted.
const BOOTED: &str = "sockconform: the guest runs its script";
/// How long the guest may take to boot before the launcher ends it and says why. Measured: 20 to
/// 60 s from vng's start to the guest script on this loaded 2-core machine, 5.10 to 7.2 alike.
const BOOT_DEADLINE_S: u32 = 600;
/// Console lines that say why a guest did not boot: a module the initramfs lacks or cannot
/// insert, a panic, an oops. Left out, as they are in every boot: "virtio-fs: tag <ROOTFS> not
/// found" (virtme-ng tries virtiofs before 9p) and the initramfs' "does not have module crypto-*"
/// (the kernel asks for crypto algorithms it does not need to boot).
const WHY_LINES: &str = "does not have module|Unknown symbol|module format|insmod|Kernel panic|\
                         Oops|BUG:|Out of memory|VFS:";

/// The host side of the launch, `sh -c` as the PID namespace's init: it runs vng (its arguments
/// after the console log's path and the boot deadline) and waits, on the console log, for the
/// guest script's first line. A guest that has not booted by the deadline is ended (the
/// namespace dies with its init), and one that died without an exit code (vng's 255); in both
/// cases the lines of the console that say why are printed on stderr, where the launcher shows
/// them. Otherwise vng's exit code (sockconform's) is passed on.
const LAUNCHER: &str = r#"log=$1 deadline=$2
shift 2
why() {
  lines=$(grep -E "$WHY_LINES" "$log" 2>/dev/null | grep -v 'have module crypto-' | tail -n 12)
  [ -n "$lines" ] || lines=$(tail -n 12 "$log" 2>/dev/null)
  echo "its console ($log), the lines that say why:" >&2
  printf '%s
' "${lines:-(empty: the kernel printed nothing on hvc0)}" | sed 's/^/  /' >&2
}
"$@" &
vng=$!
start=$(date +%s)
until grep -q "$BOOTED" "$log" 2>/dev/null || ! kill -0 "$vng" 2>/dev/null; do
  if [ $(($(date +%s) - start)) -ge "$deadline" ]; then
    echo "the guest did not boot within $deadline s: ending it" >&2
    why
    kill "$vng"
    exit 124
  fi
  sleep 1
done
wait "$vng"
code=$?
if [ "$code" -eq 255 ]; then
  echo "the guest died before sockconform could exit (vng exited 255)" >&2
  why
fi
exit "$code"
"#;

/// What the guest needs of its kernel to boot under virtme-ng: each module, its configuration
/// option and what it is for. Built in (=y) or a module in modules.dep (=m) will do.
const BOOT_NEEDS: [(&str, &str, &str); 4] = [
    ("9p", "CONFIG_9P_FS", "it mounts the host's root"),
    ("9pnet_virtio", "CONFIG_NET_9P_VIRTIO", "9p's transport"),
    ("virtio_pci", "CONFIG_VIRTIO_PCI", "QEMU's virtio devices"),
    (
        "virtio_console",
        "CONFIG_VIRTIO_CONSOLE",
        "the script's standard streams",
    ),
];

/// Once booted, only errors and worse reach the consoles (console log level 4): the messages the
/// cases provoke (veth, nf_tables, ...) would otherwise be written to two emulated consoles in
/// the middle of timed steps. A panic or an oops still lands in the console log.
const QUIET_CONSOLE: &str = "echo 4 >/proc/sys/kernel/printk\n";

/// Find the newest installed-or-unpacked kernel whose release is of `series` ("6.1"): unpacked
/// in a folder of `cache` or installed under /boot and /lib/modules. Err with the command that
/// provides one.
pub fn find_kernel(cache: &Path, series: &str) -> Result<Kernel, String> {
    find_kernel_in(cache, Path::new("/boot"), Path::new("/lib/modules"), series)
}

/// The Linux series ("5.10", "6.1", ...) with a kernel unpacked in `cache` that `find_kernel`
/// finds, by version. Kernels installed under /boot are left out: on a CI runner that is the
/// runner's own kernel, which `--on all` should not try to boot.
pub fn series_in_cache(cache: &Path) -> Vec<String> {
    let names = |dir: PathBuf| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut series: Vec<String> = names(cache.to_path_buf())
        .into_iter()
        .flat_map(|d| {
            let d = cache.join(d);
            let images = names(d.join("boot"))
                .into_iter()
                .filter_map(|n| n.strip_prefix("vmlinuz-").map(String::from));
            images
                .chain(names(d.join("lib/modules")))
                .chain(names(d.join("usr/lib/modules")))
                .collect::<Vec<_>>()
        })
        .filter_map(|release| platforms::id::linux_release(&release))
        .collect();
    series.sort_by(|a, b| compare_releases(a, b));
    series.dedup();
    let empty = PathBuf::from("/nonexistent");
    series.retain(|s| find_kernel_in(cache, &empty, &empty, s).is_ok());
    series
}

/// `find_kernel` with the system's folders as arguments, for tests.
fn find_kernel_in(
    cache: &Path,
    boot: &Path,
    system_modules: &Path,
    series: &str,
) -> Result<Kernel, String> {
    let mut found: Vec<Kernel> = Vec::new();
    // Unpacked packages first: of two equal releases, the cache's is kept (sort is stable).
    let mut unpacked: Vec<PathBuf> = std::fs::read_dir(cache)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    unpacked.sort();
    for dir in unpacked {
        let module_dirs = [dir.join("lib/modules"), dir.join("usr/lib/modules")];
        found.extend(kernels_in(&dir.join("boot"), &module_dirs, series));
    }
    found.extend(kernels_in(boot, &[system_modules.to_path_buf()], series));
    found.sort_by(|a, b| compare_releases(&b.release, &a.release));
    found.into_iter().next().ok_or_else(|| {
        format!(
            "no Linux {series} kernel to boot: none unpacked in {}/ (boot/vmlinuz-<release> or \
             usr/lib/modules/<release>/vmlinuz) nor installed in {}; run `.ci/stacks-install \
             {series}` as root (it unpacks the newest Debian build of Linux 5.10, 6.1, 6.12 or \
             7.2 into that cache and installs virtme-ng and QEMU)",
            cache.display(),
            boot.display()
        )
    })
}

/// The kernels of `series` that one root holds, in either of Debian's layouts: the image as
/// `boot/vmlinuz-<release>` (up to Debian 13), or as `<modules>/<release>/vmlinuz` (sid's
/// linux-binary package, under usr/lib/modules since /usr is merged). Each kernel's modules are
/// `<release>` in the first of `module_dirs` that has it.
fn kernels_in(boot: &Path, module_dirs: &[PathBuf], series: &str) -> Vec<Kernel> {
    let modules_of = |release: &str| {
        module_dirs
            .iter()
            .map(|m| m.join(release))
            .find(|m| m.is_dir())
    };
    let mut found: Vec<Kernel> = images_in(boot, series)
        .into_iter()
        .map(|release| Kernel {
            image: boot.join(format!("vmlinuz-{release}")),
            modules: modules_of(&release),
            release,
        })
        .collect();
    for dir in module_dirs {
        for release in images_beside_modules(dir, series) {
            // An installed sid kernel may have both: the one in /boot is enough.
            if !found.iter().any(|k| k.release == release) {
                found.push(Kernel {
                    image: dir.join(&release).join("vmlinuz"),
                    modules: modules_of(&release),
                    release,
                });
            }
        }
    }
    found
}

/// The releases of the `vmlinuz-<release>` files in `dir` that belong to `series`.
fn images_in(dir: &Path, series: &str) -> Vec<String> {
    releases_in(dir, series, |entry, name| {
        name.strip_prefix("vmlinuz-")
            .filter(|_| entry.is_file())
            .map(String::from)
    })
}

/// The releases of the `<release>/vmlinuz` files in `dir` (a modules folder) of `series`.
fn images_beside_modules(dir: &Path, series: &str) -> Vec<String> {
    releases_in(dir, series, |entry, name| {
        entry.join("vmlinuz").is_file().then(|| name.to_string())
    })
}

/// The releases that `release_of(path, file name)` reads from the entries of `dir`, of `series`,
/// sorted. The -cloud flavor is left out: it lacks 9p, the guest's root file system.
fn releases_in(
    dir: &Path,
    series: &str,
    release_of: impl Fn(&Path, &str) -> Option<String>,
) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut releases: Vec<String> = entries
        .flatten()
        .filter_map(|e| release_of(&e.path(), e.file_name().to_str()?))
        .filter(|r| platforms::id::linux_release(r).as_deref() == Some(series))
        .filter(|r| !r.contains("-cloud"))
        .collect();
    releases.sort();
    releases
}

/// Releases in version order: runs of digits compare as numbers ("6.1.0-57" > "6.1.0-9").
fn compare_releases(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then(x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The command that boots `kernel` with virtme-ng and runs `bin_dir/sockconform <args>` inside,
/// as root, in `root`, with SOCKCONFORM_ROOT=<root>, the folder `out` writable and everything
/// else of the host read-only, and no network of the host. It writes the guest's script into
/// `<cache>/vm/`. Its exit code is sockconform's (255: the guest died without one).
pub fn command(l: &Launch, kernel: &Kernel) -> Result<Command, String> {
    let exe = l.bin_dir.join(super::exe("sockconform"));
    for (what, path) in [
        ("the sockconform binary", &exe),
        ("the repository root", &l.root),
        ("the artifact folder", &l.out),
        ("the kernel image", &kernel.image),
    ] {
        if !path.is_absolute() || !path.exists() {
            return Err(format!(
                "{what} {} must exist and be absolute",
                path.display()
            ));
        }
    }
    check_modules(kernel)?;
    check_boot_needs(kernel)?;
    let vng = on_path("vng").ok_or(
        "virtme-ng (vng) is not on PATH: run `.ci/stacks-install` as root (pip install virtme-ng)",
    )?;
    let unshare = on_path("unshare").ok_or(
        "unshare (util-linux) is not on PATH; it keeps QEMU from outliving the run (Debian: \
         `apt-get install util-linux`)",
    )?;
    let exe = guest_bins(l, &exe)?;
    let script = write_guest_script(&l.cache, &guest_script(l, &exe, kernel))?;
    let log = l.out.join(CONSOLE_LOG);
    // A console log of an earlier run must not be read as this boot's.
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new(unshare);
    cmd.args(unshare_args(super::is_root()))
        .args(launcher_args(&log))
        .arg(vng)
        .args(vng_args(l, kernel, &script)?)
        .args(console_args(&log))
        // vng passes its own current folder to the guest, which the script leaves for `root`.
        .current_dir(&l.root)
        // QEMU's stdio would put a terminal into raw mode; the guest reads nothing.
        .stdin(Stdio::null());
    Ok(cmd)
}

/// vng under a PID namespace of its own that dies with `unshare` (see the module's doc). A user
/// namespace too when not root: creating a PID namespace needs CAP_SYS_ADMIN.
fn unshare_args(root: bool) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    if !root {
        a.extend(["--user".into(), "--map-root-user".into()]);
    }
    a.extend(["--pid", "--fork", "--kill-child"].map(String::from));
    a
}

/// `sh -c LAUNCHER` with its own arguments; vng and its arguments follow.
fn launcher_args(log: &Path) -> Vec<String> {
    let script = LAUNCHER
        .replace("$WHY_LINES", WHY_LINES)
        .replace("$BOOTED", BOOTED);
    vec![
        "sh".into(),
        "-c".into(),
        script,
        "sh".into(),
        log.display().to_string(),
        BOOT_DEADLINE_S.to_string(),
    ]
}

/// vng's options that give the guest a second console, hvc0, written by QEMU to `log` (a path
/// `vng_args` checked: it is in the artifact folder). Its kernel logs everything (loglevel 7)
/// until the guest script lowers it: the boot's messages, the initramfs' included, are what
/// says why a boot failed.
fn console_args(log: &Path) -> [String; 2] {
    [
        "--append=console=hvc0 loglevel=7".into(),
        // One argument: vng's parser would take a separate "-chardev ..." for an option.
        format!(
            "--qemu-opts=-chardev file,id=bootlog,path={} -device virtio-serial-pci,id=bootlog-bus \
             -device virtconsole,chardev=bootlog,bus=bootlog-bus.0",
            log.display()
        ),
    ]
}

/// The arguments of vng. vng hands most of them to a shell and to QEMU without quoting, hence
/// the check on paths.
fn vng_args(l: &Launch, kernel: &Kernel, script: &Path) -> Result<Vec<String>, String> {
    for (what, path) in [
        ("the kernel image", &kernel.image),
        ("the artifact folder", &l.out),
        (
            "the guest script (under the cache folder)",
            &script.to_path_buf(),
        ),
    ] {
        check_plain_path(what, path)?;
    }
    Ok(vec![
        "--run".into(),
        kernel.image.display().to_string(),
        "--disable-kvm".into(),
        "--force-9p".into(),
        "--memory".into(),
        MEMORY.into(),
        "--cpus".into(),
        CPUS.into(),
        "--name".into(),
        "sockconform-vm".into(),
        format!("--rwdir={}", l.out.display()),
        "--exec".into(),
        format!("sh {}", script.display()),
    ])
}

/// Paths vng puts into a shell command line and QEMU's comma-separated options unquoted.
fn check_plain_path(what: &str, path: &Path) -> Result<(), String> {
    let s = path.to_str().unwrap_or("");
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+-".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "{what} {} cannot be handed to virtme-ng, which passes it unquoted to a shell and to \
             QEMU: use a path of letters, digits and / . _ + -",
            path.display()
        ))
    }
}

/// The shell script the guest runs (as root: vng's default with --exec).
fn guest_script(l: &Launch, exe: &Path, kernel: &Kernel) -> String {
    let root = sh_quote(&l.root.display().to_string());
    let agent = exe.with_file_name(format!("sockconform-agent{}", std::env::consts::EXE_SUFFIX));
    let mut run = format!("exec {GUEST_BIN}/sockconform");
    for a in &l.args {
        run.push(' ');
        run.push_str(&sh_quote(a));
    }
    format!(
        "# sockconform in a Linux {release} guest (written by suite/src/stacks/vm.rs)\n\
         {GUEST_PORTS}\
         echo '<5>{BOOTED}' >/dev/kmsg\n\
         {QUIET_CONSOLE}\
         export PATH={GUEST_PATH}\n\
         ulimit -n {FD_LIMIT} || {{ echo 'cannot raise the descriptor limit to {FD_LIMIT}' >&2; exit 2; }}\n\
         cd {root} || exit 2\n\
         export SOCKCONFORM_ROOT={root}\n\
         mkdir -p {GUEST_BIN} && mount -t tmpfs sockconform {GUEST_BIN} \\\n\
           && cp {exe} {GUEST_BIN}/sockconform && cp {agent} {GUEST_BIN}/sockconform-agent \\\n\
           || {{ echo 'cannot copy the sockconform binaries into guest memory ({GUEST_BIN})' >&2; exit 2; }}\n\
         {run}\n",
        release = kernel.release,
        exe = sh_quote(&exe.display().to_string()),
        agent = sh_quote(&agent.display().to_string()),
    )
}

/// The binaries the guest copies into its memory: both stripped of debug information into
/// `<out>/guest-bin/` with binutils' objcopy (a debug build's 31 MB runner and 27 MB agent become
/// about 6 MB each), else the built ones. The copy goes through 9p at about 7 MB/s under
/// emulation: measured on linux-6.12, 23 s of a guest's 35 s outside its cases went to copying
/// the 165 MB of full-debug binaries, 1.4 s to the stripped ones.
fn guest_bins(l: &Launch, exe: &Path) -> Result<PathBuf, String> {
    let Some(objcopy) = on_path("objcopy") else {
        eprintln!(
            "objcopy (binutils) is not on PATH: the guest copies the unstripped binaries, which \
             takes longer (`.ci/stacks-install` installs binutils)"
        );
        return Ok(exe.to_path_buf());
    };
    let dir = l.out.join("guest-bin");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let agent = exe.with_file_name(super::exe("sockconform-agent"));
    for from in [exe, agent.as_path()] {
        let to = dir.join(from.file_name().unwrap_or_default());
        let status = Command::new(&objcopy)
            .arg("--strip-debug")
            .arg(from)
            .arg(&to)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", objcopy.display()))?;
        if !status.success() {
            return Err(format!(
                "{} --strip-debug {} failed ({status})",
                objcopy.display(),
                from.display()
            ));
        }
    }
    Ok(dir.join(super::exe("sockconform")))
}

/// One shell word: single quotes, with each ' written as '\''.
fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+-=:,@%".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Write the script as `<cache>/vm/guest-<hash of its text>.sh`: the same run reuses its file,
/// and runs at once never write into each other's.
fn write_guest_script(cache: &Path, text: &str) -> Result<PathBuf, String> {
    let dir = cache.join("vm");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let hash = fnv1a(text.as_bytes());
    let path = dir.join(format!("guest-{hash:016x}.sh"));
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text) {
        return Ok(path);
    }
    // Named by the text too: guests launched at once by one process (`--on all`) write their
    // scripts at the same moment, and a shared name swapped them (a 5.10 guest ran 7.2's).
    let tmp = dir.join(format!(".guest-{hash:016x}-{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// FNV-1a, 64 bits: a name that stays the same across Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Modules load in the guest only when they are indexed (modules.dep) and the host's root, which
/// the guest shares, has kmod's modprobe.
fn check_modules(kernel: &Kernel) -> Result<(), String> {
    let Some(dir) = &kernel.modules else {
        return Err(format!(
            "the modules of Linux {} are missing (no lib/modules/{} beside {}): the suite needs \
             veth, nf_tables and 9p from them; run `.ci/stacks-install` as root",
            kernel.release,
            kernel.release,
            kernel.image.display()
        ));
    };
    if !dir.join("modules.dep").is_file() {
        return Err(format!(
            "{} has no modules.dep: run `depmod -b <folder holding lib/> {}`, or \
             `.ci/stacks-install` as root",
            dir.display(),
            kernel.release
        ));
    }
    if !["/sbin/modprobe", "/usr/sbin/modprobe"]
        .iter()
        .any(|p| Path::new(p).is_file())
    {
        return Err(
            "modprobe is missing: the guest loads its modules with the host's kmod (Debian: \
             `apt-get install kmod`, or run `.ci/stacks-install` as root)"
                .into(),
        );
    }
    Ok(())
}

/// Refuse, before booting, a kernel that lacks what the guest needs to boot (`BOOT_NEEDS`),
/// naming the module and its option: QEMU would otherwise die at boot with a panic.
fn check_boot_needs(kernel: &Kernel) -> Result<(), String> {
    let Some(dir) = &kernel.modules else {
        return Ok(()); // check_modules said so already.
    };
    // Debian has the configuration beside the image (boot/config-<release>) or, from sid on,
    // among the modules (<release>/config).
    let config = [
        kernel
            .image
            .with_file_name(format!("config-{}", kernel.release)),
        dir.join("config"),
    ]
    .into_iter()
    .find_map(|p| std::fs::read_to_string(&p).ok().map(|text| (p, text)));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let (dep, builtin) = (read("modules.dep"), read("modules.builtin"));
    for (module, option, why) in BOOT_NEEDS {
        let value = config.as_ref().map(|(_, text)| config_value(text, option));
        let missing = match value.as_ref().map(|v| v.as_deref()) {
            Some(Some("y")) => None,
            Some(Some("m")) if lists_module(&dep, module) => None,
            Some(Some("m")) => Some(format!(
                "module {module} ({option}=m) is not in {}",
                dir.join("modules.dep").display()
            )),
            Some(_) => Some(format!(
                "{option} is not set in {}",
                config
                    .as_ref()
                    .map(|(p, _)| p.display().to_string())
                    .unwrap_or_default()
            )),
            // No configuration: the modules' own lists tell.
            None if lists_module(&dep, module) || lists_module(&builtin, module) => None,
            None => Some(format!(
                "module {module} ({option}) is neither in modules.dep nor in modules.builtin of {}",
                dir.display()
            )),
        };
        if let Some(missing) = missing {
            return Err(format!(
                "Linux {} cannot boot under virtme-ng: {missing} (the guest needs it: {why})",
                kernel.release
            ));
        }
    }
    Ok(())
}

/// The value of `option` in a kernel configuration: "y", "m", a string, or None when not set.
fn config_value(config: &str, option: &str) -> Option<String> {
    config.lines().find_map(|l| {
        l.strip_prefix(option)?
            .strip_prefix('=')
            .map(|v| v.trim().to_string())
    })
}

/// Whether a modules.dep or modules.builtin text lists `module` ("kernel/fs/9p/9p.ko.xz: ...";
/// a module's name has `_` where its file may have `-`).
fn lists_module(list: &str, module: &str) -> bool {
    list.lines().any(|l| {
        let path = l.split(':').next().unwrap_or("");
        let file = path.rsplit('/').next().unwrap_or("");
        file.split(".ko").next().map(|n| n.replace('-', "_")) == Some(module.to_string())
            && file.contains(".ko")
    })
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sockconform-vm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }

    /// An unpacked Debian package: boot/vmlinuz-<release>, with or without its modules.
    fn unpack(cache: &Path, release: &str, modules: bool) -> PathBuf {
        let dir = cache.join(format!("linux-image-{release}"));
        touch(&dir.join("boot").join(format!("vmlinuz-{release}")));
        if modules {
            touch(&dir.join("lib/modules").join(release).join("modules.dep"));
        }
        dir
    }

    #[test]
    fn the_newest_kernel_of_the_series_is_found() {
        let base = scratch("find");
        let (cache, boot, sysmods) = (base.join("cache"), base.join("boot"), base.join("mods"));
        unpack(&cache, "6.1.0-9-amd64", true);
        let newest = unpack(&cache, "6.1.0-57-amd64", true);
        // Other series, and the -cloud flavor (no 9p), are not candidates.
        unpack(&cache, "6.10.0-1-amd64", true);
        unpack(&cache, "6.12.0-3-amd64", true);
        unpack(&cache, "6.1.0-99-cloud-amd64", true);
        touch(&boot.join("vmlinuz-6.1.0-40-amd64"));
        touch(&boot.join("config-6.1.0-99-amd64"));
        let k = find_kernel_in(&cache, &boot, &sysmods, "6.1").unwrap();
        assert_eq!(
            k,
            Kernel {
                release: "6.1.0-57-amd64".into(),
                image: newest.join("boot/vmlinuz-6.1.0-57-amd64"),
                modules: Some(newest.join("lib/modules/6.1.0-57-amd64")),
            }
        );
        let k = find_kernel_in(&cache, &boot, &sysmods, "6.10").unwrap();
        assert_eq!(k.release, "6.10.0-1-amd64");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn an_installed_kernel_is_found_under_boot_with_the_systems_modules() {
        let base = scratch("boot");
        let (cache, boot, sysmods) = (base.join("cache"), base.join("boot"), base.join("mods"));
        unpack(&cache, "6.1.0-9-amd64", false);
        touch(&boot.join("vmlinuz-6.1.0-40-amd64"));
        std::fs::create_dir_all(sysmods.join("6.1.0-40-amd64")).unwrap();
        let k = find_kernel_in(&cache, &boot, &sysmods, "6.1").unwrap();
        assert_eq!(k.image, boot.join("vmlinuz-6.1.0-40-amd64"));
        assert_eq!(k.modules, Some(sysmods.join("6.1.0-40-amd64")));
        // An unpacked package without its modules reports none.
        std::fs::remove_file(boot.join("vmlinuz-6.1.0-40-amd64")).unwrap();
        let k = find_kernel_in(&cache, &boot, &sysmods, "6.1").unwrap();
        assert_eq!(k.release, "6.1.0-9-amd64");
        assert_eq!(k.modules, None);
        assert!(check_modules(&k)
            .unwrap_err()
            .contains(".ci/stacks-install"));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn no_kernel_says_which_command_provides_one() {
        let base = scratch("none");
        let e = find_kernel_in(&base.join("absent"), &base.join("boot"), &base, "6.1").unwrap_err();
        assert!(e.contains("no Linux 6.1 kernel"), "{e}");
        assert!(e.contains(".ci/stacks-install"), "{e}");
        let _ = std::fs::remove_dir_all(&base);
    }

    /// The files of one Debian package layout, relative to the folder it is unpacked into.
    fn lay_out(dir: &Path, files: &[String]) {
        for f in files {
            touch(&dir.join(f));
        }
    }

    /// Debian up to 13: `boot/vmlinuz-<release>` and the modules under `<modules>/<release>`
    /// (`lib/modules` before the /usr merge, `usr/lib/modules` after), with or without compression.
    fn boot_layout(release: &str, modules: &str, ko: &str) -> Vec<String> {
        vec![
            format!("boot/vmlinuz-{release}"),
            format!("boot/config-{release}"),
            format!("boot/System.map-{release}"),
            format!("{modules}/{release}/modules.dep"),
            format!("{modules}/{release}/kernel/fs/9p/9p.{ko}"),
        ]
    }

    /// Sid: linux-binary-<release> holds `usr/lib/modules/<release>/vmlinuz`, linux-modules- the
    /// modules beside it, linux-base- the config; linux-image-<release> adds only documentation.
    fn sid_layout(release: &str) -> Vec<String> {
        let m = format!("usr/lib/modules/{release}");
        vec![
            format!("{m}/vmlinuz"),
            format!("{m}/config"),
            format!("{m}/modules.builtin"),
            format!("{m}/modules.dep"),
            format!("{m}/kernel/fs/9p/9p.ko.xz"),
            format!("usr/share/doc/linux-image-{release}/changelog.Debian.gz"),
        ]
    }

    #[test]
    fn each_debian_layout_is_found_by_its_series() {
        let base = scratch("layouts");
        let (cache, boot, sysmods) = (base.join("cache"), base.join("boot"), base.join("mods"));
        let kernels = [
            // bullseye, bookworm, bookworm-backports, boot/ with merged-/usr modules, and sid.
            (
                "5.10",
                "5.10.0-46-amd64",
                boot_layout("5.10.0-46-amd64", "lib/modules", "ko"),
            ),
            (
                "6.1",
                "6.1.0-57-amd64",
                boot_layout("6.1.0-57-amd64", "lib/modules", "ko"),
            ),
            (
                "6.12",
                "6.12.95+deb12-amd64",
                boot_layout("6.12.95+deb12-amd64", "lib/modules", "ko.xz"),
            ),
            (
                "6.18",
                "6.18.9+deb13-amd64",
                boot_layout("6.18.9+deb13-amd64", "usr/lib/modules", "ko.xz"),
            ),
            (
                "7.2",
                "7.2.13+deb14-amd64",
                sid_layout("7.2.13+deb14-amd64"),
            ),
        ];
        for (_, release, files) in &kernels {
            lay_out(&cache.join(format!("linux-image-{release}")), files);
        }
        // Sid's -cloud flavor, in the same layout, lacks 9p: never a candidate.
        lay_out(
            &cache.join("linux-image-7.2.14+deb14-cloud-amd64"),
            &sid_layout("7.2.14+deb14-cloud-amd64"),
        );
        for (series, release, files) in &kernels {
            let dir = cache.join(format!("linux-image-{release}"));
            let k = find_kernel_in(&cache, &boot, &sysmods, series).unwrap();
            let image = files.iter().find(|f| f.contains("vmlinuz")).unwrap();
            let modules = files.iter().find(|f| f.ends_with("modules.dep")).unwrap();
            let modules = dir.join(modules.trim_end_matches("/modules.dep"));
            assert_eq!(
                k,
                Kernel {
                    release: release.to_string(),
                    image: dir.join(image),
                    modules: Some(modules),
                },
                "Linux {series}"
            );
        }
        // `--on all`: every series once, by version (6.12 after 6.1), the -cloud flavor left out.
        assert_eq!(
            series_in_cache(&cache),
            ["5.10", "6.1", "6.12", "6.18", "7.2"]
        );
        assert!(series_in_cache(&base.join("nothing")).is_empty());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn an_installed_sid_kernel_is_found_beside_its_modules() {
        let base = scratch("sid-installed");
        let (cache, boot, sysmods) = (base.join("cache"), base.join("boot"), base.join("mods"));
        touch(&sysmods.join("7.2.13+deb14-amd64/vmlinuz"));
        touch(&sysmods.join("7.2.9+deb14-amd64/vmlinuz"));
        let k = find_kernel_in(&cache, &boot, &sysmods, "7.2").unwrap();
        assert_eq!(k.image, sysmods.join("7.2.13+deb14-amd64/vmlinuz"));
        assert_eq!(k.modules, Some(sysmods.join("7.2.13+deb14-amd64")));
        // A copy in /boot too (as kernel-install makes) is the same kernel, found once.
        touch(&boot.join("vmlinuz-7.2.13+deb14-amd64"));
        let found = kernels_in(&boot, std::slice::from_ref(&sysmods), "7.2");
        let releases: Vec<&str> = found.iter().map(|k| k.release.as_str()).collect();
        assert_eq!(releases, ["7.2.13+deb14-amd64", "7.2.9+deb14-amd64"]);
        assert_eq!(found[0].image, boot.join("vmlinuz-7.2.13+deb14-amd64"));
        let _ = std::fs::remove_dir_all(&base);
    }

    /// A kernel of the bookworm layout whose configuration and modules.dep give each of
    /// `BOOT_NEEDS` as `config` says.
    fn bookworm_kernel(base: &Path, config: &str, dep: &str) -> Kernel {
        let release = "6.1.0-57-amd64";
        let dir = base.join(format!("linux-image-{release}"));
        lay_out(&dir, &boot_layout(release, "lib/modules", "ko"));
        std::fs::write(dir.join(format!("boot/config-{release}")), config).unwrap();
        let modules = dir.join("lib/modules").join(release);
        std::fs::write(modules.join("modules.dep"), dep).unwrap();
        Kernel {
            release: release.into(),
            image: dir.join(format!("boot/vmlinuz-{release}")),
            modules: Some(modules),
        }
    }

    #[test]
    fn a_kernel_the_guest_cannot_boot_on_is_refused_naming_module_and_option() {
        let base = scratch("needs");
        let config = "CONFIG_9P_FS=m\nCONFIG_NET_9P_VIRTIO=m\nCONFIG_VIRTIO_PCI=y\n\
                      CONFIG_VIRTIO_CONSOLE=m\n";
        let dep = "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko\n\
                   kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko\n\
                   kernel/drivers/char/virtio_console.ko:\n";
        let k = bookworm_kernel(&base, config, dep);
        assert_eq!(check_boot_needs(&k), Ok(()));
        // A module its configuration builds as a module, missing from modules.dep.
        let k = bookworm_kernel(&base, config, &dep.replace("kernel/fs/9p/9p.ko: ", ""));
        let e = check_boot_needs(&k).unwrap_err();
        assert!(
            e.starts_with("Linux 6.1.0-57-amd64 cannot boot under virtme-ng: "),
            "{e}"
        );
        assert!(e.contains("module 9p (CONFIG_9P_FS=m) is not in "), "{e}");
        // An option not set at all, as in Debian's -cloud flavor.
        let cloud = config.replace("CONFIG_9P_FS=m", "# CONFIG_9P_FS is not set");
        let e = check_boot_needs(&bookworm_kernel(&base, &cloud, dep)).unwrap_err();
        assert!(e.contains("CONFIG_9P_FS is not set in "), "{e}");
        assert!(e.contains("it mounts the host's root"), "{e}");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn sids_configuration_and_compressed_modules_are_read_beside_the_modules() {
        let base = scratch("needs-sid");
        let release = "7.2.13+deb14-amd64";
        let dir = base.join(format!("linux-image-{release}"));
        lay_out(&dir, &sid_layout(release));
        let modules = dir.join("usr/lib/modules").join(release);
        let config = "CONFIG_9P_FS=m\nCONFIG_NET_9P_VIRTIO=m\nCONFIG_VIRTIO_PCI=y\n\
                      CONFIG_VIRTIO_CONSOLE=y\n";
        std::fs::write(modules.join("config"), config).unwrap();
        let dep = "kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz\n";
        std::fs::write(modules.join("modules.dep"), dep).unwrap();
        let k = find_kernel_in(&base, &base.join("boot"), &base.join("mods"), "7.2").unwrap();
        let e = check_boot_needs(&k).unwrap_err();
        assert!(
            e.contains("module 9pnet_virtio (CONFIG_NET_9P_VIRTIO=m)"),
            "{e}"
        );
        let dep = format!("{dep}kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n");
        std::fs::write(modules.join("modules.dep"), dep).unwrap();
        assert_eq!(check_boot_needs(&k), Ok(()));
        let _ = std::fs::remove_dir_all(&base);
    }

    /// Runs the launcher with a stand-in for vng (a shell command) and a boot deadline; returns
    /// its exit code, its stderr and how long it took. None where there is no sh.
    fn launch_with(log: &Path, deadline_s: u32, vng: &str) -> Option<(i32, String, f64)> {
        on_path("sh")?;
        let mut args = launcher_args(log);
        args[5] = deadline_s.to_string();
        let t0 = std::time::Instant::now();
        let o = Command::new(&args[0])
            .args(&args[1..])
            .args(["sh", "-c", vng])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        Some((
            o.status.code().unwrap_or(-1),
            stderr,
            t0.elapsed().as_secs_f64(),
        ))
    }

    #[test]
    fn the_launcher_says_why_a_guest_died_from_its_console() {
        let base = scratch("died");
        let log = base.join("console.log");
        let vng = format!(
            "printf '%s\\n' '[ 2.2] virtme initramfs: initramfs does not have module crypto-aes' \
             '[ 3.2] virtme initramfs: initramfs does not have module fs-9p' \
             '[ 8.2] Kernel panic - not syncing: Attempted to kill init!' \
             '[ 8.3] Call Trace:' >{}; exit 255",
            log.display()
        );
        let Some((code, stderr, _)) = launch_with(&log, 60, &vng) else {
            eprintln!("skipped: no sh on PATH");
            return;
        };
        assert_eq!(code, 255, "{stderr}");
        assert!(
            stderr.contains("the guest died before sockconform could exit"),
            "{stderr}"
        );
        assert!(
            stderr.contains("  [ 3.2] virtme initramfs: initramfs does not have module fs-9p\n")
        );
        assert!(
            stderr.contains("  [ 8.2] Kernel panic - not syncing"),
            "{stderr}"
        );
        // Lines every boot has, and the rest of the trace, are left out.
        assert!(
            !stderr.contains("crypto-aes") && !stderr.contains("Call Trace"),
            "{stderr}"
        );
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn the_launcher_ends_a_guest_that_does_not_boot_by_its_deadline() {
        let base = scratch("hung");
        let log = base.join("console.log");
        let vng = format!(
            "echo '[ 1.0] Run /init as init process' >{}; while :; do sleep 1; done",
            log.display()
        );
        let Some((code, stderr, secs)) = launch_with(&log, 1, &vng) else {
            eprintln!("skipped: no sh on PATH");
            return;
        };
        assert_eq!(code, 124, "{stderr}");
        assert!(
            stderr.contains("the guest did not boot within 1 s: ending it"),
            "{stderr}"
        );
        // Nothing says why: the last lines are shown.
        assert!(
            stderr.contains("  [ 1.0] Run /init as init process"),
            "{stderr}"
        );
        assert!(secs < 30.0, "took {secs} s");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn the_launcher_passes_on_the_exit_code_of_a_booted_guest() {
        let base = scratch("booted");
        let log = base.join("console.log");
        let vng = format!("echo '[ 9.1] {BOOTED}' >{}; exit 3", log.display());
        let Some((code, stderr, _)) = launch_with(&log, 60, &vng) else {
            eprintln!("skipped: no sh on PATH");
            return;
        };
        assert_eq!((code, stderr.as_str()), (3, ""));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn releases_compare_as_versions() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_releases("6.1.0-57-amd64", "6.1.0-9-amd64"), Greater);
        assert_eq!(compare_releases("6.1.0-9-amd64", "6.1.0-10-amd64"), Less);
        assert_eq!(compare_releases("6.1.0-57-amd64", "6.1.0-57-amd64"), Equal);
        assert_eq!(compare_releases("6.1.10", "6.1.9"), Greater);
    }

    fn launch(base: &Path) -> Launch {
        Launch {
            bin_dir: base.join("bin"),
            root: PathBuf::from("/src/it's here"),
            out: base.join("out"),
            cache: base.join("cache"),
            args: vec![
                "conform".into(),
                "--filter".into(),
                "close/".into(),
                "--json".into(),
                "/o/a b.json".into(),
            ],
        }
    }

    fn kernel() -> Kernel {
        Kernel {
            release: "6.1.0-57-amd64".into(),
            image: PathBuf::from("/c/linux-image-6.1.0-57-amd64/boot/vmlinuz-6.1.0-57-amd64"),
            modules: None,
        }
    }

    #[test]
    fn vng_is_asked_for_the_kernel_emulated_without_network_with_out_writable() {
        let l = launch(Path::new("/t"));
        let a = vng_args(&l, &kernel(), Path::new("/t/cache/vm/guest-1.sh")).unwrap();
        assert_eq!(
            a.join(" "),
            "--run /c/linux-image-6.1.0-57-amd64/boot/vmlinuz-6.1.0-57-amd64 --disable-kvm \
             --force-9p --memory 2G --cpus 1 --name sockconform-vm --rwdir=/t/out \
             --exec sh /t/cache/vm/guest-1.sh"
        );
        // No host network: vng adds a device only with --network / -n.
        assert!(!a.iter().any(|x| x.starts_with("--net") || x == "-n"));
    }

    #[test]
    fn unshare_adds_a_user_namespace_only_for_a_user_who_is_not_root() {
        assert_eq!(unshare_args(true).join(" "), "--pid --fork --kill-child");
        assert_eq!(
            unshare_args(false).join(" "),
            "--user --map-root-user --pid --fork --kill-child"
        );
    }

    #[test]
    fn paths_vng_would_pass_unquoted_are_refused() {
        let mut l = launch(Path::new("/t"));
        l.out = PathBuf::from("/t/my out");
        let e = vng_args(&l, &kernel(), Path::new("/t/s.sh")).unwrap_err();
        assert!(e.contains("the artifact folder /t/my out"), "{e}");
        l.out = PathBuf::from("/t/a,b");
        assert!(vng_args(&l, &kernel(), Path::new("/t/s.sh")).is_err());
    }

    #[test]
    fn the_guest_script_takes_the_ports_raises_the_limit_and_runs_in_root() {
        let l = launch(Path::new("/t"));
        let s = guest_script(&l, Path::new("/t/bin/sockconform"), &kernel());
        assert!(s.starts_with("# sockconform in a Linux 6.1.0-57-amd64 guest"));
        assert!(s.contains("exec </dev/virtio-ports/virtme.stdin >/dev/virtio-ports/virtme.stdout"));
        assert!(s.contains(
            "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        ));
        assert!(s.contains("ulimit -n 65536 ||"));
        assert!(s.contains("cd '/src/it'\\''s here' || exit 2\n"));
        assert!(s.contains("export SOCKCONFORM_ROOT='/src/it'\\''s here'\n"));
        // Both binaries run from guest memory, not from 9p.
        assert!(s.contains("mount -t tmpfs sockconform /run/sockconform-bin"));
        assert!(s.contains("cp /t/bin/sockconform /run/sockconform-bin/sockconform"));
        assert!(s.contains("cp /t/bin/sockconform-agent /run/sockconform-bin/sockconform-agent"));
        assert!(s.ends_with(
            "exec /run/sockconform-bin/sockconform conform --filter close/ --json '/o/a b.json'\n"
        ));
        // The ports are taken before anything can print.
        assert!(s.find("virtme.stdout").unwrap() < s.find("ulimit").unwrap());
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(sh_quote("close/"), "close/");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$HOME;x"), "'$HOME;x'");
    }

    #[test]
    fn the_guest_script_is_written_once_per_text() {
        let base = scratch("script");
        let a = write_guest_script(&base, "echo a\n").unwrap();
        let b = write_guest_script(&base, "echo b\n").unwrap();
        assert_ne!(a, b);
        assert_eq!(write_guest_script(&base, "echo a\n").unwrap(), a);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "echo a\n");
        assert!(a.starts_with(base.join("vm")));
        // Guests launched at once each get their own text (`--on all`).
        std::thread::scope(|s| {
            for i in 0..8 {
                let base = &base;
                s.spawn(move || {
                    for n in 0..100 {
                        let t = format!("echo {i} {n}\n");
                        let p = write_guest_script(base, &t).unwrap();
                        assert_eq!(std::fs::read_to_string(p).unwrap(), t);
                    }
                });
            }
        });
        let _ = std::fs::remove_dir_all(&base);
    }

    /// Boots the Linux 6.1 guest (about 30 s, software-emulated) and runs `sockconform list`
    /// there. Needs root, `.ci/stacks-install` and `cargo build --bins`.
    #[test]
    #[ignore]
    fn boots_linux_6_1_and_runs_the_suite() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let base = scratch("boot-run");
        let out = base.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let l = Launch {
            bin_dir: root.join("target/debug"),
            root: root.clone(),
            out: out.clone(),
            cache: super::super::cache_dir(),
            args: vec!["list".into()],
        };
        let k = find_kernel(&l.cache, "6.1").unwrap();
        let o = command(&l, &k).unwrap().output().unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{:?}\n{stdout}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(stdout.contains("close/orderly_idle"), "{stdout}");
        let _ = std::fs::remove_dir_all(&base);
    }
}
