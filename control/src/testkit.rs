//! Shared fixtures for the unit tests: settings for a /24 node and pod records.

use crate::compile::{pod_mac, port_name};
use crate::config::{ControlConfig, Settings};
use crate::store::{attachment_key, PodRecord};
use std::net::Ipv4Addr;

/// Settings of node `n1` with pod CIDR 10.244.1.0/24 (gateway 10.244.1.1).
pub fn settings() -> Settings {
    settings_with_cidr("10.244.1.0/24")
}

/// Settings of node `n1` with the given pod CIDR (inside 10.244.0.0/16).
pub fn settings_with_cidr(cidr: &str) -> Settings {
    config_with_cidr(cidr)
        .settings()
        .expect("test settings are valid")
}

/// The configuration of node `n1` with the given pod CIDR, its paths nowhere.
fn config_with_cidr(cidr: &str) -> ControlConfig {
    ControlConfig {
        node_name: "n1".into(),
        pod_cidr: Some(cidr.parse().expect("test CIDR")),
        state_dir: "/nonexistent/state".into(),
        dataplane_socket: "/nonexistent/dataplane.sock".into(),
        socket: "/nonexistent/control.sock".into(),
        ..Default::default()
    }
}

/// Pod `container` (namespace `default`, name = container id) on `eth0` with address `ip`,
/// netns `/var/run/netns/CONTAINER`, the default MAC and port name.
pub fn pod(container: &str, ip: [u8; 4]) -> PodRecord {
    let ip = Ipv4Addr::from(ip);
    PodRecord {
        container_id: container.into(),
        ifname: "eth0".into(),
        netns: format!("/var/run/netns/{container}"),
        namespace: "default".into(),
        name: container.into(),
        uid: String::new(),
        ip,
        mac: pod_mac(ip),
        port: port_name(&attachment_key(container, "eth0")),
        mtu: None,
        offloads: true,
        attachment: Default::default(),
        pending: false,
        deleting: false,
    }
}

// ---- an in-memory podswitchd and pod network, and a harness around a `Control` ----

use crate::control::Control;
use crate::dataplane::{Dataplane, DataplaneError};
use crate::podnet::{PodNetError, PodNetwork};
use crate::store::Store;
use podswitch_proto::control::{CniAttach, CniDetach, PodAttachment};
use podswitch_proto::{NodeSpec, Op, PortInfo, PortSpec, Status, Transaction};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What the fake dataplane holds, and switches to make it fail.
#[derive(Debug, Default)]
pub struct FakeDataplaneState {
    pub generation: u64,
    pub node: Option<NodeSpec>,
    pub ports: Vec<PortSpec>,
    /// Service ports by name.
    pub services: std::collections::BTreeMap<String, podswitch_proto::ServiceSpec>,
    /// Pod port policies by port.
    pub policies: std::collections::BTreeMap<String, podswitch_proto::PolicySpec>,
    /// Routes by prefix.
    pub routes:
        std::collections::BTreeMap<podswitch_proto::Ipv4Prefix, podswitch_proto::RouteTarget>,
    /// Every transaction applied, in order.
    pub applied: Vec<Transaction>,
    /// Every request fails as if the socket were gone.
    pub unreachable: bool,
    /// `apply` is refused with this message.
    pub refuse: Option<String>,
}

impl FakeDataplaneState {
    /// As a freshly started podswitchd: nothing configured, generation 0.
    pub fn restart(&mut self) {
        self.generation = 0;
        self.node = None;
        self.ports.clear();
        self.services.clear();
        self.policies.clear();
        self.routes.clear();
    }

    /// Routes to other nodes: (prefix, next hop), by prefix.
    pub fn node_routes(&self) -> Vec<(String, Ipv4Addr)> {
        self.routes
            .iter()
            .filter_map(|(p, t)| match t {
                podswitch_proto::RouteTarget::Node { ip, .. } => Some((p.to_string(), *ip)),
                _ => None,
            })
            .collect()
    }

    pub fn port_names(&self) -> Vec<String> {
        self.ports.iter().map(|p| p.name.clone()).collect()
    }
}

/// An in-memory `podswitchd` that understands replace transactions.
#[derive(Debug, Clone, Default)]
pub struct FakeDataplane(pub Arc<Mutex<FakeDataplaneState>>);

impl FakeDataplane {
    pub fn state(&self) -> MutexGuard<'_, FakeDataplaneState> {
        self.0.lock().unwrap()
    }
}

fn fake_unreachable() -> DataplaneError {
    DataplaneError::Unreachable {
        path: "/fake/dataplane.sock".into(),
        reason: "Connection refused (os error 111)".into(),
    }
}

impl Dataplane for FakeDataplane {
    fn status(&mut self) -> Result<Status, DataplaneError> {
        let s = self.state();
        if s.unreachable {
            return Err(fake_unreachable());
        }
        Ok(Status {
            version: podswitch_proto::PROTOCOL_VERSION,
            generation: s.generation,
            workers: 1,
            node: s.node.clone(),
            ports: s.ports.len(),
            routes: 0,
        })
    }

    fn apply(&mut self, tx: &Transaction) -> Result<u64, DataplaneError> {
        let mut s = self.state();
        if s.unreachable {
            return Err(fake_unreachable());
        }
        if let Some(message) = s.refuse.clone() {
            return Err(DataplaneError::Refused {
                path: "/fake/dataplane.sock".into(),
                message,
            });
        }
        if tx.replace {
            s.node = None;
            s.ports.clear();
            s.services.clear();
            s.policies.clear();
            s.routes.clear();
        }
        for op in &tx.ops {
            match op {
                Op::SetNode(n) => s.node = Some(n.clone()),
                Op::AddPort(p) => s.ports.push(p.clone()),
                Op::DelPort { name } => s.ports.retain(|p| &p.name != name),
                Op::SetService(svc) => {
                    s.services.insert(svc.name.clone(), svc.clone());
                }
                Op::DelService { name } => {
                    s.services.remove(name);
                }
                Op::SetPolicy(p) => {
                    s.policies.insert(p.port.clone(), p.clone());
                }
                Op::DelPolicy { port } => {
                    s.policies.remove(port);
                }
                Op::AddRoute(r) => {
                    s.routes.insert(r.prefix, r.target.clone());
                }
                Op::DelRoute { prefix } => {
                    s.routes.remove(prefix);
                }
            }
        }
        s.generation = tx.generation.unwrap_or(s.generation + 1);
        s.applied.push(tx.clone());
        Ok(s.generation)
    }

    fn ports(&mut self) -> Result<Vec<PortInfo>, DataplaneError> {
        let s = self.state();
        if s.unreachable {
            return Err(fake_unreachable());
        }
        Ok(s.ports
            .iter()
            .zip(1..)
            .map(|(p, id)| PortInfo {
                id,
                name: p.name.clone(),
                kind: p.kind,
                role: p.role.clone(),
                mtu: p.mtu,
                queues: 1,
                netns: p.netns.clone(),
                offloads: p.offloads,
                afxdp: None,
            })
            .collect())
    }
}

/// Pod namespaces as a set of paths that are gone, plus a record of configurations.
#[derive(Debug, Default)]
pub struct FakePodNetworkState {
    /// Namespace paths that do not exist (all others do).
    pub missing: BTreeSet<String>,
    /// `configure` fails.
    pub fail_configure: bool,
    /// `check` fails with this.
    pub check_error: Option<String>,
    /// Attachment keys configured, in order.
    pub configured: Vec<String>,
    /// `remove` calls: `key in netns`, in order.
    pub removed: Vec<String>,
    /// `remove` fails.
    pub fail_remove: bool,
    /// Attachment keys whose veth pair is whole (made by `ensure_veth`).
    pub veths: BTreeSet<String>,
    /// `ensure_veth` fails.
    pub fail_veth: bool,
    /// `ensure_veth` calls: `key queues`, in order.
    pub veth_calls: Vec<String>,
}

#[derive(Debug, Default)]
pub struct FakePodNetwork(pub Mutex<FakePodNetworkState>);

impl FakePodNetwork {
    pub fn state(&self) -> MutexGuard<'_, FakePodNetworkState> {
        self.0.lock().unwrap()
    }
}

impl PodNetwork for FakePodNetwork {
    fn netns_exists(&self, netns: &str) -> bool {
        !self.state().missing.contains(netns)
    }

    fn configure(&self, pod: &PodRecord, _gateway: Ipv4Addr) -> Result<(), PodNetError> {
        let mut s = self.state();
        if s.fail_configure {
            return Err(PodNetError(format!(
                "{} in {}: add address: Operation not permitted",
                pod.ifname, pod.netns
            )));
        }
        s.configured.push(pod.key());
        Ok(())
    }

    fn check(&self, _pod: &PodRecord, _gateway: Ipv4Addr) -> Result<(), PodNetError> {
        match &self.state().check_error {
            Some(e) => Err(PodNetError(e.clone())),
            None => Ok(()),
        }
    }

    fn remove(&self, pod: &PodRecord, netns: &str) -> Result<bool, PodNetError> {
        let mut s = self.state();
        if s.fail_remove {
            return Err(PodNetError(format!(
                "{} in {netns}: delete link: Operation not permitted",
                pod.ifname
            )));
        }
        s.removed.push(format!("{} in {netns}", pod.key()));
        s.veths.remove(&pod.key());
        Ok(true)
    }

    fn attachable(&self, pod: &PodRecord) -> bool {
        self.netns_exists(&pod.netns)
            && (pod.attachment == PodAttachment::Tap || self.state().veths.contains(&pod.key()))
    }

    fn ensure_veth(&self, pod: &PodRecord, _mtu: u16, queues: u32) -> Result<bool, PodNetError> {
        let mut s = self.state();
        s.veth_calls.push(format!("{} {queues}", pod.key()));
        if s.fail_veth {
            return Err(PodNetError(format!(
                "{} in {}: create veth pair: Operation not permitted",
                pod.ifname, pod.netns
            )));
        }
        Ok(s.veths.insert(pod.key()))
    }
}

/// [`settings`] with an uplink `eth1` at 192.168.1.1, routed or VXLAN (VNI 42).
pub fn settings_with_uplink(vxlan: bool) -> Settings {
    ControlConfig {
        node_ip: Some(Ipv4Addr::new(192, 168, 1, 1)),
        uplink: "eth1".into(),
        encap: if vxlan {
            crate::config::EncapMode::Vxlan
        } else {
            crate::config::EncapMode::Direct
        },
        vni: 42,
        ..config_with_cidr("10.244.1.0/24")
    }
    .settings()
    .expect("test settings are valid")
}

/// A Node manifest: `name` with `cidr` and InternalIP `ip` (either may be absent).
pub fn node_manifest(name: &str, cidr: Option<&str>, ip: Option<&str>) -> String {
    let mut m = format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n");
    if let Some(c) = cidr {
        m.push_str(&format!("spec: {{podCIDR: {c}, podCIDRs: [{c}]}}\n"));
    }
    if let Some(ip) = ip {
        m.push_str(&format!(
            "status: {{addresses: [{{type: Hostname, address: {name}}}, {{type: InternalIP, address: {ip}}}]}}\n"
        ));
    }
    m
}

/// A `Control` over a temporary database, a fake dataplane and fake namespaces.
#[derive(Debug)]
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub dp: FakeDataplane,
    pub net: Arc<FakePodNetwork>,
    control: Option<Control>,
}

impl Harness {
    /// Node 10.244.1.0/24; no periodic resync (only the one at start, and `push_now`).
    pub fn new() -> Harness {
        Self::with_settings(settings())
    }

    pub fn with_settings(mut s: Settings) -> Harness {
        s.resync_interval = Duration::from_secs(3600);
        let dir = tempfile::tempdir().unwrap();
        let dp = FakeDataplane::default();
        let net = Arc::new(FakePodNetwork::default());
        let control = Some(start(&s, dir.path(), &dp, &net));
        Harness {
            dir,
            dp,
            net,
            control,
        }
    }

    /// The control under test.
    pub fn c(&self) -> &Control {
        self.control.as_ref().expect("control is running")
    }

    /// Kills the control process (drops it: nothing is flushed that a `kill -9` would not
    /// lose too, since every change is committed before it is answered) and starts a new one
    /// on the same database, dataplane and namespaces.
    pub fn restart_control(&mut self) {
        let s = self.c().settings().clone();
        self.control = None; // redb locks the file: the old one must be gone first
        self.control = Some(start(&s, self.dir.path(), &self.dp, &self.net));
    }

    pub fn store(&self) -> &Store {
        &self.c().store
    }

    pub fn add(
        &self,
        container: &str,
    ) -> Result<podswitch_proto::control::Attachment, crate::Failure> {
        self.c().cni_add(&add_request(container))
    }

    pub fn del(&self, container: &str) -> Result<(), crate::Failure> {
        self.c().cni_del(&CniDetach {
            container_id: container.into(),
            ifname: "eth0".into(),
            netns: None,
        })
    }
}

/// Starts a control and waits until its start-up resync is done.
fn start(
    s: &Settings,
    dir: &std::path::Path,
    dp: &FakeDataplane,
    net: &Arc<FakePodNetwork>,
) -> Control {
    let store = Arc::new(Store::open(dir).unwrap());
    let control = Control::start(s.clone(), store, Box::new(dp.clone()), net.clone());
    // Commands are served after the start-up sync: this one waits for it.
    let _ = control.sync().dataplane_status();
    control
}

/// A CNI ADD for pod `container` in namespace `default`, netns `/var/run/netns/CONTAINER`.
pub fn add_request(container: &str) -> CniAttach {
    CniAttach {
        container_id: container.into(),
        ifname: "eth0".into(),
        netns: format!("/var/run/netns/{container}"),
        pod_namespace: Some("default".into()),
        pod_name: Some(container.into()),
        pod_uid: None,
        requested_ip: None,
        requested_mac: None,
        mtu: None,
        offloads: None,
        attachment: None,
    }
}
