//! The socket API under bad input and port removal.

use podswitch_proto::control::{ControlRequestBody, ControlResponse};
use podswitch_proto::{Op, PortKind, PortRole, PortSpec, RequestBody, Response};
use podswitch_tests::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

fn ports(node: &Node) -> Vec<String> {
    match node.request(RequestBody::Ports) {
        Response::Ports { ports } => ports.into_iter().map(|p| p.name).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failing_transaction_changes_nothing() {
    if !root_or_skip("a_failing_transaction_changes_nothing") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let before = ports(&node);
    let pod = |name: &str, ip: &str| {
        Op::AddPort(PortSpec {
            name: name.into(),
            kind: PortKind::Tap,
            role: PortRole::Pod {
                mac: "02:00:00:00:00:09".parse().unwrap(),
                ip: ip.parse().unwrap(),
                namespace: None,
                pod: None,
            },
            mtu: 1500,
            offloads: true,
            netns: None,
            queue_ids: Vec::new(),
        })
    };
    let good = unique("pt");
    let err = node
        .apply(vec![
            pod(&good, "10.244.1.9"),
            pod(&unique("pt"), "10.244.1.2"),
        ])
        .unwrap_err();
    assert!(err.contains("op 2") && err.contains("10.244.1.2"), "{err}");
    assert_eq!(ports(&node), before);
    // The tap created by op 1 was closed again: no device left behind.
    let links = node.ns.ip(&["-o", "link"]);
    assert!(!links.contains(&good), "{links}");
    assert!(a.ns.ping(GATEWAY, &[]).0, "forwarding unaffected");
}

#[test]
fn malformed_and_wrong_version_requests_get_errors_and_the_connection_survives() {
    if !root_or_skip("malformed_and_wrong_version_requests_get_errors_and_the_connection_survives")
    {
        return;
    }
    let node = Node::bare(&[]);
    let mut conn = UnixStream::connect(&node.socket).unwrap();
    let mut send = |body: &[u8]| -> Response {
        conn.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        conn.write_all(body).unwrap();
        podswitch_proto::read_frame(&mut conn).unwrap()
    };
    for (body, needle) in [
        (&b"{not json"[..], "malformed"),
        (br#"{"version":99,"request":"status"}"#, "version 99"),
        (br#"{"version":1,"request":"launch_rockets"}"#, "malformed"),
        (br#"{"version":1,"request":"apply","ops":[{"op":"add_port","name":"x","role":{"role":"pod","mac":"zz","ip":"10.244.1.2"}}]}"#, "zz"),
    ] {
        match send(body) {
            Response::Error { message } => assert!(message.contains(needle), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        send(br#"{"version":1,"request":"status"}"#),
        Response::Status(_)
    ));
    // An oversized frame is refused and the connection closed.
    let mut conn = UnixStream::connect(&node.socket).unwrap();
    conn.write_all(&u32::MAX.to_be_bytes()).unwrap();
    match podswitch_proto::read_frame(&mut conn).unwrap() {
        Response::Error { message } => assert!(
            message.contains(&u32::MAX.to_string()) && message.contains("exceeds the limit"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn a_removed_port_stops_forwarding_and_can_come_back() {
    if !root_or_skip("a_removed_port_stops_forwarding_and_can_come_back") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    assert!(a.ns.ping(b.ip, &[]).0);
    node.apply(vec![Op::DelPort {
        name: b.port.clone(),
    }])
    .unwrap();
    let (ok, out) = a.ns.ping(b.ip, &[]);
    assert!(!ok && out.contains("Destination Host Unreachable"), "{out}");
    assert!(!ports(&node).contains(&b.port));
    let c = node.add_pod(3);
    assert!(
        a.ns.ping(c.ip, &[]).0,
        "the address works again on a new port"
    );
}

/// Lowers `pid`'s open-file limit (soft and hard) to `n`.
fn limit_open_files(pid: u32, n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: prlimit reads `limit` and writes nothing (old limit pointer is null).
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Waits (up to 10 s) until `log()` reports an accept failure. An episode is logged once; a
/// daemon whose other threads free a descriptor now and then may see a few short episodes,
/// but never a line per failed accept (the back-off retries about ten times a second).
fn wait_for_accept_failure_logged(log: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !log().contains("accepting a connection failed") {
        assert!(
            std::time::Instant::now() < deadline,
            "no accept failure logged: {}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A second of back-off is about ten failed accepts.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let lines = log().matches("accepting a connection failed").count();
    assert!(lines <= 3, "logged per failure, not per episode: {}", log());
}

#[test]
fn podswitchd_out_of_file_descriptors_keeps_forwarding_and_answers_once_they_free_up() {
    if !root_or_skip(
        "podswitchd_out_of_file_descriptors_keeps_forwarding_and_answers_once_they_free_up",
    ) {
        return;
    }
    let mut node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    limit_open_files(node.daemon_pid().unwrap(), 48);
    // More idle connections than the daemon has descriptors left: accept() fails with EMFILE
    // while the rest wait in the listen backlog.
    let idle: Vec<UnixStream> = (0..120)
        .map(|_| UnixStream::connect(&node.socket).unwrap())
        .collect();
    wait_for_accept_failure_logged(|| node.log());
    assert_eq!(
        node.daemon_exit(),
        None,
        "podswitchd exited: {}",
        node.log()
    );
    let log = node.log();
    assert!(log.contains("Too many open files"), "{log}");
    assert!(a.ns.ping(b.ip, &[]).0, "forwarding goes on meanwhile");
    drop(idle);
    // The freed descriptors let accept() work again; the backlog drains, then we are served.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut conn = UnixStream::connect(&node.socket).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let request = podswitch_proto::Request::new(RequestBody::Status);
        let answer = podswitch_proto::write_frame(&mut conn, &request)
            .and_then(|()| podswitch_proto::read_frame::<_, Response>(&mut conn));
        if let Ok(Response::Status(_)) = answer {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "podswitchd never answered again: {answer:?}; {}",
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(node.daemon_exit(), None);
    assert!(node.log().contains("accepting connections again"));
}

#[test]
fn a_failing_transaction_leaves_no_interface_in_the_pods_namespace() {
    if !root_or_skip("a_failing_transaction_leaves_no_interface_in_the_pods_namespace") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let ns = Netns::new("pswp");
    let spec = PortSpec {
        name: unique("pt"),
        kind: PortKind::Tap,
        role: PortRole::Pod {
            mac: "02:00:0a:f4:01:09".parse().unwrap(),
            ip: "10.244.1.9".parse().unwrap(),
            namespace: None,
            pod: None,
        },
        mtu: 1500,
        offloads: true,
        netns: Some(podswitch_proto::NetnsAttach {
            path: ns.path().display().to_string(),
            ifname: "eth0".into(),
        }),
        queue_ids: Vec::new(),
    };
    // Op 1 creates a persistent tap and moves it into the pod as eth0; op 2 is invalid.
    let clash = PortSpec {
        name: unique("pt"),
        role: PortRole::Pod {
            mac: "02:00:0a:f4:01:0a".parse().unwrap(),
            ip: a.ip,
            namespace: None,
            pod: None,
        },
        offloads: true,
        netns: None,
        ..spec.clone()
    };
    let before = ports(&node);
    let err = node
        .apply(vec![Op::AddPort(spec.clone()), Op::AddPort(clash)])
        .unwrap_err();
    assert!(
        err.contains("op 2") && err.contains("already bound"),
        "{err}"
    );
    assert_eq!(ports(&node), before);
    let eth0 = ns.enter(|| {
        podswitch_netlink::Netlink::new()
            .unwrap()
            .link_index("eth0")
            .unwrap()
    });
    assert_eq!(
        eth0, None,
        "the tap created by op 1 was released with the rollback"
    );
    // The same port applies cleanly afterwards: nothing half-made stands in its way.
    node.apply(vec![Op::AddPort(spec)]).unwrap();
}

#[test]
fn podswitch_control_out_of_file_descriptors_keeps_running_and_answers_once_they_free_up() {
    if !root_or_skip(
        "podswitch_control_out_of_file_descriptors_keeps_running_and_answers_once_they_free_up",
    ) {
        return;
    }
    let mut cn = podswitch_tests::control::ControlNode::start();
    limit_open_files(cn.control_pid().unwrap(), 48);
    let idle: Vec<UnixStream> = (0..120)
        .map(|_| UnixStream::connect(&cn.control_socket).unwrap())
        .collect();
    wait_for_accept_failure_logged(|| cn.control_log());
    assert_eq!(
        cn.control_exit(),
        None,
        "control exited: {}",
        cn.control_log()
    );
    drop(idle);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let request = podswitch_proto::control::ControlRequest::new(ControlRequestBody::Status);
        let answer = UnixStream::connect(&cn.control_socket)
            .map_err(podswitch_proto::FrameError::from)
            .and_then(|mut conn| {
                conn.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
                podswitch_proto::write_frame(&mut conn, &request)?;
                podswitch_proto::read_frame::<_, ControlResponse>(&mut conn)
            });
        if let Ok(ControlResponse::Status(_)) = answer {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "podswitch-control never answered again: {answer:?}; {}",
            cn.control_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(cn.control_exit(), None);
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

#[test]
fn forty_clients_sending_the_largest_frames_do_not_inflate_podswitchd() {
    if !root_or_skip("forty_clients_sending_the_largest_frames_do_not_inflate_podswitchd") {
        return;
    }
    let node = Node::bare(&[]);
    let pid = node.daemon_pid().unwrap();
    // The socket is bound before the daemon has allocated its tables (conntrack reserves its
    // memory at start): the first answer comes after that, so measure from there.
    node.request(podswitch_proto::RequestBody::Status);
    let before = proc_status_kib(pid, "VmHWM");
    let len = podswitch_proto::MAX_FRAME_LEN as usize;
    let senders: Vec<_> = (0..40)
        .map(|_| {
            let mut conn = UnixStream::connect(&node.socket).unwrap();
            std::thread::spawn(move || {
                // Refused frames close the connection mid-write: that is the point.
                let chunk = vec![b' '; 1 << 20];
                let _ = conn.write_all(&(len as u32).to_be_bytes());
                for _ in 0..len / chunk.len() {
                    if conn.write_all(&chunk).is_err() {
                        return;
                    }
                }
                let _ = podswitch_proto::read_frame::<_, Response>(&mut conn);
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let grown_mib = proc_status_kib(pid, "VmHWM").saturating_sub(before) / 1024;
    eprintln!("podswitchd's peak RSS grew by {grown_mib} MiB");
    // The budget lets one 64 MiB frame in at a time (40 of them would be 2.5 GiB); the JSON
    // check adds little.
    assert!(
        grown_mib < 150,
        "peak RSS grew by {grown_mib} MiB for 40 frames of MAX_FRAME_LEN"
    );
    assert!(matches!(
        node.request(RequestBody::Status),
        Response::Status(_)
    ));
}
