//! `podswitchctl` as a process against fake daemons: a thread on a temporary unix socket that
//! reads one request and answers with a canned response. Checks what reaches the daemon, what
//! is printed, and the exit code. podswitchd's verbs are tested here; `control` has
//! podswitch-control's and `install_cni` the installer's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control;
mod install_cni;

use podswitch_proto::{read_frame, write_frame, Request, RequestBody, Response};
use podswitch_proto::{Op, RouteInfo, RouteOrigin, RouteTarget};
use serde::{de::DeserializeOwned, Serialize};
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;

/// A socket that answers one request with a canned response, and hands back what it was asked.
/// `Q` is the request type it reads: [`Request`] for podswitchd, `ControlRequest` for
/// podswitch-control.
struct FakeDaemon<Q = Request> {
    path: PathBuf,
    thread: Option<JoinHandle<Q>>,
}

impl<Q: DeserializeOwned + Send + 'static> FakeDaemon<Q> {
    fn start<A: Serialize + Send + 'static>(test: &str, answer: A) -> Self {
        let path = std::env::temp_dir().join(format!(
            "podswitchctl-it-{}-{test}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let req: Q = read_frame(&mut conn).unwrap();
            write_frame(&mut conn, &answer).unwrap();
            req
        });
        Self {
            path,
            thread: Some(thread),
        }
    }

    fn socket(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The request the daemon received.
    fn request(mut self) -> Q {
        self.thread.take().unwrap().join().unwrap()
    }
}

impl<Q> Drop for FakeDaemon<Q> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A fresh directory under the temp dir, removed with its contents when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("podswitchctl-it-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary with `args`, `PODSWITCH_SOCKET` set to `socket_env` (or unset), and `stdin`.
fn podswitchctl(args: &[&str], socket_env: Option<&Path>, stdin: &[u8]) -> Output {
    let env: Vec<_> = socket_env
        .map(|p| ("PODSWITCH_SOCKET", p))
        .into_iter()
        .collect();
    podswitchctl_with_env(args, &env, stdin)
}

/// Runs the binary with `args`, the socket variables in `env` set and the others unset, and
/// `stdin`.
fn podswitchctl_with_env(args: &[&str], env: &[(&str, &Path)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podswitchctl"));
    cmd.args(args);
    cmd.env_remove("PODSWITCH_SOCKET");
    cmd.env_remove("PODSWITCH_CONTROL_SOCKET");
    for (name, value) in env {
        cmd.env(name, value);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn routes_json_after_the_verb_prints_the_list() {
    let daemon: FakeDaemon = FakeDaemon::start(
        "routes",
        Response::Routes {
            routes: vec![RouteInfo {
                prefix: "0.0.0.0/0".parse().unwrap(),
                target: RouteTarget::Host,
                origin: RouteOrigin::Static,
            }],
        },
    );
    let out = podswitchctl(
        &["routes", "-o", "json", "--socket", daemon.socket()],
        None,
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed,
        serde_json::json!([{"prefix": "0.0.0.0/0", "target": {"via": "host"}, "origin": "static"}])
    );
    assert!(matches!(daemon.request().body, RequestBody::Routes));
}

#[test]
fn dp_apply_from_stdin_sends_the_transaction_and_reports_the_generation() {
    let daemon: FakeDaemon = FakeDaemon::start("apply", Response::Applied { generation: 5 });
    let out = podswitchctl(
        &["dp", "apply", "-"],
        Some(&daemon.path),
        br#"{"generation": 5, "ops": [{"op": "del_port", "name": "tap9"}]}"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "applied: generation 5\n");
    let RequestBody::Apply(tx) = daemon.request().body else {
        panic!("not an apply")
    };
    assert_eq!(tx.generation, Some(5));
    assert!(matches!(&tx.ops[..], [Op::DelPort { name }] if name == "tap9"));
}

#[test]
fn error_response_goes_to_stderr_with_exit_code_1() {
    let message = "port \"tap1\" already exists";
    let daemon: FakeDaemon = FakeDaemon::start(
        "error",
        Response::Error {
            message: message.into(),
        },
    );
    let out = podswitchctl(
        &["--socket", daemon.socket(), "dp", "del-port", "tap1"],
        None,
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), format!("podswitchctl: {message}\n"));
    assert!(matches!(daemon.request().body, RequestBody::Apply(_)));
}

#[test]
fn unexpected_response_kind_is_named() {
    let daemon: FakeDaemon = FakeDaemon::start("mismatch", Response::Applied { generation: 1 });
    let out = podswitchctl(&["--socket", daemon.socket(), "ports"], None, b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with(
            "podswitchctl: podswitchd answered the ports request with the wrong kind of \
             response (applied)"
        ),
        "{}",
        text(&out.stderr)
    );
    daemon.request();
}

#[test]
fn missing_daemon_says_what_to_do() {
    let out = podswitchctl(
        &["--socket", "/nonexistent/dataplane.sock", "status"],
        None,
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "podswitchctl: cannot connect to podswitchd at /nonexistent/dataplane.sock: \
         No such file or directory — is podswitchd running? (--socket to point elsewhere)\n"
    );
}
