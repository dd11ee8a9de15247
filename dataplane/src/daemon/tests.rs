//! The daemon's start and apply paths, with injected failures (no root, no devices).

use super::state::tests::{node, pod, ProbeFactory, ProbeLog};
use super::*;
use std::sync::atomic::AtomicUsize;

fn cfg(workers: usize) -> DaemonConfig {
    DaemonConfig {
        workers,
        pool_buffers: 512,
        max_ports: 16,
        ..Default::default()
    }
}

fn refused(_: &Worker) -> io::Result<Uring> {
    Err(io::Error::from_raw_os_error(libc::EPERM))
}

#[test]
fn a_refused_io_uring_is_reported_with_its_cause_and_what_to_do() {
    let err = Daemon::start_with(cfg(1), refused).unwrap_err();
    assert!(matches!(err, StartError::Ring { worker: 0, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("worker 0: io_uring_setup failed: Operation not permitted"),
        "{msg}"
    );
    assert!(
        msg.contains("kernel.io_uring_disabled") && msg.contains("seccomp"),
        "{msg}"
    );
}

static OPENED: AtomicUsize = AtomicUsize::new(0);

/// The first ring opens, the second is refused as by a kernel too old for its flags.
fn second_refused(w: &Worker) -> io::Result<Uring> {
    if OPENED.fetch_add(1, Ordering::SeqCst) == 0 {
        w.open_ring()
    } else {
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    }
}

#[test]
fn a_worker_failing_to_start_stops_those_already_started() {
    let err = Daemon::start_with(cfg(2), second_refused).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("worker 1: io_uring_setup failed") && msg.contains("Linux 6.1"),
        "{msg}"
    );
    // start_with returned, so worker 0 was joined: nothing is left running to leak.
}

static SLOW_RING_OPENED: AtomicBool = AtomicBool::new(false);

/// Opens the ring, but only after the daemon has stopped waiting for it.
fn slow_ring(w: &Worker) -> io::Result<Uring> {
    std::thread::sleep(Duration::from_millis(300));
    let ring = w.open_ring();
    SLOW_RING_OPENED.store(true, Ordering::SeqCst);
    ring
}

#[test]
fn a_worker_that_does_not_answer_in_time_is_stopped_and_joined_before_start_returns() {
    let err = Daemon::start_waiting(cfg(1), slow_ring, Duration::from_millis(50)).unwrap_err();
    assert!(
        matches!(err, StartError::NoAnswer { worker: 0, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("worker 0 did not say within 0.05 s") && msg.ends_with("it was stopped"),
        "{msg}"
    );
    // Joined: the thread got past its slow start (and, told to stop, ended) before
    // start_waiting returned, rather than being dropped while still running.
    assert!(SLOW_RING_OPENED.load(Ordering::SeqCst));
}

fn apply(d: &Daemon, ops: Vec<proto::Op>, f: &mut ProbeFactory) -> Result<u64, ApplyError> {
    d.apply_with(
        proto::Transaction {
            generation: None,
            replace: false,
            ops,
        },
        f,
    )
}

#[test]
fn a_worker_that_stopped_rolls_the_transaction_back_and_releases_its_devices() {
    let mut daemon = Daemon::start(cfg(2)).unwrap();
    let log = ProbeLog::default();
    let mut f = ProbeFactory {
        log: log.clone(),
        queues: 2,
    };
    let g = apply(&daemon, vec![node(), pod("a", "10.244.1.2")], &mut f).unwrap();
    let config_before = daemon.config().clone();
    let tables_before = daemon.tables.load_full();
    // Worker 1 goes away (as if its ring had failed): its command channel is closed.
    {
        let d = Arc::get_mut(&mut daemon).unwrap();
        let (dead, _) = mpsc::channel();
        d.workers[1].commands = dead;
        *d.workers[1].exit.lock().unwrap() = Some("its ring failed: test".into());
    }
    log.lock().unwrap().clear();
    let err = apply(&daemon, vec![pod("b", "10.244.1.3")], &mut f).unwrap_err();
    assert_eq!(
        err.to_string(),
        "worker 1 has stopped (its ring failed: test); restart podswitchd (podswitch-control \
         replays the configuration); the transaction was rolled back"
    );
    assert_eq!(*daemon.config(), config_before, "configuration unchanged");
    let tables = daemon.tables.load_full();
    assert!(Arc::ptr_eq(&tables, &tables_before), "no new snapshot");
    assert_eq!(tables.generation, g);
    // b's queue for worker 1 bounced back and was released and dropped; worker 0 was told
    // to remove its queue, releasing the device too.
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.iter().filter(|l| *l == "dropped 1").count(),
        2,
        "{log:?}"
    );
    assert!(log.contains(&"released 1".to_string()), "{log:?}");
    assert!(
        !log.iter().any(|l| l.ends_with(" 0")),
        "port a untouched: {log:?}"
    );
}

#[test]
fn an_invalid_op_after_a_port_leaves_no_queue_and_no_device() {
    let daemon = Daemon::start(cfg(1)).unwrap();
    let log = ProbeLog::default();
    let mut f = ProbeFactory {
        log: log.clone(),
        queues: 1,
    };
    apply(&daemon, vec![node()], &mut f).unwrap();
    let before = daemon.config().clone();
    let err = apply(
        &daemon,
        vec![pod("a", "10.244.1.2"), pod("b", "10.244.1.2")],
        &mut f,
    )
    .unwrap_err();
    assert!(matches!(err, ApplyError::Invalid(_)), "{err:?}");
    assert_eq!(*daemon.config(), before);
    assert_eq!(*log.lock().unwrap(), vec!["released 0", "dropped 0"]);
}

#[test]
fn a_missing_dev_net_tun_says_what_to_do() {
    let err = error::PortError::Open {
        name: "psw0".into(),
        err: io::Error::new(
            io::ErrorKind::NotFound,
            "opening /dev/net/tun: No such file or directory (os error 2)",
        ),
    };
    assert_eq!(
        err.to_string(),
        "creating tap \"psw0\": opening /dev/net/tun: No such file or directory (os error 2) \
         — is /dev/net/tun missing? Load the tun module (modprobe tun), or give podswitchd's \
         container the device /dev/net/tun"
    );
}

/// An endpoint leaving a Service port flushes the UDP connections to it (a datagram flow has no
/// end and would go on to a dead pod) and no other: not those to the endpoint that stays, not
/// TCP ones (graceful termination), not another Service port's to the same address.
#[test]
fn a_gone_endpoint_loses_its_udp_connections_and_keeps_its_tcp_ones() {
    use crate::conntrack::{Endpoint, Nat, ServiceRef, Tuple};
    use proto::{BackendSpec, L4Protocol, ServiceSpec};
    use std::net::Ipv4Addr;
    let daemon = Daemon::start(cfg(1)).unwrap();
    let mut f = ProbeFactory {
        log: ProbeLog::default(),
        queues: 1,
    };
    let (a, b) = (Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 1, 3));
    let service = |name: &str, protocol, vip: [u8; 4], backends: &[Ipv4Addr]| {
        proto::Op::SetService(ServiceSpec::cluster_ip(
            name,
            protocol,
            vip.into(),
            53,
            backends
                .iter()
                .map(|&ip| BackendSpec::ready(ip, 5353))
                .collect(),
        ))
    };
    let ops = vec![
        node(),
        service("dns:udp", L4Protocol::Udp, [10, 96, 0, 10], &[a, b]),
        service("dns:tcp", L4Protocol::Tcp, [10, 96, 0, 10], &[a, b]),
        service("other:udp", L4Protocol::Udp, [10, 96, 0, 11], &[a, b]),
    ];
    apply(&daemon, ops, &mut f).unwrap();
    let id = |name: &str| daemon.config().service_ids[name];
    let now = Instant::now();
    let mut client_port = 40_000;
    let mut connect = |name: &str, backend: Ipv4Addr| {
        let proto = if name.ends_with("tcp") { 6 } else { 17 };
        let vip = if name.starts_with("dns") { 10 } else { 11 };
        client_port += 1;
        let t = Tuple {
            src: Ipv4Addr::new(10, 244, 1, 9),
            dst: Ipv4Addr::new(10, 96, 0, vip),
            src_port: client_port,
            dst_port: 53,
            proto,
        };
        let to = Endpoint {
            ip: backend,
            port: 5353,
        };
        let nat = Nat {
            src: None,
            dst: Some(to),
        };
        let chosen = ServiceRef {
            service: id(name),
            backend: to,
        };
        daemon
            .flows
            .conntrack
            .commit(&t, nat, Some(chosen), 0x02, 60, now)
            .unwrap();
    };
    for (name, backend) in [
        ("dns:udp", a),
        ("dns:udp", b),
        ("dns:tcp", a),
        ("other:udp", a),
    ] {
        connect(name, backend);
    }
    assert_eq!(daemon.flows.conntrack.len(), 4);
    // Endpoint a leaves dns:udp and dns:tcp.
    let ops = vec![
        service("dns:udp", L4Protocol::Udp, [10, 96, 0, 10], &[b]),
        service("dns:tcp", L4Protocol::Tcp, [10, 96, 0, 10], &[b]),
    ];
    apply(&daemon, ops, &mut f).unwrap();
    let mut left = Vec::new();
    daemon.flows.conntrack.for_each(now, |e| {
        let s = e.service.unwrap();
        left.push((s.service, s.backend.ip));
    });
    left.sort();
    let mut want = vec![(id("dns:udp"), b), (id("dns:tcp"), a), (id("other:udp"), a)];
    want.sort();
    assert_eq!(left, want);
}
