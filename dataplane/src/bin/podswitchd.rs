//! `podswitchd`: parses flags and the config file, starts the switch, serves the socket.

use anyhow::Context;
use clap::Parser;
use podswitch_dataplane::config::DaemonConfig;
use podswitch_dataplane::daemon::Daemon;
use podswitch_dataplane::worker::IdlePolicy;
use podswitch_proto::server;
use std::path::PathBuf;

/// mimalloc rather than glibc's malloc: decoding and compiling a large transaction
/// (10k Service ports) allocates millions of small values. The packet path allocates nothing,
/// so it does not care.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The podswitch dataplane: a poll-mode userspace switch for Kubernetes pods.
#[derive(Debug, Parser)]
#[command(version)]
struct Flags {
    /// TOML config file (flags override it).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// API socket path.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Worker threads.
    #[arg(long)]
    workers: Option<usize>,
    /// Idle policy.
    #[arg(long, value_enum)]
    idle: Option<IdlePolicy>,
    /// Packets per burst (1..=256).
    #[arg(long)]
    burst: Option<usize>,
    /// CPUs to pin the workers to, comma-separated, worker 0 first (e.g. `0` or `0,1`).
    #[arg(long, value_delimiter = ',')]
    worker_cpus: Option<Vec<usize>>,
    /// Hard capacity of the conntrack table (connections).
    #[arg(long)]
    conntrack_capacity: Option<usize>,
    /// The switch's (gateway) MAC.
    #[arg(long)]
    switch_mac: Option<String>,
    /// Attach afxdp ports' XDP programs in generic (skb) mode even where the driver has
    /// native XDP.
    #[arg(long)]
    xdp_generic: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let mut cfg = match &flags.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            DaemonConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => DaemonConfig::default(),
    };
    if let Some(v) = flags.socket {
        cfg.socket = v;
    }
    if let Some(v) = flags.workers {
        cfg.workers = v;
    }
    if let Some(v) = flags.idle {
        cfg.idle = v;
    }
    if let Some(v) = flags.burst {
        cfg.burst = v;
    }
    if let Some(v) = flags.worker_cpus {
        cfg.worker_cpus = v;
    }
    if let Some(v) = flags.conntrack_capacity {
        cfg.conntrack_capacity = v;
    }
    if flags.xdp_generic {
        cfg.xdp_generic = true;
    }
    if let Some(v) = flags.switch_mac {
        cfg.switch_mac = v;
    }
    cfg.validate()?;
    if flags.print_config {
        print!("{}", toml::to_string(&cfg)?);
        return Ok(());
    }
    let listener = server::bind::<Daemon>(&cfg.socket)?;
    let socket = cfg.socket.clone();
    let limits = cfg.server_config();
    let daemon = Daemon::start(cfg)?;
    // SIGTERM / SIGINT: a clean exit removes what podswitchd put into the node's kernel (the
    // NodePort nf_tables table) and stops the workers; pod taps stay (they are persistent, for
    // the next podswitchd). kill -9 leaves the table, which the next podswitchd's first apply
    // replaces.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing the SIGTERM/SIGINT handler")?;
    let stopping = daemon.clone();
    std::thread::Builder::new()
        .name("psw-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!("podswitchd: signal {sig}: shutting down");
                stopping.shutdown();
                std::process::exit(0);
            }
        })
        .context("starting the signal thread")?;
    eprintln!("podswitchd: serving {}", socket.display());
    server::serve_with(daemon, &listener, limits)?;
    Ok(())
}
