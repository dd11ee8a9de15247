//! The daemon: starts the workers, holds the configuration, applies transactions and answers
//! the socket API. This is the slow path; it never touches a packet. Its one link to the fast
//! path is publishing a new [`Tables`] snapshot (and handing queues to workers).

mod afxdp_port;
pub mod api;
mod compile;
pub mod error;
mod host_routes;
mod kernel_stats;
mod nodeport;
pub mod state;
mod tap_factory;
mod trace;

use crate::batch::PortId;
use crate::config::DaemonConfig;
use crate::counters::{DropReason, Event, PortStats, SharedCounters};
use crate::pipeline::FlowState;
use crate::ports::{PortQueue, Uring, Waker};
use crate::tables::{NextHops, RouteTarget, Tables};
use crate::worker::{Command, Worker, WorkerConfig};
use arc_swap::ArcSwap;
pub use error::{ApplyError, StartError, WorkerError};
use podswitch_packet::MacAddr;
use podswitch_proto as proto;
use proto::{PortRole, RequestBody, Response};
use state::{Changes, Config, PortFactory};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the daemon waits for a worker to start or to acknowledge commands.
const WORKER_ANSWER_SECS: u64 = 10;

/// Why a worker thread ended, written by the thread itself, read when a command bounces.
type ExitCause = Arc<Mutex<Option<String>>>;

struct WorkerHandle {
    index: usize,
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    counters: Arc<SharedCounters>,
    /// The worker's buffer region, which its AF_XDP sockets register as their UMEM.
    umem: afxdp_port::UmemArea,
    exit: ExitCause,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl WorkerHandle {
    /// Sends a command; if the worker has ended, says why and gives the command back (so a
    /// queue it carried can be released rather than lost).
    fn send(&self, cmd: Command) -> Result<(), (WorkerError, Command)> {
        match self.commands.send(cmd) {
            Ok(()) => {
                self.waker.wake();
                Ok(())
            }
            Err(mpsc::SendError(cmd)) => Err((self.stopped(), cmd)),
        }
    }

    fn stopped(&self) -> WorkerError {
        let cause = self
            .exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "it panicked: see podswitchd's log".into());
        WorkerError::Stopped {
            worker: self.index,
            cause,
        }
    }
}

/// Creates a worker's ring on its own thread ([`Worker::open_ring`]; tests inject failures).
type OpenRing = fn(&Worker) -> io::Result<Uring>;

/// A running switch.
pub struct Daemon {
    cfg: DaemonConfig,
    switch_mac: MacAddr,
    tables: Arc<ArcSwap<Tables>>,
    flows: Arc<FlowState>,
    workers: Vec<WorkerHandle>,
    config: Mutex<Config>,
    /// The node's NodePort nf_tables table; locked after `config`, never the other way.
    nodeport: Mutex<nodeport::NodePortTable>,
    /// The node's routes to externalIPs and LoadBalancer IPs; locked after `config`.
    host_routes: Mutex<host_routes::HostRoutes>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Starts the worker threads with empty tables. Returns once every worker has its ring,
    /// or with the first worker's failure and what to do about it (no thread is left behind).
    pub fn start(cfg: DaemonConfig) -> Result<Arc<Daemon>, StartError> {
        Self::start_with(cfg, Worker::open_ring)
    }

    fn start_with(cfg: DaemonConfig, open_ring: OpenRing) -> Result<Arc<Daemon>, StartError> {
        Self::start_waiting(cfg, open_ring, Duration::from_secs(WORKER_ANSWER_SECS))
    }

    /// [`Daemon::start_with`], waiting `answer` for each worker to say whether it started.
    fn start_waiting(
        cfg: DaemonConfig,
        open_ring: OpenRing,
        answer: Duration,
    ) -> Result<Arc<Daemon>, StartError> {
        cfg.validate()?;
        let switch_mac: MacAddr = cfg
            .switch_mac
            .parse()
            .map_err(|_| StartError::SwitchMac(cfg.switch_mac.clone()))?;
        let tables = Arc::new(ArcSwap::from_pointee(Tables::default()));
        let flows = Arc::new(FlowState::new(
            cfg.conntrack_capacity,
            cfg.affinity_capacity,
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let wcfg = WorkerConfig {
            burst: cfg.burst,
            idle: cfg.idle,
            pool_buffers: cfg.pool_buffers,
            pool_large_buffers: cfg.pool_large_buffers,
            max_ports: cfg.max_ports,
            rx_depth: cfg.rx_depth,
            spin_iterations: cfg.spin_iterations,
            sleep: Duration::from_micros(cfg.sleep_us),
            spin_yield: cfg.spin_yield,
            cpu: None,
        };
        let mut workers = Vec::with_capacity(cfg.workers);
        for index in 0..cfg.workers {
            let wcfg = WorkerConfig {
                cpu: cfg.worker_cpus.get(index).copied(),
                ..wcfg
            };
            let shared = (&tables, &flows, &stop);
            if let Err(e) = start_worker(index, wcfg, shared, open_ring, answer, &mut workers) {
                stop_workers(&stop, &mut workers);
                return Err(e);
            }
        }
        Ok(Arc::new(Daemon {
            cfg,
            switch_mac,
            tables,
            flows,
            workers,
            config: Mutex::new(Config::default()),
            nodeport: Mutex::default(),
            host_routes: Mutex::default(),
            stop,
        }))
    }

    /// The configuration as the daemon holds it.
    fn config(&self) -> MutexGuard<'_, Config> {
        // A panic while holding the lock cannot leave a half-applied Config: apply works on a
        // copy and swaps it in at the end. So a poisoned lock is still consistent.
        self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every worker has processed every command sent so far.
    fn sync_workers(&self) -> Result<(), WorkerError> {
        let receivers: Vec<_> = self
            .workers
            .iter()
            .map(|w| {
                let (tx, rx) = mpsc::sync_channel(1);
                w.send(Command::Sync(tx))
                    .map(|()| (w, rx))
                    .map_err(|(e, _)| e)
            })
            .collect::<Result<_, _>>()?;
        Self::wait_for(receivers)
    }

    /// Waits for the workers that still run, skipping any that stopped (a rollback after a
    /// worker failure must still see the others done).
    fn sync_running_workers(&self) {
        let receivers: Vec<_> = self
            .workers
            .iter()
            .filter_map(|w| {
                let (tx, rx) = mpsc::sync_channel(1);
                w.send(Command::Sync(tx)).ok().map(|()| (w, rx))
            })
            .collect();
        let _ = Self::wait_for(receivers);
    }

    fn wait_for(receivers: Vec<(&WorkerHandle, mpsc::Receiver<()>)>) -> Result<(), WorkerError> {
        for (w, rx) in receivers {
            match rx.recv_timeout(Duration::from_secs(WORKER_ANSWER_SECS)) {
                Ok(()) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(w.stopped()),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(WorkerError::NoAnswer {
                        worker: w.index,
                        secs: WORKER_ANSWER_SECS,
                    })
                }
            }
        }
        Ok(())
    }

    /// Applies a transaction: all of it, or none of it.
    pub fn apply(&self, tx: proto::Transaction) -> Result<u64, ApplyError> {
        let mut factory = tap_factory::TapFactory::new(
            self.workers.len(),
            self.cfg.rx_depth,
            self.cfg.steers_by_cpu(),
            self.workers.iter().map(|w| w.umem).collect(),
            self.cfg.xdp_generic,
        )
        .map_err(|e| ApplyError::Netlink(Box::new(e)))?;
        let generation = self.apply_with(tx, &mut factory)?;
        self.sync_nodeport_table();
        self.sync_host_routes();
        Ok(generation)
    }

    /// Routes the node's traffic to externalIPs, LoadBalancer IPs and other nodes' pods into
    /// the host port, as the configuration just published has them (here, not in
    /// `apply_with`, for the reason [`Self::sync_nodeport_table`] gives). A failure is
    /// logged; the next apply tries again.
    fn sync_host_routes(&self) {
        let want = host_routes::wanted(&self.config());
        let mut routes = self.host_routes.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = routes.sync(want.as_ref()) {
            eprintln!(
                "podswitchd: externalIPs, LoadBalancer IPs and other nodes' pods may not be \
                 reachable from the node itself until the next successful apply: {e}"
            );
        }
    }

    /// Brings the node's NodePort table in line with the configuration just published (here,
    /// not in `apply_with`, so unit tests with memory ports leave the host's nf_tables alone).
    /// A failure does not undo the transaction, which is in effect: it is logged, and the next
    /// apply tries again.
    fn sync_nodeport_table(&self) {
        let config = self.config();
        let (tcp_ports, udp_ports) = node_ports(&config);
        let want = nodeport::wanted(&config, &tcp_ports, &udp_ports);
        let mut table = self.nodeport.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = table.sync(want) {
            eprintln!(
                "podswitchd: NodePorts from the node itself will not work until the next \
                 successful apply: {e}"
            );
        }
    }

    /// After a snapshot without them is published: UDP connections to endpoints that went are
    /// flushed (a datagram flow has no end, and would go on to a dead pod), TCP ones finish
    /// (Kubernetes' graceful termination: established connections keep their endpoint), and
    /// the Service port's affinity is forgotten.
    fn forget_gone_endpoints(&self, gone: &[state::GoneEndpoints]) {
        let udp = |g: &&state::GoneEndpoints| {
            g.protocol == proto::L4Protocol::Udp && !g.endpoints.is_empty()
        };
        // A walk over the whole table, so only when a UDP endpoint went.
        if gone.iter().any(|g| udp(&g)) {
            let udp_proto = podswitch_packet::IpProtocol::UDP.0;
            self.flows.conntrack.flush(|e| {
                e.original.proto == udp_proto
                    && e.service.is_some_and(|s| {
                        gone.iter().filter(udp).any(|g| {
                            g.service == s.service
                                && g.endpoints
                                    .iter()
                                    .any(|&(ip, port)| s.backend.ip == ip && s.backend.port == port)
                        })
                    })
            });
        }
        for g in gone {
            self.flows.affinity.forget_service(g.service);
        }
    }

    /// [`Daemon::apply`] with ports made by `factory`. The order is what makes it atomic:
    /// ports are created (a failure there drops them again, `Config::apply`), handed to the
    /// workers and acknowledged (a failure there takes them back from the workers and
    /// releases their devices), and only then is the new snapshot published and the new
    /// configuration kept. Removed ports go last, once no snapshot routes to them.
    fn apply_with(
        &self,
        tx: proto::Transaction,
        factory: &mut dyn PortFactory,
    ) -> Result<u64, ApplyError> {
        let mut config = self.config();
        let (
            mut next,
            Changes {
                added,
                removed,
                kept_devices,
                new_devices,
                gone_endpoints,
            },
        ) = config
            .applied(tx.ops, tx.replace, self.cfg.max_ports, factory)
            .map_err(ApplyError::Invalid)?;
        self.hand_over(added, &new_devices)?;
        next.generation = tx.generation.unwrap_or(config.generation + 1);
        let previous = self.tables.load_full();
        let previous_hops = previous.next_hops.clone();
        self.tables.store(Arc::new(next.compile(
            self.switch_mac,
            &previous,
            Some(&config),
        )));
        *config = next;
        drop(previous);
        self.forget_gone_endpoints(&gone_endpoints);
        // Next hops no route leads to any more are forgotten (a node that left), when the set
        // of them changed; so are outside clients' entries, unless an egress route still sends
        // to their address on the segment.
        let tables = self.tables.load();
        if !Arc::ptr_eq(&tables.next_hops, &previous_hops)
            && !tables.next_hops.same_vias(&previous_hops)
        {
            // Egress routes and the uplink's gateway both say which addresses are on the
            // uplink's segment: clients there keep their entries.
            let on_segment = |ip| {
                tables.fib.lookup(ip) == Some(RouteTarget::Egress(NextHops::SEGMENT))
                    || tables.uplink.and_then(|u| u.reply_hop(ip)) == Some(NextHops::ON_LINK)
            };
            self.flows
                .neighbors
                .retain(|ip| tables.next_hops.contains(ip) || on_segment(ip));
        }
        for &id in &removed {
            let release_device = !kept_devices.contains(&id);
            for worker in &self.workers {
                if let Err((e, _)) = worker.send(Command::RemovePort { id, release_device }) {
                    eprintln!("podswitchd: removing port {id} after applying: {e}");
                }
            }
        }
        if !removed.is_empty() {
            if let Err(e) = self.sync_workers() {
                eprintln!("podswitchd: removing old ports after applying: {e}");
            }
        }
        Ok(config.generation)
    }

    /// Gives each new port's queues to the workers (one each) and waits until every worker
    /// polls them. On any failure, takes them back: no snapshot routes to them yet, so the
    /// workers drop them at once, and devices this transaction created are released.
    fn hand_over(
        &self,
        added: Vec<(PortId, Vec<Box<dyn PortQueue>>)>,
        new_devices: &[PortId],
    ) -> Result<(), WorkerError> {
        let mut handed = Vec::with_capacity(added.len());
        let mut failure = None;
        for (id, queues) in added {
            let release = new_devices.contains(&id);
            let mut queues = queues.into_iter();
            if failure.is_none() {
                let mut reached_a_worker = false;
                for (worker, queue) in self.workers.iter().zip(&mut queues) {
                    match worker.send(Command::AddQueue(queue)) {
                        Ok(()) => reached_a_worker = true,
                        Err((e, cmd)) => {
                            if let Command::AddQueue(queue) = cmd {
                                drop_queue(queue, release);
                            }
                            failure = Some(e);
                            break;
                        }
                    }
                }
                if reached_a_worker {
                    handed.push((id, release));
                }
            }
            for queue in queues {
                drop_queue(queue, release);
            }
        }
        let failure = match failure {
            Some(e) => e,
            // No port added (a Service or policy change): no worker to wait for.
            None if handed.is_empty() => return Ok(()),
            None => match self.sync_workers() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            },
        };
        for &(id, release_device) in &handed {
            for worker in &self.workers {
                // A worker that has stopped dropped its queues with its thread.
                let _ = worker.send(Command::RemovePort { id, release_device });
            }
        }
        self.sync_running_workers();
        Err(failure)
    }

    /// Answers one request.
    pub fn handle(&self, req: RequestBody) -> Response {
        match req {
            RequestBody::Apply(tx) => match self.apply(tx) {
                Ok(generation) => Response::Applied { generation },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            },
            RequestBody::Status => {
                let c = self.config();
                Response::Status(proto::Status {
                    version: proto::PROTOCOL_VERSION,
                    generation: c.generation,
                    workers: self.workers.len(),
                    node: c.node.clone(),
                    ports: c.ports.len(),
                    routes: self.tables.load().fib.len(),
                })
            }
            RequestBody::Ports => Response::Ports {
                ports: self.ports(),
            },
            RequestBody::Routes => Response::Routes {
                routes: self.routes(),
            },
            RequestBody::Neighbors => Response::Neighbors {
                neighbors: self.neighbors(),
            },
            RequestBody::Counters => match self.sync_workers() {
                Ok(()) => Response::Counters(self.counters()),
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            },
            RequestBody::Trace(packet) => {
                match trace::trace(&self.tables.load(), &self.flows, &packet) {
                    Ok(result) => Response::Trace(result),
                    Err(message) => Response::Error { message },
                }
            }
            RequestBody::Services => Response::Services {
                services: self.services(),
            },
            RequestBody::Conntrack(filter) => Response::Conntrack(self.conntrack(&filter)),
            RequestBody::Policies => match self.sync_workers() {
                Ok(()) => Response::Policies {
                    policies: self.policies(),
                },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            },
        }
    }

    fn policies(&self) -> Vec<proto::PolicyStatus> {
        let c = self.config();
        c.policies
            .values()
            .filter_map(|spec| {
                let port = c.ports.get(&spec.port)?;
                let proto::PortRole::Pod {
                    ip, namespace, pod, ..
                } = &port.spec.role
                else {
                    return None;
                };
                let mut stats = PortStats::default();
                for w in &self.workers {
                    w.counters.sum_port(usize::from(port.id), &mut stats);
                }
                Some(proto::PolicyStatus {
                    ip: *ip,
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    spec: (**spec).clone(),
                    ingress_denied: stats.ingress_denied,
                    egress_denied: stats.egress_denied,
                })
            })
            .collect()
    }

    fn services(&self) -> Vec<proto::ServiceInfo> {
        let tables = self.tables.load();
        let mut connections: std::collections::HashMap<(u32, (std::net::Ipv4Addr, u16)), u64> =
            std::collections::HashMap::new();
        self.flows.conntrack.for_each(Instant::now(), |e| {
            if let Some(s) = e.service {
                *connections
                    .entry((s.service, (s.backend.ip, s.backend.port)))
                    .or_default() += 1;
            }
        });
        tables
            .services
            .iter()
            .map(|e| proto::ServiceInfo {
                spec: (*e.spec).clone(),
                selected: (0..e.backends.len() as u16)
                    .map(|i| proto::BackendUse {
                        internal: e.internal.contains(i),
                        external: e.external.contains(i),
                    })
                    .collect(),
                maglev_table_size: e.internal.table_len().max(e.external.table_len()) as u32,
                connections: e
                    .backends
                    .iter()
                    .map(|b| {
                        connections
                            .get(&(e.id, (b.ip, b.port)))
                            .copied()
                            .unwrap_or(0)
                    })
                    .collect(),
            })
            .collect()
    }

    fn conntrack(&self, f: &proto::ConntrackFilter) -> proto::ConntrackDump {
        let tables = self.tables.load();
        let limit = f.limit.unwrap_or(1000);
        let service_id = f
            .service
            .as_deref()
            .map(|name| tables.services.by_name(name).map(|e| e.id));
        let mut entries = Vec::new();
        self.flows.conntrack.for_each(Instant::now(), |e| {
            if entries.len() >= limit {
                return;
            }
            let tuples = [e.original, e.reply];
            let matches = f
                .ip
                .is_none_or(|ip| tuples.iter().any(|t| t.src == ip || t.dst == ip))
                && f.port
                    .is_none_or(|p| tuples.iter().any(|t| t.src_port == p || t.dst_port == p))
                && f.protocol.is_none_or(|p| e.original.proto == p)
                && service_id.is_none_or(|id| id.is_some() && e.service.map(|s| s.service) == id);
            if !matches {
                return;
            }
            let info = |t: &crate::conntrack::Tuple| proto::TupleInfo {
                src: t.src,
                dst: t.dst,
                src_port: t.src_port,
                dst_port: t.dst_port,
            };
            entries.push(proto::ConnInfo {
                protocol: e.original.proto,
                original: info(&e.original),
                reply: info(&e.reply),
                state: e.state.name().to_string(),
                service: e
                    .service
                    .and_then(|s| tables.services.by_id(s.service))
                    .map(|s| s.name.to_string()),
                snat: e.nat.src.is_some(),
                age_secs: e.age.as_secs(),
                expires_in_secs: e.expires_in.as_secs(),
                packets: e.packets,
                bytes: e.bytes,
            });
        });
        proto::ConntrackDump {
            total: self.flows.conntrack.len(),
            capacity: self.flows.conntrack.capacity(),
            entries,
        }
    }

    fn ports(&self) -> Vec<proto::PortInfo> {
        let c = self.config();
        let mut ports: Vec<_> = c
            .ports
            .values()
            .map(|p| {
                let mut role = p.spec.role.clone();
                if let PortRole::Host { mac } = &mut role {
                    *mac = Some(p.peer_mac);
                }
                proto::PortInfo {
                    id: u32::from(p.id),
                    name: p.spec.name.clone(),
                    kind: p.spec.kind,
                    role,
                    mtu: p.spec.mtu,
                    queues: self.workers.len(),
                    netns: p.spec.netns.clone(),
                    offloads: p.spec.takes_offloads(),
                    afxdp: p.afxdp.clone(),
                }
            })
            .collect();
        ports.sort_by_key(|p| p.id);
        ports
    }

    fn routes(&self) -> Vec<proto::RouteInfo> {
        let c = self.config();
        let connected = c.ports.values().filter_map(|p| {
            state::pod_ip(&p.spec).map(|ip| proto::RouteInfo {
                prefix: proto::Ipv4Prefix { addr: ip, len: 32 },
                target: proto::RouteTarget::Port {
                    port: p.spec.name.clone(),
                },
                origin: proto::RouteOrigin::Connected,
            })
        });
        let statics = c.routes.iter().map(|(prefix, target)| proto::RouteInfo {
            prefix: *prefix,
            target: target.clone(),
            origin: proto::RouteOrigin::Static,
        });
        let mut routes: Vec<_> = connected.chain(statics).collect();
        routes.sort_by(|a, b| {
            b.prefix
                .len
                .cmp(&a.prefix.len)
                .then(a.prefix.addr.cmp(&b.prefix.addr))
        });
        routes
    }

    fn neighbors(&self) -> Vec<proto::NeighborInfo> {
        let c = self.config();
        let Some(node) = &c.node else {
            return Vec::new();
        };
        let info = |ip, mac, port: &str, kind: &str| proto::NeighborInfo {
            ip,
            mac,
            port: port.into(),
            kind: kind.into(),
            state: None,
            age_secs: None,
        };
        let mut out = vec![info(
            node.gateway,
            node.gateway_mac.unwrap_or(self.switch_mac),
            "-",
            "switch",
        )];
        let mut uplink = None;
        for p in c.ports.values() {
            let (ip, mac, kind) = match p.spec.role {
                PortRole::Pod { ip, .. } => (ip, p.peer_mac, "pod"),
                PortRole::Host { .. } => (node.gateway, p.peer_mac, "host"),
                PortRole::Uplink { ip, mac, .. } => {
                    uplink = Some(p.spec.name.clone());
                    (ip, mac, "switch")
                }
            };
            out.push(info(ip, mac, &p.spec.name, kind));
        }
        // The uplink's next hops as ARP resolved them.
        let uplink = uplink.unwrap_or_else(|| "-".into());
        for e in self.flows.neighbors.dump(std::time::Instant::now()) {
            let mut n = info(e.ip, e.mac.unwrap_or(MacAddr::ZERO), &uplink, "nexthop");
            n.state = Some(e.state.name().into());
            n.age_secs = Some(e.age.as_secs());
            out.push(n);
        }
        out
    }

    fn counters(&self) -> proto::CountersDump {
        let mut ports: Vec<(PortId, String, Option<proto::NetnsAttach>)> = self
            .config()
            .ports
            .values()
            .map(|p| (p.id, p.spec.name.clone(), p.spec.netns.clone()))
            .collect();
        ports.sort_by_key(|p| p.0);
        // Read without holding the configuration lock: one netlink round trip per device.
        let devices: Vec<_> = ports
            .iter()
            .map(|(_, name, netns)| match netns {
                Some(attach) => kernel_stats::Device::InPod(attach),
                None => kernel_stats::Device::Local(name),
            })
            .collect();
        let kernel = kernel_stats::read(&devices);
        // The switch's own counters are read together, after the slow kernel reads (a netlink
        // round trip per pod namespace): a worker that publishes meanwhile would otherwise
        // show a port's tx_errors without the drop reasons counted with them.
        let mut drops = [0u64; DropReason::COUNT];
        let mut events = [0u64; Event::COUNT];
        for w in &self.workers {
            w.counters.sum_drops(&mut drops);
            w.counters.sum_events(&mut events);
        }
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut s = PortStats::default();
                for (id, _, _) in &ports {
                    w.counters.sum_port(usize::from(*id), &mut s);
                }
                let mut own = [0u64; DropReason::COUNT];
                w.counters.sum_drops(&mut own);
                proto::WorkerCounters {
                    worker: i,
                    rx_packets: s.rx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_packets: s.tx_packets,
                    tx_bytes: s.tx_bytes,
                    drops: own.iter().sum(),
                }
            })
            .collect();
        proto::CountersDump {
            ports: ports
                .iter()
                .zip(kernel)
                .map(|((id, name, _), kernel)| {
                    let mut s = PortStats::default();
                    for w in &self.workers {
                        w.counters.sum_port(usize::from(*id), &mut s);
                    }
                    proto::PortCounters {
                        port: name.clone(),
                        rx_packets: s.rx_packets,
                        rx_bytes: s.rx_bytes,
                        rx_errors: s.rx_errors,
                        tx_packets: s.tx_packets,
                        tx_bytes: s.tx_bytes,
                        tx_errors: s.tx_errors,
                        kernel,
                    }
                })
                .collect(),
            drops: DropReason::ALL
                .iter()
                .map(|r| proto::DropCount {
                    reason: r.name().into(),
                    stage: r.stage().into(),
                    description: r.description().into(),
                    count: drops[*r as usize],
                })
                .collect(),
            events: Event::ALL
                .iter()
                .map(|e| proto::EventCount {
                    event: e.name().into(),
                    count: events[*e as usize],
                })
                .collect(),
            workers,
        }
    }

    /// Stops the workers and waits for them. Tap devices go away with their last queue.
    pub fn shutdown(&self) {
        // The table would DNAT the node's NodePort traffic to a switch that is going away.
        let mut table = self.nodeport.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = table.remove() {
            eprintln!("podswitchd: removing the NodePort table: {e}");
        }
        drop(table);
        // No XDP program stays behind on an afxdp port's interface: the process exits
        // without the workers dropping their queues (whose last one would detach it).
        crate::ports::xdp::detach_all();
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.workers {
            w.waker.wake();
        }
    }

    /// Waits for every worker thread to end; reports the first failure.
    pub fn join(&mut self) -> Result<(), WorkerError> {
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                match t.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return Err(w.stopped()),
                }
            }
        }
        Ok(())
    }
}

/// The NodePorts of `config`'s Services, (TCP, UDP): what the node's nf_tables table
/// redirects to `node_port_ip`.
fn node_ports(config: &Config) -> (Vec<u16>, Vec<u16>) {
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    for spec in config.services.values() {
        let ports = spec
            .frontends
            .iter()
            .filter(|f| f.kind == proto::FrontendKind::NodePort)
            .map(|f| f.port);
        match spec.protocol {
            proto::L4Protocol::Tcp => tcp.extend(ports),
            proto::L4Protocol::Udp => udp.extend(ports),
        }
    }
    (tcp, udp)
}

/// Drops a queue that never reached (or was given back by) a worker, releasing its device
/// first if this transaction created it.
fn drop_queue(mut queue: Box<dyn PortQueue>, release_device: bool) {
    if release_device {
        queue.release_device();
    }
    drop(queue);
}

/// Starts worker `index` and waits up to `answer` until it has its ring, so that a kernel
/// refusing io_uring is reported here, with its cause, rather than later as a worker that went
/// away. Every thread it starts goes into `workers`, also one that failed or has not answered
/// yet, so that [`stop_workers`] joins it.
fn start_worker(
    index: usize,
    wcfg: WorkerConfig,
    (tables, flows, stop): (&Arc<ArcSwap<Tables>>, &Arc<FlowState>, &Arc<AtomicBool>),
    open_ring: OpenRing,
    answer: Duration,
    workers: &mut Vec<WorkerHandle>,
) -> Result<(), StartError> {
    let (tx, rx) = mpsc::channel();
    let waker = Arc::new(Waker::new().map_err(|err| StartError::Waker { worker: index, err })?);
    let worker = Worker::new(
        wcfg,
        tables.clone(),
        flows.clone(),
        rx,
        waker.clone(),
        stop.clone(),
    );
    let counters = worker.shared_counters();
    let umem = worker.umem_area();
    let exit: ExitCause = Arc::default();
    let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
    let exit_for_thread = exit.clone();
    let thread = std::thread::Builder::new()
        .name(format!("psw-worker-{index}"))
        .spawn(move || {
            let record = |cause: String| {
                *exit_for_thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause);
            };
            let ring = match open_ring(&worker) {
                Ok(ring) => {
                    let _ = ready_tx.send(Ok(()));
                    ring
                }
                Err(e) => {
                    record(format!("its io_uring could not be created: {e}"));
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let result = worker.run_on(ring);
            if let Err(e) = &result {
                record(format!("its ring failed: {e}"));
            }
            result
        })
        .map_err(|err| StartError::Spawn { worker: index, err })?;
    workers.push(WorkerHandle {
        index,
        commands: tx,
        waker,
        counters,
        umem: afxdp_port::UmemArea {
            base: umem.0 as usize,
            len: umem.1,
            chunks: umem.2,
        },
        exit,
        thread: Some(thread),
    });
    match ready_rx.recv_timeout(answer) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(StartError::Ring { worker: index, err }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(StartError::Exited { worker: index }),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(StartError::NoAnswer {
            worker: index,
            secs: answer.as_secs_f64(),
        }),
    }
}

/// Stops and joins the workers started so far (one failed to start, or did not say in time).
/// The wait is bounded by [`WORKER_ANSWER_SECS`]: a worker still stuck in a system call after
/// that is left running detached rather than hanging the start (the process is exiting).
fn stop_workers(stop: &AtomicBool, workers: &mut Vec<WorkerHandle>) {
    stop.store(true, Ordering::Relaxed);
    for w in workers.iter() {
        w.waker.wake();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(WORKER_ANSWER_SECS);
    for mut w in workers.drain(..) {
        let Some(t) = w.thread.take() else { continue };
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;
