//! Working inside another network namespace without moving any long-lived thread into it.
//!
//! A network namespace is a property of a thread, and netlink sockets keep the namespace
//! their creator was in. So the safe pattern is: a fresh thread enters the namespace, does the
//! work (or just opens a [`Netlink`] there) and exits. Nothing else in the process ever runs
//! in the foreign namespace, and a panic in the work cannot leave a thread stuck there.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::panic;
use std::path::Path;
use std::thread;

use crate::error::{Error, Result};
use crate::socket::Netlink;

/// Runs `f` on a new thread that has entered the network namespace at `netns_path` (e.g.
/// `/var/run/netns/NAME`, `/proc/PID/ns/net`), waits for it and returns what `f` returned.
///
/// The thread exits when `f` returns, so no thread stays in the namespace; sockets `f`
/// created there keep working in it afterwards. A panic in `f` is passed on to the caller.
/// Threads that `f` spawns start in the namespace too.
pub fn in_netns<R: Send>(netns_path: &Path, f: impl FnOnce() -> R + Send) -> Result<R> {
    let netns = File::open(netns_path).map_err(|source| Error::Netns {
        step: "open",
        path: netns_path.to_path_buf(),
        source,
    })?;
    thread::scope(|scope| {
        let worker = thread::Builder::new()
            .name("psw-netns".to_string())
            .spawn_scoped(scope, move || {
                enter_netns(&netns, netns_path)?;
                Ok(f())
            })
            .map_err(|source| Error::Netns {
                step: "start a thread to enter",
                path: netns_path.to_path_buf(),
                source,
            })?;
        match worker.join() {
            Ok(result) => result,
            Err(payload) => panic::resume_unwind(payload),
        }
    })
}

impl Netlink {
    /// Opens a handle whose requests act in the network namespace at `netns_path`, from
    /// whatever thread uses it: the socket is created inside [`in_netns`] and stays bound
    /// there after that thread has gone.
    pub fn new_in_netns(netns_path: &Path) -> Result<Netlink> {
        in_netns(netns_path, Netlink::new)?
    }
}

/// Moves the calling thread into the network namespace `netns` refers to. Only for the
/// throwaway thread of [`in_netns`].
fn enter_netns(netns: &File, path: &Path) -> Result<()> {
    // SAFETY: setns takes two integers and touches no memory of ours. The fd is valid for the
    // whole call because `netns` is an open `File` borrowed across it. It changes only the
    // calling thread's network namespace, and the caller is the thread `in_netns` spawned for
    // this, which exits once its closure returns.
    let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(Error::Netns {
            step: "enter (setns)",
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_namespace_path_is_an_open_error_naming_the_path() {
        let path = Path::new("/nonexistent/psw-netns-test");
        let err = in_netns(path, || ()).expect_err("no such file");
        assert_eq!(
            err.to_string(),
            "open network namespace /nonexistent/psw-netns-test: \
             No such file or directory (os error 2)"
        );
        assert_eq!(err.errno(), Some(libc::ENOENT));
    }

    #[test]
    fn a_file_that_is_not_a_namespace_is_refused_by_setns() {
        let err = in_netns(Path::new("/proc/self/status"), || ()).expect_err("not a netns");
        assert!(
            err.to_string()
                .starts_with("enter (setns) network namespace /proc/self/status: "),
            "{err}"
        );
        assert_eq!(err.errno(), Some(libc::EINVAL));
    }
}
