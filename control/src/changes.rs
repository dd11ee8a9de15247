//! The store's change feed: which pod records and stored objects each committed write
//! transaction touched, so the sync thread can decode and recompile only those instead of the
//! whole database on every push.
//!
//! A subscriber ([`crate::store::Store::subscribe`]) gets every key written or removed by a
//! transaction that *committed* after it subscribed (an aborted one touches nothing). Keys are
//! appended after the commit, so a subscriber that takes its keys *before* opening its read
//! snapshot sees every taken key's committed value in that snapshot; a key committed in
//! between is also in the next take, and reading it again is harmless.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Keys touched since the last take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    /// Pod record keys (`container_id/ifname`) written or removed.
    pub pods: BTreeSet<String>,
    /// Object keys (`pod default/web`) written or removed.
    pub objects: BTreeSet<String>,
}

impl Changed {
    /// Whether nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.objects.is_empty()
    }

    fn merge(&mut self, other: &Changed) {
        self.pods.extend(other.pods.iter().cloned());
        self.objects.extend(other.objects.iter().cloned());
    }
}

/// One subscriber's accumulated changes.
#[derive(Debug)]
pub struct ChangeFeed {
    pending: Arc<Mutex<Changed>>,
}

impl ChangeFeed {
    /// Everything touched since the last take (or the subscription), and starts afresh.
    pub fn take(&self) -> Changed {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The store's side: the live subscribers.
#[derive(Debug, Default)]
pub(crate) struct Feeds {
    subscribers: Mutex<Vec<Weak<Mutex<Changed>>>>,
}

impl Feeds {
    pub(crate) fn subscribe(&self) -> ChangeFeed {
        let pending = Arc::new(Mutex::new(Changed::default()));
        self.lock().push(Arc::downgrade(&pending));
        ChangeFeed { pending }
    }

    /// Hands a committed transaction's keys to every live subscriber; forgets dropped ones.
    pub(crate) fn publish(&self, touched: &Changed) {
        if touched.is_empty() {
            return;
        }
        self.lock().retain(|weak| match weak.upgrade() {
            Some(pending) => {
                pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .merge(touched);
                true
            }
            None => false,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Mutex<Changed>>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
