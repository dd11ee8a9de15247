//! The control process's state database: an embedded redb file (`STATE_DIR/state.redb`)
//! holding everything that must survive a restart — attached pods, IPAM allocations, applied
//! Kubernetes objects and the generation counter.
//!
//! Every change is one write transaction ([`Store::write`]): the closure sees and changes the
//! database through a [`WriteTx`], and its changes are committed only if it returns `Ok`, so a
//! failed operation leaves the database as it was. Commits are `Durability::Immediate` (fsync
//! before `commit` returns), so a `kill -9` or a power cut loses nothing that was committed.
//! redb takes an exclusive lock on the file: a second control process on the same state
//! directory fails to open it instead of corrupting it.
//!
//! Tables:
//! - `pods`: `"container_id/ifname"` → JSON [`PodRecord`]
//! - `ipam`: IPv4 address as a host-order `u32` (so the table iterates in address order) →
//!   `"container_id/ifname"`
//! - `objects`: object key (`pod default/web`) → the object's JSON
//! - `meta`: `generation` (of the desired dataplane configuration), `ipam_last` (the address
//!   allocated last, where the next search starts)

use crate::changes::{ChangeFeed, Changed, Feeds};
use podswitch_proto::control::PodAttachment;
use podswitch_proto::MacAddr;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

const PODS: TableDefinition<&str, &str> = TableDefinition::new("pods");
const IPAM: TableDefinition<u32, &str> = TableDefinition::new("ipam");
const OBJECTS: TableDefinition<&str, &str> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const GENERATION: &str = "generation";
const IPAM_LAST: &str = "ipam_last";

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "state.redb";

/// One attached pod interface, as CNI ADD created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// `CNI_CONTAINERID` (the sandbox).
    pub container_id: String,
    /// `CNI_IFNAME`: the interface name inside the pod.
    pub ifname: String,
    /// `CNI_NETNS`: the pod's network namespace path.
    pub netns: String,
    /// Kubernetes namespace, empty when the runtime did not say.
    pub namespace: String,
    /// Pod name, empty when the runtime did not say.
    pub name: String,
    /// Pod UID, empty when the runtime did not say.
    pub uid: String,
    /// The allocated address.
    pub ip: Ipv4Addr,
    /// The interface's MAC.
    #[serde(with = "mac")]
    pub mac: MacAddr,
    /// The switch port's name.
    pub port: String,
    /// MTU the CNI config asked for; `None` means the configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Whether the pod's switch port has offloads (`PortSpec::offloads`): the CNI config's
    /// `offloads`, on unless it said `false`. Records written before this field existed are
    /// of pods whose ports had the default, on. Fixed at ADD time, like `mtu`: a changed
    /// network config applies to pods attached after the change.
    #[serde(default = "offloads_default", skip_serializing_if = "is_on")]
    pub offloads: bool,
    /// How the pod is wired to the switch (the CNI config's `attachment`), fixed at ADD time.
    /// Records written before this field existed are of taps.
    #[serde(default, skip_serializing_if = "PodAttachment::is_tap")]
    pub attachment: PodAttachment,
    /// The ADD that recorded this attachment has not finished (the port pushed and the
    /// interface configured): true from the commit that allocates the address to the one
    /// after the interface is configured. A control process that died in between finds it
    /// on restart (`Control::reconcile_pending`). Records written before this field existed
    /// were complete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// A tombstone: DEL (or an ADD's rollback) has begun removing this attachment. The port is
    /// no longer pushed, but the record and its address stay until the pod's interface is gone
    /// from its namespace, so a DEL that could not remove the interface leaves something its
    /// retry finds (and the address is not given to another pod while the old tap holds it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
}

impl PodRecord {
    /// The record's key, `container_id/ifname`.
    pub fn key(&self) -> String {
        attachment_key(&self.container_id, &self.ifname)
    }
}

fn offloads_default() -> bool {
    true
}

// serde's `skip_serializing_if` passes a reference.
fn is_on(b: &bool) -> bool {
    *b
}

/// The key of an attachment: `container_id/ifname`. Unambiguous because an interface name
/// cannot contain `/`.
pub fn attachment_key(container_id: &str, ifname: &str) -> String {
    format!("{container_id}/{ifname}")
}

/// Serde for a MAC as `"0a:58:0a:f4:01:02"` (proto's helper module is private to it).
mod mac {
    use podswitch_proto::MacAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("MAC address {s:?} is malformed")))
    }
}

/// The database failed, or holds something this version cannot read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the state database {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why, with what to do.
        reason: String,
    },
    /// A read, write or commit failed (boxed: redb's error is large).
    #[error("state database: {0}")]
    Db(Box<redb::Error>),
    /// A stored value does not decode.
    #[error("state database: {table} entry {key:?} is corrupt: {reason}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// The entry's key.
        key: String,
        /// The decode error.
        reason: String,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The state database. Cheap to share behind an `Arc`; redb serialises writers and lets
/// readers see the last committed state.
#[derive(Debug)]
pub struct Store {
    db: redb::Database,
    path: PathBuf,
    feeds: Feeds,
}

impl Store {
    /// Opens (or creates) `state_dir/state.redb`, creating the directory (mode 0700) and the
    /// tables. A fresh database starts at generation 1, so that it never equals a freshly
    /// started `podswitchd`'s generation 0 and the first resync configures the dataplane.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join(DB_FILE);
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        if !state_dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(|e| open_err(format!("creating {}: {e}", state_dir.display())))?;
        }
        let db = redb::Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => open_err(
                "it is locked by another process: is another podswitch-control running with \
                 this state_dir?"
                    .into(),
            ),
            other => open_err(other.to_string()),
        })?;
        let store = Store {
            db,
            path,
            feeds: Feeds::default(),
        };
        store.write(|tx| -> Result<(), StoreError> {
            tx.tx.open_table(PODS)?;
            tx.tx.open_table(IPAM)?;
            tx.tx.open_table(OBJECTS)?;
            let mut meta = tx.tx.open_table(META)?;
            if meta.get(GENERATION)?.is_none() {
                meta.insert(GENERATION, 1)?;
            }
            Ok(())
        })?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction and commits if it returns `Ok`; on `Err` (or a
    /// failed commit) nothing it did is kept.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut WriteTx) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut tx = WriteTx {
            tx: self.db.begin_write().map_err(StoreError::from)?,
            touched: Changed::default(),
        };
        tx.tx.set_durability(redb::Durability::Immediate);
        match f(&mut tx) {
            Ok(v) => {
                tx.tx.commit().map_err(StoreError::from)?;
                // After the commit: see `crate::changes` for why the order matters.
                self.feeds.publish(&tx.touched);
                Ok(v)
            }
            Err(e) => {
                // Dropping an uncommitted transaction aborts it too; an explicit abort just
                // releases the writer lock now. Its own failure changes nothing.
                let _ = tx.tx.abort();
                Err(e)
            }
        }
    }

    /// A feed of the pod and object keys every later committed write touches (the sync
    /// thread's, to recompile only what changed).
    pub fn subscribe(&self) -> ChangeFeed {
        self.feeds.subscribe()
    }

    /// A consistent read-only view of the last committed state.
    pub fn read(&self) -> Result<ReadTx, StoreError> {
        Ok(ReadTx {
            tx: self.db.begin_read()?,
        })
    }
}

/// What [`WriteTx::put_objects`] did with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectWrite {
    /// It was not stored: now it is.
    Created,
    /// It was stored with other JSON: now with this one.
    Changed,
    /// It was stored the same: nothing written.
    Unchanged,
}

/// A write transaction in progress; see [`Store::write`].
pub struct WriteTx {
    tx: redb::WriteTransaction,
    /// The pod and object keys written or removed, for the change feeds.
    touched: Changed,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteTx")
    }
}

/// A read transaction: a snapshot of the last commit.
pub struct ReadTx {
    tx: redb::ReadTransaction,
}

impl std::fmt::Debug for ReadTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadTx")
    }
}

/// Readers shared by both transaction kinds, over any readable table.
fn pod_of(
    t: &impl ReadableTable<&'static str, &'static str>,
    key: &str,
) -> Result<Option<PodRecord>, StoreError> {
    t.get(key)?.map(|v| decode_pod(key, v.value())).transpose()
}

fn pods_of(
    t: &impl ReadableTable<&'static str, &'static str>,
) -> Result<BTreeMap<String, PodRecord>, StoreError> {
    let mut pods = BTreeMap::new();
    for entry in t.iter()? {
        let (k, v) = entry?;
        let key = k.value().to_string();
        let pod = decode_pod(&key, v.value())?;
        pods.insert(key, pod);
    }
    Ok(pods)
}

fn ipam_of(
    t: &impl ReadableTable<u32, &'static str>,
) -> Result<BTreeMap<Ipv4Addr, String>, StoreError> {
    let mut ipam = BTreeMap::new();
    for entry in t.iter()? {
        let (k, v) = entry?;
        ipam.insert(Ipv4Addr::from(k.value()), v.value().to_string());
    }
    Ok(ipam)
}

fn objects_of(
    t: &impl ReadableTable<&'static str, &'static str>,
) -> Result<BTreeMap<String, String>, StoreError> {
    let mut objects = BTreeMap::new();
    for entry in t.iter()? {
        let (k, v) = entry?;
        objects.insert(k.value().to_string(), v.value().to_string());
    }
    Ok(objects)
}

/// The objects of `t` whose keys start with one of `kinds` and a space: one range scan per
/// kind.
fn objects_of_kinds(
    t: &impl ReadableTable<&'static str, &'static str>,
    kinds: &[&str],
) -> Result<BTreeMap<String, String>, StoreError> {
    let mut objects = BTreeMap::new();
    for kind in kinds {
        let prefix = format!("{kind} ");
        for entry in t.range::<&str>(prefix.as_str()..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            objects.insert(k.value().to_string(), v.value().to_string());
        }
    }
    Ok(objects)
}

fn meta_of(
    t: &impl ReadableTable<&'static str, u64>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(t.get(key)?.map(|v| v.value()))
}

fn decode_pod(key: &str, json: &str) -> Result<PodRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        table: "pods",
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// The kind part of a stored object's key (`pod` of `pod default/web`).
pub fn object_kind(key: &str) -> Option<&str> {
    key.split_once(' ').map(|(kind, _)| kind)
}

/// A stored object's JSON decoded as `T` (read without validating again: it was validated when
/// applied); a failure names the key.
pub fn decode_object<T: serde::de::DeserializeOwned>(
    key: &str,
    json: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        table: "objects",
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn encode_pod(pod: &PodRecord) -> String {
    // A struct of strings, numbers and addresses always serializes.
    serde_json::to_string(pod).unwrap_or_default()
}

impl ReadTx {
    /// The generation of the desired dataplane configuration.
    pub fn generation(&self) -> Result<u64, StoreError> {
        Ok(meta_of(&self.tx.open_table(META)?, GENERATION)?.unwrap_or(0))
    }

    /// The attachment `key` (`container_id/ifname`).
    pub fn pod(&self, key: &str) -> Result<Option<PodRecord>, StoreError> {
        pod_of(&self.tx.open_table(PODS)?, key)
    }

    /// Every attachment, by key.
    pub fn pods(&self) -> Result<BTreeMap<String, PodRecord>, StoreError> {
        pods_of(&self.tx.open_table(PODS)?)
    }

    /// Every allocated address and its owner's key.
    pub fn ipam(&self) -> Result<BTreeMap<Ipv4Addr, String>, StoreError> {
        ipam_of(&self.tx.open_table(IPAM)?)
    }

    /// The stored JSON of the object `key` (`pod default/web`).
    pub fn object(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .open_table(OBJECTS)?
            .get(key)?
            .map(|v| v.value().to_string()))
    }

    /// Every applied object's JSON, by key.
    pub fn objects(&self) -> Result<BTreeMap<String, String>, StoreError> {
        objects_of(&self.tx.open_table(OBJECTS)?)
    }

    /// The applied objects of the given kinds (lower case, as keys start: `service`), by key:
    /// one range scan per kind, so the other objects are not read.
    pub fn objects_of_kinds(&self, kinds: &[&str]) -> Result<BTreeMap<String, String>, StoreError> {
        objects_of_kinds(&self.tx.open_table(OBJECTS)?, kinds)
    }
}

impl WriteTx {
    /// The generation as this transaction sees it.
    pub fn generation(&self) -> Result<u64, StoreError> {
        Ok(meta_of(&self.tx.open_table(META)?, GENERATION)?.unwrap_or(0))
    }

    /// Increments the generation and returns the new one.
    pub fn bump_generation(&mut self) -> Result<u64, StoreError> {
        let next = self.generation()? + 1;
        self.tx.open_table(META)?.insert(GENERATION, next)?;
        Ok(next)
    }

    /// The attachment `key`.
    pub fn pod(&self, key: &str) -> Result<Option<PodRecord>, StoreError> {
        pod_of(&self.tx.open_table(PODS)?, key)
    }

    /// Every attachment, by key.
    pub fn pods(&self) -> Result<BTreeMap<String, PodRecord>, StoreError> {
        pods_of(&self.tx.open_table(PODS)?)
    }

    /// Stores (or overwrites) an attachment.
    pub fn put_pod(&mut self, pod: &PodRecord) -> Result<(), StoreError> {
        let key = pod.key();
        self.tx
            .open_table(PODS)?
            .insert(key.as_str(), encode_pod(pod).as_str())?;
        self.touched.pods.insert(key);
        Ok(())
    }

    /// Removes an attachment; whether it was there.
    pub fn remove_pod(&mut self, key: &str) -> Result<bool, StoreError> {
        self.touched.pods.insert(key.to_string());
        Ok(self.tx.open_table(PODS)?.remove(key)?.is_some())
    }

    /// Every allocated address and its owner's key.
    pub fn ipam(&self) -> Result<BTreeMap<Ipv4Addr, String>, StoreError> {
        ipam_of(&self.tx.open_table(IPAM)?)
    }

    /// The key of the attachment holding `ip`, if it is allocated.
    pub fn ip_owner(&self, ip: Ipv4Addr) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .open_table(IPAM)?
            .get(u32::from(ip))?
            .map(|v| v.value().to_string()))
    }

    /// The address allocated last, where the next search starts.
    pub fn ipam_last(&self) -> Result<Option<Ipv4Addr>, StoreError> {
        Ok(meta_of(&self.tx.open_table(META)?, IPAM_LAST)?
            .and_then(|v| u32::try_from(v).ok())
            .map(Ipv4Addr::from))
    }

    /// Records `ip` as owned by `owner` and as the last allocation.
    pub fn allocate_ip(&mut self, ip: Ipv4Addr, owner: &str) -> Result<(), StoreError> {
        self.tx.open_table(IPAM)?.insert(u32::from(ip), owner)?;
        self.tx
            .open_table(META)?
            .insert(IPAM_LAST, u64::from(u32::from(ip)))?;
        Ok(())
    }

    /// Frees `ip`; whether it was allocated.
    pub fn release_ip(&mut self, ip: Ipv4Addr) -> Result<bool, StoreError> {
        Ok(self.tx.open_table(IPAM)?.remove(u32::from(ip))?.is_some())
    }

    /// The stored JSON of the object `key`.
    pub fn object(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .open_table(OBJECTS)?
            .get(key)?
            .map(|v| v.value().to_string()))
    }

    /// Stores an object's JSON under its key.
    pub fn put_object(&mut self, key: &str, json: &str) -> Result<(), StoreError> {
        self.tx.open_table(OBJECTS)?.insert(key, json)?;
        self.touched.objects.insert(key.to_string());
        Ok(())
    }

    /// The objects of the given kinds as this transaction sees them (see
    /// [`ReadTx::objects_of_kinds`]).
    pub fn objects_of_kinds(&self, kinds: &[&str]) -> Result<BTreeMap<String, String>, StoreError> {
        objects_of_kinds(&self.tx.open_table(OBJECTS)?, kinds)
    }

    /// Stores each `(key, json)` unless the stored JSON of `key` is the same by `same(old,
    /// new)`; what each write was, in order. One table opened for all of them (an apply of
    /// 20k objects opened it 40k times).
    pub fn put_objects<'a>(
        &mut self,
        objects: impl IntoIterator<Item = (&'a str, &'a str)>,
        same: impl Fn(&str, &str) -> bool,
    ) -> Result<Vec<ObjectWrite>, StoreError> {
        let mut table = self.tx.open_table(OBJECTS)?;
        let mut writes = Vec::new();
        for (key, json) in objects {
            let write = match table.get(key)? {
                None => ObjectWrite::Created,
                Some(old) if same(old.value(), json) => ObjectWrite::Unchanged,
                Some(_) => ObjectWrite::Changed,
            };
            if write != ObjectWrite::Unchanged {
                table.insert(key, json)?;
                self.touched.objects.insert(key.to_string());
            }
            writes.push(write);
        }
        Ok(writes)
    }

    /// Removes an object; whether it was there.
    pub fn remove_object(&mut self, key: &str) -> Result<bool, StoreError> {
        self.touched.objects.insert(key.to_string());
        Ok(self.tx.open_table(OBJECTS)?.remove(key)?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::pod;

    #[test]
    fn fresh_database_starts_at_generation_1_with_empty_tables() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let r = store.read().unwrap();
        assert_eq!(r.generation().unwrap(), 1);
        assert!(r.pods().unwrap().is_empty());
        assert!(r.ipam().unwrap().is_empty());
        assert!(r.objects().unwrap().is_empty());
    }

    #[test]
    fn committed_writes_survive_closing_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let a = pod("a", [10, 244, 1, 2]);
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .write(|tx| -> Result<(), StoreError> {
                    tx.put_pod(&a)?;
                    tx.allocate_ip(a.ip, &a.key())?;
                    tx.put_object("pod default/a", "{\"kind\":\"Pod\"}")?;
                    tx.bump_generation()?;
                    Ok(())
                })
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let r = store.read().unwrap();
        assert_eq!(r.generation().unwrap(), 2);
        assert_eq!(r.pod("a/eth0").unwrap(), Some(a.clone()));
        assert_eq!(
            r.ipam().unwrap(),
            BTreeMap::from([(a.ip, "a/eth0".to_string())])
        );
        assert_eq!(
            r.object("pod default/a").unwrap().as_deref(),
            Some("{\"kind\":\"Pod\"}")
        );
        store
            .write(|tx| -> Result<(), StoreError> {
                assert_eq!(tx.ipam_last()?, Some(a.ip));
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_failed_write_leaves_the_database_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = pod("a", [10, 244, 1, 2]);
        let result = store.write(|tx| -> Result<(), StoreError> {
            tx.put_pod(&a)?;
            tx.allocate_ip(a.ip, &a.key())?;
            tx.bump_generation()?;
            Err(StoreError::Corrupt {
                table: "pods",
                key: "x".into(),
                reason: "test failure".into(),
            })
        });
        assert!(result.is_err());
        let r = store.read().unwrap();
        assert_eq!(r.generation().unwrap(), 1);
        assert!(r.pods().unwrap().is_empty());
        assert!(r.ipam().unwrap().is_empty());
    }

    #[test]
    fn offloads_are_on_in_records_written_before_the_field_and_kept_when_off() {
        // A record as a control process without the field wrote it.
        let old = r#"{"container_id":"a","ifname":"eth0","netns":"/n","namespace":"",
            "name":"","uid":"","ip":"10.244.1.2","mac":"0a:58:0a:f4:01:02","port":"p"}"#;
        let pod = decode_pod("a/eth0", old).unwrap();
        assert!(pod.offloads);
        // On stays out of the record (old readers see what they always saw); off is written.
        assert!(!encode_pod(&pod).contains("offloads"));
        let off = PodRecord {
            offloads: false,
            ..pod
        };
        let json = encode_pod(&off);
        assert!(json.contains("\"offloads\":false"), "{json}");
        assert_eq!(decode_pod("a/eth0", &json).unwrap(), off);
    }

    #[test]
    fn a_second_process_cannot_open_the_same_database() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another podswitch-control"), "{err}");
    }

    #[test]
    fn removing_returns_whether_something_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = pod("a", [10, 244, 1, 2]);
        store
            .write(|tx| -> Result<(), StoreError> {
                tx.put_pod(&a)?;
                tx.allocate_ip(a.ip, &a.key())?;
                assert!(tx.remove_pod("a/eth0")?);
                assert!(!tx.remove_pod("a/eth0")?);
                assert!(tx.release_ip(a.ip)?);
                assert!(!tx.release_ip(a.ip)?);
                Ok(())
            })
            .unwrap();
    }
}
