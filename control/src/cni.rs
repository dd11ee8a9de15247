//! The CNI verbs, as the `podswitch-cni` plugin forwards them: ADD, DEL, CHECK, GC.
//!
//! ADD is a sequence with a rollback at each step, so a failed ADD leaves nothing behind:
//! 1. one database transaction allocates the address, records the pod and bumps the
//!    generation (an ADD for an attachment that exists returns it unchanged: runtimes retry);
//! 2. `push_now` brings `podswitchd` to that generation (it creates the pod's tap in the
//!    namespace); if that fails the record and address are removed under a *new* generation
//!    — the dataplane may have applied the push even though the answer was lost, and a new
//!    number makes the next resync replace whatever it holds — and the answer is code 11;
//! 3. the pod's interface gets its address and routes; if that fails, the same rollback plus
//!    a push without the pod, and code 5.
//!
//! DEL is idempotent and needs no namespace: the database is the truth. If `podswitchd` is
//! unreachable, DEL still succeeds; the pod's port goes at the next resync (its tap vanished
//! with the namespace anyway, or is removed then).

use crate::compile::{pod_mac, port_name};
use crate::control::{code, Control, Failure};
use crate::ipam::IpamError;
use crate::store::{attachment_key, PodRecord, StoreError, WriteTx};
use crate::sync::describe;
use podswitch_proto::control::{Attachment, AttachmentId, CniAttach, CniDetach};
use podswitch_proto::{ifname_problem, MacAddr, PortRole, MTU_RANGE};
use std::collections::BTreeSet;

impl Control {
    /// CNI ADD; see the module doc.
    pub fn cni_add(&self, req: &CniAttach) -> Result<Attachment, Failure> {
        check_identity(&req.container_id, &req.ifname)?;
        if req.netns.is_empty() {
            return Err(Failure::new(
                code::INVALID_ENVIRONMENT,
                "CNI_NETNS is empty: ADD needs the pod's network namespace",
            ));
        }
        if let Some(mtu) = req.mtu {
            if !MTU_RANGE.contains(&mtu) {
                return Err(Failure::new(
                    code::INVALID_CONFIG,
                    format!(
                        "mtu {mtu} is out of range {}..={}",
                        MTU_RANGE.start(),
                        MTU_RANGE.end()
                    ),
                ));
            }
        }
        if let Some(mac) = req.requested_mac {
            if !mac.is_unicast() || mac == MacAddr::ZERO {
                return Err(Failure::new(
                    code::INVALID_ENVIRONMENT,
                    format!("requested MAC {mac} is not a unicast address"),
                ));
            }
        }
        let key = attachment_key(&req.container_id, &req.ifname);
        let _guard = self.lock();
        if let Some(existing) = self.store.read()?.pod(&key)? {
            return Ok(self.attachment(&existing));
        }
        if !self.podnet.netns_exists(&req.netns) {
            return Err(Failure::new(
                code::INVALID_ENVIRONMENT,
                format!("network namespace {} does not exist", req.netns),
            ));
        }
        let pod = self.store.write(|tx| self.record_new_pod(tx, req, &key))?;
        if let Err(e) = self.sync.push_now() {
            let failure = Failure::from(e);
            self.roll_back(&key);
            return Err(failure);
        }
        if let Err(e) = self.podnet.configure(&pod, self.settings.gateway) {
            self.roll_back(&key);
            if let Err(push) = self.sync.push_now() {
                crate::log(&format!(
                    "rolling back {}: {push}; the next resync removes its port",
                    describe(&pod)
                ));
            }
            return Err(Failure::new(
                code::IO_FAILURE,
                format!("configuring the interface of {}: {e}", describe(&pod)),
            ));
        }
        crate::log(&format!(
            "{} attached: {} on port {}",
            describe(&pod),
            pod.ip,
            pod.port
        ));
        Ok(self.attachment(&pod))
    }

    /// Allocates an address (and MAC, port name) and records the pod, in `tx`.
    fn record_new_pod(
        &self,
        tx: &mut WriteTx,
        req: &CniAttach,
        key: &str,
    ) -> Result<PodRecord, Failure> {
        let port = port_name(key);
        let pods = tx.pods()?;
        if let Some(other) = pods.values().find(|p| p.port == port) {
            return Err(Failure::new(
                code::IO_FAILURE,
                format!(
                    "port name {port} of {key} collides with that of {}: use another \
                     interface name",
                    other.key()
                ),
            ));
        }
        let ip = self
            .pool
            .allocate(&tx.ipam()?, tx.ipam_last()?, req.requested_ip)
            .map_err(ipam_failure)?;
        let mac = req.requested_mac.unwrap_or_else(|| pod_mac(ip));
        if let Some(other) = pods.values().find(|p| p.mac == mac) {
            return Err(Failure::new(
                code::INVALID_ENVIRONMENT,
                format!("requested MAC {mac} is already used by {}", other.key()),
            ));
        }
        let pod = PodRecord {
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
            netns: req.netns.clone(),
            namespace: req.pod_namespace.clone().unwrap_or_default(),
            name: req.pod_name.clone().unwrap_or_default(),
            uid: req.pod_uid.clone().unwrap_or_default(),
            ip,
            mac,
            port,
            mtu: req.mtu,
        };
        tx.put_pod(&pod)?;
        tx.allocate_ip(ip, key)?;
        tx.bump_generation()?;
        Ok(pod)
    }

    /// Undoes a recorded ADD in the database (a new generation); a failure here is logged, as
    /// the caller is already answering with the original error.
    fn roll_back(&self, key: &str) {
        let result = self.store.write(|tx| -> Result<(), StoreError> {
            if remove_attachment(tx, key)?.is_some() {
                tx.bump_generation()?;
            }
            Ok(())
        });
        if let Err(e) = result {
            crate::log(&format!("rolling back the ADD of {key}: {e}"));
        }
    }

    fn attachment(&self, pod: &PodRecord) -> Attachment {
        Attachment {
            container_id: pod.container_id.clone(),
            ifname: pod.ifname.clone(),
            netns: pod.netns.clone(),
            mac: pod.mac,
            ip: pod.ip,
            prefix_len: 32,
            gateway: self.settings.gateway,
            port: pod.port.clone(),
        }
    }

    /// CNI DEL; see the module doc.
    pub fn cni_del(&self, req: &CniDetach) -> Result<(), Failure> {
        check_identity(&req.container_id, &req.ifname)?;
        let key = attachment_key(&req.container_id, &req.ifname);
        let _guard = self.lock();
        let removed = self
            .store
            .write(|tx| -> Result<Option<PodRecord>, StoreError> {
                let removed = remove_attachment(tx, &key)?;
                if removed.is_some() {
                    tx.bump_generation()?;
                }
                Ok(removed)
            })?;
        if let Some(pod) = removed {
            crate::log(&format!("{} detached, {} released", describe(&pod), pod.ip));
            self.push_or_log("DEL");
        }
        Ok(())
    }

    /// CNI CHECK: the attachment is recorded, `podswitchd` holds its port with the right
    /// binding, and inside the namespace the interface is up with its address and route.
    pub fn cni_check(&self, req: &CniAttach) -> Result<(), Failure> {
        check_identity(&req.container_id, &req.ifname)?;
        let key = attachment_key(&req.container_id, &req.ifname);
        let pod = self.store.read()?.pod(&key)?.ok_or_else(|| {
            Failure::new(
                code::UNKNOWN_CONTAINER,
                format!("podswitch has no attachment {key}: ADD was never called for it, or DEL already ran"),
            )
        })?;
        if !req.netns.is_empty() && req.netns != pod.netns {
            return Err(Failure::new(
                code::INVALID_ENVIRONMENT,
                format!(
                    "CHECK names network namespace {}, but {key} was added in {}",
                    req.netns, pod.netns
                ),
            ));
        }
        let ports = self.sync.ports()?;
        let port = ports.iter().find(|p| p.name == pod.port).ok_or_else(|| {
            Failure::new(
                code::IO_FAILURE,
                format!(
                    "podswitchd has no port {} for {}: control restores it at the next resync \
                     (see podswitch-control's log if it stays missing)",
                    pod.port,
                    describe(&pod)
                ),
            )
        })?;
        match &port.role {
            PortRole::Pod { mac, ip, .. } if *mac == pod.mac && *ip == pod.ip => {}
            other => {
                return Err(Failure::new(
                    code::IO_FAILURE,
                    format!(
                        "podswitchd's port {} is bound to {other:?}, not to {} {}",
                        pod.port, pod.ip, pod.mac
                    ),
                ))
            }
        }
        self.podnet
            .check(&pod, self.settings.gateway)
            .map_err(|e| Failure::new(code::IO_FAILURE, format!("{}: {e}", describe(&pod))))
    }

    /// CNI GC: releases every attachment not in `valid`, in one transaction; returns them.
    pub fn cni_gc(&self, valid: &[AttachmentId]) -> Result<Vec<AttachmentId>, Failure> {
        let valid: BTreeSet<String> = valid
            .iter()
            .map(|a| attachment_key(&a.container_id, &a.ifname))
            .collect();
        let _guard = self.lock();
        let released = self
            .store
            .write(|tx| -> Result<Vec<PodRecord>, StoreError> {
                let mut released = Vec::new();
                for key in tx.pods()?.into_keys() {
                    if !valid.contains(&key) {
                        released.extend(remove_attachment(tx, &key)?);
                    }
                }
                if !released.is_empty() {
                    tx.bump_generation()?;
                }
                Ok(released)
            })?;
        if !released.is_empty() {
            for pod in &released {
                crate::log(&format!(
                    "{} released by GC, {} freed",
                    describe(pod),
                    pod.ip
                ));
            }
            self.push_or_log("GC");
        }
        let mut ids: Vec<AttachmentId> = released
            .into_iter()
            .map(|p| AttachmentId {
                container_id: p.container_id,
                ifname: p.ifname,
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Pushes after a removal; an unreachable dataplane is not the caller's failure.
    fn push_or_log(&self, verb: &str) {
        if let Err(e) = self.sync.push_now() {
            crate::log(&format!(
                "{verb} recorded, but {e}; the next resync removes the port"
            ));
        }
    }
}

/// Removes the attachment `key` and frees its address (if the address is still its own).
fn remove_attachment(tx: &mut WriteTx, key: &str) -> Result<Option<PodRecord>, StoreError> {
    let Some(pod) = tx.pod(key)? else {
        return Ok(None);
    };
    tx.remove_pod(key)?;
    if tx.ip_owner(pod.ip)?.as_deref() == Some(key) {
        tx.release_ip(pod.ip)?;
    }
    Ok(Some(pod))
}

fn ipam_failure(e: IpamError) -> Failure {
    let code = match e {
        IpamError::Exhausted { .. } => code::POOL_EXHAUSTED,
        // IP= comes from CNI_ARGS.
        IpamError::Outside { .. } | IpamError::Reserved { .. } | IpamError::Taken { .. } => {
            code::INVALID_ENVIRONMENT
        }
    };
    Failure::new(code, e.to_string())
}

/// `CNI_CONTAINERID` and `CNI_IFNAME` as the CNI spec restricts them.
fn check_identity(container_id: &str, ifname: &str) -> Result<(), Failure> {
    let id_ok = !container_id.is_empty()
        && container_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !id_ok {
        return Err(Failure::new(
            code::INVALID_ENVIRONMENT,
            format!(
                "CNI_CONTAINERID {container_id:?} is invalid: it must be non-empty letters, \
                 digits, '-', '_' or '.'"
            ),
        ));
    }
    if let Some(problem) = ifname_problem(ifname) {
        return Err(Failure::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_IFNAME {ifname:?} is invalid: {problem}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{self, add_request, Harness};
    use podswitch_proto::control::ControlRequestBody;
    use std::net::Ipv4Addr;

    fn generation(h: &Harness) -> u64 {
        h.store().read().unwrap().generation().unwrap()
    }

    #[test]
    fn add_allocates_records_pushes_and_configures() {
        let h = Harness::new();
        let a = h.add("aaa").unwrap();
        assert_eq!(a.ip, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(a.mac.to_string(), "0a:58:0a:f4:01:02");
        assert_eq!(
            (a.prefix_len, a.gateway),
            (32, Ipv4Addr::new(10, 244, 1, 1))
        );
        assert_eq!(a.port, "psw1fd96c58e588");
        assert_eq!(a.netns, "/var/run/netns/aaa");
        {
            let dp = h.dp.state();
            assert_eq!(dp.port_names(), vec!["psw0", "psw1fd96c58e588"]);
            assert_eq!(dp.generation, generation(&h));
        }
        assert_eq!(h.net.state().configured, vec!["aaa/eth0"]);
        let b = h.add("bbb").unwrap();
        assert_eq!(b.ip, Ipv4Addr::new(10, 244, 1, 3));
    }

    #[test]
    fn add_is_idempotent() {
        let h = Harness::new();
        let first = h.add("aaa").unwrap();
        let pushes = h.dp.state().applied.len();
        let g = generation(&h);
        let again = h.add("aaa").unwrap();
        assert_eq!(first, again);
        assert_eq!(generation(&h), g);
        assert_eq!(h.dp.state().applied.len(), pushes);
        let view = h.store().read().unwrap();
        assert_eq!(view.pods().unwrap().len(), 1);
        assert_eq!(view.ipam().unwrap().len(), 1);
    }

    #[test]
    fn add_with_an_unreachable_dataplane_is_rolled_back_and_leaves_no_allocation() {
        let h = Harness::new();
        let g = generation(&h);
        h.dp.state().unreachable = true;
        let err = h.add("aaa").unwrap_err();
        assert_eq!(err.code, code::TRY_AGAIN_LATER);
        assert!(
            err.message
                .starts_with("podswitchd at /fake/dataplane.sock is not reachable: "),
            "{err}"
        );
        let view = h.store().read().unwrap();
        assert!(view.pods().unwrap().is_empty());
        assert!(view.ipam().unwrap().is_empty());
        // Recorded, then rolled back: two new generations, never a reused one.
        assert_eq!(view.generation().unwrap(), g + 2);
        assert!(h.net.state().configured.is_empty());
        // Once podswitchd is back, the same ADD works.
        h.dp.state().unreachable = false;
        let a = h.add("aaa").unwrap();
        assert_eq!(h.dp.state().port_names(), vec!["psw0", a.port.as_str()]);
    }

    #[test]
    fn add_refused_by_the_dataplane_is_rolled_back_with_code_5() {
        let h = Harness::new();
        h.dp.state().refuse = Some("op 5 (add_port): cannot open the namespace".into());
        let err = h.add("aaa").unwrap_err();
        assert_eq!(err.code, code::IO_FAILURE);
        assert!(err.message.contains("cannot open the namespace"), "{err}");
        assert!(h.store().read().unwrap().ipam().unwrap().is_empty());
    }

    #[test]
    fn add_whose_interface_cannot_be_configured_is_rolled_back_everywhere() {
        let h = Harness::new();
        h.add("keep").unwrap();
        h.net.state().fail_configure = true;
        let err = h.add("aaa").unwrap_err();
        assert_eq!(err.code, code::IO_FAILURE);
        assert!(err.message.contains("pod default/aaa (aaa/eth0)"), "{err}");
        assert!(err.message.contains("Operation not permitted"), "{err}");
        let view = h.store().read().unwrap();
        assert_eq!(
            view.pods().unwrap().keys().collect::<Vec<_>>(),
            ["keep/eth0"]
        );
        assert_eq!(view.ipam().unwrap().len(), 1);
        // The dataplane got the pod, then a push without it.
        let dp = h.dp.state();
        assert_eq!(
            dp.port_names(),
            vec!["psw0".to_string(), testkit::pod("keep", [0; 4]).port]
        );
        assert_eq!(dp.generation, view.generation().unwrap());
    }

    #[test]
    fn add_validates_the_environment() {
        let h = Harness::new();
        let mut req = add_request("aaa");
        req.netns = String::new();
        assert_eq!(
            h.c().cni_add(&req).unwrap_err().code,
            code::INVALID_ENVIRONMENT
        );
        let mut req = add_request("aaa");
        req.ifname = "a-name-far-too-long".into();
        let err = h.c().cni_add(&req).unwrap_err();
        assert!(err.message.contains("CNI_IFNAME"), "{err}");
        let req = add_request("bad id");
        assert!(h
            .c()
            .cni_add(&req)
            .unwrap_err()
            .message
            .contains("CNI_CONTAINERID"));
        h.net.state().missing.insert("/var/run/netns/aaa".into());
        let err = h.add("aaa").unwrap_err();
        assert_eq!(err.code, code::INVALID_ENVIRONMENT);
        assert!(
            err.message.contains("/var/run/netns/aaa does not exist"),
            "{err}"
        );
        assert!(h.store().read().unwrap().pods().unwrap().is_empty());
    }

    #[test]
    fn requested_ip_and_mac_are_honoured_and_conflicts_refused() {
        let h = Harness::new();
        let mut req = add_request("aaa");
        req.requested_ip = Some(Ipv4Addr::new(10, 244, 1, 50));
        req.requested_mac = Some("02:11:22:33:44:55".parse().unwrap());
        req.mtu = Some(1400);
        let a = h.c().cni_add(&req).unwrap();
        assert_eq!(a.ip, Ipv4Addr::new(10, 244, 1, 50));
        assert_eq!(a.mac.to_string(), "02:11:22:33:44:55");
        assert_eq!(h.dp.state().ports[1].mtu, 1400);

        let mut taken = add_request("bbb");
        taken.requested_ip = Some(Ipv4Addr::new(10, 244, 1, 50));
        let err = h.c().cni_add(&taken).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENVIRONMENT);
        assert!(
            err.message.contains("already allocated to aaa/eth0"),
            "{err}"
        );

        let mut outside = add_request("bbb");
        outside.requested_ip = Some(Ipv4Addr::new(10, 244, 2, 5));
        assert!(h
            .c()
            .cni_add(&outside)
            .unwrap_err()
            .message
            .contains("outside"));

        let mut same_mac = add_request("bbb");
        same_mac.requested_mac = Some("02:11:22:33:44:55".parse().unwrap());
        assert!(h
            .c()
            .cni_add(&same_mac)
            .unwrap_err()
            .message
            .contains("already used"));
        assert_eq!(h.store().read().unwrap().pods().unwrap().len(), 1);
    }

    #[test]
    fn a_full_pool_answers_101_until_a_pod_is_deleted() {
        let h = Harness::with_settings(testkit::settings_with_cidr("10.244.1.0/29"));
        for c in ["a", "b", "c", "d", "e"] {
            h.add(c).unwrap();
        }
        let err = h.add("f").unwrap_err();
        assert_eq!(err.code, code::POOL_EXHAUSTED);
        assert!(err.message.contains("10.244.1.0/29 is exhausted"), "{err}");
        h.del("c").unwrap();
        assert_eq!(h.add("f").unwrap().ip, Ipv4Addr::new(10, 244, 1, 4));
    }

    #[test]
    fn no_address_is_given_twice_across_a_restart() {
        let mut h = Harness::new();
        let a = h.add("aaa").unwrap();
        h.restart_control();
        let b = h.add("bbb").unwrap();
        assert_ne!(a.ip, b.ip);
        // And the attachment from before the restart is still known.
        assert_eq!(h.add("aaa").unwrap(), a);
    }

    #[test]
    fn del_is_idempotent_and_needs_no_namespace() {
        let h = Harness::new();
        let a = h.add("aaa").unwrap();
        h.net.state().missing.insert(a.netns.clone());
        h.del("aaa").unwrap();
        let view = h.store().read().unwrap();
        assert!(view.pods().unwrap().is_empty());
        assert!(view.ipam().unwrap().is_empty());
        assert_eq!(h.dp.state().port_names(), vec!["psw0"]);
        let pushes = h.dp.state().applied.len();
        h.del("aaa").unwrap();
        h.del("never-added").unwrap();
        assert_eq!(h.dp.state().applied.len(), pushes, "nothing to push");
    }

    #[test]
    fn del_with_an_unreachable_dataplane_succeeds_and_the_resync_removes_the_port() {
        let h = Harness::new();
        let a = h.add("aaa").unwrap();
        h.dp.state().unreachable = true;
        h.del("aaa").unwrap();
        assert!(h.store().read().unwrap().pods().unwrap().is_empty());
        {
            let mut dp = h.dp.state();
            assert!(dp.port_names().contains(&a.port));
            dp.unreachable = false;
        }
        h.c().sync().push_now().unwrap();
        assert_eq!(h.dp.state().port_names(), vec!["psw0"]);
    }

    #[test]
    fn gc_releases_every_attachment_not_listed() {
        let h = Harness::new();
        for c in ["aaa", "bbb", "ccc"] {
            h.add(c).unwrap();
        }
        let keep = AttachmentId {
            container_id: "bbb".into(),
            ifname: "eth0".into(),
        };
        let released = h.c().cni_gc(std::slice::from_ref(&keep)).unwrap();
        let ids: Vec<_> = released.iter().map(|a| a.container_id.as_str()).collect();
        assert_eq!(ids, ["aaa", "ccc"]);
        let view = h.store().read().unwrap();
        assert_eq!(
            view.pods().unwrap().keys().collect::<Vec<_>>(),
            ["bbb/eth0"]
        );
        assert_eq!(view.ipam().unwrap().len(), 1);
        assert_eq!(h.dp.state().ports.len(), 2);
        assert!(h.c().cni_gc(&[keep]).unwrap().is_empty());
    }

    #[test]
    fn check_verifies_record_port_and_interface() {
        let h = Harness::new();
        h.add("aaa").unwrap();
        h.c().cni_check(&add_request("aaa")).unwrap();

        let unknown = h.c().cni_check(&add_request("zzz")).unwrap_err();
        assert_eq!(unknown.code, code::UNKNOWN_CONTAINER);

        h.net.state().check_error = Some("eth0 in /var/run/netns/aaa: no address".into());
        let err = h.c().cni_check(&add_request("aaa")).unwrap_err();
        assert_eq!(err.code, code::IO_FAILURE);
        assert!(err.message.contains("no address"), "{err}");
        h.net.state().check_error = None;

        h.dp.state().ports.truncate(1);
        let err = h.c().cni_check(&add_request("aaa")).unwrap_err();
        assert_eq!(err.code, code::IO_FAILURE);
        assert!(err.message.contains("podswitchd has no port"), "{err}");

        h.dp.state().unreachable = true;
        let err = h.c().cni_check(&add_request("aaa")).unwrap_err();
        assert_eq!(err.code, code::TRY_AGAIN_LATER);
    }

    #[test]
    fn handle_answers_cni_requests_with_protocol_responses() {
        let h = Harness::new();
        let resp = h.c().handle(ControlRequestBody::CniAdd(add_request("aaa")));
        assert!(matches!(
            resp,
            podswitch_proto::control::ControlResponse::Attached(_)
        ));
        let resp = h
            .c()
            .handle(ControlRequestBody::CniCheck(add_request("nope")));
        assert!(matches!(
            resp,
            podswitch_proto::control::ControlResponse::Error { code: 3, .. }
        ));
    }
}
