//! Keeping `podswitchd` in step with the desired state. One thread owns the dataplane
//! connection; everyone else talks to it through [`Syncer`].
//!
//! The rule is generation equality: the store's generation numbers the desired configuration,
//! and a push tags the dataplane's tables with it. At start and every `resync_interval` the
//! thread asks `podswitchd` for its status; if its generation differs from the store's (a
//! restarted `podswitchd` starts at 0, the store at 1 or more), or it has no node yet, the
//! thread pushes the whole configuration as one replace transaction. [`Syncer::push_now`]
//! does the same on demand and returns once the dataplane applied it.
//!
//! **Incremental pushes.** The thread keeps the compiled configuration between pushes
//! ([`DesiredState`]): it subscribes to the store's change feed, and each sync decodes and
//! recompiles only the objects and attachments written since the last one. The state also
//! knows what the dataplane last accepted from it (with that generation). A change while the
//! dataplane still reports that generation is pushed as a non-replace transaction of only the
//! differing ops (`crate::desired::diff` over the touched keys): an EndpointSlice change is
//! one `set_service`. Anything else — the first push after either process started, a
//! dataplane at another generation, a changed node, a failed push — sends the full replace,
//! so a lost or refused diff costs one replace, never a drift. A sync that fails half way
//! drops the state; the next one loads it from the store again.
//!
//! So a restarted `podswitchd` gets everything back within one interval (its pod taps are
//! persistent and stayed in their namespaces; the replace re-attaches them), and a restarted
//! control process that finds the dataplane already at its generation pushes nothing.
//!
//! **Pod interface configuration after a push.** When the dataplane held exactly the
//! generation this thread last pushed, the push only changed what the store changed, and the
//! CNI ADD handler configures a new pod's interface itself. Otherwise (first push after either
//! process started, or the dataplane was changed by someone else) any interface may have been
//! recreated, so after the push every pod's interface is configured again — idempotent
//! replaces, one short-lived thread and netlink socket per pod.
//!
//! A pod whose namespace path no longer exists (the pod died and no DEL came yet) is left out
//! of the transaction and logged: one dead pod must not keep the others from being restored.

use crate::changes::ChangeFeed;
use crate::config::Settings;
use crate::dataplane::{Dataplane, DataplaneError};
use crate::podnet::PodNetwork;
use crate::state::{DesiredState, Offered};
use crate::store::{PodRecord, Store, StoreError};
use podswitch_proto::control::PodAttachment;
use podswitch_proto::{PortInfo, Status, Transaction};
use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

/// A sync request failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// `podswitchd` is unreachable or refused.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sync thread is gone (only during shutdown).
    #[error("the sync thread has stopped")]
    Stopped,
}

/// What the sync thread last saw of the dataplane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The dataplane's generation at the last successful status or apply.
    pub dataplane_generation: Option<u64>,
    /// The last failure, cleared by the next success.
    pub last_error: Option<String>,
}

type Reply<T> = mpsc::Sender<Result<T, SyncError>>;

enum Command {
    Push(Reply<u64>),
    /// Objects just stored, already decoded by the parser, with the JSON stored for each.
    Offer(Vec<Offered>),
    Ports(Reply<Vec<PortInfo>>),
    Status(Reply<Status>),
}

/// Handle to the sync thread. Dropping it stops the thread.
#[derive(Debug)]
pub struct Syncer {
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    observed: Arc<Mutex<Observed>>,
}

impl Syncer {
    /// Starts the thread; its first act is a resync.
    pub fn start(
        settings: Settings,
        store: Arc<Store>,
        dataplane: Box<dyn Dataplane>,
        podnet: Arc<dyn PodNetwork>,
    ) -> Syncer {
        let (tx, rx) = mpsc::channel();
        let observed = Arc::new(Mutex::new(Observed::default()));
        let worker = Worker {
            settings,
            feed: store.subscribe(),
            store,
            dataplane,
            podnet,
            confirmed: None,
            state: None,
            offered: HashMap::new(),
            observed: observed.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("psw-sync".into())
            .spawn(move || worker.run(&rx))
            .ok();
        if thread.is_none() {
            crate::log("cannot start the sync thread: the dataplane will not be configured");
        }
        Syncer {
            commands: Some(tx),
            thread,
            observed,
        }
    }

    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, SyncError> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .as_ref()
            .ok_or(SyncError::Stopped)?
            .send(make(tx))
            .map_err(|_| SyncError::Stopped)?;
        rx.recv().map_err(|_| SyncError::Stopped)?
    }

    /// Brings the dataplane to the store's current generation now (nothing is sent if it is
    /// there already); returns that generation once the dataplane has applied it.
    pub fn push_now(&self) -> Result<u64, SyncError> {
        self.ask(Command::Push)
    }

    /// The dataplane's ports, asked now.
    pub fn ports(&self) -> Result<Vec<PortInfo>, SyncError> {
        self.ask(Command::Ports)
    }

    /// Hands the thread objects just stored, as the manifest parser decoded them, with the JSON
    /// each was stored as: the next sync takes each one whose key it finds changed *with that
    /// same JSON* instead of decoding the store's copy again (20k objects of a large apply
    /// cost ~0.3–0.5 s to decode), and decodes any other as before. Call before `push_now`.
    pub fn offer(&self, objects: Vec<Offered>) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(Command::Offer(objects));
        }
    }

    /// The dataplane's status, asked now.
    pub fn dataplane_status(&self) -> Result<Status, SyncError> {
        self.ask(Command::Status)
    }

    /// What the thread last saw, without asking the dataplane.
    pub fn observed(&self) -> Observed {
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.commands = None; // the thread's recv sees the channel closed
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread's state.
struct Worker {
    settings: Settings,
    store: Arc<Store>,
    dataplane: Box<dyn Dataplane>,
    podnet: Arc<dyn PodNetwork>,
    /// The generation this thread last saw the dataplane accept (or already hold): while the
    /// dataplane reports it, the dataplane's state is known to be ours.
    confirmed: Option<u64>,
    /// The store's changes since `state` was last updated.
    feed: ChangeFeed,
    /// Objects the manifest handler decoded and stored since the last sync (`Syncer::offer`).
    offered: HashMap<String, Offered>,
    /// The desired configuration, compiled, with what the last accepted push left in the
    /// dataplane (the base of the next incremental push). `None` until the first sync, and
    /// after a sync failed half way: the next one loads it from the store again.
    state: Option<DesiredState>,
    observed: Arc<Mutex<Observed>>,
}

impl Worker {
    fn run(mut self, commands: &mpsc::Receiver<Command>) {
        let interval = self.settings.resync_interval;
        let _ = self.sync();
        let mut next_resync = Instant::now() + interval;
        loop {
            let wait = next_resync.saturating_duration_since(Instant::now());
            match commands.recv_timeout(wait) {
                Ok(Command::Push(reply)) => {
                    let _ = reply.send(self.sync());
                }
                Ok(Command::Offer(objects)) => {
                    self.offered
                        .extend(objects.into_iter().map(|o| (o.key.clone(), o)));
                }
                Ok(Command::Ports(reply)) => {
                    let result = self.dataplane.ports().map_err(SyncError::from);
                    self.note(result.as_ref().err());
                    let _ = reply.send(result);
                }
                Ok(Command::Status(reply)) => {
                    let result = self.dataplane.status().map_err(SyncError::from);
                    if let Ok(status) = &result {
                        self.observe(status.generation);
                    }
                    self.note(result.as_ref().err());
                    let _ = reply.send(result);
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.sync();
                    next_resync = Instant::now() + interval;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Compares generations and pushes the whole configuration if they differ.
    fn sync(&mut self) -> Result<u64, SyncError> {
        let result = self.try_sync();
        self.note(result.as_ref().err());
        result
    }

    fn try_sync(&mut self) -> Result<u64, SyncError> {
        // Taken before the snapshot is opened: see `crate::changes`.
        let changed = self.feed.take();
        let view = self.store.read()?;
        let generation = view.generation()?;
        // Taken: after a failure below, the state may be half updated; the next sync loads
        // it again.
        let state = self.state.take();
        let status = self.dataplane.status()?;
        self.observe(status.generation);
        let mut state = match state {
            Some(mut state) => {
                let mut offered = std::mem::take(&mut self.offered);
                state.update(
                    &view,
                    &changed,
                    &mut offered,
                    self.podnet.as_ref(),
                    &mut log_gone,
                )?;
                state
            }
            None => {
                self.offered.clear();
                DesiredState::load(&self.settings, &view, self.podnet.as_ref(), &mut log_gone)?
            }
        };
        if status.generation == generation && status.node.is_some() {
            self.confirmed = Some(generation);
            self.state = Some(state);
            return Ok(generation);
        }
        let known = self.confirmed == Some(status.generation) && status.node.is_some();
        let changes = if known {
            state.changes(status.generation)
        } else {
            None
        };
        // Until the dataplane accepts one, what it holds is not known.
        state.pushed(None);
        let (applied, how) = match changes {
            Some(ops) => {
                let count = ops.len();
                let delta = Transaction {
                    generation: Some(generation),
                    replace: false,
                    ops,
                };
                match self.dataplane.apply(&delta) {
                    Ok(applied) => (applied, format!("{count} changed ops")),
                    Err(DataplaneError::Refused { message, .. }) => {
                        crate::log(&format!(
                            "podswitchd refused the incremental push ({message}); pushing the \
                             whole configuration"
                        ));
                        (
                            self.replace(&mut state, generation)?,
                            "whole configuration".into(),
                        )
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => (
                self.replace(&mut state, generation)?,
                "whole configuration".into(),
            ),
        };
        state.pushed(Some(applied));
        self.observe(applied);
        self.confirmed = Some(applied);
        let (pods, service_count, policy_count) = state.counts();
        crate::log(&format!(
            "podswitchd was at generation {}, pushed generation {generation} ({how}: {pods} pods, \
             {service_count} Service ports, {policy_count} isolated pod ports)",
            status.generation,
        ));
        if !known {
            for pod in state.present_records() {
                if let Err(e) = self.podnet.configure(pod, self.settings.gateway) {
                    crate::log(&format!("{}: {e}", describe(pod)));
                }
            }
        }
        self.state = Some(state);
        Ok(generation)
    }

    /// Pushes the whole configuration, without the pods whose namespace is gone.
    fn replace(&mut self, state: &mut DesiredState, generation: u64) -> Result<u64, SyncError> {
        state.recheck_namespaces(self.podnet.as_ref(), &mut log_gone);
        Ok(self.dataplane.apply(&state.transaction(generation))?)
    }

    fn observe(&self, generation: u64) {
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dataplane_generation = Some(generation);
    }

    /// Records the outcome; logs only changes, so a dataplane that is down for a while is
    /// reported once, and again when it is back.
    fn note(&self, error: Option<&SyncError>) {
        let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
        let now = error.map(ToString::to_string);
        if matches!(
            error,
            Some(SyncError::Dataplane(DataplaneError::Unreachable { .. }))
        ) {
            observed.dataplane_generation = None;
        }
        if observed.last_error != now {
            match &now {
                Some(e) => crate::log(e),
                None => crate::log(&format!(
                    "podswitchd at {}: requests succeed again",
                    self.settings.dataplane_socket.display()
                )),
            }
            observed.last_error = now;
        }
    }
}

/// Logs an attachment left out because its namespace (or, for a veth-afxdp pod, its veth
/// pair) is gone.
fn log_gone(pod: &PodRecord) {
    let what = match pod.attachment {
        PodAttachment::Tap => format!("network namespace {}", pod.netns),
        PodAttachment::VethAfxdp => format!(
            "network namespace {} or its veth pair (node end {})",
            pod.netns, pod.port
        ),
    };
    if pod.pending && pod.attachment == PodAttachment::VethAfxdp {
        // Its ADD is under way and makes the pair next.
        return;
    }
    crate::log(&format!(
        "{}: {what} no longer exists; its port is left out until CNI DEL or GC removes the \
         pod (or, for a veth pair, its ADD is retried)",
        describe(pod),
    ));
}

/// `pod default/web (abc/eth0)`, or just the attachment when the runtime gave no pod name.
pub fn describe(pod: &PodRecord) -> String {
    if pod.name.is_empty() {
        format!("attachment {}", pod.key())
    } else {
        format!("pod {}/{} ({})", pod.namespace, pod.name, pod.key())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use crate::testkit::{self, FakeDataplane, FakeDataplaneState, FakePodNetwork, Harness};
    use crate::Control;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn generation(h: &Harness) -> u64 {
        h.store().read().unwrap().generation().unwrap()
    }

    #[test]
    fn start_configures_an_empty_dataplane() {
        let h = Harness::new();
        let dp = h.dp.state();
        assert_eq!(dp.generation, 1);
        assert_eq!(dp.port_names(), vec!["psw0"]);
        assert!(dp.node.is_some());
        assert_eq!(dp.applied.len(), 1);
    }

    #[test]
    fn a_restarted_dataplane_gets_everything_back_and_pods_are_reconfigured() {
        let h = Harness::new();
        h.add("aaa").unwrap();
        h.add("bbb").unwrap();
        let before = h.dp.state().port_names();
        h.net.state().configured.clear();
        h.dp.state().restart();
        h.c().sync().push_now().unwrap();
        let dp = h.dp.state();
        assert_eq!(dp.port_names(), before);
        assert_eq!(dp.generation, generation(&h));
        assert_eq!(h.net.state().configured, vec!["aaa/eth0", "bbb/eth0"]);
    }

    #[test]
    fn the_periodic_resync_notices_a_restarted_or_returning_dataplane() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let dp = FakeDataplane::default();
        let mut settings = testkit::settings();
        settings.resync_interval = Duration::from_millis(20);
        let net = Arc::new(FakePodNetwork::default());
        let control = Control::start(settings, store, Box::new(dp.clone()), net);
        let configured = |d: &FakeDataplaneState| d.generation == 1 && d.node.is_some();
        let deadline = Instant::now() + Duration::from_secs(5);
        let wait_for = |what: &dyn Fn(&FakeDataplaneState) -> bool| {
            while !what(&dp.state()) {
                assert!(Instant::now() < deadline, "the resync did not happen");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for(&configured);
        dp.state().restart();
        wait_for(&configured);
        // Unreachable for a while, then back as a new process: replayed too.
        dp.state().unreachable = true;
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(control.sync().observed().dataplane_generation, None);
        {
            let mut d = dp.state();
            d.restart();
            d.unreachable = false;
        }
        wait_for(&configured);
    }

    #[test]
    fn a_restarted_control_finding_its_generation_pushes_and_configures_nothing() {
        let mut h = Harness::new();
        h.add("aaa").unwrap();
        let pushes = h.dp.state().applied.len();
        let configured = h.net.state().configured.len();
        h.restart_control();
        assert_eq!(h.dp.state().applied.len(), pushes);
        assert_eq!(h.net.state().configured.len(), configured);
        assert!(h.c().status().unwrap().dataplane_in_sync);
    }

    #[test]
    fn a_restarted_control_finding_another_generation_replaces_the_whole_state() {
        let mut h = Harness::new();
        let a = h.add("aaa").unwrap();
        // podswitchd was changed behind control's back (e.g. `podswitchctl dp`).
        h.dp.state().generation = 999;
        h.restart_control();
        let dp = h.dp.state();
        assert_eq!(dp.generation, generation(&h));
        assert_eq!(dp.port_names(), vec!["psw0", a.port.as_str()]);
        assert!(dp.applied.last().unwrap().replace);
    }

    #[test]
    fn pods_whose_namespace_is_gone_are_left_out_of_a_replay() {
        let h = Harness::new();
        let a = h.add("aaa").unwrap();
        let b = h.add("bbb").unwrap();
        h.net.state().missing.insert(a.netns.clone());
        h.dp.state().restart();
        h.c().sync().push_now().unwrap();
        assert_eq!(h.dp.state().port_names(), vec!["psw0", b.port.as_str()]);
        // The record stays until DEL or GC.
        assert_eq!(h.store().read().unwrap().pods().unwrap().len(), 2);
    }

    #[test]
    fn status_reports_generations_and_counts() {
        let h = Harness::new();
        h.add("aaa").unwrap();
        let s = h.c().status().unwrap();
        assert_eq!(
            (s.node.as_str(), s.pod_cidr.as_str()),
            ("n1", "10.244.1.0/24")
        );
        assert_eq!((s.pods, s.allocated_ips), (1, 1));
        assert!(s.dataplane_in_sync);
        assert_eq!(s.dataplane_generation, Some(s.generation));
        h.dp.state().unreachable = true;
        let s = h.c().status().unwrap();
        assert!(!s.dataplane_in_sync);
        assert_eq!(s.dataplane_generation, None);
    }
}
