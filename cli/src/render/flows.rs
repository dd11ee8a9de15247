//! Services, conntrack and trace answers for people: `services` as one row per endpoint under
//! each Service port, `conntrack` as one row per connection with both tuples, `trace` as one
//! line per stage decision.

use super::{Align::Left, Align::Right, Table};
use podswitch_proto::{
    Algorithm, ConntrackDump, FrontendKind, ServiceInfo, TraceResult, TupleInfo,
};

fn protocol_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        n => n.to_string(),
    }
}

/// `services`: SERVICE PROTO FRONTENDS ALGORITHM ENDPOINT STATE NEW CONNS, one row per
/// endpoint (the Service's columns on its first row only); a Service port without endpoints
/// gets one row with `-`.
pub fn services(services: &[ServiceInfo]) -> String {
    let mut t = Table::new(&[
        ("SERVICE", Left),
        ("PROTO", Left),
        ("FRONTENDS", Left),
        ("ALGORITHM", Left),
        ("ENDPOINT", Left),
        ("STATE", Left),
        ("NEW", Left),
        ("CONNS", Right),
    ]);
    for s in services {
        let spec = &s.spec;
        let frontends: Vec<String> = spec
            .frontends
            .iter()
            .map(|f| match f.kind {
                FrontendKind::NodePort => format!("nodeport:{}", f.port),
                FrontendKind::ClusterIp => format!("{}:{}", f.ip, f.port),
                FrontendKind::ExternalIp => format!("external {}:{}", f.ip, f.port),
                FrontendKind::LoadBalancer => format!("lb {}:{}", f.ip, f.port),
            })
            .collect();
        let mut algorithm = match spec.algorithm {
            Algorithm::Maglev => format!("maglev/{}", s.maglev_table_size),
            Algorithm::Random => "random".to_string(),
        };
        if let Some(secs) = spec.affinity_timeout_secs {
            algorithm.push_str(&format!(" affinity {secs}s"));
        }
        let head = [
            spec.name.clone(),
            spec.protocol.to_string(),
            frontends.join(","),
            algorithm,
        ];
        if spec.backends.is_empty() {
            let mut row = head.to_vec();
            row.extend([
                "-".into(),
                "no endpoints".into(),
                "refused".into(),
                "0".into(),
            ]);
            t.row(row);
            continue;
        }
        for (i, b) in spec.backends.iter().enumerate() {
            let mut state = Vec::new();
            if b.ready {
                state.push("ready");
            }
            if b.serving && !b.ready {
                state.push("serving");
            }
            if b.terminating {
                state.push("terminating");
            }
            if state.is_empty() {
                state.push("not-ready");
            }
            if b.local {
                state.push("local");
            }
            let new = match s.selected.get(i) {
                Some(u) if u.internal && u.external => "yes",
                Some(u) if u.internal => "internal",
                Some(u) if u.external => "external",
                _ => "no",
            };
            let mut row = if i == 0 {
                head.to_vec()
            } else {
                vec![String::new(); 4]
            };
            let target = b
                .target
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            row.extend([
                format!("{}:{}{target}", b.ip, b.port),
                state.join(","),
                new.to_string(),
                s.connections.get(i).copied().unwrap_or(0).to_string(),
            ]);
            t.row(row);
        }
    }
    t.render()
}

fn tuple(t: &TupleInfo) -> String {
    format!("{}:{} → {}:{}", t.src, t.src_port, t.dst, t.dst_port)
}

/// `conntrack`: PROTO ORIGINAL REPLY STATE SERVICE AGE EXPIRES PKTS BYTES, then a line with
/// how many entries the table holds out of its capacity.
pub fn conntrack(d: &ConntrackDump) -> String {
    let mut t = Table::new(&[
        ("PROTO", Left),
        ("ORIGINAL", Left),
        ("REPLY", Left),
        ("STATE", Left),
        ("SERVICE", Left),
        ("AGE", Right),
        ("EXPIRES", Right),
        ("PKTS", Right),
        ("BYTES", Right),
    ]);
    for e in &d.entries {
        let service = match (&e.service, e.snat) {
            (Some(s), true) => format!("{s} (+snat)"),
            (Some(s), false) => s.clone(),
            (None, _) => "-".into(),
        };
        t.row(vec![
            protocol_name(e.protocol),
            tuple(&e.original),
            tuple(&e.reply),
            e.state.clone(),
            service,
            format!("{}s", e.age_secs),
            format!("{}s", e.expires_in_secs),
            format!("{}/{}", e.packets[0], e.packets[1]),
            format!("{}/{}", e.bytes[0], e.bytes[1]),
        ]);
    }
    let mut out = t.render();
    out.push_str(&format!(
        "{} shown, {} in the table (capacity {})\n",
        d.entries.len(),
        d.total,
        d.capacity
    ));
    out
}

/// `trace`: STAGE VERDICT NOTE, then the final verdict.
pub fn trace(r: &TraceResult) -> String {
    let mut t = Table::new(&[("STAGE", Left), ("VERDICT", Left), ("WHY", Left)]);
    for s in &r.steps {
        t.row(vec![s.stage.clone(), s.verdict.clone(), s.note.clone()]);
    }
    let mut out = t.render();
    out.push_str(&format!("verdict: {}\n", r.verdict));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_proto::{ConnInfo, TraceStep};
    use std::net::Ipv4Addr;

    #[test]
    fn a_natted_connection_shows_both_tuples_and_its_service() {
        let t = |a: [u8; 4], ap, b: [u8; 4], bp| TupleInfo {
            src: Ipv4Addr::from(a),
            dst: Ipv4Addr::from(b),
            src_port: ap,
            dst_port: bp,
        };
        let d = ConntrackDump {
            total: 7,
            capacity: 1000,
            entries: vec![ConnInfo {
                protocol: 6,
                original: t([10, 244, 1, 2], 40000, [10, 96, 0, 10], 80),
                reply: t([10, 244, 1, 3], 8080, [10, 244, 1, 2], 40000),
                state: "established".into(),
                service: Some("shop/web:http".into()),
                snat: false,
                age_secs: 3,
                expires_in_secs: 86397,
                packets: [5, 4],
                bytes: [300, 2000],
            }],
        };
        let out = conntrack(&d);
        assert!(out.contains("10.244.1.2:40000 → 10.96.0.10:80"), "{out}");
        assert!(out.contains("10.244.1.3:8080 → 10.244.1.2:40000"), "{out}");
        assert!(out.contains("shop/web:http"), "{out}");
        assert!(
            out.ends_with("1 shown, 7 in the table (capacity 1000)\n"),
            "{out}"
        );
    }

    #[test]
    fn services_show_each_endpoint_with_its_state_and_connections() {
        use podswitch_proto::{BackendSpec, BackendUse, Frontend, L4Protocol, ServiceSpec};
        let b = |host: u8, ready: bool, terminating: bool| BackendSpec {
            ip: Ipv4Addr::new(10, 244, 1, host),
            port: 8080,
            ready,
            serving: true,
            terminating,
            local: true,
            target: Some(format!("shop/web-{host}")),
        };
        let s = ServiceInfo {
            spec: ServiceSpec {
                name: "shop/web:http".into(),
                protocol: L4Protocol::Tcp,
                frontends: vec![Frontend {
                    kind: FrontendKind::ClusterIp,
                    ip: Ipv4Addr::new(10, 96, 0, 10),
                    port: 80,
                }],
                backends: vec![b(3, true, false), b(4, false, true)],
                algorithm: Algorithm::Maglev,
                affinity_timeout_secs: Some(10800),
                internal_local: false,
                external_local: false,
            },
            selected: vec![
                BackendUse {
                    internal: true,
                    external: true,
                },
                BackendUse {
                    internal: false,
                    external: false,
                },
            ],
            maglev_table_size: 251,
            connections: vec![12, 3],
        };
        let out = services(&[s]);
        assert!(out.contains("maglev/251 affinity 10800s"), "{out}");
        assert!(
            out.contains("10.244.1.3:8080 (shop/web-3)  ready,local"),
            "{out}"
        );
        assert!(out.contains("serving,terminating,local  no"), "{out}");
        assert_eq!(out.lines().count(), 3, "{out}");
    }

    #[test]
    fn a_trace_lists_every_stage_and_the_verdict() {
        let r = TraceResult {
            steps: vec![TraceStep {
                stage: "service".into(),
                verdict: "continue".into(),
                note: "service shop/web:http (ClusterIp): DNAT to endpoint 10.244.1.3:8080".into(),
            }],
            verdict: "output psw123".into(),
        };
        let out = trace(&r);
        assert!(out.contains("DNAT to endpoint 10.244.1.3:8080"), "{out}");
        assert!(out.ends_with("verdict: output psw123\n"), "{out}");
    }
}
