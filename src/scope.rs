//! Which DtsJobs (and Secrets) one replica set handles: every namespace, or
//! a list of namespaces, narrowed by an optional label selector. A fleet is
//! split across Deployments by giving each its own scope and its own Lease
//! (`--lease-name`); two shards must never share a DtsJob, which disjoint
//! namespaces or disjoint selectors guarantee.
//!
//! With several namespaces there is one watch per namespace, all feeding one
//! store. kube-runtime's reflector treats every relist as the whole store
//! (it swaps in the listed objects), so one namespace's relist would drop
//! every other namespace's objects. [`ScopedWriter`] applies the events to
//! the operator's store ([`JobStore`]) itself: a relist of one watch
//! replaces only what that watch covers, and the objects it no longer lists
//! are deleted from the store (with a [`Change::Deleted`] passed on, so the
//! backoff of such a job is forgotten).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};

use crate::cache::{CachedJob, WatchedJob};
use crate::store::{JobKey, JobStore};
use crate::triggers;

/// The scope of one replica set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    /// A label selector on DtsJobs (`shard=a`, `tier in (gold)`).
    pub selector: Option<String>,
}

impl Scope {
    /// The namespaces to watch, one entry per watch (`None`: all).
    pub fn watches(&self) -> Vec<Option<String>> {
        if self.namespaces.is_empty() {
            vec![None]
        } else {
            let mut unique: Vec<String> = Vec::new();
            for ns in &self.namespaces {
                if !unique.contains(ns) {
                    unique.push(ns.clone());
                }
            }
            unique.into_iter().map(Some).collect()
        }
    }

    /// How the scope is logged.
    pub fn describe(&self) -> String {
        let ns = if self.namespaces.is_empty() {
            "all namespaces".to_owned()
        } else {
            format!("namespaces {}", self.namespaces.join(","))
        };
        match &self.selector {
            Some(s) => format!("{ns}, DtsJobs matching {s:?}"),
            None => ns,
        }
    }
}

/// One event of one of the scope's watches, tagged with the watch's namespace.
pub type Tagged<K> = (Option<String>, Result<watcher::Event<K>, watcher::Error>);

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: Resource<DynamicType = ()>,
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One watch per namespace of `scope`, merged, each with its default backoff.
/// `config` is applied to every watch (the selector goes there for DtsJobs).
/// For `PartialObjectMeta<K>` the requests are metadata-only (kube asks the
/// API server for PartialObjectMetadata): for Secrets no value crosses the wire.
pub fn watch<K>(client: &Client, scope: &Scope, config: watcher::Config) -> impl Stream<Item = Tagged<K>> + Send
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    K: Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let streams = scope.watches().into_iter().map(|ns| {
        watcher(api::<K>(client, &ns), config.clone())
            .default_backoff()
            .map(move |event| (ns.clone(), event))
            .boxed()
    });
    futures::stream::select_all(streams)
}

/// What the store's watch reports, after the store took it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A DtsJob was added or changed.
    Applied {
        key: JobKey,
        /// [`triggers::identity`] of the object.
        identity: u64,
        /// [`triggers::trigger_hash`] of the object.
        trigger: u64,
        /// Its entry as stored.
        entry: Arc<CachedJob>,
    },
    /// A DtsJob is gone: deleted, missing from a relist, or replaced by
    /// another object of the same name (a new uid).
    Deleted {
        key: JobKey,
        identity: u64,
        uid: Option<String>,
        /// Its last entry, if it was stored.
        entry: Option<Arc<CachedJob>>,
    },
    /// Every watch has listed once.
    Synced,
}

impl Change {
    fn gone(entry: Arc<CachedJob>) -> Self {
        Change::Deleted {
            key: entry.key().clone(),
            identity: entry.identity(),
            // Rare: unpacked only for a job gone by a relist or replaced.
            uid: entry.job().ok().and_then(|j| j.metadata.uid),
            entry: Some(entry),
        }
    }
}

/// Applies tagged events to one store so that each watch's relist replaces
/// only that watch's objects.
pub struct ScopedWriter {
    store: JobStore,
    watches: usize,
    /// The objects listed so far by each watch that is relisting.
    relisting: HashMap<Option<String>, HashSet<JobKey>>,
    listed: HashSet<Option<String>>,
    synced: bool,
}

impl ScopedWriter {
    pub fn new(store: JobStore, watches: usize) -> Self {
        Self {
            store,
            watches,
            relisting: HashMap::new(),
            listed: HashSet::new(),
            synced: false,
        }
    }

    /// Stores `job`; a different object of the same name stored before
    /// is reported gone first.
    fn store(&mut self, job: WatchedJob, out: &mut Vec<Change>) -> JobKey {
        let trigger = triggers::trigger_hash(&job);
        let (entry, replaced) = self.store.apply(job.0);
        if let Some(old) = replaced.filter(|old| old.identity() != entry.identity()) {
            out.push(Change::gone(old));
        }
        let key = entry.key().clone();
        out.push(Change::Applied {
            key: key.clone(),
            identity: entry.identity(),
            trigger,
            entry,
        });
        key
    }

    /// Applies one event of watch `ns` and returns what to pass on: each
    /// object applied or removed, and once, when every watch has listed
    /// for the first time, `Synced`.
    pub fn apply(&mut self, ns: &Option<String>, event: watcher::Event<WatchedJob>) -> Vec<Change> {
        let mut out = Vec::new();
        match event {
            watcher::Event::Apply(job) => {
                self.store(job, &mut out);
            }
            watcher::Event::Delete(job) => {
                let meta = &job.0.metadata;
                let key = JobKey::new(
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                );
                let entry = self.store.remove(&key);
                out.push(Change::Deleted {
                    key,
                    identity: triggers::identity(&job),
                    uid: meta.uid.clone(),
                    entry,
                });
            }
            watcher::Event::Init => {
                self.relisting.insert(ns.clone(), HashSet::new());
            }
            watcher::Event::InitApply(job) => {
                let key = self.store(job, &mut out);
                if let Some(listed) = self.relisting.get_mut(ns) {
                    listed.insert(key);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.relisting.remove(ns).unwrap_or_default();
                let gone = self
                    .store
                    .keys_where(|j| ns.as_deref().is_none_or(|ns| j.namespace() == ns) && !listed.contains(j.key()));
                for key in gone {
                    if let Some(entry) = self.store.remove(&key) {
                        out.push(Change::gone(entry));
                    }
                }
                self.listed.insert(ns.clone());
                if !self.synced && self.listed.len() >= self.watches {
                    self.synced = true;
                    out.push(Change::Synced);
                }
            }
        }
        out
    }
}

/// The tagged events applied through `writer`, with watch errors passed on
/// (the watches retry with their backoff).
pub fn reflect<S>(events: S, mut writer: ScopedWriter) -> impl Stream<Item = Result<Change, watcher::Error>> + Send
where
    S: Stream<Item = Tagged<WatchedJob>> + Send,
{
    events
        .map(move |(ns, event)| match event {
            Ok(event) => writer.apply(&ns, event).into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
        .flat_map(futures::stream::iter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ns: &str, name: &str, generation: i64) -> WatchedJob {
        job_uid(ns, name, generation, &format!("uid-{name}"))
    }

    fn job_uid(ns: &str, name: &str, generation: i64, uid: &str) -> WatchedJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": name, "namespace": ns, "generation": generation, "uid": uid},
            "spec": {"jobId": "j", "regionId": "cn-hangzhou"}
        }))
        .unwrap()
    }

    fn names(store: &JobStore) -> Vec<String> {
        let mut v: Vec<String> = store.state().iter().map(|j| j.key().to_string()).collect();
        v.sort();
        v
    }

    fn list(w: &mut ScopedWriter, ns: &str, jobs: &[WatchedJob]) -> Vec<Change> {
        let ns = Some(ns.to_owned());
        let mut out = w.apply(&ns, watcher::Event::Init);
        for j in jobs {
            out.extend(w.apply(&ns, watcher::Event::InitApply(j.clone())));
        }
        out.extend(w.apply(&ns, watcher::Event::InitDone));
        out
    }

    fn synced(c: &Change) -> bool {
        matches!(c, Change::Synced)
    }

    fn deleted(changes: &[Change]) -> Vec<(String, Option<String>)> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Deleted { key, uid, .. } => Some((key.to_string(), uid.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_namespace_relisting_keeps_the_others_objects() {
        let store = JobStore::default();
        let mut w = ScopedWriter::new(store.clone(), 2);
        let first = list(&mut w, "a", &[job("a", "one", 1), job("a", "two", 1)]);
        assert!(!first.iter().any(synced), "not synced until every watch listed");
        let second = list(&mut w, "b", &[job("b", "three", 1)]);
        assert!(second.last().is_some_and(synced), "synced once");
        assert_eq!(names(&store), ["a/one", "a/two", "b/three"]);

        // Namespace a relists after a watch gap in which "two" was deleted.
        let relist = list(&mut w, "a", &[job("a", "one", 2)]);
        assert_eq!(names(&store), ["a/one", "b/three"], "b is untouched");
        assert_eq!(deleted(&relist), [("a/two".to_owned(), Some("uid-two".to_owned()))]);
        assert!(!relist.iter().any(synced), "Synced only once");
        let one = store.get(&JobKey::new("a", "one")).unwrap();
        assert_eq!(
            one.job().unwrap().metadata.generation,
            Some(2),
            "the relisted version is stored"
        );
    }

    #[test]
    fn events_pass_through_and_a_recreated_object_reports_the_old_one_gone() {
        let store = JobStore::default();
        let mut w = ScopedWriter::new(store.clone(), 1);
        let ns = Some("a".to_owned());
        let out = w.apply(&ns, watcher::Event::Apply(job("a", "x", 1)));
        assert!(matches!(out.as_slice(), [Change::Applied { key, .. }] if key.to_string() == "a/x"));
        assert_eq!(names(&store), ["a/x"]);
        let again = w.apply(&ns, watcher::Event::Apply(job("a", "x", 2)));
        assert!(deleted(&again).is_empty(), "a new version of the same object");
        let recreated = w.apply(&ns, watcher::Event::Apply(job_uid("a", "x", 1, "uid-new")));
        assert_eq!(deleted(&recreated), [("a/x".to_owned(), Some("uid-x".to_owned()))]);
        let gone = w.apply(&ns, watcher::Event::Delete(job_uid("a", "x", 1, "uid-new")));
        assert_eq!(deleted(&gone), [("a/x".to_owned(), Some("uid-new".to_owned()))]);
        assert!(names(&store).is_empty());
    }

    #[test]
    fn an_all_namespaces_relist_replaces_everything() {
        let store = JobStore::default();
        let mut w = ScopedWriter::new(store.clone(), 1);
        let all = None;
        for j in [job("a", "x", 1), job("b", "y", 1)] {
            w.apply(&all, watcher::Event::Apply(j));
        }
        w.apply(&all, watcher::Event::Init);
        w.apply(&all, watcher::Event::InitApply(job("b", "y", 1)));
        let done = w.apply(&all, watcher::Event::InitDone);
        assert_eq!(names(&store), ["b/y"]);
        assert_eq!(deleted(&done), [("a/x".to_owned(), Some("uid-x".to_owned()))]);
    }

    #[test]
    fn a_namespace_listed_twice_is_watched_once() {
        let scope = Scope {
            namespaces: vec!["a".into(), "b".into(), "a".into()],
            selector: None,
        };
        assert_eq!(scope.watches(), vec![Some("a".to_owned()), Some("b".to_owned())]);
        assert_eq!(Scope::default().watches(), vec![None]);
    }
}
