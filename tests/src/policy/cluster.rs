//! The Kubernetes e2e model of the NetworkPolicy suite on one [`ControlNode`]: namespaces x, y
//! and z (labels `ns=<name>`), pods a, b and c in each (labels `pod=<name>`) attached through
//! the CNI plugin, TCP and UDP servers on ports 80 and 81 in every pod (containerPorts named
//! `serve-80-tcp`, `serve-81-udp`, ...). [`PolicyCluster::check`] probes the whole 9×9 matrix
//! for one protocol and port in parallel and compares it with the evaluator's, printing both
//! truth tables (`.` reachable, `X` not) on a mismatch.

use super::{ContainerPort, Direction, Labels, NamespaceModel, PodModel, Policy, World};
use crate::control::{CniPod, ControlNode};
use crate::services::{connect_with, udp_ask_with, TcpServer, UdpServer};
use podswitch_proto::{PolicyProtocol, PolicyStatus, RequestBody, Response};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The namespaces.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
/// The pods of each.
pub const PODS: [&str; 3] = ["a", "b", "c"];
/// The ports every pod serves, for TCP and UDP.
pub const SERVED_PORTS: [u16; 2] = [80, 81];

/// A denied TCP connection is dropped, not refused: the connect attempt times out after this.
const TCP_PROBE_TIMEOUT: Duration = Duration::from_millis(400);
/// One UDP question waits this long for its answer...
const UDP_PROBE_WAIT: Duration = Duration::from_millis(250);
/// ... and is asked this many times.
const UDP_PROBE_TRIES: usize = 3;
/// How long the dataplane may take to hold what control was given.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Per pod address, the policies isolating it for ingress and for egress (`None`: not isolated
/// in that direction); pods isolated in neither are absent.
type Isolation = BTreeMap<Ipv4Addr, (Option<Vec<String>>, Option<Vec<String>>)>;

/// The nine pods on one node, and the model of what is applied.
#[derive(Debug)]
pub struct PolicyCluster {
    /// The node (both daemons).
    pub cn: ControlNode,
    /// The pods, in the order of `keys` and of the world's pods.
    pub pods: Vec<CniPod>,
    /// `namespace/name` of each pod (x/a, x/b, x/c, y/a, ...).
    pub keys: Vec<String>,
    /// What is applied (behind a lock: the servers borrow the pods while cases change it).
    world: Mutex<World>,
}

/// The servers of every pod; they stop on drop.
#[derive(Debug)]
pub struct Servers<'a> {
    _tcp: Vec<TcpServer<'a>>,
    _udp: Vec<UdpServer<'a>>,
}

/// What one probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Reached,
    TimedOut,
    /// Refused or any other error: a policy drops silently, so this is never expected.
    Failed,
    /// Someone else answered.
    Wrong,
}

impl Seen {
    fn cell(self) -> char {
        match self {
            Seen::Reached => '.',
            Seen::TimedOut => 'X',
            Seen::Failed => 'R',
            Seen::Wrong => '?',
        }
    }
}

fn container_ports() -> Vec<ContainerPort> {
    let mut ports = Vec::new();
    for port in SERVED_PORTS {
        for (protocol, p) in [(PolicyProtocol::Tcp, "tcp"), (PolicyProtocol::Udp, "udp")] {
            ports.push(ContainerPort {
                name: format!("serve-{port}-{p}"),
                protocol,
                port,
            });
        }
    }
    ports
}

impl PolicyCluster {
    /// Starts the node, attaches the nine pods and applies their Namespace and Pod objects.
    pub fn start() -> PolicyCluster {
        let cn = ControlNode::start();
        let mut world = World::default();
        let mut pods = Vec::new();
        for ns in NAMESPACES {
            world.namespaces.push(NamespaceModel {
                name: ns.into(),
                labels: super::labels(&[("ns", ns)]),
            });
            for name in PODS {
                let pod = cn.add_pod_in(ns, name);
                world.pods.push(PodModel {
                    namespace: ns.into(),
                    name: name.into(),
                    labels: super::labels(&[("pod", name)]),
                    ip: pod.ip,
                    container_ports: container_ports(),
                });
                pods.push(pod);
            }
        }
        let keys = world.pods.iter().map(PodModel::key).collect();
        let mut all: Vec<String> = world.namespaces.iter().map(NamespaceModel::yaml).collect();
        all.extend(world.pods.iter().map(PodModel::yaml));
        let cluster = PolicyCluster {
            cn,
            pods,
            keys,
            world: Mutex::new(world),
        };
        cluster.apply_yaml(&all.join("---\n"));
        cluster
    }

    /// Starts every pod's servers (answering as `namespace/name`).
    pub fn serve(&self) -> Servers<'_> {
        let (mut tcp, mut udp) = (Vec::new(), Vec::new());
        for (key, pod) in self.keys.iter().zip(&self.pods) {
            for port in SERVED_PORTS {
                tcp.push(TcpServer::start(&pod.ns, port, key));
                udp.push(UdpServer::start(&pod.ns, port, key));
            }
        }
        Servers {
            _tcp: tcp,
            _udp: udp,
        }
    }

    /// The pod `namespace/name`: its model and its attachment.
    pub fn pod(&self, key: &str) -> &CniPod {
        let i = self
            .keys
            .iter()
            .position(|k| k == key)
            .unwrap_or_else(|| panic!("no pod {key}"));
        &self.pods[i]
    }

    /// The switch port of pod `namespace/name` (for `trace --in-port`).
    pub fn port_of(&self, key: &str) -> String {
        let ip = self.pod(key).ip;
        self.cn
            .pods()
            .into_iter()
            .find(|p| p.ip == ip)
            .unwrap_or_else(|| panic!("control lists no pod at {ip}"))
            .port
    }

    /// The model of what is applied.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn apply_yaml(&self, yaml: &str) {
        if let Err(e) = self.cn.apply_manifests(yaml) {
            panic!("apply refused: {e}\n{yaml}");
        }
        self.cn.wait_in_sync();
    }

    /// Applies `policy` (replacing one of the same name) and waits until the dataplane isolates
    /// exactly the pods the evaluator says.
    pub fn apply(&self, policy: &Policy) {
        {
            let mut w = self.world();
            w.policies.retain(|p| p.key() != policy.key());
            w.policies.push(policy.clone());
        }
        self.apply_yaml(&policy.yaml());
        self.wait_for_isolation();
    }

    /// Deletes `policy` and waits as [`Self::apply`] does.
    pub fn delete(&self, policy: &Policy) {
        self.world().policies.retain(|p| p.key() != policy.key());
        let yaml = policy.yaml();
        if let Err(e) = self
            .cn
            .control(podswitch_proto::control::ControlRequestBody::Delete {
                manifests: yaml.clone(),
            })
            .error_message()
        {
            panic!("delete refused: {e}\n{yaml}");
        }
        self.cn.wait_in_sync();
        self.wait_for_isolation();
    }

    /// Deletes every policy applied.
    pub fn delete_all(&self) {
        let all = self.world().policies.clone();
        for p in all {
            self.delete(&p);
        }
    }

    /// Re-applies pod `key`'s Pod object with `labels`.
    pub fn relabel_pod(&self, key: &str, labels: Labels) {
        let mut w = self.world();
        let pod = w
            .pods
            .iter_mut()
            .find(|p| p.key() == key)
            .unwrap_or_else(|| panic!("no pod {key}"));
        pod.labels = labels;
        let yaml = pod.yaml();
        drop(w);
        self.apply_yaml(&yaml);
        self.wait_for_isolation();
    }

    /// Re-applies Namespace `name` with `labels`.
    pub fn relabel_namespace(&self, name: &str, labels: Labels) {
        let mut w = self.world();
        let ns = w
            .namespaces
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no namespace {name}"));
        ns.labels = labels;
        let yaml = ns.yaml();
        drop(w);
        self.apply_yaml(&yaml);
        self.wait_for_isolation();
    }

    /// What podswitchd enforces, per pod port.
    pub fn policies(&self) -> Vec<PolicyStatus> {
        match self.cn.node.request(RequestBody::Policies) {
            Response::Policies { policies } => policies,
            other => panic!("unexpected response to policies: {other:?}"),
        }
    }

    /// Per pod address: the policies isolating it for ingress and for egress (`None`: not
    /// isolated in that direction); pods isolated in neither are absent.
    fn expected_isolation(&self) -> Isolation {
        let some = |v: Vec<String>| (!v.is_empty()).then_some(v);
        let w = self.world();
        w.pods
            .iter()
            .map(|p| {
                let i = some(w.isolating(p, Direction::Ingress));
                let e = some(w.isolating(p, Direction::Egress));
                (p.ip, (i, e))
            })
            .filter(|(_, (i, e))| i.is_some() || e.is_some())
            .collect()
    }

    fn observed_isolation(&self) -> Isolation {
        self.policies()
            .into_iter()
            .map(|s| {
                let i = s.spec.ingress.map(|d| d.policies);
                let e = s.spec.egress.map(|d| d.policies);
                (s.ip, (i, e))
            })
            .filter(|(_, (i, e))| i.is_some() || e.is_some())
            .collect()
    }

    /// Waits until `podswitchd`'s policies isolate the pods the evaluator says, by the
    /// policies it says; panics with both after a deadline.
    pub fn wait_for_isolation(&self) {
        let want = self.expected_isolation();
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            let have = self.observed_isolation();
            if have == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "podswitchd isolates {have:#?}\nthe evaluator expects {want:#?}\npolicies:\n{}\ncontrol log:\n{}",
                self.manifests(),
                self.cn.control_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The applied policies as YAML (for failure messages).
    pub fn manifests(&self) -> String {
        self.world()
            .policies
            .iter()
            .map(Policy::yaml)
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// One probe from pod `from` to pod `to`; a denied-looking probe is retried once.
    fn probe(&self, from: usize, to: usize, protocol: PolicyProtocol, port: u16) -> Seen {
        let ns = &self.pods[from].ns;
        let addr = SocketAddr::from((self.pods[to].ip, port));
        let name = &self.keys[to];
        let mut seen = Seen::TimedOut;
        for _ in 0..2 {
            seen = match protocol {
                PolicyProtocol::Tcp => match connect_with(ns, addr, TCP_PROBE_TIMEOUT) {
                    Ok(c) if &c.answer.backend == name => Seen::Reached,
                    Ok(_) => Seen::Wrong,
                    Err(e)
                        if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock =>
                    {
                        Seen::TimedOut
                    }
                    Err(_) => Seen::Failed,
                },
                PolicyProtocol::Udp => {
                    match udp_ask_with(ns, addr, UDP_PROBE_TRIES, UDP_PROBE_WAIT) {
                        Ok(a) if &a.backend == name => Seen::Reached,
                        Ok(_) => Seen::Wrong,
                        Err(e)
                            if e.kind() == ErrorKind::TimedOut
                                || e.kind() == ErrorKind::WouldBlock =>
                        {
                            Seen::TimedOut
                        }
                        Err(_) => Seen::Failed,
                    }
                }
                PolicyProtocol::Sctp => panic!("SCTP probes are not supported (no std socket)"),
            };
            if seen != Seen::TimedOut {
                break;
            }
        }
        seen
    }

    /// The whole matrix for `protocol`/`port`, observed: all 81 probes at once.
    fn observe(&self, protocol: PolicyProtocol, port: u16) -> Vec<Vec<Seen>> {
        let n = self.pods.len();
        std::thread::scope(|s| {
            let rows: Vec<Vec<_>> = (0..n)
                .map(|from| {
                    (0..n)
                        .map(|to| s.spawn(move || self.probe(from, to, protocol, port)))
                        .collect()
                })
                .collect();
            rows.into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|h| h.join().expect("probe thread"))
                        .collect()
                })
                .collect()
        })
    }

    /// The evaluator's matrix for `protocol`/`port`.
    pub fn expected(&self, protocol: PolicyProtocol, port: u16) -> Vec<Vec<bool>> {
        let w = self.world();
        w.pods
            .iter()
            .map(|from| {
                w.pods
                    .iter()
                    .map(|to| w.allowed(from, to, protocol, port))
                    .collect()
            })
            .collect()
    }

    fn table(&self, title: &str, cells: &[Vec<char>]) -> String {
        let mut t = format!("{title}\n-");
        for k in &self.keys {
            let _ = write!(t, "\t{k}");
        }
        for (k, row) in self.keys.iter().zip(cells) {
            let _ = write!(t, "\n{k}");
            for c in row {
                let _ = write!(t, "\t{c}");
            }
        }
        t.push('\n');
        t
    }

    /// Probes the matrix for `protocol`/`port` (rows: from, columns: to) and panics with the
    /// expected, observed and comparison truth tables unless it is what the evaluator says.
    /// `case` names the case in the message.
    pub fn check(&self, case: &str, protocol: PolicyProtocol, port: u16) {
        let want = self.expected(protocol, port);
        let have = self.observe(protocol, port);
        let want_cells: Vec<Vec<char>> = want
            .iter()
            .map(|r| r.iter().map(|&b| if b { '.' } else { 'X' }).collect())
            .collect();
        let have_cells: Vec<Vec<char>> = have
            .iter()
            .map(|r| r.iter().map(|s| s.cell()).collect())
            .collect();
        if want_cells == have_cells {
            return;
        }
        let cmp: Vec<Vec<char>> = want_cells
            .iter()
            .zip(&have_cells)
            .map(|(w, h)| {
                w.iter()
                    .zip(h)
                    .map(|(a, b)| if a == b { '.' } else { 'X' })
                    .collect()
            })
            .collect();
        panic!(
            "case {case:?}, {protocol} {port}: reachability differs from the evaluator's \
             (. reachable, X timed out, R refused/failed, ? wrong server)\n{}\n{}\n{}\n\
             policies applied:\n{}\npodswitchd policies:\n{}",
            self.table("expected", &want_cells),
            self.table("observed", &have_cells),
            self.table("comparison (X: differs)", &cmp),
            self.manifests(),
            self.cn.node.podswitchctl(&["policies"]),
        );
    }

    /// [`Self::check`] for TCP 80, TCP 81 and UDP 80.
    pub fn check_common(&self, case: &str) {
        self.check(case, PolicyProtocol::Tcp, 80);
        self.check(case, PolicyProtocol::Tcp, 81);
        self.check(case, PolicyProtocol::Udp, 80);
    }
}

/// A control response's error message, if it is one.
trait ErrorMessage {
    fn error_message(&self) -> Result<(), String>;
}

impl ErrorMessage for podswitch_proto::control::ControlResponse {
    fn error_message(&self) -> Result<(), String> {
        match self {
            podswitch_proto::control::ControlResponse::Error { message, .. } => {
                Err(message.clone())
            }
            _ => Ok(()),
        }
    }
}
