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

/// A `TestNetns`, or returns from the test saying SKIPPED when namespaces cannot be made
/// here (not root).
macro_rules! netns_or_skip {
    () => {
        match $crate::harness::TestNetns::new() {
            Ok(ns) => ns,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                // libtest names each test's thread after the test.
                let current = std::thread::current();
                let test = current
                    .name()
                    .filter(|n| *n != "main")
                    .unwrap_or(module_path!());
                // Straight to stderr: libtest would swallow an eprintln! of a passing test.
                let _ = std::io::Write::write_fmt(
                    &mut std::io::stderr(),
                    format_args!(
                        "SKIPPED {test}: creating a network namespace needs root \
                         (CAP_SYS_ADMIN): {e}\n"
                    ),
                );
                return;
            }
            Err(e) => panic!("cannot create a test network namespace: {e}"),
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
