//! The DtsJob watch cache: one compact entry ([`CachedJob`]) per DtsJob in
//! scope, keyed by namespace and name.
//!
//! kube-runtime's reflector store keys every object by an `ObjectRef` (four
//! strings: name, namespace, uid and resourceVersion, about 230 bytes a
//! DtsJob with its hash slot) and can only hold a type that carries a whole
//! `ObjectMeta` (360 bytes inline, however empty). At fleet scale those two
//! were most of the operator's memory, so this store keeps each entry once:
//! the table holds a pointer to it (8 bytes a slot) and finds it by the
//! namespace and name the entry itself holds. Namespaces are interned: a
//! fleet has few, and every entry of one shares its string.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use crate::cache::CachedJob;
use crate::crd::DtsJob;

/// A DtsJob's namespace and name: what the store, the runner's queue and
/// every trigger identify a job by.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    namespace: Arc<str>,
    name: Arc<str>,
}

impl JobKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A key of an interned namespace and a name.
    pub(crate) fn from_parts(namespace: Arc<str>, name: Arc<str>) -> Self {
        Self { namespace, name }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the table hashes: the same for a key and for the entry it names.
    fn hash_with(state: &RandomState, namespace: &str, name: &str) -> u64 {
        state.hash_one((namespace, name))
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl fmt::Debug for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobKey({self})")
    }
}

/// The store: cheap to clone (every clone sees the same entries).
#[derive(Clone, Default)]
pub struct JobStore {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    table: HashTable<Arc<CachedJob>>,
    hasher: RandomState,
    shared: Shared,
}

/// The strings a fleet repeats (namespaces, regions, Secret names), each
/// stored once and shared by every entry that holds it: 50,000 jobs in a
/// few namespaces and regions hold a few strings, not 150,000. A string no
/// entry holds any more is dropped once the set has doubled since it was
/// last swept, so values that come and go cannot grow it without bound.
#[derive(Default)]
struct Shared {
    strings: HashSet<Arc<str>>,
    /// How many were held after the last sweep.
    swept_at: usize,
}

impl Shared {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(s) {
            return shared.clone();
        }
        if self.strings.len() >= (2 * self.swept_at).max(64) {
            // Held here only: no entry uses it.
            self.strings.retain(|s| Arc::strong_count(s) > 1);
            self.strings.shrink_to_fit();
            self.swept_at = self.strings.len();
        }
        let shared: Arc<str> = s.into();
        self.strings.insert(shared.clone());
        shared
    }
}

impl Inner {
    fn hash(&self, namespace: &str, name: &str) -> u64 {
        JobKey::hash_with(&self.hasher, namespace, name)
    }
}

impl fmt::Debug for JobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobStore").field("len", &self.len()).finish()
    }
}

impl JobStore {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `key`, if the watch has it.
    pub fn get(&self, key: &JobKey) -> Option<Arc<CachedJob>> {
        let inner = self.read();
        let hash = inner.hash(key.namespace(), key.name());
        inner.table.find(hash, |e| e.is(key)).cloned()
    }

    /// Every entry, in no particular order.
    pub fn state(&self) -> Vec<Arc<CachedJob>> {
        self.read().table.iter().cloned().collect()
    }

    /// The keys of the entries that `keep` picks.
    pub fn keys_where(&self, mut keep: impl FnMut(&CachedJob) -> bool) -> Vec<JobKey> {
        self.read()
            .table
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.key().clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `job` (a new version replaces the old); returns its entry
    /// and the entry it replaced. Its namespace, region and Secret name
    /// are shared with the other entries (see [`Shared`]).
    pub fn apply(&self, job: DtsJob) -> (Arc<CachedJob>, Option<Arc<CachedJob>>) {
        let mut inner = self.write();
        let entry = crate::alloc::long_lived(|| Arc::new(CachedJob::new(job, &mut |s| inner.shared.get(s))));
        let key = entry.key();
        let hash = inner.hash(key.namespace(), key.name());
        let Inner { table, hasher, .. } = &mut *inner;
        let replaced = match table.entry(
            hash,
            |e| e.is(key),
            |e| JobKey::hash_with(hasher, e.key().namespace(), e.key().name()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => Some(std::mem::replace(o.get_mut(), entry.clone())),
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(entry.clone());
                None
            }
        };
        (entry, replaced)
    }

    /// Removes the entry of `key` and returns it. A table left mostly empty
    /// (after a fleet was deleted) gives its room back.
    pub fn remove(&self, key: &JobKey) -> Option<Arc<CachedJob>> {
        let mut inner = self.write();
        let hash = inner.hash(key.namespace(), key.name());
        let removed = match inner.table.find_entry(hash, |e| e.is(key)) {
            Ok(o) => Some(o.remove().0),
            Err(_) => None,
        };
        let Inner { table, hasher, .. } = &mut *inner;
        if table.capacity() > 64 && table.len() < table.capacity() / 4 {
            table.shrink_to_fit(|e| JobKey::hash_with(hasher, e.key().namespace(), e.key().name()));
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ns: &str, name: &str, generation: i64) -> DtsJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": name, "namespace": ns, "generation": generation, "uid": format!("uid-{name}")},
            "spec": {"jobId": "j", "regionId": "cn-hangzhou"}
        }))
        .unwrap()
    }

    #[test]
    fn entries_are_found_by_namespace_and_name_and_replaced_by_newer_versions() {
        let store = JobStore::default();
        store.apply(job("a", "x", 1));
        store.apply(job("b", "x", 1));
        let (entry, replaced) = store.apply(job("a", "x", 2));
        assert_eq!(replaced.map(|r| r.key().clone()), Some(entry.key().clone()));
        let key = entry.key().clone();
        assert_eq!(store.len(), 2, "the same name in two namespaces is two jobs");
        let entry = store.get(&key).expect("stored");
        assert_eq!(
            entry.job().unwrap().metadata.generation,
            Some(2),
            "the newer version replaced the older"
        );
        assert_eq!(
            store
                .get(&JobKey::new("b", "x"))
                .unwrap()
                .job()
                .unwrap()
                .metadata
                .generation,
            Some(1)
        );
        assert!(store.get(&JobKey::new("c", "x")).is_none());
        assert_eq!(store.keys_where(|j| j.namespace() == "b"), [JobKey::new("b", "x")]);
    }

    #[test]
    fn strings_no_entry_holds_are_dropped_as_the_set_grows() {
        let store = JobStore::default();
        // 1,000 namespaces, each job replaced by one in the next: at most
        // a few are in use at any time.
        for i in 0..1000 {
            let ns = format!("ns{i}");
            store.apply(job(&ns, "x", 1));
            if i > 0 {
                store.remove(&JobKey::new(&format!("ns{}", i - 1), "x"));
            }
        }
        let held = store.read().shared.strings.len();
        assert!(held <= 64, "{held} strings held for one job");
        let job = store.get(&JobKey::new("ns999", "x")).unwrap();
        assert_eq!(job.namespace(), "ns999");
        assert_eq!(&*job.spec.region_id, "cn-hangzhou");
    }

    #[test]
    fn namespaces_are_shared_and_removal_gives_room_back() {
        let store = JobStore::default();
        for i in 0..1000 {
            store.apply(job("fleet", &format!("j{i}"), 1));
        }
        let (a, b) = (
            store.get(&JobKey::new("fleet", "j1")).unwrap(),
            store.get(&JobKey::new("fleet", "j2")).unwrap(),
        );
        assert!(
            std::ptr::eq(a.namespace().as_ptr(), b.namespace().as_ptr()),
            "one string for the namespace"
        );
        assert!(
            std::ptr::eq(a.spec.region_id.as_ptr(), b.spec.region_id.as_ptr()),
            "one for the region"
        );
        let grown = store.read().table.capacity();
        for i in 0..990 {
            assert!(store.remove(&JobKey::new("fleet", &format!("j{i}"))).is_some());
        }
        assert!(store.remove(&JobKey::new("fleet", "j0")).is_none(), "already gone");
        assert_eq!(store.len(), 10);
        assert!(store.read().table.capacity() < grown / 4, "shrunk from {grown}");
        assert_eq!(store.get(&JobKey::new("fleet", "j995")).unwrap().name(), "j995");
    }
}
