//! `podswitchctl`: the operator CLI. This file holds the flags and nothing else; `commands`
//! decides what each verb asks the daemons and how the answer is shown.

mod client;
mod commands;
mod input;
mod install_cni;
mod manifests;
mod render;
mod transaction;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use podswitch_proto::control::DEFAULT_CONTROL_SOCKET;
use podswitch_proto::{Ipv4Prefix, MacAddr, DEFAULT_DATAPLANE_SOCKET};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Operator CLI for podswitch: inspect and drive podswitchd and podswitch-control.
#[derive(Debug, Parser)]
#[command(name = "podswitchctl", version)]
pub struct Cli {
    /// podswitchd's unix socket.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH",
        env = "PODSWITCH_SOCKET",
        default_value = DEFAULT_DATAPLANE_SOCKET
    )]
    pub socket: PathBuf,

    /// podswitch-control's unix socket; `install-cni` writes it into the CNI config.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH",
        env = "PODSWITCH_CONTROL_SOCKET",
        default_value = DEFAULT_CONTROL_SOCKET
    )]
    pub control_socket: PathBuf,

    /// Output format: `table` for people, `json` for scripts.
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        value_name = "FORMAT",
        value_enum,
        default_value_t = Output::Table
    )]
    pub output: Output,

    #[command(subcommand)]
    pub command: Command,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns with a header row.
    Table,
    /// The daemon's answer, pretty-printed JSON.
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon protocol version, table generation, workers, node addressing and table sizes.
    Status,
    /// The ports and what each is bound to.
    Ports,
    /// The routing table, longest prefix first.
    Routes,
    /// The IP → MAC bindings the switch knows.
    Neighbors,
    /// Service ports as podswitchd holds them: frontends, algorithm, affinity, every endpoint
    /// with its conditions, whether it takes new connections, and its connections.
    #[command(alias = "svc")]
    Services,
    /// Tracked connections: both tuples, state, the Service whose NAT they carry, age,
    /// packets and bytes each way. Filters combine (all must match).
    Conntrack(ConntrackArgs),
    /// Run a described packet through the live pipeline without sending it, and print what
    /// each stage decided and why (the Service and endpoint behind a NAT). Nothing changes:
    /// no connection is created.
    Trace(TraceArgs),
    /// Each pod's effective NetworkPolicy as podswitchd enforces it: one row per allow rule of
    /// each direction the pod is isolated in (policy, rule index, peers, ports) and the
    /// packets that direction denied. Pods no policy selects are unrestricted and not shown.
    #[command(alias = "netpol")]
    Policies,
    /// Per-port traffic, drops by reason, and events; zero drop and event rows are hidden.
    Counters {
        /// Show drop reasons and events whose count is zero too.
        #[arg(long)]
        all: bool,
    },
    /// Low-level dataplane changes, each sent to podswitchd as one transaction.
    ///
    /// For demos and debugging before podswitch-control runs; normally podswitch-control is
    /// the only source of these changes.
    #[command(subcommand)]
    Dp(DpCommand),
    /// Objects podswitch-control holds.
    #[command(subcommand)]
    Get(GetCommand),
    /// Apply Kubernetes manifests (multi-document YAML) through podswitch-control.
    ///
    /// One transaction: every object is accepted, or none is and the error names the object
    /// and field.
    Apply(ManifestArgs),
    /// Delete the objects Kubernetes manifests name, through podswitch-control: all or none.
    Delete(ManifestArgs),
    /// podswitch-control's node, generation, dataplane sync state, pods and addresses.
    ControlStatus,
    /// Install the CNI plugin and its network config for the container runtime.
    ///
    /// Copies the plugin into every --bin-dir as `podswitch` (the file name a runtime looks
    /// up for `"type": "podswitch"`) and writes CONF_DIR/10-podswitch.conflist naming
    /// --control-socket. Each file is written under a temporary name and renamed into place,
    /// so a runtime never sees half of one. Running it again replaces both.
    InstallCni(InstallCniArgs),
}

/// `podswitchctl get ...`.
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// Attached pods: address, MAC, switch port, container, interface and labels.
    #[command(alias = "pod", alias = "po")]
    Pods,
    /// Not listed by control: `podswitchctl services` shows what podswitchd holds.
    #[command(alias = "service", alias = "svc")]
    Services,
    /// Not listed by control: `podswitchctl policies` shows what podswitchd enforces.
    #[command(alias = "policy", alias = "netpol")]
    Policies,
}

/// Filters of `conntrack`.
#[derive(Debug, Args)]
pub struct ConntrackArgs {
    /// Entries with this address in either tuple.
    #[arg(long)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// Entries with this port in either tuple.
    #[arg(long)]
    pub port: Option<u16>,
    /// tcp, udp or icmp.
    #[arg(long, value_parser = ["tcp", "udp", "icmp"])]
    pub protocol: Option<String>,
    /// Entries through this Service port (`namespace/name:port`).
    #[arg(long)]
    pub service: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

/// The packet `trace` runs.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The port it arrives on (a name from `podswitchctl ports`).
    #[arg(long = "in-port", value_name = "PORT")]
    pub in_port: String,
    /// Destination address.
    #[arg(long)]
    pub dst: std::net::Ipv4Addr,
    /// tcp (a SYN), udp or icmp (an echo request).
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp", "icmp"])]
    pub protocol: String,
    /// Destination port.
    #[arg(long = "dport", default_value_t = 80)]
    pub dst_port: u16,
    /// Source port.
    #[arg(long = "sport", default_value_t = 40000)]
    pub src_port: u16,
    /// Source address (default: the port's pod address, or the gateway for the host port).
    #[arg(long)]
    pub src: Option<std::net::Ipv4Addr>,
}

/// `-f FILE|-` of `apply` and `delete`.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// The manifest file, or `-` for stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE|-")]
    pub file: PathBuf,
}

/// Flags of `install-cni`.
#[derive(Debug, Args)]
pub struct InstallCniArgs {
    /// A directory the runtime takes CNI plugins from; repeat for several.
    #[arg(
        long = "bin-dir",
        value_name = "DIR",
        default_values = install_cni::DEFAULT_BIN_DIRS
    )]
    pub bin_dirs: Vec<PathBuf>,
    /// The directory the runtime reads network configs from.
    #[arg(long, value_name = "DIR", default_value = install_cni::DEFAULT_CONF_DIR)]
    pub conf_dir: PathBuf,
    /// The plugin to install [default: `podswitch-cni` next to podswitchctl's executable].
    #[arg(long, value_name = "PATH")]
    pub cni_binary: Option<PathBuf>,
    /// The network's name in the config.
    #[arg(
        long,
        value_name = "NAME",
        default_value = install_cni::DEFAULT_NETWORK_NAME,
        value_parser = install_cni::parse_network_name
    )]
    pub name: String,
    /// The config's cniVersion: one podswitch-cni speaks.
    #[arg(
        long,
        value_name = "V",
        default_value = install_cni::DEFAULT_CNI_VERSION,
        value_parser = install_cni::CNI_VERSIONS
    )]
    pub cni_version: String,
}

/// `podswitchctl dp ...`: each verb sends one transaction.
#[derive(Debug, Subcommand)]
pub enum DpCommand {
    /// Apply a transaction from a JSON file (`-` for stdin).
    ///
    /// The file holds either `{"generation": N, "ops": [...]}` or a bare array of ops; the ops
    /// are those of docs/protocol.md (`set_node`, `add_port`, `del_port`, `add_route`,
    /// `del_route`).
    Apply {
        /// The file, or `-` for stdin.
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
    },
    /// Create a port leading to a pod (`--pod`) or to the node's own stack (`--host`).
    AddPort(AddPortArgs),
    /// Remove a port; its connected route goes with it.
    DelPort {
        /// The port's name.
        name: String,
    },
    /// Add or replace the route for a prefix.
    AddRoute(AddRouteArgs),
    /// Remove the route for exactly this prefix.
    DelRoute {
        /// The prefix, e.g. 10.244.2.0/24.
        prefix: Ipv4Prefix,
    },
    /// Set the node's pod CIDR and the gateway address the switch answers for.
    SetNode(SetNodeArgs),
}

/// Flags of `dp add-port`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("role").required(true).args(["pod", "host", "uplink"])))]
pub struct AddPortArgs {
    /// Port name; also the name of the tap device the daemon creates.
    pub name: String,
    /// The port leads to a pod (needs --mac and --ip).
    #[arg(long)]
    pub pod: bool,
    /// The port leads to the node's own network stack.
    #[arg(long)]
    pub host: bool,
    /// The port is the uplink to the other nodes (needs --mac and --ip: the switch's own on
    /// the underlay).
    #[arg(long, conflicts_with_all = ["pod", "host"])]
    pub uplink: bool,
    /// With --uplink: encapsulate in VXLAN with this VNI (UDP 4789) instead of routing.
    #[arg(long, value_name = "VNI", conflicts_with_all = ["pod", "host"])]
    pub vxlan: Option<u32>,
    /// The pod interface's MAC (with --host: the kernel side's MAC; default: the kernel's
    /// choice; with --uplink: the switch's own).
    #[arg(
        long,
        value_name = "MAC",
        required_if_eq("pod", "true"),
        required_if_eq("uplink", "true")
    )]
    pub mac: Option<MacAddr>,
    /// The pod's IP (with --uplink: the switch's own address on the underlay).
    #[arg(
        long,
        value_name = "IP",
        required_if_eq("pod", "true"),
        required_if_eq("uplink", "true"),
        conflicts_with = "host"
    )]
    pub ip: Option<Ipv4Addr>,
    /// Kubernetes namespace of the pod, for display.
    #[arg(long, value_name = "NS", conflicts_with = "host")]
    pub namespace: Option<String>,
    /// Kubernetes name of the pod, for display.
    #[arg(long, value_name = "NAME", conflicts_with = "host")]
    pub pod_name: Option<String>,
    /// Largest IP packet the port carries.
    #[arg(long, value_name = "N", default_value_t = transaction::DEFAULT_MTU)]
    pub mtu: u16,
    /// Open the port without offloads: its kernel side sends and receives only whole,
    /// checksummed frames of at most the MTU, and the switch segments for it in software.
    #[arg(long)]
    pub no_offloads: bool,
}

/// Flags of `dp add-route`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["port", "host", "unreachable", "node"])))]
pub struct AddRouteArgs {
    /// Destination prefix, e.g. 10.244.2.0/24.
    pub prefix: Ipv4Prefix,
    /// Out of this pod port.
    #[arg(long, value_name = "NAME")]
    pub port: Option<String>,
    /// To the node's own stack through the host port.
    #[arg(long)]
    pub host: bool,
    /// Nowhere: answered with ICMP host unreachable.
    #[arg(long)]
    pub unreachable: bool,
    /// To another node: out of the uplink to this next hop (its InternalIP).
    #[arg(long, value_name = "IP")]
    pub node: Option<Ipv4Addr>,
    /// Outside the cluster: out of the uplink, unencapsulated, source-translated to the
    /// uplink's address (to the destination itself on the segment, or to --gateway).
    #[arg(long)]
    pub uplink: bool,
    /// With --node or --uplink: the underlay router the frames go to.
    #[arg(long, value_name = "IP")]
    pub gateway: Option<Ipv4Addr>,
}

/// Flags of `dp set-node`.
#[derive(Debug, Args)]
pub struct SetNodeArgs {
    /// The node's pod CIDR, e.g. 10.244.1.0/24.
    #[arg(long, value_name = "CIDR")]
    pub pod_cidr: Ipv4Prefix,
    /// The gateway address inside the pod CIDR (conventionally its first address).
    #[arg(long, value_name = "IP")]
    pub gateway: Ipv4Addr,
    /// The switch's own MAC for the gateway (default: the daemon's configured MAC).
    #[arg(long, value_name = "MAC")]
    pub gateway_mac: Option<MacAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let text = match commands::execute(&cli) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("podswitchctl: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // `podswitchctl counters | head` closing the pipe early is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("podswitchctl: writing the output: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
