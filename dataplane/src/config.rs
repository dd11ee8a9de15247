//! `podswitchd`'s configuration: one serde struct with defaults, read from a TOML file and
//! overridden by flags (see `podswitchd --help`, `podswitchd --print-config`).
//!
//! The daemon's *forwarding* configuration (node, ports, routes) is not here: it arrives over
//! the socket, from the control process or a test harness.

use crate::worker::IdlePolicy;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Process-level settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Unix socket of the API (mode 0600).
    pub socket: PathBuf,
    /// Worker threads; every port gets one queue per worker.
    pub workers: usize,
    /// Idle policy of the workers.
    pub idle: IdlePolicy,
    /// Packets per burst (1..=256).
    pub burst: usize,
    /// Reads kept armed per tap queue.
    pub rx_depth: usize,
    /// Packet buffers per worker (4 KiB each), allocated at start.
    pub pool_buffers: usize,
    /// Large packet buffers per worker (68 KiB each, for GSO super-frames up to 64 KiB),
    /// allocated at start: 128 is 8.5 MiB per worker. At least `rx_depth`.
    pub pool_large_buffers: usize,
    /// Most ports the daemon will hold.
    pub max_ports: usize,
    /// The switch's MAC (gateway MAC) unless the node spec gives one.
    pub switch_mac: String,
    /// Empty polls before an adaptive worker sleeps.
    pub spin_iterations: u32,
    /// Whether a spinning adaptive worker yields the CPU (`sched_yield`) between empty polls,
    /// so that pods woken on its CPU run at once instead of after its spin. Off by default:
    /// measured with the worker on its pods' CPU, it cost p50 (22 vs 19 µs a round trip) for
    /// a p99 that was better in one run of two (BENCHMARKS.md, "Where the latency goes").
    pub spin_yield: bool,
    /// Longest sleep of an idle adaptive worker, in microseconds.
    pub sleep_us: u64,
    /// CPU of each worker thread, by worker index (worker i on `worker_cpus[i]`); workers
    /// beyond the list, and all of them when it is empty (the default), run where the
    /// scheduler puts them. A worker on the CPU its pods run on wakes them without an
    /// inter-processor interrupt (see BENCHMARKS.md, "Where the latency goes").
    pub worker_cpus: Vec<usize>,
    /// Hard capacity of the connection-tracking table: a new connection beyond it is dropped
    /// and counted (`conntrack_full`) while existing ones continue. Memory is reserved at
    /// start (about 200 bytes an entry with its two index keys).
    pub conntrack_capacity: usize,
    /// Most (Service, client) session-affinity entries kept; the oldest go first.
    pub affinity_capacity: usize,
    /// Most API connections served at once; more are refused with "too many connections".
    pub api_max_connections: usize,
    /// Seconds an API connection may stay idle (or take to send one request) before it is
    /// closed.
    pub api_idle_timeout_secs: u64,
    /// Attach the XDP program of `afxdp` ports in generic (skb) mode even where the driver
    /// has native XDP: for comparing the two, or a driver whose native XDP misbehaves.
    /// Default off: native where the driver has it, generic otherwise.
    pub xdp_generic: bool,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(podswitch_proto::DEFAULT_DATAPLANE_SOCKET),
            workers: 1,
            idle: IdlePolicy::Adaptive,
            burst: 32,
            rx_depth: 32,
            pool_buffers: 8192,
            pool_large_buffers: 128,
            max_ports: 1024,
            switch_mac: "02:50:53:00:00:01".into(),
            spin_iterations: 200,
            spin_yield: false,
            sleep_us: 100_000,
            worker_cpus: Vec::new(),
            conntrack_capacity: 262_144,
            affinity_capacity: 65_536,
            api_max_connections: 64,
            api_idle_timeout_secs: 30,
            xdp_generic: false,
        }
    }
}

/// A configuration value that makes no sense.
#[derive(Debug, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(String);

impl DaemonConfig {
    /// Whether taps steer frames to the worker of the sending CPU (`tap::steer_by_cpu`):
    /// when there are several workers and worker *i* is pinned to CPU *i*, so that the queue
    /// the kernel picks (`cpu % workers`) is read on the sender's own CPU.
    pub fn steers_by_cpu(&self) -> bool {
        self.workers > 1
            && self.worker_cpus.len() == self.workers
            && self.worker_cpus.iter().enumerate().all(|(i, &c)| i == c)
    }

    /// Reads a TOML file; missing keys take their defaults.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks ranges; says which value is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if !(16..=16 << 20).contains(&self.conntrack_capacity) {
            return err(format!(
                "conntrack_capacity = {} is out of range 16..=16777216",
                self.conntrack_capacity
            ));
        }
        if !(16..=16 << 20).contains(&self.affinity_capacity) {
            return err(format!(
                "affinity_capacity = {} is out of range 16..=16777216",
                self.affinity_capacity
            ));
        }
        if !(1..=64).contains(&self.workers) {
            return err(format!("workers = {} is out of range 1..=64", self.workers));
        }
        if !(1..=crate::batch::MAX_BURST).contains(&self.burst) {
            return err(format!("burst = {} is out of range 1..=256", self.burst));
        }
        if !(1..=4096).contains(&self.rx_depth) {
            return err(format!(
                "rx_depth = {} is out of range 1..=4096",
                self.rx_depth
            ));
        }
        if !(2..=65535).contains(&self.max_ports) {
            return err(format!(
                "max_ports = {} is out of range 2..=65535",
                self.max_ports
            ));
        }
        if self.pool_buffers < 2 * self.rx_depth + crate::batch::MAX_BURST {
            return err(format!(
                "pool_buffers = {} is too small: need at least 2 * rx_depth + 256",
                self.pool_buffers
            ));
        }
        if self.pool_large_buffers < self.rx_depth {
            return err(format!(
                "pool_large_buffers = {} is too small: need at least rx_depth ({})",
                self.pool_large_buffers, self.rx_depth
            ));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(&cpu) = self.worker_cpus.iter().find(|&&c| c >= 1024) {
            return err(format!(
                "worker_cpus: cpu {cpu} is out of range 0..1024 (this machine has {cpus})"
            ));
        }
        if !(1..=4096).contains(&self.api_max_connections) {
            return err(format!(
                "api_max_connections = {} is out of range 1..=4096",
                self.api_max_connections
            ));
        }
        if !(1..=3600).contains(&self.api_idle_timeout_secs) {
            return err(format!(
                "api_idle_timeout_secs = {} is out of range 1..=3600",
                self.api_idle_timeout_secs
            ));
        }
        if self
            .switch_mac
            .parse::<podswitch_packet::MacAddr>()
            .is_err()
        {
            return err(format!(
                "switch_mac = {:?} is not a MAC like 02:50:53:00:00:01",
                self.switch_mac
            ));
        }
        Ok(())
    }
}

impl DaemonConfig {
    /// The limits of the API server.
    pub fn server_config(&self) -> podswitch_proto::server::ServerConfig {
        podswitch_proto::server::ServerConfig {
            max_connections: self.api_max_connections,
            idle_timeout: std::time::Duration::from_secs(self.api_idle_timeout_secs),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_toml_overrides_them() {
        DaemonConfig::default().validate().unwrap();
        let c = DaemonConfig::from_toml("workers = 2\nidle = \"busy\"\n").unwrap();
        assert_eq!((c.workers, c.idle, c.burst), (2, IdlePolicy::Busy, 32));
    }

    #[test]
    fn worker_cpus_parse_and_an_impossible_cpu_is_refused() {
        let c = DaemonConfig::from_toml("worker_cpus = [0, 1]\n").unwrap();
        assert_eq!(c.worker_cpus, vec![0, 1]);
        c.validate().unwrap();
        assert!(
            DaemonConfig::default().worker_cpus.is_empty(),
            "unpinned by default"
        );
        let c = DaemonConfig {
            worker_cpus: vec![0, 5000],
            ..Default::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("worker_cpus") && e.contains("5000"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = DaemonConfig::from_toml("wrokers = 2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wrokers"), "{e}");
        let c = DaemonConfig {
            burst: 0,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("burst"));
    }

    #[test]
    fn large_buffers_must_cover_one_read_per_armed_slot() {
        let c = DaemonConfig::from_toml("pool_large_buffers = 16\nrx_depth = 32").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("pool_large_buffers") && e.contains("rx_depth"),
            "{e}"
        );
        assert_eq!(DaemonConfig::default().pool_large_buffers, 128);
    }
}
