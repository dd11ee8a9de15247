//! Conntrack and trace answers for people: `conntrack` as one row per connection with both
//! tuples, `trace` as one line per stage decision.

use super::{Align::Left, Align::Right, Table};
use podswitch_proto::{ConntrackDump, TraceResult, TupleInfo};

fn protocol_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        n => n.to_string(),
    }
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
