//! The runner's own promises, tested through the real CLI binary: a hung agent is reported with its
//! stderr and the run goes on; bad input exits 2; and after a normal run, a failed case and a Ctrl-C
//! in the middle, no agent process (or holder child) and no namespace of the run remains.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A runner command whose agents carry a tag unique to this test.
fn runner(tag: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockconform"));
    cmd.args(args)
        .env("SOCKCONFORM_ROOT", root())
        .env("SOCKCONFORM_RUN_ID", tag);
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Wait (bounded) until no process carries the tag; returns the survivors. None: cannot look here.
fn survivors(tag: &str) -> Option<Vec<u32>> {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let pids = platforms::procs::pids_with_env("SOCKCONFORM_RUN_ID", tag)?;
        if pids.is_empty() || Instant::now() > end {
            return Some(pids);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many of these processes are agents.
fn agents(pids: &[u32]) -> usize {
    let is_agent = |p: &&u32| {
        platforms::procs::command_line(**p).is_some_and(|c| c.contains("sockconform-agent"))
    };
    pids.iter().filter(is_agent).count()
}

fn assert_nothing_left(tag: &str) {
    match survivors(tag) {
        None => eprintln!("skipped the process check: cannot list processes on this platform"),
        Some(p) => assert!(p.is_empty(), "processes of run {tag} survived it: {p:?}"),
    }
}

#[test]
fn a_normal_run_leaves_no_process_behind() {
    let tag = format!("t-normal-{}", std::process::id());
    // The inherited-socket case also starts a holder child, which must end too.
    let o = runner(
        &tag,
        &[
            "conform",
            "--filter",
            "process_exit/inherited",
            "--filter",
            "close/orderly_idle",
        ],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 passed"), "{}", text(&o));
    assert_nothing_left(&tag);
}

#[test]
fn descriptors_leaked_by_whoever_started_the_run_do_not_shift_a_count() {
    // capacity_fd_limit counts connections until EMFILE under a limit of 1000: every descriptor
    // the agent inherited would take one connection off the count (CI once saw 997, a shell 995).
    let tag = format!("t-fds-{}", std::process::id());
    let mut cmd = runner(&tag, &["conform", "--filter", "ports/capacity_fd_limit"]);
    if !platforms::procs::leak_descriptors_into(&mut cmd, 7) {
        eprintln!("skipped: descriptors are not inherited by number on this platform");
        return;
    }
    let o = cmd.output().unwrap();
    if text(&o).contains("1 skipped") {
        eprintln!("skipped: {}", text(&o));
        return;
    }
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 passed"), "{}", text(&o));
}

#[test]
fn a_hung_agent_is_reported_with_its_stderr_and_the_run_goes_on() {
    let tag = format!("t-hang-{}", std::process::id());
    let o = runner(
        &tag,
        &[
            "conform",
            "--filter",
            "close/orderly_idle",
            "--filter",
            "close/with_unread_data",
            "--filter",
            "close/data_after_peer_closed",
            "--filter",
            "connect/closed_port",
        ],
    )
    .env("SOCKCONFORM_TEST_AGENT_HANG", "accept")
    .env("SOCKCONFORM_STEP_DEADLINE_MS", "300")
    .output()
    .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("no reply within the step deadline"), "{out}");
    assert!(
        out.contains("hanging in accept"),
        "the agent's stderr is part of the report: {out}"
    );
    assert!(
        out.contains("1 passed") && out.contains("3 failed"),
        "{out}"
    );
    assert_nothing_left(&tag);
}

#[test]
fn ctrl_c_in_the_middle_leaves_no_process_or_namespace_behind() {
    let tag = format!("t-int-{}", std::process::id());
    // Loopback cases in their own namespaces, and (with root) a lab case whose three namespace
    // holders inherit the run's tag too.
    // The lab case's client blocks in read() for about 6 s, longer than the check below waits: it
    // can only be gone in time if the kernel killed it when the runner died.
    let filters = [
        "conform",
        "--filter",
        "linger/positive",
        "--filter",
        "host_crash/sending_retries2_shortened",
    ];
    let mut child = runner(&tag, &filters)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the run's agents exist (the cases take over a second), then interrupt the runner.
    let end = Instant::now() + Duration::from_secs(5);
    let agents = loop {
        match platforms::procs::pids_with_env("SOCKCONFORM_RUN_ID", &tag) {
            None => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("skipped: cannot list processes on this platform");
                return;
            }
            // Interrupt only once cases are under way: an agent sleeps inside a socket call.
            Some(p)
                if agents(&p) >= 4
                    && p.iter()
                        .any(|p| platforms::procs::waiting_on_socket(*p) == Some(true)) =>
            {
                break p
            }
            Some(_) if Instant::now() > end => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the run's agents never appeared")
            }
            Some(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let host_ns = platforms::procs::net_namespace(std::process::id());
    let namespaces: Vec<String> = agents
        .iter()
        .filter_map(|p| platforms::procs::net_namespace(*p))
        .filter(|ns| Some(ns) != host_ns.as_ref())
        .collect();
    platforms::procs::interrupt(child.id()).unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the runner was interrupted");
    assert_nothing_left(&tag);
    for ns in namespaces {
        assert_eq!(
            platforms::procs::namespace_in_use(&ns),
            Some(false),
            "namespace {ns} outlived the run"
        );
    }
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let tag = format!("t-bad-{}", std::process::id());
    let o = runner(&tag, &["conform", "--filter", "lnger/zero"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("linger/zero_abortive_close"),
        "close matches are listed: {}",
        text(&o)
    );
    let o = runner(&tag, &["conform", "--bogus"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--bogus"));
    // A bad flag is one line and a hint, never the whole usage, and nothing ran.
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(err.lines().nth(1).unwrap().starts_with("hint:"), "{err}");
    assert!(o.stdout.is_empty(), "{}", text(&o));
    let o = runner(&tag, &["conform", "--filtr", "close"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("--filter"),
        "the near flag is suggested: {}",
        text(&o)
    );
    // An unwritable --json fails before any case runs.
    let o = runner(
        &tag,
        &["conform", "--json", "/nonexistent-sockconform/r.json"],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "nothing ran: {}", text(&o));
    // The help lists every command.
    let o = runner(&tag, &["--help"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    for name in ["conform", "list", "diff", "import", "explore"] {
        assert!(text(&o).contains(name), "{name}: {}", text(&o));
    }
}

#[test]
fn a_corrupt_snapshot_is_named_and_exits_2() {
    let tag = format!("t-corrupt-{}", std::process::id());
    // A private copy of the tree's layout, so the real snapshots are never touched.
    let dir = std::env::temp_dir().join(format!("sc-corrupt-{}", std::process::id()));
    let snap = dir
        .join("snapshots")
        .join(platforms::platform_id())
        .join("close");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(dir.join("Cargo.toml"), "").unwrap();
    std::fs::write(
        snap.join("orderly_idle.snap"),
        "---\nsource: x\n---\n{ broken",
    )
    .unwrap();
    let o = runner(&tag, &["conform", "--filter", "close/orderly_idle"])
        .env("SOCKCONFORM_ROOT", &dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("orderly_idle.snap") && text(&o).contains("corrupt"),
        "{}",
        text(&o)
    );
}

/// Every descendant of `pid` with its command line (read from /proc; empty where it is absent).
fn descendants(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parent_of = |p: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let mut found = vec![pid];
    let mut grew = true;
    while grew {
        grew = false;
        for p in &pids {
            if !found.contains(p) && parent_of(*p).is_some_and(|pp| found.contains(&pp)) {
                found.push(*p);
                grew = true;
            }
        }
    }
    found
        .into_iter()
        .skip(1)
        .map(|p| (p, platforms::procs::command_line(p).unwrap_or_default()))
        .collect()
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

#[test]
fn ctrl_c_during_a_multi_stack_run_leaves_no_qemu_sandbox_or_agent() {
    // The stacks need root, runsc, virtme-ng and a Linux 6.1 kernel (`.ci/stacks-install`).
    let cache = suite::stacks::cache_dir();
    let missing = [
        ("runsc", suite::stacks::gvisor::release().err()),
        (
            "a Linux 6.1 kernel",
            suite::stacks::vm::find_kernel(&cache, "6.1").err(),
        ),
    ]
    .into_iter()
    .find_map(|(what, err)| err.map(|e| format!("{what}: {e}")));
    if let Some(why) = missing {
        eprintln!("skipped: the stacks are not installed here ({why}); run .ci/stacks-install");
        return;
    }
    if !std::path::Path::new("/proc/self/stat").exists() {
        eprintln!("skipped: cannot list processes on this platform");
        return;
    }
    let tag = format!("t-stacks-{}", std::process::id());
    // Many rounds of a short family, so every stack is still running when the interrupt comes:
    // all three at once (by default they take turns, one per core, and the host's and gVisor's
    // endless rounds would keep the guest waiting).
    let mut child = runner(
        &tag,
        &[
            "conform",
            "--on",
            "host,gvisor,linux-6.1",
            "--filter",
            "close/",
            "--repeat",
            "100000",
        ],
    )
    .env("SOCKCONFORM_STACKS_AT_ONCE", "3")
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Interrupt once the guest runs cases and a sandbox and a host agent exist.
    let end = Instant::now() + Duration::from_secs(300);
    let mut guest_running = false;
    let seen = loop {
        while let Ok(line) = rx.try_recv() {
            guest_running |= line.starts_with("[linux-6.1]") && line.contains("  done  ");
        }
        let d = descendants(child.id());
        let has = |what: &str| d.iter().any(|(_, c)| c.contains(what));
        if guest_running && has("qemu-system") && has("runsc") && has("sockconform-agent") {
            break d;
        }
        if Instant::now() > end {
            platforms::procs::interrupt(child.id()).ok();
            let _ = child.wait();
            panic!("the three stacks never ran at once: {d:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Ctrl-C as a terminal sends it to the runner (the stacks sit in groups of their own).
    platforms::procs::interrupt(child.id()).unwrap();
    let waited = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the interrupted run did not end within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "the run was interrupted");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<&(u32, String)> = seen.iter().filter(|(p, _)| alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "processes of the interrupted run survived it: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_nothing_left(&tag);
}

/// `--pcap DIR`: one file per case, read back by a real reader (tcpdump), holding every segment
/// the capture saw, with the FIN and RST flags in the order the case's wire events name them.
#[test]
fn pcap_files_hold_every_segment_and_the_fins_and_rsts_of_the_wire() {
    let tag = format!("t-pcap-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("sc-pcap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let json = dir.join("results.json");
    let pcaps = dir.join("pcap");
    std::fs::create_dir_all(&dir).unwrap();
    let three = [
        "--filter",
        "close/orderly_idle",
        "--filter",
        "close/with_unread_data",
        "--filter",
        "close/data_after_peer_closed",
    ];
    let o = runner(&tag, &["conform", "--pcap"])
        .arg(&pcaps)
        .args(three)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("results.json");
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3, "{}", text(&o));
    let captured: Vec<&serde_json::Value> = cases
        .iter()
        .filter(|c| c["wire"]["wire"] == "captured")
        .collect();
    if captured.is_empty() {
        eprintln!("skipped: no capture here ({})", results["capture"]);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    assert_eq!(captured.len(), 3, "{}", text(&o));
    for c in captured {
        let id = c["case"].as_str().unwrap();
        let file = pcaps.join(suite::pcap::file_name(id));
        let read = Command::new("tcpdump")
            .args(["-nn", "-r"])
            .arg(&file)
            .output()
            .expect("tcpdump reads the pcap files (apt-get install tcpdump)");
        assert!(read.status.success(), "{id}: {}", text(&read));
        let lines: Vec<String> = String::from_utf8_lossy(&read.stdout)
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(
            lines.len(),
            c["wire_raw"].as_array().unwrap().len(),
            "{id}: every captured segment is in the file: {lines:#?}"
        );
        // The FIN and RST flags, in order, as tcpdump shows them and as the wire events name them.
        let from_pcap: String = lines
            .iter()
            .filter_map(|l| {
                l.split_once("Flags [")
                    .map(|(_, f)| f.split(']').next().unwrap())
            })
            .flat_map(|f| {
                [
                    f.contains('F').then_some('F'),
                    f.contains('R').then_some('R'),
                ]
            })
            .flatten()
            .collect();
        let from_wire: String = c["wire"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .flat_map(|e| {
                [
                    e.contains("FIN").then_some('F'),
                    e.contains("RST").then_some('R'),
                ]
            })
            .flatten()
            .collect();
        assert!(
            !from_wire.is_empty(),
            "{id}: every close/ case ends with a FIN or a RST"
        );
        assert_eq!(from_pcap, from_wire, "{id}: {lines:#?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
