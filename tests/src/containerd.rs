//! A private containerd, driven through its CRI API — the path kubelet uses — for testing CNI
//! plugins against a real container runtime.
//!
//! [`Containerd::start`] runs `containerd` (Debian's 1.6.x, with `runc`) as a child process with
//! a config, root, state and socket of its own under a fresh temp dir, so the machine's default
//! containerd (if any) and `/var/lib/containerd`, `/run/containerd` are left alone. Pod sandboxes
//! then come from CRI `RunPodSandbox`, and their network from the CNI plugins in the given
//! directories, configured by the conflist(s) in the given conf dir: exactly what kubelet makes
//! containerd do.
//!
//! **CRI API version:** `runtime.v1` (`k8s.io/cri-api/pkg/apis/runtime/v1`, the only one
//! kubelet ≥ 1.26 speaks; containerd 1.6 serves both `runtime.v1` and the older `v1alpha2`).
//! [`Containerd::start`] checks that the runtime answers `runtime.v1.RuntimeService/Version`
//! with `runtime_api_version == "v1"`.
//!
//! The gRPC client is hand-written and small: a unary call is an HTTP/2 POST (`h2`) over the
//! unix socket carrying one length-prefixed protobuf message (`prost` derive); the [`cri`]
//! module declares the subset of CRI messages used, with the field numbers of CRI's
//! `api.proto`. Unknown fields in responses are skipped by prost, so a newer runtime is fine.
//! A current-thread tokio runtime runs each call to completion: the API here is synchronous.
//!
//! No image registry is reachable: the sandbox ("pause") image is built at start from the
//! static busybox (`busybox-static`) into a docker-archive tarball and imported with
//! `ctr -n k8s.io images import`; the CRI config names it as `sandbox_image`.
//!
//! containerd 1.6's CRI config has a single CNI `bin_dir`, so the private bin dir is a temp dir
//! of symlinks to every file of the given `cni_bin_dirs` (first dir wins on a name clash). The
//! CRI plugin always calls the `loopback` plugin too (`/usr/lib/cni` has it).
//!
//! Everything is undone in `Drop`, also when the test panics: all sandboxes are stopped and
//! removed through CRI (CNI DEL), containerd is stopped, leftover shims and containers are
//! killed, every mount under the temp dir (netns bind mounts, `/dev/shm` of sandboxes, overlay
//! rootfs) is unmounted and the temp dir removed. Leftovers of a test process that died
//! (SIGKILL) are cleaned up by the next [`Containerd::start`].
//!
//! Needs root and `scripts/install-containerd.sh`; [`containerd_or_skip`] tells.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{anyhow, bail, Context, Result};
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The sandbox image built and imported at start (never pulled: it has a `localhost/` domain).
pub const PAUSE_IMAGE: &str = "localhost/podswitch-pause:test";
/// The containerd namespace the CRI plugin works in.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// Where Debian's `containernetworking-plugins` puts the reference CNI plugins.
pub const SYSTEM_CNI_DIR: &str = "/usr/lib/cni";
/// The snapshotter of the private containerd (and of the image import).
const SNAPSHOTTER: &str = "overlayfs";
/// Prefix of the private temp dirs: `/tmp/psw-ctr-{pid}-{n}`.
const DIR_PREFIX: &str = "psw-ctr-";
/// Longest a single CRI call may take (RunPodSandbox includes CNI ADD).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Binaries the runtime test needs, with the package that provides each.
const NEEDED: &[(&str, &str)] = &[
    ("/usr/bin/containerd", "containerd"),
    ("/usr/bin/ctr", "containerd"),
    ("/usr/bin/containerd-shim-runc-v2", "containerd"),
    ("/usr/sbin/runc", "runc"),
    ("/usr/lib/cni/loopback", "containernetworking-plugins"),
    ("/bin/busybox", "busybox-static"),
];

/// True when this test can run a real containerd (root, packages installed); otherwise
/// [`crate::skip`]s it, saying why.
pub fn containerd_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        crate::skip(
            test,
            "needs root (containerd, runc, network namespaces); CI runs as root",
        );
        return false;
    }
    let missing: Vec<String> = NEEDED
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(path, pkg)| format!("{path} (package {pkg})"))
        .collect();
    if !missing.is_empty() {
        let reason = format!(
            "not installed: {}; run scripts/install-containerd.sh",
            missing.join(", ")
        );
        crate::skip(test, &reason);
        return false;
    }
    true
}

/// The subset of the CRI `runtime.v1` API used here: messages with the field numbers of
/// `k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`. Fields not declared are skipped on decode.
#[allow(missing_docs)]
pub mod cri {
    use std::collections::HashMap;

    /// `runtime.v1.RuntimeService`: the gRPC service name.
    pub const RUNTIME_SERVICE: &str = "runtime.v1.RuntimeService";

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionRequest {
        #[prost(string, tag = "1")]
        pub version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionResponse {
        #[prost(string, tag = "1")]
        pub version: String,
        #[prost(string, tag = "2")]
        pub runtime_name: String,
        #[prost(string, tag = "3")]
        pub runtime_version: String,
        #[prost(string, tag = "4")]
        pub runtime_api_version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusRequest {
        #[prost(bool, tag = "1")]
        pub verbose: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<RuntimeStatus>,
        #[prost(map = "string, string", tag = "2")]
        pub info: HashMap<String, String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RuntimeStatus {
        #[prost(message, repeated, tag = "1")]
        pub conditions: Vec<RuntimeCondition>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RuntimeCondition {
        /// `RuntimeReady` or `NetworkReady`.
        #[prost(string, tag = "1")]
        pub r#type: String,
        #[prost(bool, tag = "2")]
        pub status: bool,
        #[prost(string, tag = "3")]
        pub reason: String,
        #[prost(string, tag = "4")]
        pub message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub uid: String,
        #[prost(string, tag = "3")]
        pub namespace: String,
        #[prost(uint32, tag = "4")]
        pub attempt: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DnsConfig {
        #[prost(string, repeated, tag = "1")]
        pub servers: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub searches: Vec<String>,
        #[prost(string, repeated, tag = "3")]
        pub options: Vec<String>,
    }
    /// `Protocol`: TCP = 0, UDP = 1, SCTP = 2.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PortMapping {
        #[prost(int32, tag = "1")]
        pub protocol: i32,
        #[prost(int32, tag = "2")]
        pub container_port: i32,
        #[prost(int32, tag = "3")]
        pub host_port: i32,
        #[prost(string, tag = "4")]
        pub host_ip: String,
    }
    /// `NamespaceMode`: POD = 0, CONTAINER = 1, NODE = 2, TARGET = 3.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamespaceOption {
        #[prost(int32, tag = "1")]
        pub network: i32,
        #[prost(int32, tag = "2")]
        pub pid: i32,
        #[prost(int32, tag = "3")]
        pub ipc: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LinuxSandboxSecurityContext {
        #[prost(message, optional, tag = "1")]
        pub namespace_options: Option<NamespaceOption>,
        #[prost(bool, tag = "6")]
        pub privileged: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LinuxPodSandboxConfig {
        #[prost(string, tag = "1")]
        pub cgroup_parent: String,
        #[prost(message, optional, tag = "2")]
        pub security_context: Option<LinuxSandboxSecurityContext>,
        #[prost(map = "string, string", tag = "3")]
        pub sysctls: HashMap<String, String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxConfig {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<PodSandboxMetadata>,
        #[prost(string, tag = "2")]
        pub hostname: String,
        #[prost(string, tag = "3")]
        pub log_directory: String,
        #[prost(message, optional, tag = "4")]
        pub dns_config: Option<DnsConfig>,
        #[prost(message, repeated, tag = "5")]
        pub port_mappings: Vec<PortMapping>,
        #[prost(map = "string, string", tag = "6")]
        pub labels: HashMap<String, String>,
        #[prost(map = "string, string", tag = "7")]
        pub annotations: HashMap<String, String>,
        #[prost(message, optional, tag = "8")]
        pub linux: Option<LinuxPodSandboxConfig>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RunPodSandboxRequest {
        #[prost(message, optional, tag = "1")]
        pub config: Option<PodSandboxConfig>,
        #[prost(string, tag = "2")]
        pub runtime_handler: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RunPodSandboxResponse {
        #[prost(string, tag = "1")]
        pub pod_sandbox_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StopPodSandboxRequest {
        #[prost(string, tag = "1")]
        pub pod_sandbox_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StopPodSandboxResponse {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RemovePodSandboxRequest {
        #[prost(string, tag = "1")]
        pub pod_sandbox_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RemovePodSandboxResponse {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxStatusRequest {
        #[prost(string, tag = "1")]
        pub pod_sandbox_id: String,
        #[prost(bool, tag = "2")]
        pub verbose: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxStatusResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<PodSandboxStatus>,
        /// Verbose only: containerd puts a JSON document under the key `info`.
        #[prost(map = "string, string", tag = "2")]
        pub info: HashMap<String, String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodIp {
        #[prost(string, tag = "1")]
        pub ip: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxNetworkStatus {
        #[prost(string, tag = "1")]
        pub ip: String,
        #[prost(message, repeated, tag = "2")]
        pub additional_ips: Vec<PodIp>,
    }
    /// `PodSandboxState`: SANDBOX_READY = 0, SANDBOX_NOTREADY = 1.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxStatus {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "2")]
        pub metadata: Option<PodSandboxMetadata>,
        #[prost(int32, tag = "3")]
        pub state: i32,
        #[prost(int64, tag = "4")]
        pub created_at: i64,
        #[prost(message, optional, tag = "5")]
        pub network: Option<PodSandboxNetworkStatus>,
        #[prost(map = "string, string", tag = "7")]
        pub labels: HashMap<String, String>,
        #[prost(map = "string, string", tag = "8")]
        pub annotations: HashMap<String, String>,
        #[prost(string, tag = "9")]
        pub runtime_handler: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListPodSandboxRequest {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandbox {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "2")]
        pub metadata: Option<PodSandboxMetadata>,
        #[prost(int32, tag = "3")]
        pub state: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListPodSandboxResponse {
        #[prost(message, repeated, tag = "1")]
        pub items: Vec<PodSandbox>,
    }

    /// The sandbox config kubelet would send for pod `namespace/name` (uid `uid`): the pod's
    /// own network namespace (NamespaceMode POD), hostname = name, no log dir.
    pub fn pod_config(name: &str, namespace: &str, uid: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption::default()),
                    privileged: false,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A gRPC call that did not end with status OK: the runtime's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcStatus {
    /// gRPC status code (2 UNKNOWN, 4 DEADLINE_EXCEEDED, 5 NOT_FOUND, ...).
    pub code: u32,
    /// `grpc-message`, percent-decoded: for RunPodSandbox it carries the CNI plugin's error.
    pub message: String,
}

impl fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gRPC status {}: {}", self.code, self.message)
    }
}

impl std::error::Error for GrpcStatus {}

/// A pod sandbox that [`Containerd::run_pod_sandbox`] created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The CRI pod sandbox id.
    pub id: String,
    /// The pod's network namespace (what CNI got as `CNI_NETNS`): a bind mount under the
    /// private state dir. Enter it with `nsenter --net=PATH`.
    pub netns_path: PathBuf,
    /// The pod's IP as the runtime reports it (the first IP of the CNI result), if any.
    pub ip: Option<IpAddr>,
}

/// CRI `PodSandboxStatus`, verbose.
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    /// The sandbox id.
    pub id: String,
    /// SANDBOX_READY.
    pub ready: bool,
    /// The pod's primary IP, if any.
    pub ip: Option<IpAddr>,
    /// The pod's other IPs (dual stack).
    pub additional_ips: Vec<IpAddr>,
    /// The pod's network namespace path while it exists (None once the sandbox is stopped).
    pub netns_path: Option<PathBuf>,
    /// The pid of the sandbox's pause process, while it runs.
    pub pid: Option<u32>,
    /// containerd's verbose info (`runtimeSpec`, `cniResult`, `netNamespaceClosed`, ...).
    pub info: serde_json::Value,
}

/// A private containerd with a CRI endpoint; see the module doc.
#[derive(Debug)]
pub struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    cni_bin_dir: PathBuf,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    call_timeout: Duration,
}

/// Live [`Containerd`]s of this process: the machine-wide dirs containerd 1.6 insists on
/// creating are removed (when empty) only once the last one is gone.
static LIVE: AtomicU32 = AtomicU32::new(0);

impl Containerd {
    /// Starts a private containerd whose CRI plugin takes CNI plugins from `cni_bin_dirs`
    /// (first wins on a clash; `loopback` must be in one of them, e.g. `/usr/lib/cni`) and
    /// network configs from `cni_conf_dir`. Panics (with containerd's log) when it can't.
    ///
    /// With a config already in `cni_conf_dir` this returns once the CRI plugin has loaded it;
    /// a config written later is picked up by containerd's conf syncer: call
    /// [`Containerd::wait_network_ready`] before the first sandbox.
    pub fn start(cni_bin_dirs: &[&Path], cni_conf_dir: &Path) -> Containerd {
        match Self::try_start(cni_bin_dirs, cni_conf_dir) {
            Ok(c) => c,
            Err(e) => panic!("starting containerd: {e:#}"),
        }
    }

    /// [`Containerd::start`], returning the error instead of panicking.
    pub fn try_start(cni_bin_dirs: &[&Path], cni_conf_dir: &Path) -> Result<Containerd> {
        preexisting_global_dirs();
        cleanup_stale();
        let dir = std::env::temp_dir().join(unique_dir_name());
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("tokio runtime")?;
        let mut ctr = Containerd::attach(dir, rt, CALL_TIMEOUT);
        // From here on, Drop cleans up whatever was made.
        ctr.setup(cni_bin_dirs, cni_conf_dir)
            .map_err(|e| e.context(format!("containerd log:\n{}", ctr.log_tail(40))))?;
        Ok(ctr)
    }

    /// A handle on the containerd of `dir` (started by this or a dead process): its Drop
    /// tears that one down.
    fn attach(dir: PathBuf, rt: tokio::runtime::Runtime, call_timeout: Duration) -> Containerd {
        LIVE.fetch_add(1, Ordering::SeqCst);
        Containerd {
            socket: dir.join("containerd.sock"),
            cni_bin_dir: dir.join("cni-bin"),
            dir,
            child: None,
            rt,
            call_timeout,
        }
    }

    fn setup(&mut self, cni_bin_dirs: &[&Path], cni_conf_dir: &Path) -> Result<()> {
        link_cni_bin_dir(cni_bin_dirs, &self.cni_bin_dir)?;
        let config = self.dir.join("config.toml");
        fs::write(
            &config,
            config_toml(&self.dir, &self.socket, &self.cni_bin_dir, cni_conf_dir),
        )?;
        let log = fs::File::create(self.dir.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning containerd (run scripts/install-containerd.sh)")?;
        self.child = Some(child);

        // The socket appears once every plugin has loaded (required_plugins makes containerd
        // exit if the CRI plugin did not).
        let deadline = Instant::now() + Duration::from_secs(20);
        let version = loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait()? {
                bail!("containerd exited at start: {status}");
            }
            if self.socket.exists() {
                match self.version() {
                    Ok(v) => break v,
                    Err(e) if Instant::now() > deadline => return Err(e.context("CRI Version")),
                    Err(_) => {}
                }
            } else if Instant::now() > deadline {
                bail!("containerd socket {} did not appear", self.socket.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if version.runtime_api_version != "v1" {
            bail!(
                "runtime speaks CRI {:?}, not v1",
                version.runtime_api_version
            );
        }

        let image = build_pause_image(&self.dir.join("pause-image"))?;
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args([
                "--namespace",
                CRI_NAMESPACE,
                "images",
                "import",
                "--snapshotter",
                SNAPSHOTTER,
            ])
            .arg(&image)
            .output()
            .context("running ctr")?;
        if !out.status.success() {
            bail!(
                "ctr images import: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // With a network config present from the start the CRI plugin loads it at once;
        // wait until it says so, so the first RunPodSandbox does not race the conf syncer.
        if has_cni_config(cni_conf_dir) {
            self.wait_network_ready(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// The private temp dir (config.toml, containerd.log, root, state, cni-bin, ...).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// containerd's gRPC socket (for `ctr --address` / `crictl --runtime-endpoint`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The single CNI bin dir the CRI plugin uses: symlinks to the plugins of `cni_bin_dirs`.
    pub fn cni_bin_dir(&self) -> &Path {
        &self.cni_bin_dir
    }

    /// The cgroup (relative to each hierarchy's root) under which pods' cgroups go by default.
    pub fn cgroup_parent(&self) -> String {
        self.dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }

    /// The pid of the containerd process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// CRI `Version`.
    pub fn version(&self) -> Result<cri::VersionResponse> {
        self.call(
            "Version",
            &cri::VersionRequest {
                version: "v1".into(),
            },
        )
    }

    /// CRI `Status`: the runtime's conditions (`RuntimeReady`, `NetworkReady`).
    pub fn runtime_status(&self) -> Result<Vec<cri::RuntimeCondition>> {
        let resp: cri::StatusResponse =
            self.call("Status", &cri::StatusRequest { verbose: false })?;
        Ok(resp.status.map(|s| s.conditions).unwrap_or_default())
    }

    /// Waits until the CRI plugin reports `NetworkReady` (a CNI config was loaded).
    pub fn wait_network_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let conditions = self.runtime_status()?;
            let net = conditions.iter().find(|c| c.r#type == "NetworkReady");
            if net.is_some_and(|c| c.status) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("CNI network not ready: {net:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a pod sandbox for pod `namespace/name` with uid `uid` (CRI RunPodSandbox: CNI ADD),
    /// then reads its IP and netns path (CRI PodSandboxStatus).
    pub fn run_pod_sandbox(&self, name: &str, namespace: &str, uid: &str) -> Result<Sandbox> {
        self.run_pod_sandbox_with(cri::pod_config(name, namespace, uid))
    }

    /// [`Containerd::run_pod_sandbox`] with a full config (port mappings, annotations, ...).
    /// An empty `linux.cgroup_parent` becomes `/{name of the temp dir}` (kubelet always sends
    /// one), so the pods' cgroups are this instance's own and removed with it.
    pub fn run_pod_sandbox_with(&self, mut config: cri::PodSandboxConfig) -> Result<Sandbox> {
        let linux = config.linux.get_or_insert_with(Default::default);
        if linux.cgroup_parent.is_empty() {
            linux.cgroup_parent = format!("/{}", self.cgroup_parent());
        }
        let resp: cri::RunPodSandboxResponse = self.call(
            "RunPodSandbox",
            &cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            },
        )?;
        let id = resp.pod_sandbox_id;
        let status = self.sandbox_status(&id)?;
        let netns_path = status
            .netns_path
            .ok_or_else(|| anyhow!("sandbox {id} has no network namespace: {}", status.info))?;
        Ok(Sandbox {
            id,
            netns_path,
            ip: status.ip,
        })
    }

    /// CRI `StopPodSandbox`: kills the pause process, CNI DEL, removes the netns.
    pub fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let _: cri::StopPodSandboxResponse = self.call(
            "StopPodSandbox",
            &cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            },
        )?;
        Ok(())
    }

    /// CRI `RemovePodSandbox` (stops it first if needed, as kubelet's contract allows).
    pub fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let _: cri::RemovePodSandboxResponse = self.call(
            "RemovePodSandbox",
            &cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            },
        )?;
        Ok(())
    }

    /// CRI `PodSandboxStatus` (verbose).
    pub fn sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        let resp: cri::PodSandboxStatusResponse = self.call(
            "PodSandboxStatus",
            &cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: true,
            },
        )?;
        let status = resp
            .status
            .ok_or_else(|| anyhow!("PodSandboxStatus without status"))?;
        let info: serde_json::Value = match resp.info.get("info") {
            Some(json) => serde_json::from_str(json).context("verbose info")?,
            None => serde_json::Value::Null,
        };
        let parse_ip = |s: &str| s.parse::<IpAddr>().ok();
        let network = status.network.unwrap_or_default();
        let closed = info["netNamespaceClosed"].as_bool().unwrap_or(false);
        let netns_path = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|ns| ns["type"] == "network")
            .and_then(|ns| ns["path"].as_str())
            .filter(|p| !p.is_empty() && !closed)
            .map(PathBuf::from);
        let pid = info["pid"].as_u64().filter(|&p| p != 0).map(|p| p as u32);
        Ok(SandboxStatus {
            id: status.id,
            ready: status.state == 0,
            ip: parse_ip(&network.ip),
            additional_ips: network
                .additional_ips
                .iter()
                .filter_map(|p| parse_ip(&p.ip))
                .collect(),
            netns_path,
            pid,
            info,
        })
    }

    /// CRI `ListPodSandbox`: ids of all sandboxes of this containerd.
    pub fn list_pod_sandboxes(&self) -> Result<Vec<String>> {
        let resp: cri::ListPodSandboxResponse =
            self.call("ListPodSandbox", &cri::ListPodSandboxRequest {})?;
        Ok(resp.items.into_iter().map(|s| s.id).collect())
    }

    /// One unary call of `runtime.v1.RuntimeService`.
    pub fn call<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<Resp> {
        let path = format!("/{}/{method}", cri::RUNTIME_SERVICE);
        self.rt
            .block_on(async {
                tokio::time::timeout(self.call_timeout, grpc_unary(&self.socket, &path, request))
                    .await
            })
            .map_err(|_| anyhow!("{path}: no answer in {:?}", self.call_timeout))?
            .with_context(|| format!("CRI {method}"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        // Stop and remove every sandbox through CRI, as kubelet would: CNI DEL for each.
        // (A stale containerd, whose test process died, is asked too, if it still answers.)
        let running = match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => self.socket.exists(),
        };
        if running {
            for id in self.list_pod_sandboxes().unwrap_or_default() {
                if let Err(e) = self
                    .stop_pod_sandbox(&id)
                    .and_then(|()| self.remove_pod_sandbox(&id))
                {
                    eprintln!("containerd drop: removing sandbox {id}: {e:#}");
                }
            }
        }
        if panicking {
            eprintln!(
                "containerd log ({}):\n{}",
                self.dir.display(),
                self.log_tail(30)
            );
        }
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
        cleanup_dir(&self.dir);
        if LIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            remove_empty_global_dirs();
        }
    }
}

/// `/tmp/psw-ctr-{pid}-{n}`: unique per process and call, short enough for the socket paths.
fn unique_dir_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{DIR_PREFIX}{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The private containerd config (version 2 format, containerd 1.6).
fn config_toml(dir: &Path, socket: &Path, cni_bin: &Path, cni_conf: &Path) -> String {
    let d = dir.display();
    format!(
        r#"# A private containerd for podswitch's runtime tests: nothing under /var/lib/containerd,
# /run/containerd or /opt/containerd, its own socket.
version = 2
root = "{d}/root"
state = "{d}/state"
# Fail at start, not at the first CRI call, when the CRI plugin can't load.
required_plugins = ["io.containerd.grpc.v1.cri"]
# Not needed here. (io.containerd.runtime.v1.linux must stay: 1.6's tasks service needs it.)
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # The test process may run with a raised OOM score adjustment floor (containers can't go
  # below it): clamp instead of failing.
  restrict_oom_score_adj = true
  # Pod netns bind mounts under state/, not /var/run/netns.
  netns_mounts_under_state_dir = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{SNAPSHOTTER}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc's state (default /run/containerd/runc) under state/ too.
        Root = "{d}/state/runc"
"#,
        socket = socket.display(),
        cni_bin = cni_bin.display(),
        cni_conf = cni_conf.display(),
    )
}

/// Fills `bin` with symlinks to every file of `dirs` (first dir wins on a name clash).
fn link_cni_bin_dir(dirs: &[&Path], bin: &Path) -> Result<()> {
    fs::create_dir_all(bin)?;
    for dir in dirs {
        let entries =
            fs::read_dir(dir).with_context(|| format!("CNI bin dir {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let link = bin.join(entry.file_name());
            if entry.path().is_file() && !link.exists() {
                std::os::unix::fs::symlink(entry.path(), &link)?;
            }
        }
    }
    if !bin.join("loopback").exists() {
        bail!("no `loopback` CNI plugin in {dirs:?}: the CRI plugin calls it for every pod (add {SYSTEM_CNI_DIR})");
    }
    Ok(())
}

fn has_cni_config(dir: &Path) -> bool {
    fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.ends_with(".conf") || name.ends_with(".conflist") || name.ends_with(".json")
    })
}

/// Builds the sandbox image as a docker-archive tarball in `dir`: one layer holding the static
/// busybox, entrypoint `busybox sleep` for ever (a pause process: it only has to hold the
/// namespaces; the runtime stops it with SIGKILL). Returns the tarball's path.
fn build_pause_image(dir: &Path) -> Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    let out = dir.join("archive");
    fs::create_dir_all(rootfs.join("bin"))?;
    fs::create_dir_all(&out)?;
    fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .context("copying /bin/busybox (package busybox-static)")?;
    let layer = out.join("layer.tar");
    run_cmd(
        Command::new("tar")
            .args([
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "--mtime=@0",
                "-C",
            ])
            .arg(&rootfs)
            .arg("-cf")
            .arg(&layer)
            .arg("."),
    )?;
    // The config's diff_ids must be the layer's digest: containerd checks it when unpacking.
    let digest = sha256_hex(&layer)?;
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": ["/bin/busybox", "sleep", "2147483647"], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{digest}")] },
    });
    fs::write(out.join("config.json"), config.to_string())?;
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": [PAUSE_IMAGE],
        "Layers": ["layer.tar"],
    }]);
    fs::write(out.join("manifest.json"), manifest.to_string())?;
    let tarball = dir.join("pause.tar");
    run_cmd(
        Command::new("tar")
            .arg("-C")
            .arg(&out)
            .arg("-cf")
            .arg(&tarball)
            .args(["manifest.json", "config.json", "layer.tar"]),
    )?;
    Ok(tarball)
}

fn sha256_hex(path: &Path) -> Result<String> {
    let out = run_cmd(Command::new("sha256sum").arg(path))?;
    let hex = out
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    if hex.len() != 64 {
        bail!("sha256sum printed {out:?}");
    }
    Ok(hex)
}

fn run_cmd(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---- gRPC over HTTP/2 over the unix socket ----

async fn grpc_unary<Req: prost::Message, Resp: prost::Message + Default>(
    socket: &Path,
    path: &str,
    request: &Req,
) -> Result<Resp> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let (client, connection) = h2::client::handshake(stream)
        .await
        .context("HTTP/2 handshake")?;
    // The connection is driven by this task while the call runs; dropped with the call.
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let mut client = client.ready().await?;
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let (response, mut send) = client.send_request(req, false)?;
        let len = request.encoded_len();
        let mut body = Vec::with_capacity(5 + len);
        body.push(0); // not compressed
        body.extend_from_slice(&u32::try_from(len)?.to_be_bytes());
        request.encode(&mut body)?;
        send.send_data(body.into(), true)?;

        let (head, mut recv) = response.await?.into_parts();
        if head.status != http::StatusCode::OK {
            bail!("HTTP status {}", head.status);
        }
        // "Trailers-only" responses (errors) carry grpc-status in the headers.
        grpc_check(&head.headers)?;
        let mut data = Vec::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        match recv.trailers().await? {
            Some(trailers) => grpc_check(&trailers)?,
            None => bail!("response without grpc-status"),
        }
        if data.len() < 5 {
            bail!("short gRPC response ({} bytes)", data.len());
        }
        if data[0] != 0 {
            bail!("compressed gRPC response");
        }
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let msg = data
            .get(5..5 + len)
            .ok_or_else(|| anyhow!("truncated gRPC response"))?;
        Ok(Resp::decode(msg)?)
    }
    .await;
    connection.abort();
    result
}

fn grpc_check(headers: &http::HeaderMap) -> Result<()> {
    let Some(code) = headers.get("grpc-status") else {
        return Ok(());
    };
    let code: u32 = code.to_str()?.parse()?;
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Err(GrpcStatus { code, message }.into())
}

fn percent_decode(s: &[u8]) -> String {
    unescape(s, b'%', 2, 16)
}

/// Decodes `marker` followed by `digits` digits in `radix` into that byte; leaves anything
/// else, including a marker without valid digits, as it is.
fn unescape(s: &[u8], marker: u8, digits: usize, radix: u32) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == marker && i + digits < s.len() {
            let code = std::str::from_utf8(&s[i + 1..i + 1 + digits]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(code, radix) {
                out.push(b);
                i += 1 + digits;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- teardown ----

/// SIGTERM, then SIGKILL after 5 s; reaps the child.
fn stop_child(mut child: Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill has no memory-safety preconditions; pid is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Removes what a (dead or stopped) private containerd left in `dir`: its containerd and shim
/// processes (found by their command lines naming `dir`), runc containers, mounts, the dir.
fn cleanup_dir(dir: &Path) {
    // containerd itself (only when its test process died) and its shims, which outlive it:
    // `containerd --config DIR/config.toml`, `containerd-shim-runc-v2 ... -address DIR/...`.
    for (pid, cmdline) in processes() {
        if names(&cmdline, dir) && cmdline.first().is_some_and(|c| c.contains("containerd")) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // Containers still running (their shim killed): runc kills and deletes them.
    let runc_root = dir.join("state/runc").join(CRI_NAMESPACE);
    for entry in fs::read_dir(&runc_root).into_iter().flatten().flatten() {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["delete", "--force"])
            .arg(entry.file_name())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    for _ in 0..5 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        for m in mounts {
            if let Ok(c) = CString::new(m.as_os_str().as_bytes()) {
                // SAFETY: c is a valid NUL-terminated path for the duration of the call.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
    // The pods' cgroups (runc removes each pod's own, not the parent it created).
    if let Some(name) = dir.file_name() {
        for cgroup in cgroup_dirs(Path::new(name)) {
            rmdir_tree(&cgroup);
        }
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("containerd cleanup: removing {}: {e}", dir.display());
        }
    }
}

/// `rel` in every mounted cgroup hierarchy (v1 controllers and the v2 root) where it exists.
pub fn cgroup_dirs(rel: &Path) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs: Vec<PathBuf> = vec![root.join(rel)];
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        dirs.push(entry.path().join(rel));
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// Removes a cgroup tree bottom-up (cgroup dirs go with rmdir, never by unlinking files).
fn rmdir_tree(dir: &Path) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&entry.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Dirs containerd 1.6 and libcni create whatever the config says: the shims' socket dir
/// (`/run/containerd/s`, hard-coded) and libcni's result cache (`/var/lib/cni/results`).
/// Removed only when empty (a machine-wide containerd or CNI using them keeps them).
const GLOBAL_DIRS: &[&str] = &[
    "/run/containerd/s",
    "/run/containerd",
    "/var/lib/cni/results",
    "/var/lib/cni",
];

/// Which of [`GLOBAL_DIRS`] existed before this process first started containerd.
fn preexisting_global_dirs() -> &'static [bool] {
    static PRE: std::sync::OnceLock<Vec<bool>> = std::sync::OnceLock::new();
    PRE.get_or_init(|| GLOBAL_DIRS.iter().map(|d| Path::new(d).exists()).collect())
}

fn remove_empty_global_dirs() {
    for (dir, &pre) in GLOBAL_DIRS.iter().zip(preexisting_global_dirs()) {
        if !pre {
            let _ = fs::remove_dir(dir); // fails, harmlessly, unless empty
        }
    }
}

/// Cleans up the dirs of test processes that are gone (killed before their Drop ran).
fn cleanup_stale() {
    let tmp = std::env::temp_dir();
    for entry in fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("containerd: cleaning up stale {}", entry.path().display());
            match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(rt) => drop(Containerd::attach(
                    entry.path(),
                    rt,
                    Duration::from_secs(10),
                )),
                Err(_) => cleanup_dir(&entry.path()),
            }
        }
    }
}

/// Whether an argument of `argv` is `dir` or a path under it.
fn names(argv: &[String], dir: &Path) -> bool {
    argv.iter().any(|a| Path::new(a).starts_with(dir))
}

/// (pid, argv) of every process.
fn processes() -> Vec<(i32, Vec<String>)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push((pid, argv));
    }
    out
}

/// Mount points at or under `dir` (this mount namespace), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    mounts.dedup();
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    unescape(s.as_bytes(), b'\\', 3, 8)
}

/// The pids of the containerd shims and containerd processes whose command line names `dir`.
pub fn processes_of(dir: &Path) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, argv)| names(argv, dir))
        .map(|(pid, _)| pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_and_mountinfo_paths_are_unescaped() {
        assert_eq!(percent_decode(b"no%20such%2Fthing%"), "no such/thing%");
        assert_eq!(
            unescape_mountinfo(r"/tmp/a\040b\134c\04"),
            "/tmp/a b\\c\\04"
        );
    }

    /// A dir and a bridge made by the test, removed even if it panics.
    struct Scratch {
        dir: PathBuf,
        bridge: String,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .stderr(Stdio::null())
                .status();
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn link_exists(name: &str) -> bool {
        Path::new("/sys/class/net").join(name).exists()
    }

    fn ping(from: &Sandbox, to: IpAddr) -> bool {
        Command::new("nsenter")
            .arg(format!("--net={}", from.netns_path.display()))
            .args(["ping", "-c1", "-W2", &to.to_string()])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Two pods from containerd's CRI with the reference bridge + host-local plugins: they get
    /// addresses, reach each other, and everything goes away again — CNI DEL included.
    #[test]
    fn cri_pods_on_reference_bridge() {
        if !containerd_or_skip("containerd::tests::cri_pods_on_reference_bridge") {
            return;
        }
        let t0 = Instant::now();
        let pid = std::process::id();
        let scratch = Scratch {
            dir: std::env::temp_dir().join(format!("psw-cni-{pid}")),
            bridge: format!("pswbr{pid:x}"),
        };
        let (conf, ipam) = (scratch.dir.join("net.d"), scratch.dir.join("ipam"));
        fs::create_dir_all(&conf).unwrap();
        // No gateway and no masquerading: nothing touches iptables or the host's ip_forward;
        // the pods reach each other on the bridge, nothing leaves the machine.
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "psw-smoke",
            "plugins": [{
                "type": "bridge",
                "bridge": scratch.bridge,
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": "10.99.0.0/24" }]],
                    "dataDir": ipam,
                },
            }],
        });
        fs::write(conf.join("10-smoke.conflist"), conflist.to_string()).unwrap();

        let ctr = Containerd::start(&[Path::new(SYSTEM_CNI_DIR)], &conf);
        let dir = ctr.dir().to_path_buf();
        let t_started = t0.elapsed();
        assert_eq!(ctr.version().unwrap().runtime_api_version, "v1");

        let a = ctr.run_pod_sandbox("pod-a", "default", "uid-a").unwrap();
        let b = ctr.run_pod_sandbox("pod-b", "default", "uid-b").unwrap();
        let t_pods = t0.elapsed();
        eprintln!("sandbox a: {a:?}\nsandbox b: {b:?}");
        let (ip_a, ip_b) = (a.ip.unwrap(), b.ip.unwrap());
        for ip in [ip_a, ip_b] {
            assert!(
                ip.to_string().starts_with("10.99.0."),
                "{ip} not from the conflist's range"
            );
            // host-local records each allocation as a file: removed again by CNI DEL.
            assert!(ipam.join("psw-smoke").join(ip.to_string()).exists());
        }
        assert_ne!(ip_a, ip_b);
        assert!(
            link_exists(&scratch.bridge),
            "bridge {} not created",
            scratch.bridge
        );
        assert!(
            a.netns_path.starts_with(&dir),
            "netns {} outside the private state",
            a.netns_path.display()
        );
        let status = ctr.sandbox_status(&a.id).unwrap();
        assert!(status.ready && status.pid.is_some());
        assert_eq!(
            status.info["cniResult"]["Interfaces"]["eth0"]["IPConfigs"][0]["IP"],
            ip_a.to_string()
        );

        assert!(ping(&a, ip_b), "pod a cannot ping pod b ({ip_b})");
        assert!(ping(&b, ip_a), "pod b cannot ping pod a ({ip_a})");

        // Stop: CNI DEL (the address is released), the netns goes; remove: the sandbox goes.
        ctr.stop_pod_sandbox(&a.id).unwrap();
        let status = ctr.sandbox_status(&a.id).unwrap();
        assert!(!status.ready && status.netns_path.is_none());
        assert!(
            !a.netns_path.exists(),
            "netns {} left after stop",
            a.netns_path.display()
        );
        assert!(
            !ipam.join("psw-smoke").join(ip_a.to_string()).exists(),
            "no CNI DEL for a"
        );
        ctr.remove_pod_sandbox(&a.id).unwrap();
        assert_eq!(ctr.list_pod_sandboxes().unwrap(), vec![b.id.clone()]);
        let err = ctr.sandbox_status(&a.id).unwrap_err();
        assert_eq!(
            err.downcast_ref::<GrpcStatus>().map(|s| s.code),
            Some(5),
            "{err:#}"
        );

        // Drop removes b (CNI DEL too), containerd, the shims, the mounts and the dir.
        let containerd_pid = i32::try_from(ctr.pid()).unwrap();
        let cgroup = PathBuf::from(ctr.cgroup_parent());
        assert!(
            !cgroup_dirs(&cgroup).is_empty(),
            "pods not in the instance's cgroup {cgroup:?}"
        );
        drop(ctr);
        let t_dropped = t0.elapsed();
        assert!(
            !ipam.join("psw-smoke").join(ip_b.to_string()).exists(),
            "no CNI DEL for b"
        );
        assert!(
            mounts_under(&dir).is_empty(),
            "mounts left: {:?}",
            mounts_under(&dir)
        );
        assert!(
            processes_of(&dir).is_empty(),
            "processes left: {:?}",
            processes_of(&dir)
        );
        assert!(
            !Path::new(&format!("/proc/{containerd_pid}")).exists(),
            "containerd still runs"
        );
        assert!(!dir.exists(), "{} left", dir.display());
        assert!(
            cgroup_dirs(&cgroup).is_empty(),
            "cgroups left: {:?}",
            cgroup_dirs(&cgroup)
        );
        drop(scratch);
        eprintln!(
            "timing: containerd up + image imported {t_started:?}, two pods {:?}, teardown {:?}, total {:?}",
            t_pods - t_started,
            t_dropped - t_pods,
            t0.elapsed()
        );
    }
}
