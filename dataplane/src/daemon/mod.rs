//! The daemon: starts the workers, holds the configuration, applies transactions and answers
//! the socket API. This is the slow path; it never touches a packet. Its one link to the fast
//! path is publishing a new [`Tables`] snapshot (and handing queues to workers).

pub mod api;
mod kernel_stats;
pub mod state;
mod tap_factory;

use crate::batch::PortId;
use crate::config::DaemonConfig;
use crate::counters::{DropReason, Event, PortStats, SharedCounters};
use crate::ports::Waker;
use crate::tables::Tables;
use crate::worker::{Command, Worker, WorkerConfig};
use arc_swap::ArcSwap;
use podswitch_packet::MacAddr;
use podswitch_proto as proto;
use proto::{PortRole, RequestBody, Response};
use state::Config;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

struct WorkerHandle {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    counters: Arc<SharedCounters>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl WorkerHandle {
    fn send(&self, cmd: Command) -> Result<(), String> {
        self.commands
            .send(cmd)
            .map_err(|_| "a worker thread has exited".to_string())?;
        self.waker.wake();
        Ok(())
    }
}

/// A running switch.
pub struct Daemon {
    cfg: DaemonConfig,
    switch_mac: MacAddr,
    tables: Arc<ArcSwap<Tables>>,
    workers: Vec<WorkerHandle>,
    config: Mutex<Config>,
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
    /// Starts the worker threads with empty tables.
    pub fn start(cfg: DaemonConfig) -> anyhow::Result<Arc<Daemon>> {
        cfg.validate()?;
        let switch_mac: MacAddr = cfg
            .switch_mac
            .parse()
            .map_err(|_| anyhow::anyhow!("switch_mac {:?} is malformed", cfg.switch_mac))?;
        let tables = Arc::new(ArcSwap::from_pointee(Tables::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let wcfg = WorkerConfig {
            burst: cfg.burst,
            idle: cfg.idle,
            pool_buffers: cfg.pool_buffers,
            max_ports: cfg.max_ports,
            rx_depth: cfg.rx_depth,
            spin_iterations: cfg.spin_iterations,
            sleep: Duration::from_micros(cfg.sleep_us),
        };
        let mut workers = Vec::with_capacity(cfg.workers);
        for i in 0..cfg.workers {
            let (tx, rx) = mpsc::channel();
            let waker = Arc::new(Waker::new()?);
            let worker = Worker::new(wcfg, tables.clone(), rx, waker.clone(), stop.clone());
            let counters = worker.shared_counters();
            let thread = std::thread::Builder::new()
                .name(format!("psw-worker-{i}"))
                .spawn(move || worker.run())?;
            workers.push(WorkerHandle {
                commands: tx,
                waker,
                counters,
                thread: Some(thread),
            });
        }
        let daemon = Arc::new(Daemon {
            cfg,
            switch_mac,
            tables,
            workers,
            config: Mutex::new(Config::default()),
            stop,
        });
        daemon
            .sync_workers()
            .map_err(|e| anyhow::anyhow!("starting workers: {e}"))?;
        Ok(daemon)
    }

    /// The configuration as the daemon holds it.
    fn config(&self) -> MutexGuard<'_, Config> {
        // A panic while holding the lock cannot leave a half-applied Config: apply works on a
        // copy and swaps it in at the end. So a poisoned lock is still consistent.
        self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until every worker has processed every command sent so far.
    fn sync_workers(&self) -> Result<(), String> {
        let receivers: Vec<_> = self
            .workers
            .iter()
            .map(|w| {
                let (tx, rx) = mpsc::sync_channel(1);
                w.send(Command::Sync(tx)).map(|()| rx)
            })
            .collect::<Result<_, _>>()?;
        for rx in receivers {
            rx.recv_timeout(Duration::from_secs(10))
                .map_err(|_| "a worker did not answer within 10 s".to_string())?;
        }
        Ok(())
    }

    /// Applies a transaction: all of it, or none of it.
    pub fn apply(&self, tx: proto::Transaction) -> Result<u64, String> {
        let mut config = self.config();
        let mut next = config.clone();
        let mut factory = tap_factory::TapFactory::new(self.workers.len(), self.cfg.rx_depth)?;
        let changes = next.apply(&tx.ops, tx.replace, self.cfg.max_ports, &mut factory)?;
        // New queues first, so no snapshot routes to a port a worker does not poll yet.
        for (_, queues) in changes.added {
            for (worker, queue) in self.workers.iter().zip(queues) {
                worker.send(Command::AddQueue(queue))?;
            }
        }
        self.sync_workers()?;
        next.generation = tx.generation.unwrap_or(config.generation + 1);
        self.tables.store(Arc::new(next.compile(self.switch_mac)));
        // Removed ports last, once no snapshot routes to them.
        for &id in &changes.removed {
            let release_device = !changes.kept_devices.contains(&id);
            for worker in &self.workers {
                worker.send(Command::RemovePort { id, release_device })?;
            }
        }
        if !changes.removed.is_empty() {
            self.sync_workers()?;
        }
        *config = next;
        Ok(config.generation)
    }

    /// Answers one request.
    pub fn handle(&self, req: RequestBody) -> Response {
        match req {
            RequestBody::Apply(tx) => match self.apply(tx) {
                Ok(generation) => Response::Applied { generation },
                Err(message) => Response::Error { message },
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
                Err(message) => Response::Error { message },
            },
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
        let mut out = vec![proto::NeighborInfo {
            ip: node.gateway,
            mac: node.gateway_mac.unwrap_or(self.switch_mac),
            port: "-".into(),
            kind: "switch".into(),
        }];
        for p in c.ports.values() {
            let (ip, kind) = match p.spec.role {
                PortRole::Pod { ip, .. } => (ip, "pod"),
                PortRole::Host { .. } => (node.gateway, "host"),
            };
            out.push(proto::NeighborInfo {
                ip,
                mac: p.peer_mac,
                port: p.spec.name.clone(),
                kind: kind.into(),
            });
        }
        out
    }

    fn counters(&self) -> proto::CountersDump {
        let mut drops = [0u64; DropReason::COUNT];
        let mut events = [0u64; Event::COUNT];
        for w in &self.workers {
            w.counters.sum_drops(&mut drops);
            w.counters.sum_events(&mut events);
        }
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
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.workers {
            w.waker.wake();
        }
    }

    /// Waits for every worker thread to end; reports the first failure.
    pub fn join(&mut self) -> anyhow::Result<()> {
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
            }
        }
        Ok(())
    }
}
