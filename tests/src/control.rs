//! A node run the way it is deployed: `podswitchd` plus `podswitch-control` (which pushes the
//! node's whole configuration), with pods attached by invoking `podswitch-cni` exactly as a
//! container runtime does — environment variables and the network config on stdin.

use crate::{binary, unique, Netns, Node, POD_CIDR};
use podswitch_proto::control::{
    ControlRequest, ControlRequestBody, ControlResponse, ControlStatus, PodInfo,
};
use podswitch_proto::{read_frame, write_frame};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A node with both daemons.
#[derive(Debug)]
pub struct ControlNode {
    /// The dataplane side (namespace, podswitchd).
    pub node: Node,
    control: Option<Child>,
    /// podswitch-control's socket.
    pub control_socket: PathBuf,
    /// Its state directory (the embedded database).
    pub state_dir: PathBuf,
    /// The `--pod-cidr` control is started with ([`POD_CIDR`] unless a test changes it
    /// before [`Self::start_control`]).
    pub pod_cidr: String,
    /// The `--node-name` control is started with (`node-1` unless changed before
    /// [`Self::start_control`]).
    pub node_name: String,
    /// Further flags for podswitch-control, kept for every restart (e.g. the uplink's).
    pub control_args: Vec<String>,
}

/// What one plugin invocation printed and returned.
#[derive(Debug)]
pub struct CniOutput {
    /// Exit code.
    pub code: i32,
    /// Standard output (the CNI result or error JSON).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CniOutput {
    /// Stdout as JSON (panics with the output if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

impl ControlNode {
    /// Starts podswitchd (empty) and podswitch-control, and waits until control has pushed
    /// the node's configuration.
    pub fn start() -> ControlNode {
        ControlNode::start_with(&[])
    }

    /// [`Self::start`] with extra flags for podswitchd (e.g. `--conntrack-capacity 32`); they
    /// are kept for every restart of the daemon.
    pub fn start_with(dataplane_args: &[&str]) -> ControlNode {
        let mut cn = ControlNode::without_control(Node::bare(dataplane_args));
        cn.start_control();
        cn.wait_in_sync();
        cn
    }

    /// A node around `node` (podswitchd running) whose control is not started yet: set
    /// [`Self::node_name`], [`Self::pod_cidr`], [`Self::control_args`], prepare the node's
    /// namespace (an uplink interface), then [`Self::start_control`] and
    /// [`Self::wait_in_sync`].
    pub fn without_control(node: Node) -> ControlNode {
        let control_socket = node.dir().join("control.sock");
        let state_dir = node.dir().join("state");
        ControlNode {
            node,
            control: None,
            control_socket,
            state_dir,
            pod_cidr: POD_CIDR.to_string(),
            node_name: "node-1".to_string(),
            control_args: Vec::new(),
        }
    }

    /// Starts podswitch-control in the node's namespace (again, after [`Self::kill_control`]).
    pub fn start_control(&mut self) {
        self.start_control_with_env(&[]);
    }

    /// [`Self::start_control`] with extra environment variables (test hooks).
    pub fn start_control_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.control.is_none(), "control is running");
        let _ = std::fs::remove_file(&self.control_socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node.dir().join("control.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.node.ns.path().display()))
            .arg(binary("podswitch-control"))
            .args(["--node-name", &self.node_name, "--pod-cidr", &self.pod_cidr])
            .args(["--service-cidr", crate::services::SERVICE_CIDR])
            .args(&self.control_args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--dataplane-socket")
            .arg(&self.node.socket)
            .arg("--socket")
            .arg(&self.control_socket)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.control = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&self.control_socket).is_err() {
            if let Some(status) = self
                .control
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "podswitch-control exited with {status}: {}",
                    self.control_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "podswitch-control did not open its socket: {}",
                self.control_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills podswitch-control (SIGKILL).
    pub fn kill_control(&mut self) {
        if let Some(mut c) = self.control.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// podswitch-control's process id while it runs (`nsenter` execs it).
    pub fn control_pid(&self) -> Option<u32> {
        self.control.as_ref().map(Child::id)
    }

    /// How podswitch-control ended, if it has.
    pub fn control_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.control
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// podswitch-control's stderr so far.
    pub fn control_log(&self) -> String {
        std::fs::read_to_string(self.node.dir().join("control.log")).unwrap_or_default()
    }

    /// One request to control.
    pub fn control(&self, body: ControlRequestBody) -> ControlResponse {
        let mut conn = UnixStream::connect(&self.control_socket).unwrap();
        write_frame(&mut conn, &ControlRequest::new(body)).unwrap();
        read_frame(&mut conn).unwrap()
    }

    /// Control's status.
    pub fn status(&self) -> ControlStatus {
        match self.control(ControlRequestBody::Status) {
            ControlResponse::Status(s) => s,
            other => panic!("{other:?}"),
        }
    }

    /// Attached pods.
    pub fn pods(&self) -> Vec<PodInfo> {
        match self.control(ControlRequestBody::Pods) {
            ControlResponse::Pods { pods } => pods,
            other => panic!("{other:?}"),
        }
    }

    /// Waits (10 s at most) until the dataplane holds control's generation.
    pub fn wait_in_sync(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status();
            if s.dataplane_in_sync {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dataplane never in sync: {s:?}\n{}",
                self.control_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The network config a runtime would pass on stdin.
    pub fn netconf(&self, cni_version: &str) -> String {
        serde_json::json!({
            "cniVersion": cni_version,
            "name": "podswitch",
            "type": "podswitch",
            "controlSocket": self.control_socket,
        })
        .to_string()
    }

    /// Runs the plugin with `CNI_COMMAND=command` and the given environment, `stdin` as config.
    pub fn cni(&self, command: &str, env: &[(&str, &str)], stdin: &str) -> CniOutput {
        let mut child = Command::new(binary("podswitch-cni"))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_PATH", "/opt/cni/bin:/usr/lib/cni")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        CniOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Whether podswitch-control has exited (it is not killed by this).
    pub fn control_exited(&mut self) -> bool {
        match self.control.as_mut().map(Child::try_wait) {
            Some(Ok(Some(_))) => {
                self.control = None;
                true
            }
            _ => false,
        }
    }

    /// ADD of pod `default/name` as container `container_id` into `netns`, as containerd
    /// calls it; returns the plugin's output whatever it is.
    pub fn add(&self, name: &str, container_id: &str, netns: &str) -> CniOutput {
        self.add_in("default", name, container_id, netns)
    }

    /// [`Self::add`] of pod `namespace/name`.
    pub fn add_in(
        &self,
        namespace: &str,
        name: &str,
        container_id: &str,
        netns: &str,
    ) -> CniOutput {
        self.add_with_conf(namespace, name, container_id, netns, &self.netconf("1.0.0"))
    }

    /// The network config of [`Self::netconf`] with `"attachment": attachment`.
    pub fn netconf_attached(&self, attachment: &str) -> String {
        let mut conf: serde_json::Value =
            serde_json::from_str(&self.netconf("1.0.0")).expect("netconf is JSON");
        conf["attachment"] = attachment.into();
        conf.to_string()
    }

    /// [`Self::add_in`] with the network config `conf`.
    pub fn add_with_conf(
        &self,
        namespace: &str,
        name: &str,
        container_id: &str,
        netns: &str,
        conf: &str,
    ) -> CniOutput {
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID=uid-{namespace}-{name}");
        self.cni(
            "ADD",
            &[
                ("CNI_CONTAINERID", container_id),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", &args),
            ],
            conf,
        )
    }

    /// CHECK of `pod` with its ADD result as `prevResult`, as the runtime sends it.
    pub fn check(&self, pod: &CniPod) -> CniOutput {
        let mut conf: serde_json::Value =
            serde_json::from_str(&self.netconf("1.0.0")).expect("netconf is JSON");
        conf["prevResult"] = pod.result.clone();
        self.cni(
            "CHECK",
            &[
                ("CNI_CONTAINERID", pod.container_id.as_str()),
                ("CNI_NETNS", &pod.netns()),
                ("CNI_IFNAME", "eth0"),
            ],
            &conf.to_string(),
        )
    }

    /// ADD for a new pod namespace, as containerd would call it; panics unless it succeeds.
    pub fn add_pod(&self, name: &str) -> CniPod {
        self.add_pod_into(name, Netns::new("pswc"), &unique("ctr"))
    }

    /// ADD of pod `name` as `container_id` into the existing namespace `ns` (a sandbox
    /// restarted in it, or under its old id); panics unless it succeeds.
    pub fn add_pod_into(&self, name: &str, ns: Netns, container_id: &str) -> CniPod {
        self.add_pod_in_into("default", name, ns, container_id)
    }

    /// ADD of pod `namespace/name` for a new pod namespace; panics unless it succeeds.
    pub fn add_pod_in(&self, namespace: &str, name: &str) -> CniPod {
        self.add_pod_in_into(namespace, name, Netns::new("pswc"), &unique("ctr"))
    }

    /// ADD of pod `name` for a new pod namespace with the network config's `attachment`
    /// (`"veth-afxdp"`, `"tap"`); panics unless it succeeds.
    pub fn add_pod_attached(&self, name: &str, attachment: &str) -> CniPod {
        let conf = self.netconf_attached(attachment);
        self.add_pod_with_conf("default", name, Netns::new("pswc"), &unique("ctr"), &conf)
    }

    fn add_pod_in_into(
        &self,
        namespace: &str,
        name: &str,
        ns: Netns,
        container_id: &str,
    ) -> CniPod {
        self.add_pod_with_conf(namespace, name, ns, container_id, &self.netconf("1.0.0"))
    }

    fn add_pod_with_conf(
        &self,
        namespace: &str,
        name: &str,
        ns: Netns,
        container_id: &str,
        conf: &str,
    ) -> CniPod {
        let container_id = container_id.to_string();
        let netns = ns.path().display().to_string();
        let out = self.add_with_conf(namespace, name, &container_id, &netns, conf);
        assert_eq!(out.code, 0, "ADD failed: {out:?}\n{}", self.control_log());
        let result = out.json();
        let address = result["ips"][0]["address"].as_str().unwrap().to_string();
        let ip = address.split('/').next().unwrap().parse().unwrap();
        CniPod {
            ns,
            container_id,
            ip,
            result,
        }
    }

    /// DEL for `pod`, with or without its netns; returns the plugin's output.
    pub fn del_pod(&self, container_id: &str, netns: Option<&str>) -> CniOutput {
        self.cni(
            "DEL",
            &[
                ("CNI_CONTAINERID", container_id),
                ("CNI_NETNS", netns.unwrap_or("")),
                ("CNI_IFNAME", "eth0"),
            ],
            &self.netconf("1.0.0"),
        )
    }
}

impl Drop for ControlNode {
    fn drop(&mut self) {
        self.kill_control();
    }
}

/// A pod attached through the CNI plugin.
#[derive(Debug)]
pub struct CniPod {
    /// Its namespace.
    pub ns: Netns,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// The address ADD returned.
    pub ip: std::net::Ipv4Addr,
    /// The whole ADD result.
    pub result: serde_json::Value,
}

impl CniPod {
    /// `CNI_NETNS` of this pod.
    pub fn netns(&self) -> String {
        self.ns.path().display().to_string()
    }
}
