use super::*;
use podswitch_proto::{Ipv4Prefix, PolicyProtocol, RuleSpec};

fn prefix(s: &str) -> Ipv4Prefix {
    s.parse().expect("test prefix")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn block(cidr: &str, except: &[&str]) -> PeerBlock {
    PeerBlock {
        cidr: prefix(cidr),
        except: except.iter().map(|e| prefix(e)).collect(),
    }
}

fn tcp(first: u16, last: u16) -> PortRange {
    PortRange {
        protocol: PolicyProtocol::Tcp,
        first,
        last,
    }
}

fn udp(first: u16, last: u16) -> PortRange {
    PortRange {
        protocol: PolicyProtocol::Udp,
        first,
        last,
    }
}

fn rule(
    policy: u32,
    rule: u32,
    peers: Option<Vec<PeerBlock>>,
    ports: Option<Vec<PortRange>>,
) -> RuleSpec {
    RuleSpec {
        policy,
        rule,
        peers,
        ports,
    }
}

fn dir(rules: Vec<RuleSpec>) -> DirectionSpec {
    DirectionSpec {
        policies: vec!["ns/a".into(), "ns/b".into()],
        rules,
    }
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;
const ICMP: u8 = 1;

/// `(peer, proto, port, expected origin as (policy, rule) or None)`.
type Case = (&'static str, u8, Option<u16>, Option<(u32, u32)>);

fn check(d: &DirectionSpec, cases: &[Case]) {
    let c = CompiledDirection::new(d);
    for &(peer, proto, port, want) in cases {
        let got = c.allows(ip(peer), proto, port).map(|o| (o.policy, o.rule));
        assert_eq!(
            got, want,
            "peer {peer} proto {proto} port {port:?} in {d:#?}"
        );
    }
}

#[test]
fn no_rules_denies_everything() {
    check(
        &dir(vec![]),
        &[
            ("0.0.0.0", TCP, Some(80), None),
            ("10.0.0.1", UDP, Some(53), None),
            ("255.255.255.255", ICMP, None, None),
        ],
    );
}

#[test]
fn a_rule_with_no_peers_and_no_ports_allows_everything() {
    check(
        &dir(vec![rule(1, 0, None, None)]),
        &[
            ("0.0.0.0", TCP, Some(1), Some((1, 0))),
            ("255.255.255.255", ICMP, None, Some((1, 0))),
            ("10.1.2.3", SCTP, Some(9), Some((1, 0))),
        ],
    );
}

#[test]
fn peers_and_excepts_carve_the_address_space() {
    let d = dir(vec![rule(
        0,
        3,
        Some(vec![
            block("10.0.0.0/8", &["10.1.0.0/16", "10.2.3.0/24"]),
            block("192.168.1.7/32", &[]),
        ]),
        None,
    )]);
    check(
        &d,
        &[
            ("9.255.255.255", TCP, Some(80), None),
            ("10.0.0.0", TCP, Some(80), Some((0, 3))),
            ("10.0.255.255", TCP, Some(80), Some((0, 3))),
            ("10.1.0.0", TCP, Some(80), None),
            ("10.1.255.255", TCP, Some(80), None),
            ("10.2.0.0", TCP, Some(80), Some((0, 3))),
            ("10.2.3.9", TCP, Some(80), None),
            ("10.2.4.0", TCP, Some(80), Some((0, 3))),
            ("10.255.255.255", ICMP, None, Some((0, 3))),
            ("11.0.0.0", TCP, Some(80), None),
            ("192.168.1.6", TCP, Some(80), None),
            ("192.168.1.7", TCP, Some(80), Some((0, 3))),
            ("192.168.1.8", TCP, Some(80), None),
        ],
    );
}

#[test]
fn ports_are_per_protocol_and_ranges_are_inclusive() {
    let d = dir(vec![rule(
        0,
        0,
        None,
        Some(vec![tcp(80, 80), tcp(8000, 8010), udp(53, 53)]),
    )]);
    check(
        &d,
        &[
            ("1.2.3.4", TCP, Some(80), Some((0, 0))),
            ("1.2.3.4", TCP, Some(81), None),
            ("1.2.3.4", TCP, Some(7999), None),
            ("1.2.3.4", TCP, Some(8000), Some((0, 0))),
            ("1.2.3.4", TCP, Some(8010), Some((0, 0))),
            ("1.2.3.4", TCP, Some(8011), None),
            ("1.2.3.4", UDP, Some(80), None),
            ("1.2.3.4", UDP, Some(53), Some((0, 0))),
            ("1.2.3.4", TCP, Some(53), None),
            ("1.2.3.4", SCTP, Some(80), None),
            ("1.2.3.4", ICMP, None, None),
        ],
    );
}

#[test]
fn sctp_is_its_own_protocol() {
    let d = dir(vec![rule(
        0,
        0,
        None,
        Some(vec![PortRange {
            protocol: PolicyProtocol::Sctp,
            first: 80,
            last: 80,
        }]),
    )]);
    check(
        &d,
        &[
            ("1.2.3.4", SCTP, Some(80), Some((0, 0))),
            ("1.2.3.4", TCP, Some(80), None),
            ("1.2.3.4", UDP, Some(80), None),
        ],
    );
}

#[test]
fn rules_add_up_and_the_first_rule_is_named() {
    let a = block("10.244.0.2/32", &[]);
    let b = block("10.244.0.0/24", &[]);
    let d = dir(vec![
        rule(0, 0, Some(vec![a]), Some(vec![tcp(80, 81)])),
        rule(1, 2, Some(vec![b]), Some(vec![tcp(81, 90)])),
        rule(1, 3, Some(vec![]), None), // a selector that selects no pod
        rule(1, 4, None, Some(vec![])), // a named port nobody has
    ]);
    check(
        &d,
        &[
            ("10.244.0.2", TCP, Some(80), Some((0, 0))),
            ("10.244.0.2", TCP, Some(81), Some((0, 0))),
            ("10.244.0.2", TCP, Some(82), Some((1, 2))),
            ("10.244.0.3", TCP, Some(80), None),
            ("10.244.0.3", TCP, Some(81), Some((1, 2))),
            ("10.244.0.3", TCP, Some(90), Some((1, 2))),
            ("10.244.0.3", TCP, Some(91), None),
            ("10.244.1.3", TCP, Some(81), None),
            ("10.244.1.3", ICMP, None, None),
        ],
    );
}

#[test]
fn port_edges_and_whole_space() {
    let d = dir(vec![rule(
        0,
        0,
        Some(vec![block("0.0.0.0/0", &[])]),
        Some(vec![tcp(0, 65535)]),
    )]);
    check(
        &d,
        &[
            ("0.0.0.0", TCP, Some(0), Some((0, 0))),
            ("255.255.255.255", TCP, Some(65535), Some((0, 0))),
            ("255.255.255.255", UDP, Some(65535), None),
        ],
    );
}

#[test]
fn many_pod_peers_compile_to_few_intervals_each() {
    let peers: Vec<PeerBlock> = (0..10_000u32)
        .map(|i| PeerBlock {
            cidr: Ipv4Prefix {
                addr: Ipv4Addr::from(0x0af4_0000 + 2 * i),
                len: 32,
            },
            except: vec![],
        })
        .collect();
    let d = dir(vec![rule(0, 0, Some(peers), Some(vec![tcp(80, 80)]))]);
    let c = CompiledDirection::new(&d);
    assert!(c.intervals() <= 20_001, "{}", c.intervals());
    assert_eq!(c.sets.len(), 1);
    assert!(c
        .allows(Ipv4Addr::from(0x0af4_0000 + 2 * 9_999), TCP, Some(80))
        .is_some());
    assert!(c
        .allows(Ipv4Addr::from(0x0af4_0000 + 2 * 9_999 + 1), TCP, Some(80))
        .is_none());
}

fn spec(port: &str, ingress: Option<DirectionSpec>, egress: Option<DirectionSpec>) -> PolicySpec {
    PolicySpec {
        port: port.into(),
        ingress,
        egress,
    }
}

#[test]
fn verdicts_check_egress_at_the_source_and_ingress_at_the_destination() {
    let a = ip("10.244.0.2");
    let b = ip("10.244.0.3");
    let c = ip("10.244.0.4");
    let node = ip("10.244.0.1");
    let from_a = dir(vec![rule(
        0,
        0,
        Some(vec![block("10.244.0.2/32", &[])]),
        Some(vec![tcp(80, 80)]),
    )]);
    let only_to_b = dir(vec![rule(
        0,
        0,
        Some(vec![block("10.244.0.3/32", &[])]),
        None,
    )]);
    let specs = [
        (b, 2, spec("b", Some(from_a), None)),
        (c, 3, spec("c", None, Some(only_to_b))),
    ];
    let p = Policies::new(
        specs.iter().map(|(ip, port, s)| (*ip, *port, s)),
        Some(node),
        &Policies::default(),
    );
    assert!(p.check(a, b, TCP, Some(80)).allowed());
    assert_eq!(p.check(a, b, TCP, Some(81)).ingress, Check::Denied);
    assert_eq!(
        p.check(c, b, TCP, Some(80)).ingress,
        Check::Denied,
        "c is not a"
    );
    assert!(
        p.check(node, b, TCP, Some(81)).allowed(),
        "the node reaches every pod"
    );
    assert!(
        p.check(b, b, TCP, Some(81)).allowed(),
        "a pod reaches itself"
    );
    assert_eq!(p.check(c, a, TCP, Some(80)).egress, Check::Denied);
    assert_eq!(
        p.check(a, c, TCP, Some(80)),
        Verdict {
            egress: Check::Open,
            ingress: Check::Open
        }
    );
    assert!(matches!(
        p.check(c, b, UDP, Some(53)).egress,
        Check::Allowed(_)
    ));
}

#[test]
fn equal_directions_share_one_compiled_form_across_pods_and_snapshots() {
    let d = dir(vec![rule(0, 0, None, Some(vec![tcp(80, 80)]))]);
    let specs: Vec<(Ipv4Addr, PortId, PolicySpec)> = (0..3u8)
        .map(|i| {
            (
                Ipv4Addr::new(10, 244, 0, 2 + i),
                u16::from(i),
                spec(&format!("p{i}"), Some(d.clone()), None),
            )
        })
        .collect();
    let first = Policies::new(
        specs.iter().map(|(a, p, s)| (*a, *p, s)),
        None,
        &Policies::default(),
    );
    let ptr = |p: &Policies, i: u8| {
        Arc::as_ptr(
            p.of(Ipv4Addr::new(10, 244, 0, 2 + i))
                .and_then(|p| p.ingress.as_ref())
                .expect("ingress"),
        )
    };
    assert_eq!(ptr(&first, 0), ptr(&first, 2));
    let second = Policies::new(specs.iter().map(|(a, p, s)| (*a, *p, s)), None, &first);
    assert_eq!(
        ptr(&first, 1),
        ptr(&second, 1),
        "reused from the previous snapshot"
    );
}

/// xorshift64*: deterministic pseudo-random numbers for the property test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the rules say, read naively: any rule whose peers hold `peer` and whose ports hold
/// `(proto, port)`.
fn naive(d: &DirectionSpec, peer: u32, proto: u8, port: Option<u16>) -> Vec<(u32, u32)> {
    let in_prefix = |p: &Ipv4Prefix, a: u32| {
        let mask = if p.len == 0 {
            0
        } else {
            u32::MAX << (32 - p.len)
        };
        a & mask == u32::from(p.addr) & mask
    };
    d.rules
        .iter()
        .filter(|r| {
            r.peers.as_ref().is_none_or(|bs| {
                bs.iter().any(|b| {
                    in_prefix(&b.cidr, peer) && !b.except.iter().any(|e| in_prefix(e, peer))
                })
            })
        })
        .filter(|r| {
            r.ports.as_ref().is_none_or(|ps| {
                ps.iter().any(|p| {
                    p.protocol.number() == proto
                        && port.is_some_and(|n| p.first <= n && n <= p.last)
                })
            })
        })
        .map(|r| (r.policy, r.rule))
        .collect()
}

#[test]
fn compiled_lookups_agree_with_a_naive_reading_of_random_rules() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let base = 0x0af4_0000u32; // 10.244.0.0: every address drawn is in base..base+256
    let protocols = [
        PolicyProtocol::Tcp,
        PolicyProtocol::Udp,
        PolicyProtocol::Sctp,
    ];
    for case in 0..300 {
        let rules: Vec<RuleSpec> = (0..1 + rng.below(60))
            .map(|i| {
                let peers = (rng.below(5) != 0).then(|| {
                    (0..rng.below(6))
                        .map(|_| {
                            let len = [32u8, 32, 32, 31, 30, 28, 24, 16, 0][rng.below(9) as usize];
                            let addr = base + rng.below(256) as u32;
                            let cidr = Ipv4Prefix {
                                addr: Ipv4Addr::from(addr),
                                len,
                            }
                            .network();
                            let except = (0..rng.below(3))
                                .filter_map(|_| {
                                    let elen = len.max(24) + rng.below(9) as u8;
                                    let e = Ipv4Prefix {
                                        addr: Ipv4Addr::from(base + rng.below(256) as u32),
                                        len: elen.min(32),
                                    }
                                    .network();
                                    cidr.contains(e.addr).then_some(e)
                                })
                                .collect();
                            PeerBlock { cidr, except }
                        })
                        .collect()
                });
                let ports = (rng.below(3) != 0).then(|| {
                    (0..rng.below(4))
                        .map(|_| {
                            let first = [0u16, 1, 5, 9, 65534, 65535][rng.below(6) as usize];
                            let last = first.saturating_add(rng.below(6) as u16);
                            PortRange {
                                protocol: protocols[rng.below(3) as usize],
                                first,
                                last,
                            }
                        })
                        .collect()
                });
                rule((i % 2) as u32, i as u32, peers, ports)
            })
            .collect();
        let d = dir(rules);
        let c = CompiledDirection::new(&d);
        for _ in 0..400 {
            let peer = match rng.below(10) {
                0 => rng.next() as u32,
                1 => [0, u32::MAX, base - 1, base + 256][rng.below(4) as usize],
                _ => base + rng.below(256) as u32,
            };
            let proto = [TCP, UDP, SCTP, ICMP][rng.below(4) as usize];
            let port = (proto != ICMP)
                .then(|| [0u16, 1, 3, 5, 9, 12, 65534, 65535][rng.below(8) as usize]);
            let want = naive(&d, peer, proto, port);
            let got = c
                .allows(Ipv4Addr::from(peer), proto, port)
                .map(|o| (o.policy, o.rule));
            match got {
                None => assert!(want.is_empty(), "case {case}: {} {proto} {port:?} denied, rules {want:?} allow it\n{d:#?}", Ipv4Addr::from(peer)),
                Some(o) => assert!(want.contains(&o), "case {case}: {} {proto} {port:?} allowed by {o:?}, which does not match (matching: {want:?})\n{d:#?}", Ipv4Addr::from(peer)),
            }
        }
    }
}
