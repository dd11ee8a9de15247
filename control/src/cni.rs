//! The CNI verbs, as the `podswitch-cni` plugin forwards them: ADD, DEL, CHECK, GC.
//!
//! ADD is a sequence with a rollback at each step, so a failed ADD leaves nothing behind:
//! 1. one database transaction allocates the address, records the pod and bumps the
//!    generation (an ADD for an attachment that exists returns it unchanged: runtimes retry);
//! 2. `push_now` brings `podswitchd` to that generation (it creates the pod's tap in the
//!    namespace); if that fails the attachment is rolled back under a *new* generation — the
//!    dataplane may have applied the push even though the answer was lost, and a new number
//!    makes the next resync replace whatever it holds — and the answer is code 11;
//! 3. the pod's interface gets its address and routes; if that fails, the same rollback, and
//!    code 5.
//!
//! A veth-afxdp pod (`"attachment": "veth-afxdp"`) has one more step between 2 and 3: control
//! makes its veth pair (`PodNetwork::ensure_veth`), and if it created it, records the pod again
//! under a new generation and pushes, so podswitchd binds an afxdp port to the new node end.
//! The push in step 2 leaves the port out while the pair is not whole (see
//! `PodNetwork::attachable`), so a pair about to be replaced is let go first. Its rollback,
//! DEL and GC delete the pair (podswitchd does not own it, unlike a tap).
//!
//! A rollback is a DEL (below): the tap may exist even when the push failed, and the record
//! goes only once the interface is gone, so a tap it could not remove is found by the
//! runtime's DEL (which follows a failed ADD) instead of being left where no DEL looks.
//!
//! Each step commits: the record is `pending` from step 1 until the interface is configured,
//! so an ADD interrupted by a crash is found again — finished by the runtime's retry of the
//! same ADD, released by its DEL or GC, or (namespace gone) at control's next start.
//! An ADD for a known attachment in another namespace (a sandbox restarted under its old id)
//! moves the attachment there, keeping address, MAC and port name.
//!
//! DEL is idempotent and needs no namespace: the database is the truth. If `podswitchd` is
//! unreachable, DEL still succeeds; the pod's port goes at the next resync. Its persistent tap
//! would not go with it, so DEL also deletes the pod's interface from the namespace (the one
//! the runtime names, else the recorded one) when the namespace still exists. In that order,
//! each step committed: the record becomes a tombstone (`PodRecord::deleting`, a new
//! generation without its port, pushed, so a running `podswitchd` releases the tap itself),
//! then the interface is deleted if still there, and only then are the record and address
//! removed. If the interface cannot be deleted, DEL fails (code 5) and the tombstone stays:
//! the runtime's retry of DEL finds it and tries again; the address is not reused meanwhile.

use crate::compile::{pod_mac, port_name};
use crate::control::{code, Control, Failure};
use crate::ipam::IpamError;
use crate::podnet::PodNetwork;
use crate::store::{attachment_key, PodRecord, Store, StoreError, WriteTx};
use crate::sync::describe;
use podswitch_proto::control::{Attachment, AttachmentId, CniAttach, CniDetach, PodAttachment};
use podswitch_proto::{ifname_problem, MacAddr, PortRole, MTU_RANGE};
use std::collections::BTreeSet;

/// Test hook: with this environment variable set, control aborts right after an ADD's
/// allocation is committed, as a `kill -9` at the worst moment would (`tests/it/cni.rs`).
pub const CRASH_AFTER_ADD_COMMIT: &str = "PODSWITCH_CONTROL_TEST_CRASH_AFTER_ADD_COMMIT";

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
        let mut existing = self.store.read()?.pod(&key)?;
        if let Some(pod) = existing.take_if(|p| p.deleting) {
            // A DEL (or rollback) that could not remove the interface: finish it first, so
            // the old tap does not stay beside the new one.
            let netns = pod.netns.clone();
            self.detach(pod, &netns, "ADD")?;
        }
        if let Some(pod) = &existing {
            if pod.netns == req.netns && !pod.pending {
                // Runtimes retry: the same ADD again is answered with what it produced.
                return Ok(self.attachment(pod));
            }
        }
        if !self.podnet.netns_exists(&req.netns) {
            return Err(Failure::new(
                code::INVALID_ENVIRONMENT,
                format!("network namespace {} does not exist", req.netns),
            ));
        }
        let pod = match existing {
            // An ADD interrupted before it finished (a control crash), retried: finish it.
            Some(pod) if pod.netns == req.netns => pod,
            // The same container id and ifname in another namespace: a sandbox restarted
            // under its old id. The attachment follows it (same address, MAC and port name;
            // podswitchd re-creates the port in the new namespace, which releases the tap in
            // the old one).
            Some(old) => self.store.write(|tx| -> Result<PodRecord, StoreError> {
                let moved = PodRecord {
                    netns: req.netns.clone(),
                    pending: true,
                    ..old.clone()
                };
                tx.put_pod(&moved)?;
                tx.bump_generation()?;
                crate::log(&format!(
                    "{}: ADD in network namespace {} (was {}): moving the attachment",
                    describe(&moved),
                    moved.netns,
                    old.netns
                ));
                Ok(moved)
            })?,
            None => self.store.write(|tx| self.record_new_pod(tx, req, &key))?,
        };
        if std::env::var_os(CRASH_AFTER_ADD_COMMIT).is_some() {
            // Test hook: die as `kill -9` would, with the allocation committed.
            std::process::abort();
        }
        self.finish_add(pod)
    }

    /// The rest of an ADD once its record is committed (pending): push, configure the
    /// interface, mark it complete. Any failure removes the attachment (see the module doc).
    fn finish_add(&self, pod: PodRecord) -> Result<Attachment, Failure> {
        if let Err(e) = self.sync.push_now() {
            let failure = Failure::from(e);
            self.roll_back(pod);
            return Err(failure);
        }
        if pod.attachment == PodAttachment::VethAfxdp {
            if let Err(failure) = self.make_veth(&pod) {
                self.roll_back(pod);
                return Err(failure);
            }
        }
        if let Err(e) = self.podnet.configure(&pod, self.settings.gateway) {
            let pod_name = describe(&pod);
            self.roll_back(pod);
            return Err(Failure::new(
                code::IO_FAILURE,
                format!("configuring the interface of {pod_name}: {e}"),
            ));
        }
        let pod = PodRecord {
            pending: false,
            ..pod
        };
        // Not a change of what the dataplane holds: no new generation.
        self.store.write(|tx| tx.put_pod(&pod))?;
        crate::log(&format!(
            "{} attached: {} on port {}",
            describe(&pod),
            pod.ip,
            pod.port
        ));
        Ok(self.attachment(&pod))
    }

    /// veth-afxdp, after the push of the pending record (which left the port out unless the
    /// pair was already whole, so podswitchd let go of a pair about to be replaced): makes
    /// the pod's veth pair with one queue per podswitchd worker, and if it had to create it,
    /// records the pod again under a new generation and pushes, so podswitchd binds an afxdp
    /// port to the new node end.
    fn make_veth(&self, pod: &PodRecord) -> Result<(), Failure> {
        let workers = self.sync.dataplane_status()?.workers.max(1);
        let queues = u32::try_from(workers).unwrap_or(u32::MAX);
        let mtu = pod.mtu.unwrap_or(self.settings.mtu);
        let created = self.podnet.ensure_veth(pod, mtu, queues).map_err(|e| {
            Failure::new(
                code::IO_FAILURE,
                format!("making the veth pair of {}: {e}", describe(pod)),
            )
        })?;
        if created {
            // The record is unchanged, but writing it tells the sync thread to look at it
            // again (it now has its pair), and the new generation makes it push.
            self.store.write(|tx| -> Result<(), StoreError> {
                tx.put_pod(pod)?;
                tx.bump_generation().map(drop)
            })?;
            self.sync.push_now()?;
        }
        Ok(())
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
            offloads: req.offloads.unwrap_or(true),
            attachment: req.attachment.unwrap_or_default(),
            pending: true,
            deleting: false,
        };
        tx.put_pod(&pod)?;
        tx.allocate_ip(ip, key)?;
        tx.bump_generation()?;
        Ok(pod)
    }

    /// Undoes a recorded ADD as DEL would (the tap `podswitchd` may have created included); a
    /// failure here is logged, as the caller is already answering with the original error. If
    /// the interface could not be removed the tombstone stays, for the runtime's DEL.
    fn roll_back(&self, pod: PodRecord) {
        let netns = pod.netns.clone();
        if let Err(e) = self.detach(pod, &netns, "rolling back ADD") {
            crate::log(&format!("rolling back ADD: {e}"));
        }
    }

    /// Removes an attachment in the order the module doc gives: tombstone (pushed), the
    /// interface in `netns` if that exists, then record and address. A failure leaves the
    /// tombstone, so calling this again (the retried DEL) picks up where it stopped.
    fn detach(&self, pod: PodRecord, netns: &str, verb: &str) -> Result<(), Failure> {
        let pod = if pod.deleting {
            pod
        } else {
            let tombstone = PodRecord {
                deleting: true,
                ..pod
            };
            self.store.write(|tx| -> Result<(), StoreError> {
                tx.put_pod(&tombstone)?;
                tx.bump_generation().map(drop)
            })?;
            tombstone
        };
        // A running podswitchd releases the tap with the port; if it is down, the tap stays
        // (it is persistent) and is deleted below.
        self.push_or_log(verb);
        if self.podnet.netns_exists(netns) {
            match self.podnet.remove(&pod, netns) {
                Ok(true) => crate::log(&format!(
                    "{}: removed {} from {netns}",
                    describe(&pod),
                    pod.ifname
                )),
                Ok(false) => {}
                Err(e) => {
                    return Err(Failure::new(
                        code::IO_FAILURE,
                        format!(
                            "{}: its interface could not be removed: {e}; its address stays \
                             allocated until it is: call DEL again (after `ip -n {netns} link \
                             del {}` if it keeps failing)",
                            describe(&pod),
                            pod.ifname
                        ),
                    ))
                }
            }
        }
        // The dataplane lost the port with the tombstone: no new generation.
        self.store.write(|tx| remove_attachment(tx, &pod.key()))?;
        crate::log(&format!("{} detached, {} released", describe(&pod), pod.ip));
        Ok(())
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
        let Some(pod) = self.store.read()?.pod(&key)? else {
            return Ok(());
        };
        // The namespace the runtime names, else the recorded one.
        let netns = req
            .netns
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| pod.netns.clone());
        self.detach(pod, &netns, "DEL")
    }

    /// CNI CHECK: the attachment is recorded as the runtime's `prevResult` says; inside the
    /// namespace the interface is there with the pod's MAC, up, with exactly its address, the
    /// on-link route to the gateway and the default route; and `podswitchd` holds its port
    /// with the right binding. The interface is checked first, so what is wrong in the pod is
    /// named even while `podswitchd` is down; with `podswitchd` unreachable CHECK then fails
    /// with code 11 (try again later): the pod has no connectivity, so it is not as ADD left it.
    pub fn cni_check(&self, req: &CniAttach) -> Result<(), Failure> {
        check_identity(&req.container_id, &req.ifname)?;
        let key = attachment_key(&req.container_id, &req.ifname);
        let pod = self.store.read()?.pod(&key)?.ok_or_else(|| {
            Failure::new(
                code::UNKNOWN_CONTAINER,
                format!("podswitch has no attachment {key}: ADD was never called for it, or DEL already ran"),
            )
        })?;
        if pod.deleting {
            return Err(Failure::new(
                code::UNKNOWN_CONTAINER,
                format!(
                    "{key} is being deleted: DEL ran but could not remove its interface; call \
                     DEL again"
                ),
            ));
        }
        if !req.netns.is_empty() && req.netns != pod.netns {
            return Err(Failure::new(
                code::INVALID_ENVIRONMENT,
                format!(
                    "CHECK names network namespace {}, but {key} was added in {}",
                    req.netns, pod.netns
                ),
            ));
        }
        if pod.pending {
            return Err(Failure::new(
                code::IO_FAILURE,
                format!(
                    "{}: its ADD never finished; ADD it again or DEL it",
                    describe(&pod)
                ),
            ));
        }
        let differs = |what: &str, expected: String, has: String| {
            Failure::new(
                code::INVALID_ENVIRONMENT,
                format!("prevResult gives {key} {what} {expected}, but podswitch gave it {has}"),
            )
        };
        if let Some(ip) = req.requested_ip.filter(|ip| *ip != pod.ip) {
            return Err(differs("address", ip.to_string(), pod.ip.to_string()));
        }
        if let Some(mac) = req.requested_mac.filter(|mac| *mac != pod.mac) {
            return Err(differs("MAC", mac.to_string(), pod.mac.to_string()));
        }
        self.podnet
            .check(&pod, self.settings.gateway)
            .map_err(|e| Failure::new(code::IO_FAILURE, format!("{}: {e}", describe(&pod))))?;
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
        let kind = crate::compile::pod_port(&self.settings, &pod).kind;
        if port.kind != kind {
            return Err(Failure::new(
                code::IO_FAILURE,
                format!(
                    "podswitchd's port {} is a {:?} port, but {} is attached as {}",
                    pod.port,
                    port.kind,
                    describe(&pod),
                    pod.attachment.name()
                ),
            ));
        }
        match &port.role {
            PortRole::Pod { mac, ip, .. } if *mac == pod.mac && *ip == pod.ip => Ok(()),
            other => Err(Failure::new(
                code::IO_FAILURE,
                format!(
                    "podswitchd's port {} is bound to {other:?}, not to {} {}",
                    pod.port, pod.ip, pod.mac
                ),
            )),
        }
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
            // podswitchd releases a tap with its port; a veth pair is control's to delete
            // (it went with the namespace if that is gone).
            for pod in &released {
                if pod.attachment == PodAttachment::VethAfxdp
                    && self.podnet.netns_exists(&pod.netns)
                {
                    if let Err(e) = self.podnet.remove(pod, &pod.netns) {
                        crate::log(&format!("GC of {}: {e}", describe(pod)));
                    }
                }
            }
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

/// On start, before the first resync: an attachment whose ADD never finished (control died
/// between committing it and configuring the interface) is released if its namespace is gone
/// — the runtime saw the ADD fail and will not DEL a sandbox it destroyed. One whose namespace
/// still exists stays pending: the runtime retries the ADD (which finishes it) or calls DEL or
/// GC (which release it); meanwhile the start-up resync pushes and configures it like any
/// other pod. A tombstone (a DEL that could not remove the interface) whose namespace is gone
/// is released too: with the namespace went the interface. Returns the released records.
pub(crate) fn release_abandoned_adds(
    store: &Store,
    podnet: &dyn PodNetwork,
) -> Result<Vec<PodRecord>, StoreError> {
    let released = store.write(|tx| -> Result<Vec<PodRecord>, StoreError> {
        let mut released = Vec::new();
        for (key, pod) in tx.pods()? {
            if (pod.pending || pod.deleting) && !podnet.netns_exists(&pod.netns) {
                released.extend(remove_attachment(tx, &key)?);
            }
        }
        if !released.is_empty() {
            tx.bump_generation()?;
        }
        Ok(released)
    })?;
    for pod in &released {
        let what = if pod.deleting {
            "its DEL never finished"
        } else {
            "its ADD never finished"
        };
        crate::log(&format!(
            "{}: {what} and network namespace {} is gone: released {}",
            describe(pod),
            pod.netns,
            pod.ip
        ));
    }
    Ok(released)
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
mod tests;
