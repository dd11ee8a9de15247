//! Throwaway network namespaces for tests.
//!
//! A namespace here is anonymous: a short-lived thread `unshare`s into a new one and hands
//! back an open fd to it; the namespace lives exactly as long as that fd and the sockets made
//! in it. Unlike `ip netns add`, this leaves no bind mount under /var/run/netns behind even
//! if the test process is killed, and needs no unique naming.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::thread;

use podswitch_netlink::{Error, Netlink};

/// A fresh, empty network namespace (only a down `lo`), gone when this is dropped.
pub struct TestNetns {
    file: File,
}

impl TestNetns {
    pub fn new() -> io::Result<Self> {
        let file = thread::spawn(|| -> io::Result<File> {
            // SAFETY: unshare takes a flag and touches no memory of ours. It moves only the
            // calling thread, spawned for this alone and ending right below, into a new
            // network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            File::open("/proc/thread-self/ns/net")
        })
        .join()
        .expect("namespace-creating thread panicked")?;
        Ok(TestNetns { file })
    }

    /// A path that opens this namespace, as `in_netns` and `Netlink::new_in_netns` want:
    /// our own fd to it, through /proc.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// The open namespace file, for `link_set_netns_fd`.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A handle acting in this namespace.
    pub fn netlink(&self) -> Netlink {
        Netlink::new_in_netns(&self.path()).expect("netlink socket in the test namespace")
    }
}

/// Set (to anything but empty or `0`), every skip is a failure (see [`skip`]).
pub const REQUIRE_ALL_ENV: &str = "PODSWITCH_REQUIRE_ALL";
/// A file each skip appends one line to, for the summary at the end of `scripts/test.sh`.
pub const SKIP_LOG_ENV: &str = "PODSWITCH_SKIP_LOG";

/// The one way a test here skips: says why on the process's stderr (not through `eprintln!`,
/// which libtest swallows for a passing test) and appends the line to [`SKIP_LOG_ENV`]'s file;
/// under [`REQUIRE_ALL_ENV`] (set by `scripts/test.sh` as root and in CI) it panics instead.
/// A copy of `podswitch_tests::skip`: this crate cannot depend on that one (it depends on us).
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    let line = format!("SKIPPED {test}: {reason}");
    if std::env::var(REQUIRE_ALL_ENV).is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("{line}; {REQUIRE_ALL_ENV} is set, so a skip is a failure ({REQUIRE_ALL_ENV}=0 allows skips)");
    }
    let _ = writeln!(io::stderr(), "{line}");
    if let Some(log) = std::env::var_os(SKIP_LOG_ENV) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = appended {
            panic!("{line}; and recording it in {SKIP_LOG_ENV}={log:?} failed: {e}");
        }
    }
}

/// What a failure to create a test namespace means: `Ok(reason)` to skip (EPERM when not
/// root: namespaces need CAP_SYS_ADMIN), `Err(message)` to fail. As root, EPERM is no reason
/// to skip: something (a seccomp profile, a container without CAP_SYS_ADMIN) refuses what the
/// tests are there to exercise, and the run must say so.
pub fn netns_failure(e: &io::Error, euid: u32) -> Result<String, String> {
    match e.raw_os_error() {
        Some(libc::EPERM) if euid != 0 => Ok(format!(
            "creating a network namespace needs root (CAP_SYS_ADMIN): {e}"
        )),
        Some(libc::EPERM) => Err(format!(
            "cannot create a test network namespace although running as root: {e}; a seccomp \
             profile or a container without CAP_SYS_ADMIN refuses unshare(CLONE_NEWNET)"
        )),
        _ => Err(format!("cannot create a test network namespace: {e}")),
    }
}

/// A `TestNetns`, or [`skip`]s (returns from) the test when namespaces cannot be made here
/// because we are not root.
macro_rules! netns_or_skip {
    () => {
        match $crate::harness::TestNetns::new() {
            Ok(ns) => ns,
            // SAFETY: geteuid has no preconditions.
            Err(e) => match $crate::harness::netns_failure(&e, unsafe { libc::geteuid() }) {
                Ok(reason) => {
                    // libtest names each test's thread after the test.
                    let current = std::thread::current();
                    let test = current
                        .name()
                        .filter(|n| *n != "main")
                        .unwrap_or(module_path!());
                    $crate::harness::skip(test, &reason);
                    return;
                }
                Err(message) => panic!("{message}"),
            },
        }
    };
}

/// Host end and pod end of the veth pair most tests use.
pub const HOST: &str = "psw0";
pub const POD: &str = "psw0p";

/// Creates the `psw0`/`psw0p` pair in `nl`'s namespace; returns (psw0, psw0p) indexes.
pub fn veth(nl: &mut Netlink) -> (u32, u32) {
    nl.link_add_veth(HOST, POD).expect("create veth pair")
}

/// Like `veth`, with both ends up.
pub fn veth_up(nl: &mut Netlink) -> (u32, u32) {
    let (host, pod) = veth(nl);
    nl.link_set_up(host).expect("host end up");
    nl.link_set_up(pod).expect("pod end up");
    (host, pod)
}

/// An index no test namespace has: they hold `lo` and a few veths.
pub const MISSING_INDEX: u32 = 9999;

/// Asserts `result` failed with `errno` and returns the message for further checks.
pub fn errno_of<T: std::fmt::Debug>(result: Result<T, Error>, errno: i32) -> String {
    let err = result.expect_err("the kernel should have refused this");
    assert_eq!(err.errno(), Some(errno), "unexpected error: {err}");
    err.to_string()
}

#[test]
fn eperm_skips_only_when_not_root_and_other_errors_fail() {
    let eperm = io::Error::from_raw_os_error(libc::EPERM);
    let skip = netns_failure(&eperm, 1000).expect("not root: a skip");
    assert!(skip.contains("needs root (CAP_SYS_ADMIN)"), "{skip}");
    let fail = netns_failure(&eperm, 0).expect_err("root: a failure");
    assert!(
        fail.contains("although running as root") && fail.contains("seccomp"),
        "{fail}"
    );
    let enomem = io::Error::from_raw_os_error(libc::ENOMEM);
    assert!(netns_failure(&enomem, 1000).is_err());
}
