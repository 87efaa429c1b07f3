//! Platform identity: the TCP implementation that decides behavior, not just the OS.
//!
//! A platform id is `<stack>-<release>`: `linux-6.18` (the kernel's major.minor), `gvisor-20221219`
//! (gVisor's netstack and its release), `macos-15` (the major version), `windows-10.0.26100`
//! (the build), `freebsd-14.3`. It is detected, never configured, and it names everything a run
//! produces: the snapshot folder, `results.json`, the CI artifact and the matrix column. A stack
//! whose release cannot be seen from inside is named by the stack alone (`gvisor`).
//!
//! The parsing and ordering below are portable; only `detect` looks at the running system.

use std::cmp::Ordering;

/// The stacks sockconform knows, in the order the matrix shows them.
pub const STACKS: [&str; 5] = ["linux", "gvisor", "macos", "windows", "freebsd"];

/// The stack part of a platform id (`linux` of `linux-6.18`), if it is one of `STACKS`.
pub fn stack_of(id: &str) -> Option<&'static str> {
    let stack = id.split_once('-').map_or(id, |(s, _)| s);
    STACKS.iter().copied().find(|s| *s == stack)
}

/// The release part of a platform id (`6.18` of `linux-6.18`), if it has one.
pub fn release_of(id: &str) -> Option<&str> {
    id.split_once('-').map(|(_, r)| r).filter(|r| !r.is_empty())
}

/// Whether `id` is a well-formed platform id: a known stack, optionally `-` and a release made of
/// ASCII letters, digits and dots (so it is safe as a folder and an artifact name).
pub fn is_platform_id(id: &str) -> bool {
    stack_of(id).is_some()
        && match id.split_once('-') {
            None => true,
            Some((_, r)) => {
                !r.is_empty()
                    && r.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            }
        }
}

/// Numeric components of a release ("6.18" -> [6, 18]; "14.3" -> [14, 3]); text parts count 0.
fn release_numbers(r: &str) -> Vec<u64> {
    r.split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0))
        .collect()
}

/// Compare two releases numerically, component by component ("6.1" < "6.18" < "6.19").
pub fn compare_releases(a: &str, b: &str) -> Ordering {
    release_numbers(a).cmp(&release_numbers(b))
}

/// The recorded platform closest to `id` among `recorded`, of the same stack: the newest release
/// not newer than `id`'s, else the oldest newer one; an id without a release is compared with the
/// newest. None when no platform of that stack was recorded, or `id` itself was.
pub fn nearest<'a>(id: &str, recorded: &[&'a str]) -> Option<&'a str> {
    let stack = stack_of(id)?;
    if recorded.contains(&id) {
        return None;
    }
    let mut same: Vec<&'a str> = recorded
        .iter()
        .copied()
        .filter(|r| stack_of(r) == Some(stack))
        .collect();
    same.sort_by(|a, b| compare_releases(release_of(a).unwrap_or(""), release_of(b).unwrap_or("")));
    let Some(mine) = release_of(id) else {
        return same.last().copied();
    };
    let not_newer = same
        .iter()
        .rev()
        .find(|r| compare_releases(release_of(r).unwrap_or(""), mine) != Ordering::Greater);
    not_newer.or(same.first()).copied()
}

/// The Linux release as a platform release: major.minor of `uname -r` ("6.18.44-fc" -> "6.18").
pub fn linux_release(uname_release: &str) -> Option<String> {
    let mut parts = uname_release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().filter(|p| !p.is_empty())?;
    let minor = parts.next().filter(|p| !p.is_empty())?;
    Some(format!("{major}.{minor}"))
}

/// The FreeBSD release as `freebsd-version` names it, without the branch ("14.3-RELEASE-p2" -> "14.3").
pub fn freebsd_release(version: &str) -> Option<String> {
    let r = version.split('-').next()?.trim();
    (!r.is_empty() && r.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| r.to_string())
}

/// The macOS major version ("15.1.1" -> "15").
pub fn macos_release(version: &str) -> Option<String> {
    let major = version.split('.').next()?.trim();
    (!major.is_empty() && major.chars().all(|c| c.is_ascii_digit())).then(|| major.to_string())
}

/// gVisor announces itself in its kernel log (its first line is "Starting gVisor...").
pub fn is_gvisor_log(log: &str) -> bool {
    log.lines().take(8).any(|l| l.contains("Starting gVisor"))
}

/// The platform id of this run, detected from the running system.
pub fn detect() -> String {
    detect_parts().0
}

/// The platform id and the raw text it was read from (the full kernel release, the OS build), for
/// metadata that is shown but never compared.
pub fn detect_parts() -> (String, String) {
    sys_detect()
}

#[cfg(target_os = "linux")]
fn sys_detect() -> (String, String) {
    if running_on_gvisor() {
        // gVisor cannot be asked its release from inside (uname says 4.4.0 on every release); the
        // `--on gvisor` launcher passes the release `runsc --version` printed on the host.
        return match std::env::var("SOCKCONFORM_GVISOR_RELEASE") {
            Ok(r) if is_platform_id(&format!("gvisor-{r}")) => {
                (format!("gvisor-{r}"), format!("gVisor {r}"))
            }
            _ => (
                "gvisor".into(),
                "gVisor (release not visible inside)".into(),
            ),
        };
    }
    let raw = uname_release();
    match linux_release(&raw) {
        Some(r) => (format!("linux-{r}"), raw),
        None => ("linux".into(), raw),
    }
}

/// The kernel release (see `crate::kernel_release`), given the platform detail that
/// `detect_parts` read (on Linux, FreeBSD and Windows the kernel release already).
#[cfg(target_os = "macos")]
pub fn kernel_release(_detail: &str) -> String {
    format!("Darwin {}", uname_release())
}

/// The kernel release (see `crate::kernel_release`), given the platform detail that
/// `detect_parts` read (on Linux, FreeBSD and Windows the kernel release already).
#[cfg(not(target_os = "macos"))]
pub fn kernel_release(detail: &str) -> String {
    detail.to_string()
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
fn uname_release() -> String {
    // SAFETY: uname fills a zeroed struct of fixed-size, NUL-terminated arrays.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Read the kernel log (syslog(2) READ_ALL). On gVisor it is gVisor's own boot log; on Linux it
/// may be refused (dmesg_restrict), which means "not gVisor".
#[cfg(target_os = "linux")]
fn running_on_gvisor() -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: klogctl writes at most len bytes into buf.
    let n = unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), buf.len() as libc::c_int) };
    n > 0 && is_gvisor_log(&String::from_utf8_lossy(&buf[..n as usize]))
}

#[cfg(target_os = "freebsd")]
fn sys_detect() -> (String, String) {
    let out = std::process::Command::new("freebsd-version")
        .arg("-k")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    match freebsd_release(&out) {
        Some(r) => (format!("freebsd-{r}"), out),
        None => ("freebsd".into(), out),
    }
}

#[cfg(target_os = "macos")]
fn sys_detect() -> (String, String) {
    let out = std::process::Command::new("sw_vers")
        .arg("-productVersion")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    match macos_release(&out) {
        Some(r) => (format!("macos-{r}"), out),
        None => ("macos".into(), out),
    }
}

#[cfg(windows)]
fn sys_detect() -> (String, String) {
    // RtlGetVersion tells the real build (GetVersionEx lies to unmanifested programs).
    use windows_sys::Wdk::System::SystemServices::RtlGetVersion;
    use windows_sys::Win32::System::SystemInformation::OSVERSIONINFOW;
    // SAFETY: the struct is zeroed with its size set, as RtlGetVersion requires.
    let mut v: OSVERSIONINFOW = unsafe { std::mem::zeroed() };
    v.dwOSVersionInfoSize = std::mem::size_of::<OSVERSIONINFOW>() as u32;
    if unsafe { RtlGetVersion(&mut v) } != 0 {
        return ("windows".into(), String::new());
    }
    let r = format!(
        "{}.{}.{}",
        v.dwMajorVersion, v.dwMinorVersion, v.dwBuildNumber
    );
    (format!("windows-{r}"), r)
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "macos",
    windows
)))]
fn sys_detect() -> (String, String) {
    (std::env::consts::OS.to_string(), String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_come_from_the_systems_own_strings() {
        assert_eq!(linux_release("6.18.44-fc-v1045").as_deref(), Some("6.18"));
        assert_eq!(linux_release("6.1.0-57-amd64").as_deref(), Some("6.1"));
        assert_eq!(linux_release("4.4.0").as_deref(), Some("4.4"));
        assert_eq!(linux_release("garbage"), None);
        assert_eq!(freebsd_release("14.3-RELEASE-p2").as_deref(), Some("14.3"));
        assert_eq!(macos_release("15.1.1").as_deref(), Some("15"));
        assert!(is_gvisor_log(
            "[    0.000000] Starting gVisor...\n[    0.3] Digging up root...\n"
        ));
        assert!(!is_gvisor_log("[    0.000000] Linux version 6.1.0\n"));
    }

    #[test]
    fn ids_name_a_known_stack_and_a_safe_release() {
        assert!(
            is_platform_id("linux-6.18")
                && is_platform_id("gvisor")
                && is_platform_id("windows-10.0.26100")
        );
        assert!(
            !is_platform_id("solaris-11")
                && !is_platform_id("linux-")
                && !is_platform_id("linux-6/1")
        );
        assert_eq!(stack_of("gvisor-20221219"), Some("gvisor"));
        assert_eq!(release_of("linux-6.18"), Some("6.18"));
        assert_eq!(release_of("linux"), None);
    }

    #[test]
    fn releases_order_numerically() {
        assert_eq!(compare_releases("6.1", "6.18"), Ordering::Less);
        assert_eq!(compare_releases("6.9", "6.18"), Ordering::Less);
        assert_eq!(
            compare_releases("10.0.26100", "10.0.20348"),
            Ordering::Greater
        );
    }

    #[test]
    fn nearest_is_the_closest_recorded_release_of_the_same_stack() {
        let rec = ["linux-6.1", "linux-6.18", "gvisor-20221219", "macos-15"];
        assert_eq!(nearest("linux-6.8", &rec), Some("linux-6.1"));
        assert_eq!(nearest("linux-6.19", &rec), Some("linux-6.18"));
        assert_eq!(nearest("linux-5.15", &rec), Some("linux-6.1"));
        assert_eq!(nearest("linux-6.18", &rec), None, "recorded itself");
        assert_eq!(nearest("gvisor", &rec), Some("gvisor-20221219"));
        assert_eq!(nearest("gvisor-20240101", &rec), Some("gvisor-20221219"));
        assert_eq!(nearest("freebsd-14.3", &rec), None, "no FreeBSD recorded");
        assert_eq!(nearest("macos-26", &rec), Some("macos-15"));
    }
}
