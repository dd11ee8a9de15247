//! podswitch-control's answers for people: `get pods` as a table, `control-status` as
//! `key  value` lines.

use super::{key_values, Align::Left, Table};
use podswitch_proto::control::{ControlStatus, PodInfo};

/// How many characters of a container id `get pods` shows: enough to tell sandboxes apart and
/// to paste into `crictl`, as `docker ps` and `crictl ps` shorten them.
pub const CONTAINER_ID_LEN: usize = 12;

/// `get pods`: NAMESPACE NAME IP MAC PORT CONTAINER IFNAME LABELS. A namespace or name the
/// runtime did not give, and a pod without labels, show as `-`.
pub fn pods(pods: &[PodInfo]) -> String {
    let mut t = Table::new(&[
        ("NAMESPACE", Left),
        ("NAME", Left),
        ("IP", Left),
        ("MAC", Left),
        ("PORT", Left),
        ("CONTAINER", Left),
        ("IFNAME", Left),
        ("LABELS", Left),
    ]);
    for p in pods {
        let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        t.row(vec![
            or_dash(&p.namespace),
            or_dash(&p.name),
            p.ip.to_string(),
            p.mac.to_string(),
            p.port.clone(),
            p.container_id.chars().take(CONTAINER_ID_LEN).collect(),
            p.ifname.clone(),
            or_dash(&labels.join(",")),
        ]);
    }
    t.render()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-" } else { s }.to_string()
}

/// `control-status`: one `key  value` line per fact.
pub fn status(s: &ControlStatus) -> String {
    let dataplane = match (s.dataplane_in_sync, s.dataplane_generation) {
        (true, Some(g)) => format!("in sync (generation {g})"),
        (true, None) => "in sync".to_string(),
        (false, Some(g)) => format!("out of sync: holds generation {g}"),
        (false, None) => "not answering (is podswitchd running?)".to_string(),
    };
    let addresses = if s.allocated_ips == s.pods {
        format!("{} allocated", s.allocated_ips)
    } else {
        format!("{} allocated for {} pods", s.allocated_ips, s.pods)
    };
    key_values(&[
        ("protocol", s.version.to_string()),
        (
            "node",
            format!("{}, pod CIDR {}", or_dash(&s.node), s.pod_cidr),
        ),
        ("generation", s.generation.to_string()),
        ("dataplane", dataplane),
        ("pods", s.pods.to_string()),
        ("addresses", addresses),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn pod(ns: &str, name: &str, last: u8, labels: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            namespace: ns.into(),
            name: name.into(),
            container_id: format!(
                "{last:02x}3f9c0d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e"
            ),
            ifname: "eth0".into(),
            netns: "/var/run/netns/cni-1".into(),
            ip: Ipv4Addr::new(10, 244, 1, last),
            mac: format!("02:00:0a:f4:01:{last:02x}").parse().unwrap(),
            port: format!("psw{last}"),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn pods_show_short_container_ids_and_sorted_labels() {
        let list = vec![
            pod(
                "default",
                "web-0",
                2,
                &[("tier", "frontend"), ("app", "web")],
            ),
            pod("kube-system", "coredns-5d78c9869d-x7k2p", 10, &[]),
            pod("", "", 11, &[("k", "")]),
        ];
        assert_eq!(
            pods(&list),
            "NAMESPACE    NAME                      IP           MAC                PORT   \
             CONTAINER     IFNAME  LABELS\n\
             default      web-0                     10.244.1.2   02:00:0a:f4:01:02  psw2   \
             023f9c0d8e7b  eth0    app=web,tier=frontend\n\
             kube-system  coredns-5d78c9869d-x7k2p  10.244.1.10  02:00:0a:f4:01:0a  psw10  \
             0a3f9c0d8e7b  eth0    -\n\
             -            -                         10.244.1.11  02:00:0a:f4:01:0b  psw11  \
             0b3f9c0d8e7b  eth0    k=\n"
        );
    }

    #[test]
    fn no_pods_is_the_header() {
        assert_eq!(
            pods(&[]),
            "NAMESPACE  NAME  IP  MAC  PORT  CONTAINER  IFNAME  LABELS\n"
        );
    }

    #[test]
    fn short_container_ids_are_shown_whole() {
        let mut p = pod("default", "a", 3, &[]);
        p.container_id = "abc".into();
        assert!(pods(&[p]).contains("  psw3  abc        eth0    -\n"));
    }

    fn control_status() -> ControlStatus {
        ControlStatus {
            version: 1,
            node: "node-a".into(),
            pod_cidr: "10.244.1.0/24".into(),
            generation: 7,
            dataplane_in_sync: true,
            dataplane_generation: Some(7),
            pods: 3,
            allocated_ips: 3,
            pool_capacity: Some(253),
        }
    }

    #[test]
    fn status_lists_node_sync_and_counts() {
        assert_eq!(
            status(&control_status()),
            "protocol    1\n\
             node        node-a, pod CIDR 10.244.1.0/24\n\
             generation  7\n\
             dataplane   in sync (generation 7)\n\
             pods        3\n\
             addresses   3 allocated\n"
        );
    }

    #[test]
    fn status_says_when_the_dataplane_lags_or_addresses_leak() {
        let mut s = control_status();
        s.dataplane_in_sync = false;
        s.dataplane_generation = Some(5);
        s.allocated_ips = 4;
        let text = status(&s);
        assert!(
            text.contains("dataplane   out of sync: holds generation 5\n"),
            "{text}"
        );
        assert!(
            text.contains("addresses   4 allocated for 3 pods\n"),
            "{text}"
        );
        s.dataplane_generation = None;
        assert!(status(&s).contains("dataplane   not answering (is podswitchd running?)\n"));
    }
}
