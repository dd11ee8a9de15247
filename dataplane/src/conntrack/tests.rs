//! Behaviour of the shared table: both directions, expiry, capacity, GC, flush, handles,
//! collisions and concurrent commits.

use super::state::{PROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use super::*;
use std::sync::Arc;

const UDP: u8 = 17;

fn cfg(capacity: usize) -> Config {
    Config {
        capacity,
        timeouts: Timeouts::default(),
    }
}

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

fn tuple(src_port: u16, proto: u8) -> Tuple {
    Tuple {
        src: ip(10, 0, 0, 1),
        dst: ip(10, 0, 0, 2),
        src_port,
        dst_port: 80,
        proto,
    }
}

fn backend() -> Endpoint {
    Endpoint {
        ip: ip(10, 0, 1, 9),
        port: 8080,
    }
}

/// Client 10.0.0.1:4000 → VIP 10.96.0.10:80, DNATed to the backend.
fn to_vip() -> (Tuple, Nat) {
    let t = Tuple {
        src: ip(10, 0, 0, 1),
        dst: ip(10, 96, 0, 10),
        src_port: 4000,
        dst_port: 80,
        proto: PROTO_TCP,
    };
    (
        t,
        Nat {
            src: None,
            dst: Some(backend()),
        },
    )
}

fn hop(port: u16) -> CachedHop {
    CachedHop {
        next_hop: None,
        port,
        port_uid: 7,
        route_epoch: 1,
    }
}

#[test]
fn both_directions_of_a_dnat_connection_find_one_entry() {
    let ct = Conntrack::new(cfg(1024));
    let now = Instant::now();
    let (t, nat) = to_vip();
    let svc = ServiceRef {
        service: 3,
        backend: backend(),
    };
    let made = ct.commit(&t, nat, Some(svc), TCP_SYN, 60, now).unwrap();
    assert_eq!(
        (made.dir, made.state, made.nat),
        (Dir::Original, State::TcpSynSent, nat)
    );

    let reply = Tuple {
        src: ip(10, 0, 1, 9),
        dst: ip(10, 0, 0, 1),
        src_port: 8080,
        dst_port: 4000,
        proto: PROTO_TCP,
    };
    let back = ct.lookup(&reply, TCP_SYN | TCP_ACK, 60, now, true).unwrap();
    assert_eq!(back.handle, made.handle);
    assert_eq!(back.dir, Dir::Reply);
    assert_eq!(back.service, Some(svc));
    assert_eq!(back.state, State::TcpSynRecv);
    let vip = Endpoint {
        ip: t.dst,
        port: t.dst_port,
    };
    assert_eq!(
        back.nat,
        Nat {
            src: Some(vip),
            dst: None
        },
        "reply source restored to the VIP"
    );

    let fwd = ct.lookup(&t, TCP_ACK, 60, now, true).unwrap();
    assert_eq!(
        (fwd.handle, fwd.dir, fwd.state),
        (made.handle, Dir::Original, State::TcpEstablished)
    );
    assert_eq!(
        ct.lookup(&t.inverse(), 0, 0, now, false).map(|h| h.dir),
        None,
        "the VIP never answers"
    );
    assert_eq!(ct.len(), 1);
}

#[test]
fn plain_connection_is_found_by_its_inverse_and_dry_run_changes_nothing() {
    let ct = Conntrack::new(cfg(64));
    let now = Instant::now();
    let t = tuple(5000, UDP);
    ct.commit(&t, Nat::default(), None, 0, 100, now).unwrap();
    let dry = ct.lookup(&t.inverse(), 0, 100, now, false).unwrap();
    assert_eq!((dry.dir, dry.state), (Dir::Reply, State::UdpUnreplied));
    let mut views = Vec::new();
    ct.for_each(now, |v| views.push(*v));
    assert_eq!(views[0].packets, [1, 0], "a dry-run lookup counts nothing");
    assert_eq!(
        ct.lookup(&t.inverse(), 0, 100, now, true).unwrap().state,
        State::UdpReplied
    );
    ct.for_each(now, |v| views.push(*v));
    assert_eq!((views[1].packets, views[1].bytes), ([1, 1], [100, 100]));
}

#[test]
fn each_state_expires_after_its_timeout() {
    let ct = Conntrack::new(cfg(64));
    let now = Instant::now();
    let to = Timeouts::default();
    let t = tuple(1, PROTO_TCP);
    ct.commit(&t, Nat::default(), None, TCP_SYN, 60, now)
        .unwrap();
    assert!(ct
        .lookup(
            &t,
            0,
            0,
            now + to.syn_sent - Duration::from_millis(1),
            false
        )
        .is_some());
    assert!(
        ct.lookup(&t, 0, 0, now + to.syn_sent, false).is_none(),
        "syn_sent expired"
    );
    assert_eq!(ct.len(), 1, "a dry run does not remove");
    assert!(ct.lookup(&t, 0, 0, now + to.syn_sent, true).is_none());
    assert_eq!(
        ct.len(),
        0,
        "an update lookup removes what it finds expired"
    );

    let est = tuple(2, PROTO_TCP);
    ct.commit(&est, Nat::default(), None, TCP_ACK, 60, now)
        .unwrap();
    assert!(ct.lookup(&est, TCP_RST, 40, now, true).is_some());
    assert!(
        ct.lookup(&est, 0, 0, now + to.close, false).is_none(),
        "close lasts 10 s"
    );
}

#[test]
fn udp_gets_the_longer_timeout_once_replied() {
    let ct = Conntrack::new(cfg(64));
    let now = Instant::now();
    let to = Timeouts::default();
    let (a, b) = (tuple(1, UDP), tuple(2, UDP));
    ct.commit(&a, Nat::default(), None, 0, 60, now).unwrap();
    ct.commit(&b, Nat::default(), None, 0, 60, now).unwrap();
    ct.lookup(&b.inverse(), 0, 60, now, true).unwrap();
    let later = now + to.udp_unreplied;
    assert!(
        ct.lookup(&a, 0, 0, later, false).is_none(),
        "unreplied: 30 s"
    );
    assert!(
        ct.lookup(&b, 0, 0, later, false).is_some(),
        "replied: 120 s"
    );
    assert!(ct.lookup(&b, 0, 0, now + to.udp_replied, false).is_none());
}

#[test]
fn syn_reopens_a_time_wait_entry_with_fresh_counters() {
    let ct = Conntrack::new(cfg(64));
    let now = Instant::now();
    let t = tuple(9, PROTO_TCP);
    ct.commit(&t, Nat::default(), None, TCP_ACK, 60, now)
        .unwrap();
    ct.lookup(&t, TCP_FIN | TCP_ACK, 60, now, true).unwrap();
    ct.lookup(&t.inverse(), TCP_FIN | TCP_ACK, 60, now, true)
        .unwrap();
    assert_eq!(
        ct.lookup(&t, TCP_ACK, 60, now, true).unwrap().state,
        State::TcpTimeWait
    );
    assert_eq!(
        ct.lookup(&t, TCP_SYN, 60, now, true).unwrap().state,
        State::TcpSynSent
    );
    let mut packets = [9; 2];
    ct.for_each(now, |v| packets = v.packets);
    assert_eq!(packets, [1, 0]);
}

#[test]
fn commit_beyond_capacity_is_full_and_existing_entries_still_hit() {
    let ct = Conntrack::new(cfg(64));
    assert_eq!(ct.shards(), 1);
    let now = Instant::now();
    for port in 0..64 {
        ct.commit(&tuple(port, UDP), Nat::default(), None, 0, 60, now)
            .unwrap();
    }
    assert_eq!(
        ct.commit(&tuple(64, UDP), Nat::default(), None, 0, 60, now)
            .unwrap_err(),
        CommitError::Full
    );
    assert_eq!(ct.len(), 64);
    assert!((0..64).all(|p| ct.lookup(&tuple(p, UDP), 0, 60, now, true).is_some()));
}

#[test]
fn capacity_is_exact_across_many_shards() {
    let ct = Conntrack::new(cfg(10_000));
    assert!(ct.shards() > 1 && ct.shards().is_power_of_two());
    let now = Instant::now();
    let made = (0..20_000u16)
        .filter(|&p| {
            ct.commit(&tuple(p, UDP), Nat::default(), None, 0, 1, now)
                .is_ok()
        })
        .count();
    assert_eq!(made, ct.len());
    // Exactly the capacity: uneven shards never refuse a connection while the table has room.
    assert_eq!((made, ct.capacity()), (10_000, 10_000));
}

#[test]
fn gc_step_honours_its_budget_and_frees_room() {
    let ct = Conntrack::new(cfg(64));
    let now = Instant::now();
    for port in 0..64 {
        ct.commit(&tuple(port, UDP), Nat::default(), None, 0, 60, now)
            .unwrap();
    }
    let later = now + Timeouts::default().udp_unreplied;
    let mut cursor = GcCursor::default();
    assert_eq!(
        ct.gc_step(&mut cursor, now, usize::MAX),
        0,
        "nothing expired yet"
    );
    assert_eq!(ct.gc_step(&mut cursor, later, 10), 10);
    assert_eq!(ct.len(), 54);
    ct.commit(&tuple(100, UDP), Nat::default(), None, 0, 60, later)
        .unwrap();
    let mut removed = 10;
    for _ in 0..10 {
        removed += ct.gc_step(&mut cursor, later, 10);
    }
    assert_eq!(removed, 64);
    assert_eq!(ct.len(), 1, "the fresh entry survives GC");
    assert_eq!(
        ct.gc_step(&mut cursor, later, usize::MAX),
        0,
        "a huge budget stops after one pass"
    );
    assert!(
        ct.lookup(&tuple(5, UDP).inverse(), 0, 0, later, false)
            .is_none(),
        "aliases went too"
    );
}

#[test]
fn flush_removes_both_tuples_of_the_selected_entries() {
    let ct = Conntrack::new(cfg(1024));
    let now = Instant::now();
    let (t, nat) = to_vip();
    let svc = ServiceRef {
        service: 3,
        backend: backend(),
    };
    ct.commit(&t, nat, Some(svc), TCP_SYN, 60, now).unwrap();
    ct.commit(&tuple(1, UDP), Nat::default(), None, 0, 60, now)
        .unwrap();
    assert_eq!(
        ct.flush(|v| v.service.is_some_and(|s| s.backend == backend())),
        1
    );
    assert!(ct.lookup(&t, 0, 0, now, false).is_none());
    assert!(ct
        .lookup(&reply_tuple(&t, &nat), 0, 0, now, false)
        .is_none());
    assert!(ct.lookup(&tuple(1, UDP), 0, 0, now, false).is_some());
    assert_eq!(ct.len(), 1);
    // The freed reply tuple can be taken again.
    assert!(ct.commit(&t, nat, Some(svc), TCP_SYN, 60, now).is_ok());
}

#[test]
fn stale_handle_does_not_touch_the_slots_next_entry() {
    let ct = Conntrack::new(cfg(1));
    let now = Instant::now();
    let old = ct
        .commit(&tuple(1, UDP), Nat::default(), None, 0, 60, now)
        .unwrap();
    assert_eq!(ct.flush(|_| true), 1);
    let new = ct
        .commit(&tuple(2, UDP), Nat::default(), None, 0, 60, now)
        .unwrap();
    assert_ne!(old.handle, new.handle, "same slot, new generation");
    ct.set_hop(old.handle, Dir::Original, hop(5));
    assert_eq!(
        ct.lookup(&tuple(2, UDP), 0, 0, now, false).unwrap().hop,
        None
    );
    ct.set_hop(new.handle, Dir::Reply, hop(6));
    let back = ct
        .lookup(&tuple(2, UDP).inverse(), 0, 0, now, false)
        .unwrap();
    assert_eq!(back.hop, Some(hop(6)));
    assert_eq!(
        ct.lookup(&tuple(2, UDP), 0, 0, now, false).unwrap().hop,
        None,
        "per direction"
    );
}

#[test]
fn reply_tuple_taken_by_another_entry_is_refused() {
    let ct = Conntrack::new(cfg(1024));
    let now = Instant::now();
    let (t, nat) = to_vip();
    ct.commit(&t, nat, None, TCP_SYN, 60, now).unwrap();
    // A direct connection from the client to the backend with the same ports has the same reply.
    let direct = Tuple {
        dst: backend().ip,
        dst_port: backend().port,
        ..t
    };
    assert_eq!(
        ct.commit(&direct, Nat::default(), None, TCP_SYN, 60, now)
            .unwrap_err(),
        CommitError::ReplyTaken
    );
    assert_eq!(ct.len(), 1);
    // Once the holder expired, the tuple is free again.
    let later = now + Timeouts::default().syn_sent;
    assert!(ct
        .commit(&direct, Nat::default(), None, TCP_SYN, 60, later)
        .is_ok());
    assert_eq!(ct.len(), 1);
}

#[test]
fn committing_a_tracked_tuple_returns_the_existing_entry() {
    let ct = Conntrack::new(cfg(64));
    let now = Instant::now();
    let t = tuple(1, UDP);
    let first = ct.commit(&t, Nat::default(), None, 0, 60, now).unwrap();
    let again = ct
        .commit(&t.inverse(), Nat::default(), None, 0, 60, now)
        .unwrap();
    assert_eq!(
        (again.handle, again.dir, again.state),
        (first.handle, Dir::Reply, State::UdpReplied)
    );
    assert_eq!(ct.len(), 1);
}

#[test]
fn concurrent_commits_of_one_tuple_make_one_entry() {
    for round in 0..50u16 {
        let ct = Arc::new(Conntrack::new(cfg(4096)));
        let now = Instant::now();
        let t = tuple(round, UDP);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let ct = Arc::clone(&ct);
                std::thread::spawn(move || {
                    ct.commit(&t, Nat::default(), None, 0, 60, now)
                        .unwrap()
                        .handle
                })
            })
            .collect();
        let handles: Vec<Handle> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(handles[0], handles[1]);
        assert_eq!(ct.len(), 1);
        let mut packets = [0; 2];
        ct.for_each(now, |v| packets = v.packets);
        assert_eq!(packets, [2, 0], "both packets counted on the one entry");
    }
}

#[test]
fn dump_shows_age_and_time_left() {
    let ct = Conntrack::new(cfg(64));
    let now = Instant::now();
    ct.commit(&tuple(1, UDP), Nat::default(), None, 0, 60, now)
        .unwrap();
    let mut seen = None;
    ct.for_each(now + Duration::from_secs(10), |v| seen = Some(*v));
    let v = seen.unwrap();
    assert_eq!(
        (v.age, v.expires_in),
        (Duration::from_secs(10), Duration::from_secs(20))
    );
    assert_eq!(
        (v.original, v.reply, v.state.name()),
        (tuple(1, UDP), tuple(1, UDP).inverse(), "udp_unreplied")
    );
}

#[test]
fn conntrack_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Conntrack>();
    assert_send_sync::<FragTable>();
}

/// Two workers see the two directions of a plain UDP flow as new at once; the one with B→A
/// commits first. A→B's commit finds its tuple as that entry's reply: its output is cached on
/// the reply direction (not over B→A's), and its Hit says so.
#[test]
fn a_commit_lost_to_the_reverse_direction_caches_its_output_on_its_own_direction() {
    let ct = Conntrack::new(cfg(1024));
    let now = Instant::now();
    let a_to_b = tuple(5000, UDP);
    let b_to_a = a_to_b.inverse();
    let decided = |port| Decided {
        hop: Some(hop(port)),
        ..Decided::default()
    };
    let won = ct.commit_decided(&b_to_a, decided(2), 0, 60, now).unwrap();
    assert_eq!(won.dir, Dir::Original);
    let lost = ct.commit_decided(&a_to_b, decided(1), 0, 60, now).unwrap();
    assert_eq!((lost.handle, lost.dir), (won.handle, Dir::Reply));
    let output = |t: &Tuple| ct.lookup(t, 0, 60, now, false).unwrap().hop.map(|h| h.port);
    assert_eq!(
        (output(&b_to_a), output(&a_to_b)),
        (Some(2), Some(1)),
        "(B→A's output, A→B's output)"
    );
}
