//! What can go wrong when the daemon starts, applies a transaction or talks to its workers,
//! each error saying what failed, why, and what to do about it.

use crate::config::ConfigError;
use podswitch_packet::MacAddr;
use podswitch_proto::{Ipv4Prefix, MTU_RANGE};
use std::io;
use std::net::Ipv4Addr;

/// `podswitchd` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration value is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The switch MAC does not parse.
    #[error("switch_mac {0:?} is not a MAC like 02:50:53:00:00:01")]
    SwitchMac(String),
    /// A worker's wake-up eventfd could not be created.
    #[error("worker {worker}: creating its wake-up eventfd failed: {err}")]
    Waker {
        /// Worker index.
        worker: usize,
        /// What eventfd said.
        err: io::Error,
    },
    /// A worker thread could not be started.
    #[error(
        "worker {worker}: starting its thread failed: {err} (is the thread limit reached: \
         ulimit -u, or the cgroup's pids.max?)"
    )]
    Spawn {
        /// Worker index.
        worker: usize,
        /// What the thread spawn said.
        err: io::Error,
    },
    /// The kernel refused the worker's io_uring.
    #[error("worker {worker}: io_uring_setup failed: {err} — {}", ring_hint(.err))]
    Ring {
        /// Worker index.
        worker: usize,
        /// What io_uring_setup (or arming the first read) said.
        err: io::Error,
    },
    /// A worker thread ended before saying whether it started.
    #[error("worker {worker} exited while starting (it panicked: see the log above)")]
    Exited {
        /// Worker index.
        worker: usize,
    },
    /// A worker did not say within the time allowed whether it has its ring; it was told to
    /// stop with the others.
    #[error(
        "worker {worker} did not say within {secs} s whether its io_uring was created (is the \
         machine overloaded, or io_uring_setup stuck?); it was stopped"
    )]
    NoAnswer {
        /// Worker index.
        worker: usize,
        /// How long the daemon waited.
        secs: f64,
    },
}

/// What to do about an io_uring the kernel refuses, by errno.
pub fn ring_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) => {
            "is io_uring disabled by the sysctl kernel.io_uring_disabled, or blocked by a \
             seccomp profile (container runtimes' default profiles block io_uring_setup)? \
             podswitchd needs io_uring: allow it for podswitchd"
        }
        Some(libc::ENOSYS) => {
            "this kernel has no io_uring (CONFIG_IO_URING), or a seccomp profile hides it; \
             podswitchd needs Linux 6.1 or newer with io_uring"
        }
        Some(libc::EINVAL) => {
            "the kernel does not support the ring flags podswitchd needs (SINGLE_ISSUER, \
             DEFER_TASKRUN): use Linux 6.1 or newer"
        }
        Some(libc::ENOMEM) => {
            "not enough locked memory for the ring: raise the memlock limit (ulimit -l, \
             LimitMEMLOCK=) or run fewer workers"
        }
        Some(libc::EMFILE | libc::ENFILE) => "the open-file limit is reached: raise ulimit -n",
        _ => "podswitchd needs io_uring (Linux 6.1 or newer)",
    }
}

/// What to do about a tap that cannot be created, by the kind of failure.
pub fn tap_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::NotFound => {
            " — is /dev/net/tun missing? Load the tun module (modprobe tun), or give \
             podswitchd's container the device /dev/net/tun"
        }
        io::ErrorKind::PermissionDenied => {
            " — creating taps needs CAP_NET_ADMIN: run podswitchd as root"
        }
        io::ErrorKind::ResourceBusy => {
            " — an interface of that name exists and is not a tap podswitchd may attach to"
        }
        _ => "",
    }
}

/// A worker did not do what the daemon asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The worker thread has ended; `cause` is why, as far as it is known.
    #[error(
        "worker {worker} has stopped ({cause}); restart podswitchd (podswitch-control \
         replays the configuration)"
    )]
    Stopped {
        /// Worker index.
        worker: usize,
        /// Why it stopped.
        cause: String,
    },
    /// The worker did not acknowledge in time.
    #[error("worker {worker} did not answer within {secs} s (stuck, or starved of CPU?)")]
    NoAnswer {
        /// Worker index.
        worker: usize,
        /// How long the daemon waited.
        secs: u64,
    },
}

/// A transaction was not applied; configuration, tables, ports and devices are as they were.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// An op is invalid or its port could not be created; the message names the op.
    #[error(transparent)]
    Invalid(#[from] TxError),
    /// The daemon could not open its rtnetlink socket to configure devices.
    #[error("{0} (podswitchd configures ports through rtnetlink)")]
    Netlink(Box<podswitch_netlink::Error>),
    /// A worker could not take the new ports; they were removed again.
    #[error("{0}; the transaction was rolled back")]
    Worker(#[from] WorkerError),
}

/// Why one op of a transaction was refused. The texts are what a client sees after
/// `op N (what):`.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A Service port that cannot be programmed.
    #[error("service {name:?}: {problem}")]
    Service {
        /// The Service port.
        name: String,
        /// What is wrong, and what to do.
        problem: String,
    },
    /// A policy that cannot be programmed.
    #[error("policy of port {port:?}: {problem}")]
    Policy {
        /// The pod port.
        port: String,
        /// What is wrong.
        problem: String,
    },
    /// `del_policy` of a port that has none.
    #[error("port {0:?} has no policy")]
    NoPolicy(String),
    /// Deleting a port that still has a policy.
    #[error("port {0:?} still has a policy; del_policy first")]
    PortHasPolicy(String),
    /// `del_service` of a name that is not there.
    #[error("no service {0:?}")]
    NoService(String),
    /// A port op before the node is known.
    #[error("set_node must come before any port")]
    NoNode,
    /// The pod CIDR leaves no room.
    #[error("pod_cidr {0} is too small: it needs room for a gateway and pods")]
    PodCidrTooSmall(Ipv4Prefix),
    /// The gateway is the network or broadcast address, or outside the CIDR.
    #[error("gateway {gateway} is not a host address of pod_cidr {pod_cidr}")]
    Gateway {
        /// The gateway.
        gateway: Ipv4Addr,
        /// The pod CIDR.
        pod_cidr: Ipv4Prefix,
    },
    /// A multicast or zero gateway MAC.
    #[error("gateway_mac {0} is not a unicast MAC")]
    GatewayMac(MacAddr),
    /// The host port holds the old gateway address.
    #[error("the node addressing cannot change while a host port exists; delete it first")]
    NodeInUse,
    /// A second port of the same name.
    #[error("port {0:?} already exists")]
    PortExists(String),
    /// An MTU outside [`MTU_RANGE`].
    #[error("mtu {0} is out of range {lo}..={hi}", lo = MTU_RANGE.start(), hi = MTU_RANGE.end())]
    Mtu(u16),
    /// A port name that is not a Linux interface name.
    #[error("port name: {0}")]
    PortName(String),
    /// A pod interface name that is not a Linux interface name.
    #[error("netns.ifname: {0}")]
    Ifname(String),
    /// A multicast pod MAC.
    #[error("pod MAC {0} is not a unicast MAC")]
    PodMac(MacAddr),
    /// A pod IP outside the CIDR's host addresses, or the gateway.
    #[error("pod IP {ip} must be a host address in pod_cidr {pod_cidr} other than the gateway")]
    PodIp {
        /// The address.
        ip: Ipv4Addr,
        /// The pod CIDR.
        pod_cidr: Ipv4Prefix,
    },
    /// A pod IP another port has.
    #[error("pod IP {ip} is already bound to port {port:?}")]
    PodIpTaken {
        /// The address.
        ip: Ipv4Addr,
        /// The port that has it.
        port: String,
    },
    /// A second host port.
    #[error("there is already a host port ({0:?})")]
    SecondHostPort(String),
    /// A second uplink port.
    #[error("there is already an uplink port ({0:?}); a node has one")]
    SecondUplink(String),
    /// An uplink whose own address or MAC cannot be.
    #[error("uplink {port:?}: {problem}")]
    Uplink {
        /// The port.
        port: String,
        /// What is wrong.
        problem: String,
    },
    /// A route through the uplink (to another node, or outside the cluster) that cannot be.
    #[error("route {prefix} {to}: {problem}")]
    UplinkRoute {
        /// The route.
        prefix: Ipv4Prefix,
        /// Where it leads: "to node 192.168.1.2", "out of the uplink via 192.168.1.254".
        to: String,
        /// What is wrong.
        problem: String,
    },
    /// No free port id below `max_ports`.
    #[error("all {0} ports are in use (max_ports)")]
    NoFreeId(usize),
    /// The port's devices could not be created or configured.
    #[error(transparent)]
    Create(Box<PortError>),
    /// A port that does not exist.
    #[error("no port named {0:?}")]
    NoPort(String),
    /// Deleting a port a route still points at.
    #[error("route {prefix} still uses port {port:?}; delete the route first")]
    PortInUse {
        /// The route.
        prefix: Ipv4Prefix,
        /// The port.
        port: String,
    },
    /// A route to the host port by name.
    #[error("port {0:?} is the host port; use target host")]
    RouteToHostPort(String),
    /// A route to the uplink port by name.
    #[error("port {0:?} is the uplink; route to another node with target node (its address)")]
    RouteToUplink(String),
    /// Deleting a route that does not exist.
    #[error("no static route for {0}")]
    NoRoute(Ipv4Prefix),
}

/// A transaction was refused at one of its ops; nothing of it was applied.
#[derive(Debug, thiserror::Error)]
#[error("op {index} ({op}): {error}")]
pub struct TxError {
    /// The op's position, from 1.
    pub index: usize,
    /// The op, as `add_port "tap7"`.
    pub op: String,
    /// Why.
    pub error: OpError,
}

/// A port's devices could not be created or configured (`tap_factory`).
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Opening the tap's queues (TUNSETIFF) failed.
    #[error("creating tap {name:?}: {err}{}", tap_hint(.err))]
    Open {
        /// The tap's name.
        name: String,
        /// What the kernel said.
        err: io::Error,
    },
    /// An interface of the pod's name exists and is no tap podswitch can attach to.
    #[error(
        "{ifname} exists but is not a podswitch tap ({err}); remove it or pick another \
         interface name"
    )]
    NotATap {
        /// The interface.
        ifname: String,
        /// Why attaching failed.
        err: io::Error,
    },
    /// A device podswitch just created is gone.
    #[error("link {0} vanished")]
    Vanished(String),
    /// An rtnetlink request failed (the error names the operation and the interface).
    #[error(transparent)]
    Netlink(Box<podswitch_netlink::Error>),
    /// TUNSETPERSIST failed.
    #[error("making it persistent: {0}")]
    Persist(io::Error),
    /// The pod's namespace could not be opened.
    #[error("opening {path}: {err}")]
    OpenNetns {
        /// The namespace path.
        path: String,
        /// What open said.
        err: io::Error,
    },
    /// Entering the pod's namespace failed.
    #[error("entering {path}: {err}")]
    EnterNetns {
        /// The namespace path.
        path: String,
        /// What setns said.
        err: Box<podswitch_netlink::Error>,
    },
    /// Moving the new tap into the pod's namespace failed (it was not left behind).
    #[error("moving tap {name:?} into {path} as {ifname}: {err}")]
    Move {
        /// The tap's name in the daemon's namespace.
        name: String,
        /// The pod's namespace.
        path: String,
        /// Its name there.
        ifname: String,
        /// Why.
        err: Box<PortError>,
    },
    /// Configuring the interface inside the pod's namespace failed.
    #[error("configuring {ifname} in {path}: {err}")]
    Configure {
        /// The interface.
        ifname: String,
        /// The pod's namespace.
        path: String,
        /// Why.
        err: Box<PortError>,
    },
    /// A host port with a namespace.
    #[error("the host port lives in the daemon's namespace; drop \"netns\"")]
    HostInNetns,
    /// An uplink tap with a namespace.
    #[error("an uplink tap lives in the daemon's namespace; drop \"netns\"")]
    UplinkInNetns,
    /// Setting up an AF_XDP port (its interface, XDP program or sockets) failed.
    #[error("afxdp port {name:?}: {err}")]
    Afxdp {
        /// The port's name.
        name: String,
        /// What failed, and what the kernel said.
        err: io::Error,
    },
    /// Refused by a factory other than the tap one (tests, fuzzing).
    #[error("{0}")]
    Refused(String),
}

impl From<podswitch_netlink::Error> for PortError {
    fn from(e: podswitch_netlink::Error) -> Self {
        PortError::Netlink(Box::new(e))
    }
}
