//! The integration-test harness: real pods around a real `podswitchd`.
//!
//! A [`Node`] is a network namespace of its own (so tests run in parallel without seeing each
//! other) with a `podswitchd` started inside it, a host port `psw0` holding the gateway
//! address, and routes: default → host, the pod CIDR → unreachable. A [`Pod`] is another
//! namespace whose `eth0` is a tap of the switch, configured as a CNI plugin would: a /32
//! address, an on-link route to the gateway, a default route via it.
//!
//! Everything is torn down in `Drop`, so a failing (panicking) test cleans up too. Tests need
//! root; without it [`root_or_skip`] says so loudly and the test returns early, or fails under
//! `PODSWITCH_REQUIRE_ALL=1` (see [`skip`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]
pub mod containerd;
pub mod control;
pub mod policy;
pub mod services;
pub mod two_nodes;

use podswitch_proto::{
    read_frame, write_frame, CountersDump, Ipv4Prefix, NetnsAttach, NodeSpec, Op, PortKind,
    PortRole, PortSpec, Request, RequestBody, Response, RouteSpec, RouteTarget, Transaction,
};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The pod CIDR every test node uses (nodes are isolated in their own namespaces).
pub const POD_CIDR: &str = "10.244.1.0/24";
/// The gateway of [`POD_CIDR`].
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);

/// Set (to anything but empty or `0`), every skip is a failure: the test panics with the
/// reason it would have skipped. `scripts/test.sh` sets it when running as root and in CI
/// (`CI=true`), where everything a test needs is there and a skip can only hide a breakage.
pub const REQUIRE_ALL_ENV: &str = "PODSWITCH_REQUIRE_ALL";
/// A file each skip appends one line to, so that a run can end with a summary of what did not
/// run (`scripts/test.sh` sets it and prints the summary).
pub const SKIP_LOG_ENV: &str = "PODSWITCH_SKIP_LOG";

/// The one way a test of this crate skips: says why on the process's stderr (not through
/// `eprintln!`, which libtest swallows for a passing test), appends the line to
/// [`SKIP_LOG_ENV`]'s file, and returns so the caller can return early. Under
/// [`REQUIRE_ALL_ENV`] it panics with the reason instead.
///
/// `netlink/tests/it/harness.rs` and `benches/src/lib.rs` hold copies of this function: test
/// code cannot be shared across those crates without a dependency cycle.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    // libtest names a test's thread after its full path (`l3::pods_ping_…`): prefer that.
    let thread = std::thread::current();
    let test = thread.name().filter(|n| n.ends_with(test)).unwrap_or(test);
    let line = format!("SKIPPED {test}: {reason}");
    if std::env::var(REQUIRE_ALL_ENV).is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("{line}; {REQUIRE_ALL_ENV} is set, so a skip is a failure ({REQUIRE_ALL_ENV}=0 allows skips)");
    }
    let _ = writeln!(std::io::stderr(), "{line}");
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

/// True when running as root; otherwise [`skip`]s the test, saying why.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip(
            test,
            "needs root (network namespaces, tap devices); CI runs as root",
        );
    }
    root
}

/// A name unique to this process and call: `{prefix}{pid}x{n}`, short enough for interfaces.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}x{n}", std::process::id())
}

/// Path of a workspace binary (`podswitchd`, `podswitchctl`), built once per test process:
/// `cargo test` does not build the binaries of other packages.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        let package = match name {
            "podswitchd" => "podswitch-dataplane",
            "podswitchctl" => "podswitch-cli",
            "podswitch-control" => "podswitch-control",
            "podswitch-cni" => "podswitch-cni",
            other => panic!("unknown binary {other}"),
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(workspace)
            .args(["build", "--quiet", "-p", package, "--bin", name]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        cmd.env("CARGO_TARGET_DIR", profile_dir.parent().unwrap());
        let status = cmd.status().expect("running cargo build");
        assert!(
            status.success(),
            "cargo build -p {package} --bin {name} failed"
        );
        built.push(name.to_string());
    }
    profile_dir.join(name)
}

/// Runs a command; panics with its output if it fails.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted (with every process still in it) on drop.
#[derive(Debug)]
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates a namespace with loopback up.
    pub fn new(prefix: &str) -> Netns {
        let ns = Netns {
            name: unique(prefix),
        };
        run(&["ip", "netns", "add", &ns.name]);
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Path for setns.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace; returns its output whatever the exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    /// `ip -n NAME args...`: panics, with its stderr, unless it exits 0; returns its stdout.
    /// Use this, not [`Netns::exec`], for `ip`: an assertion on the output of a failed `ip`
    /// (an empty listing) would prove nothing.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&run(&all).stdout).into_owned()
    }

    /// Gives `eth0` the pod's addressing as control does on CNI ADD: `ip`/32, the gateway
    /// on-link, the default route via it.
    pub fn address_as_pod(&self, ip: Ipv4Addr) {
        let gw = GATEWAY.to_string();
        self.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
        self.ip(&["route", "add", &gw, "dev", "eth0", "scope", "link"]);
        self.ip(&["route", "add", "default", "via", &gw]);
    }

    /// Runs `f` on a thread inside the namespace (sockets made there stay there).
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        podswitch_netlink::in_netns(&self.path(), f).unwrap()
    }

    /// `ping -c count` from inside; returns the output text and whether every reply came.
    pub fn ping(&self, dst: impl std::fmt::Display, args: &[&str]) -> (bool, String) {
        let dst = dst.to_string();
        let mut a = vec!["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2"];
        a.extend_from_slice(args);
        a.push(&dst);
        let out = self.exec(&a);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A node: its namespace, its `podswitchd`, its socket.
#[derive(Debug)]
pub struct Node {
    /// The node's network namespace (the "root" namespace of this node).
    pub ns: Netns,
    daemon: Option<Child>,
    /// The daemon's API socket.
    pub socket: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
}

impl Node {
    /// A node with one worker, set up with a host port and the standard routes.
    pub fn start() -> Node {
        Node::with_args(&[])
    }

    /// A node whose daemon gets extra flags (e.g. `--workers 2`).
    pub fn with_args(args: &[&str]) -> Node {
        let node = Node::bare(args);
        node.apply(Node::base_ops()).unwrap();
        node
    }

    /// The node's own configuration: addressing, host port `psw0`, default route to the host,
    /// the pod CIDR unreachable (so unassigned pod addresses get an ICMP error).
    pub fn base_ops() -> Vec<Op> {
        vec![
            Op::SetNode(NodeSpec {
                pod_cidr: POD_CIDR.parse().unwrap(),
                gateway: GATEWAY,
                gateway_mac: None,
                service_cidr: None,
                node_port_ip: None,
            }),
            Op::AddPort(PortSpec {
                name: "psw0".into(),
                kind: PortKind::Tap,
                role: PortRole::Host { mac: None },
                mtu: 1500,
                offloads: true,
                netns: None,
                queue_ids: Vec::new(),
            }),
            route("0.0.0.0/0", RouteTarget::Host),
            route(POD_CIDR, RouteTarget::Unreachable),
        ]
    }

    /// Applies `ops` as the whole configuration (a replace transaction).
    pub fn replace(&self, ops: Vec<Op>) -> Result<u64, String> {
        match self.request(RequestBody::Apply(Transaction {
            generation: None,
            replace: true,
            ops,
        })) {
            Response::Applied { generation } => Ok(generation),
            Response::Error { message } => Err(message),
            other => panic!("unexpected response {other:?}"),
        }
    }

    /// A node whose daemon has been told nothing yet.
    pub fn bare(args: &[&str]) -> Node {
        let ns = Netns::new("pswn");
        let dir = std::env::temp_dir().join(unique("podswitch-test-"));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("dataplane.sock");
        let mut node = Node {
            ns,
            daemon: None,
            socket,
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        node.start_daemon();
        node
    }

    /// Starts `podswitchd` in the node's namespace (again, after [`Node::kill_daemon`]) and
    /// waits for its socket. The daemon starts empty: configuration is the caller's to replay.
    ///
    /// `nsenter --net`, not `ip netns exec`: the latter also gives the process a mount
    /// namespace of its own, and then network namespaces bind-mounted later by others (a
    /// container runtime's `/var/run/netns/cni-…`) are invisible to it, as on no real node.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none(), "the daemon is running");
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("podswitchd.log"))
            .unwrap();
        let daemon = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path().display()))
            .arg(binary("podswitchd"))
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(daemon);
        self.wait_for_socket();
    }

    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|d| d.try_wait().ok().flatten())
            {
                panic!("podswitchd exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "podswitchd did not open its socket: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's process id while it runs (`nsenter` execs it, so it is the child's).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// How the daemon ended, if it has.
    pub fn daemon_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.daemon
            .as_mut()
            .and_then(|d| d.try_wait().ok().flatten())
    }

    /// Runs `podswitchctl --socket <this node's socket> ARGS...` and returns its stdout;
    /// panics with its stderr unless it exits 0.
    pub fn podswitchctl(&self, args: &[&str]) -> String {
        let out = Command::new(binary("podswitchctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podswitchctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits up to `timeout` for the daemon to exit; its status, or `None` if it still runs.
    pub fn daemon_exit_wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.daemon_exit() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The node's scratch directory (sockets, logs, state), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("podswitchd.log")).unwrap_or_default()
    }

    /// One request, one response.
    pub fn request(&self, body: RequestBody) -> Response {
        let mut conn = UnixStream::connect(&self.socket).unwrap();
        write_frame(&mut conn, &Request::new(body)).unwrap();
        read_frame(&mut conn).unwrap()
    }

    /// Applies a transaction; the error message on failure.
    pub fn apply(&self, ops: Vec<Op>) -> Result<u64, String> {
        match self.request(RequestBody::Apply(Transaction {
            generation: None,
            replace: false,
            ops,
        })) {
            Response::Applied { generation } => Ok(generation),
            Response::Error { message } => Err(message),
            other => panic!("unexpected response {other:?}"),
        }
    }

    /// Summed counters.
    pub fn counters(&self) -> CountersDump {
        match self.request(RequestBody::Counters) {
            Response::Counters(c) => c,
            other => panic!("unexpected response {other:?}"),
        }
    }

    /// The count of one switch event (`arp_reply`, `gso_frames_rx`, ...) in a fresh dump.
    pub fn event(&self, name: &str) -> u64 {
        event(&self.counters(), name)
    }

    /// The count of one drop reason.
    pub fn drops(&self, reason: &str) -> u64 {
        let c = self.counters();
        c.drops
            .iter()
            .find(|d| d.reason == reason)
            .unwrap_or_else(|| panic!("no drop reason {reason}"))
            .count
    }

    /// Attaches a pod with address `10.244.1.{host}`: a new namespace whose `eth0` the daemon
    /// creates (a persistent tap, moved in and renamed by the daemon), configured the way the
    /// CNI plugin configures pods: a /32 address, an on-link route to the gateway, a default
    /// route via it.
    pub fn add_pod(&self, host: u8) -> Pod {
        self.add_pod_with(host, PodOptions::default())
    }

    /// [`Node::add_pod`] with a port set up as `options` say.
    pub fn add_pod_with(&self, host: u8, options: PodOptions) -> Pod {
        let ns = Netns::new("pswp");
        let ip = Ipv4Addr::new(10, 244, 1, host);
        let spec = PortSpec {
            name: unique("pt"),
            kind: PortKind::Tap,
            role: PortRole::Pod {
                mac: format!("02:00:0a:f4:01:{host:02x}").parse().unwrap(),
                ip,
                namespace: None,
                pod: None,
            },
            mtu: options.mtu,
            offloads: options.offloads,
            netns: Some(NetnsAttach {
                path: ns.path().display().to_string(),
                ifname: "eth0".into(),
            }),
            queue_ids: Vec::new(),
        };
        self.apply(vec![Op::AddPort(spec.clone())]).unwrap();
        ns.address_as_pod(ip);
        Pod {
            port: spec.name.clone(),
            mac: format!("02:00:0a:f4:01:{host:02x}"),
            ns,
            ip,
            spec,
        }
    }

    /// A pod attached through a veth pair and an `afxdp` port instead of a tap: the pod's
    /// `eth0` is one end of the pair, the other end (named like the port) stays in the node's
    /// namespace, where the daemon binds AF_XDP sockets to it. The pod's `eth0` sends whole,
    /// checksummed frames (transmit checksum, TSO and GSO off by the ethtool ioctl, as
    /// `ethtool -K eth0 tx off tso off gso off`): AF_XDP carries no
    /// checksum or segmentation state (ARCHITECTURE.md, "AF_XDP ports").
    pub fn add_veth_pod(&self, host: u8) -> Pod {
        self.add_veth_pod_with_queues(host, 1)
    }

    /// [`Node::add_veth_pod`] with a veth of `queues` rx and tx queues (one per worker).
    pub fn add_veth_pod_with_queues(&self, host: u8, queues: u32) -> Pod {
        self.add_veth_pod_with(host, queues, None)
    }

    /// [`Node::add_veth_pod_with_queues`], with the switch's end of the pair in `switch_end`
    /// (named `sw0` there, given to the port as its `netns`) instead of the node's namespace.
    pub fn add_veth_pod_with(&self, host: u8, queues: u32, switch_end: Option<&Netns>) -> Pod {
        let ns = Netns::new("pswv");
        let ip = Ipv4Addr::new(10, 244, 1, host);
        let mac = format!("02:00:0a:f4:01:{host:02x}");
        let name = unique("vx");
        let q = queues.to_string();
        let (end_ns, end_name) = match switch_end {
            Some(n) => (n, "sw0"),
            None => (&self.ns, name.as_str()),
        };
        end_ns.ip(&[
            "link",
            "add",
            end_name,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "netns",
            &ns.name,
        ]);
        ns.ip(&["link", "set", "eth0", "address", &mac, "up"]);
        podswitch_netlink::Ethtool::new_in_netns(&ns.path())
            .and_then(|e| e.disable_tx_offloads("eth0"))
            .unwrap_or_else(|e| panic!("eth0 tx offloads off: {e}"));
        ns.address_as_pod(ip);
        let spec = PortSpec {
            name: name.clone(),
            kind: PortKind::Afxdp,
            role: PortRole::Pod {
                mac: mac.parse().unwrap(),
                ip,
                namespace: None,
                pod: None,
            },
            mtu: 1500,
            offloads: false,
            netns: switch_end.map(|n| NetnsAttach {
                path: n.path().display().to_string(),
                ifname: end_name.to_string(),
            }),
            queue_ids: Vec::new(),
        };
        self.apply(vec![Op::AddPort(spec.clone())]).unwrap();
        Pod {
            port: name,
            mac,
            ns,
            ip,
            spec,
        }
    }

    /// The XDP program attached to interface `ifname` of the node's namespace, read over
    /// rtnetlink (`IFLA_XDP`), if any.
    pub fn xdp_program(&self, ifname: &str) -> Option<podswitch_netlink::XdpAttachment> {
        self.ns.enter(|| {
            let mut nl = podswitch_netlink::Netlink::new().unwrap();
            let index = nl.link_index(ifname).unwrap().expect("no such interface");
            nl.link_xdp(index).unwrap()
        })
    }

    /// Sends SIGTERM to the daemon and waits (up to 10 s) for it to exit; its status.
    pub fn stop_daemon(&mut self) -> std::process::ExitStatus {
        let pid = self.daemon_pid().expect("the daemon is not running");
        // SAFETY: kill(2) with a pid of our own child and a signal number.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
        let status = self
            .daemon_exit_wait(Duration::from_secs(10))
            .expect("podswitchd did not exit within 10 s of SIGTERM");
        self.daemon = None;
        status
    }

    /// Kills the daemon (SIGKILL) and waits for it.
    pub fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_daemon();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How [`Node::add_pod_with`] sets up a pod's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodOptions {
    /// `PortSpec::offloads`: the tap exchanges TSO/USO super-frames and partial checksums
    /// with the pod (on, the default) or only whole, checksummed frames (off).
    pub offloads: bool,
    /// `PortSpec::mtu` (the daemon gives the pod's interface the same).
    pub mtu: u16,
}

impl Default for PodOptions {
    fn default() -> Self {
        PodOptions {
            offloads: true,
            mtu: 1500,
        }
    }
}

/// The count of switch event `name` in a dump; panics, listing the events there are, if the
/// dump has no such event.
pub fn event(c: &CountersDump, name: &str) -> u64 {
    c.events
        .iter()
        .find(|e| e.event == name)
        .unwrap_or_else(|| panic!("no event {name} in the counters dump: {:?}", c.events))
        .count
}

/// A pod: a namespace whose eth0 is a switch port.
#[derive(Debug)]
pub struct Pod {
    /// The pod's namespace.
    pub ns: Netns,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its MAC.
    pub mac: String,
    /// The switch port's name.
    pub port: String,
    /// The port as it was added (to add it again after a daemon restart).
    pub spec: PortSpec,
}

/// A static route op.
pub fn route(prefix: &str, target: RouteTarget) -> Op {
    Op::AddRoute(RouteSpec {
        prefix: prefix.parse::<Ipv4Prefix>().unwrap(),
        target,
    })
}

/// Bytes of a deterministic pseudo-random stream (xorshift), so a receiver can check every
/// byte without holding a copy.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The bytes of [`pattern`]`(len, seed)`, produced a chunk at a time: a 100 MB stream can be
/// sent and checked without holding it.
#[derive(Debug, Clone)]
pub struct PatternStream {
    x: u64,
}

impl PatternStream {
    /// The stream [`pattern`] with `seed` starts.
    pub fn new(seed: u64) -> PatternStream {
        PatternStream { x: seed | 1 }
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut x = self.x;
        for b in buf {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        self.x = x;
    }
}

/// What a [`tcp_transfer_verified`] receiver saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Bytes received before the sender's FIN.
    pub received: usize,
    /// Offset of the first byte that differed from the pattern, if one did.
    pub first_mismatch: Option<usize>,
}

impl Verified {
    /// Exactly `len` bytes, all as sent.
    pub fn is_exact(&self, len: usize) -> bool {
        self.received == len && self.first_mismatch.is_none()
    }
}

/// [`tcp_transfer`] for long transfers: the sender writes the pattern a chunk at a time and the
/// receiver compares as it reads, so neither holds the stream. The pattern's seed is `port`, as
/// there. Timeouts make a broken path fail, not hang.
pub fn tcp_transfer_verified(
    from: &Netns,
    to: &Netns,
    to_ip: Ipv4Addr,
    port: u16,
    len: usize,
) -> Verified {
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    const CHUNK: usize = 256 * 1024;
    let addr = SocketAddr::from((to_ip, port));
    let listener = to.enter(|| TcpListener::bind(addr)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut expected = PatternStream::new(u64::from(port));
        let (mut got, mut want) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
        let mut v = Verified {
            received: 0,
            first_mismatch: None,
        };
        loop {
            let n = conn.read(&mut got).unwrap();
            if n == 0 {
                return v;
            }
            expected.fill(&mut want[..n]);
            if v.first_mismatch.is_none() {
                if let Some(i) = got[..n].iter().zip(&want[..n]).position(|(a, b)| a != b) {
                    v.first_mismatch = Some(v.received + i);
                }
            }
            v.received += n;
        }
    });
    let mut client = from
        .enter(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .unwrap();
    client
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut stream = PatternStream::new(u64::from(port));
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK);
        stream.fill(&mut buf[..n]);
        client.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    client.shutdown(Shutdown::Write).unwrap();
    server.join().unwrap()
}

/// Sends `len` pattern bytes over TCP from a socket in `from` to a listener on `to_ip:port` in
/// `to`, and returns what the listener received. Timeouts make a broken path fail, not hang.
pub fn tcp_transfer(from: &Netns, to: &Netns, to_ip: Ipv4Addr, port: u16, len: usize) -> Vec<u8> {
    use std::io::{Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    let addr = SocketAddr::from((to_ip, port));
    let listener = to.enter(|| TcpListener::bind(addr)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut got = Vec::with_capacity(len);
        conn.read_to_end(&mut got).unwrap();
        got
    });
    let mut client = from
        .enter(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
        .unwrap();
    client
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client.write_all(&pattern(len, u64::from(port))).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    server.join().unwrap()
}

#[cfg(test)]
mod pattern_tests {
    use super::*;

    #[test]
    fn the_stream_is_the_pattern_whatever_the_chunks() {
        let whole = pattern(10_000, 77);
        let mut s = PatternStream::new(77);
        let mut got = vec![0u8; 10_000];
        let (a, rest) = got.split_at_mut(1);
        s.fill(a);
        let (b, c) = rest.split_at_mut(4_321);
        s.fill(b);
        s.fill(c);
        assert!(got == whole);
    }
}

#[cfg(test)]
mod skip_tests {
    use super::*;

    /// Set in the child that [`a_skip_fails_under_require_all_and_is_shown_and_recorded_otherwise`]
    /// starts: there the test only skips.
    const CHILD_ENV: &str = "PODSWITCH_SKIP_SELFTEST";
    const NAME: &str =
        "skip_tests::a_skip_fails_under_require_all_and_is_shown_and_recorded_otherwise";

    /// Runs this very test in a child process that skips, with `PODSWITCH_REQUIRE_ALL` as given.
    fn child(require_all: &str, log: &Path) -> Output {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads", "1"])
            .env(CHILD_ENV, "1")
            .env(REQUIRE_ALL_ENV, require_all)
            .env(SKIP_LOG_ENV, log)
            .output()
            .unwrap()
    }

    #[test]
    fn a_skip_fails_under_require_all_and_is_shown_and_recorded_otherwise() {
        if std::env::var_os(CHILD_ENV).is_some() {
            skip("selftest", "the reason");
            return;
        }
        let dir = std::env::temp_dir().join(unique("podswitch-skip-"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips");

        // Without the variable: the test passes, and the skip is on stderr although libtest
        // captured the test's output (no --nocapture), and in the log.
        let out = child("", &log);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains("SKIPPED selftest: the reason"),
            "the skip must be visible: {stderr}"
        );
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "SKIPPED selftest: the reason\n"
        );

        // With it: the test fails with the reason, and nothing more is logged as skipped.
        let out = child("1", &log);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(101), "{stdout}");
        assert!(
            stdout.contains("SKIPPED selftest: the reason; PODSWITCH_REQUIRE_ALL is set"),
            "{stdout}"
        );
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
