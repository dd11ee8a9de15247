//! `podswitch-control`: parses flags and the config file, opens the state database, starts
//! the sync with `podswitchd` and serves the control socket.

use anyhow::Context;
use clap::Parser;
use podswitch_control::config::ControlConfig;
use podswitch_control::dataplane::SocketDataplane;
use podswitch_control::podnet::NetlinkPodNetwork;
use podswitch_control::store::Store;
use podswitch_control::Control;
use podswitch_proto::server;
use podswitch_proto::Ipv4Prefix;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

/// mimalloc rather than glibc's malloc: an apply of 20k objects builds and drops
/// millions of small values (JSON values, typed objects, strings), and glibc's malloc spent a
/// third of that time in `malloc`/`free`/`malloc_consolidate` (perf, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The podswitch control process: pods, IPAM and manifests, fed to podswitchd.
#[derive(Debug, Parser)]
#[command(version)]
struct Flags {
    /// TOML config file (flags override it).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Kubernetes node name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's pod CIDR, e.g. 10.244.1.0/24 (required here or in the config file).
    #[arg(long)]
    pod_cidr: Option<Ipv4Prefix>,
    /// The cluster's Service CIDR.
    #[arg(long)]
    service_cidr: Option<Ipv4Prefix>,
    /// The cluster's pod CIDR (default: 10.244.0.0/16 if it contains the pod CIDR, else the
    /// pod CIDR itself).
    #[arg(long)]
    cluster_cidr: Option<Ipv4Prefix>,
    /// The node's own IP.
    #[arg(long)]
    node_ip: Option<Ipv4Addr>,
    /// The pods' gateway (default: first host address of the pod CIDR).
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
    /// Directory of the state database.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// podswitchd's socket.
    #[arg(long)]
    dataplane_socket: Option<PathBuf>,
    /// This process's socket.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Name of the host port (tap in the node's namespace).
    #[arg(long)]
    host_port: Option<String>,
    /// Default MTU of pod interfaces and the host port.
    #[arg(long)]
    mtu: Option<u16>,
    /// Resync period in milliseconds.
    #[arg(long)]
    resync_interval_ms: Option<u64>,
    /// The uplink port to the other nodes (needs --node-ip).
    #[arg(long)]
    uplink: Option<String>,
    /// The switch's MAC on the uplink (default 0a:58 + the node IP).
    #[arg(long)]
    uplink_mac: Option<podswitch_proto::MacAddr>,
    /// The uplink's MTU (default --mtu).
    #[arg(long)]
    uplink_mtu: Option<u16>,
    /// How packets reach other nodes: routed (direct) or VXLAN.
    #[arg(long, value_enum)]
    encap: Option<podswitch_control::config::EncapMode>,
    /// VXLAN Network Identifier.
    #[arg(long)]
    vni: Option<u32>,
    /// VXLAN UDP port.
    #[arg(long)]
    vxlan_port: Option<u16>,
    /// The uplink's port kind: a tap the switch creates, or AF_XDP sockets on the existing
    /// interface named by --uplink (a NIC or veth end in podswitchd's namespace).
    #[arg(long, value_enum)]
    uplink_kind: Option<podswitch_control::config::UplinkKind>,
    /// The underlay router on the uplink's segment (needs --uplink-prefix-len): reaches the
    /// other nodes outside the segment, and the world with --egress uplink.
    #[arg(long)]
    uplink_gateway: Option<std::net::Ipv4Addr>,
    /// The prefix length of the uplink's segment (the subnet of --node-ip).
    #[arg(long)]
    uplink_prefix_len: Option<u8>,
    /// How pods reach addresses outside the cluster: through the host port and the node's
    /// kernel (host), or out of the uplink, source-translated to --node-ip (uplink).
    #[arg(long, value_enum)]
    egress: Option<podswitch_control::config::EgressMode>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

impl Flags {
    /// Overrides the file's values with the flags given.
    fn apply(self, cfg: &mut ControlConfig) {
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field {
                    cfg.$field = v;
                }
            )*};
        }
        macro_rules! set_opt {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field {
                    cfg.$field = Some(v);
                }
            )*};
        }
        set!(
            node_name,
            service_cidr,
            state_dir,
            dataplane_socket,
            socket,
            host_port,
            mtu,
            resync_interval_ms,
            uplink,
            encap,
            vni,
            vxlan_port,
            uplink_kind,
            egress
        );
        set_opt!(
            pod_cidr,
            cluster_cidr,
            node_ip,
            gateway,
            uplink_mac,
            uplink_mtu,
            uplink_gateway,
            uplink_prefix_len
        );
    }
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let mut cfg = match &flags.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            ControlConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => ControlConfig::default(),
    };
    let print_config = flags.print_config;
    flags.apply(&mut cfg);
    let settings = cfg.settings()?;
    if print_config {
        print!("{}", toml::to_string(&cfg.resolved()?)?);
        return Ok(());
    }
    let store = Arc::new(Store::open(&settings.state_dir)?);
    let listener = server::bind::<Control>(&settings.socket)?;
    podswitch_control::log(&format!(
        "node {} pod CIDR {} gateway {}; state {}; serving {}",
        settings.node_name,
        settings.pod_cidr,
        settings.gateway,
        store.path().display(),
        settings.socket.display()
    ));
    let dataplane = Box::new(SocketDataplane::new(&settings.dataplane_socket));
    let control = Arc::new(Control::start(
        settings,
        store,
        dataplane,
        Arc::new(NetlinkPodNetwork),
    ));
    server::serve(control, listener)?;
    Ok(())
}
