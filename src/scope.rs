//! Which DtsJobs (and Secrets) one replica set handles: every namespace, or
//! a list of namespaces, narrowed by an optional label selector. A fleet is
//! split across Deployments by giving each its own scope and its own Lease
//! (`--lease-name`); two shards must never share a DtsJob, which disjoint
//! namespaces or disjoint selectors guarantee.
//!
//! With several namespaces there is one watch per namespace, all feeding one
//! store. kube-runtime's reflector treats every relist as the whole store
//! (it swaps in the listed objects), so one namespace's relist would drop
//! every other namespace's objects. [`ScopedWriter`] applies the events
//! itself instead: a relist of one watch replaces only what that watch
//! covers, and the objects it no longer lists are deleted from the store
//! (with a `Delete` passed on, so the backoff of such a job is forgotten).

use std::collections::{HashMap, HashSet};

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};

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

/// Applies tagged events to one store so that each watch's relist replaces
/// only that watch's objects. The store is marked ready at once (empty):
/// the controller then runs each object as its event arrives, and
/// [`ScopedWriter::apply`] reports when every watch has listed.
pub struct ScopedWriter<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: Writer<K>,
    reader: Store<K>,
    watches: usize,
    /// The objects listed so far by each watch that is relisting.
    relisting: HashMap<Option<String>, HashSet<ObjectRef<K>>>,
    listed: HashSet<Option<String>>,
    synced: bool,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> ScopedWriter<K> {
    pub fn new(mut writer: Writer<K>, watches: usize) -> Self {
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Self {
            reader: writer.as_reader(),
            writer,
            watches,
            relisting: HashMap::new(),
            listed: HashSet::new(),
            synced: false,
        }
    }

    /// Applies one event of watch `ns` and returns what to pass on: each
    /// object applied (`Apply`) or removed (`Delete`), and once, when every
    /// watch has listed for the first time, `InitDone`.
    pub fn apply(&mut self, ns: &Option<String>, event: watcher::Event<K>) -> Vec<watcher::Event<K>> {
        match event {
            watcher::Event::Apply(obj) => {
                self.writer.apply_watcher_event(&watcher::Event::Apply(obj.clone()));
                vec![watcher::Event::Apply(obj)]
            }
            watcher::Event::Delete(obj) => {
                self.writer.apply_watcher_event(&watcher::Event::Delete(obj.clone()));
                vec![watcher::Event::Delete(obj)]
            }
            watcher::Event::Init => {
                self.relisting.insert(ns.clone(), HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                if let Some(listed) = self.relisting.get_mut(ns) {
                    listed.insert(ObjectRef::from_obj(&obj));
                }
                self.writer.apply_watcher_event(&watcher::Event::Apply(obj.clone()));
                vec![watcher::Event::Apply(obj)]
            }
            watcher::Event::InitDone => {
                let listed = self.relisting.remove(ns).unwrap_or_default();
                let gone: Vec<K> = self
                    .reader
                    .state()
                    .iter()
                    .filter(|o| ns.is_none() || o.namespace() == *ns)
                    .filter(|o| !listed.contains(&ObjectRef::from_obj(&***o)))
                    .map(|o| (**o).clone())
                    .collect();
                let mut out = Vec::with_capacity(gone.len() + 1);
                for obj in gone {
                    self.writer.apply_watcher_event(&watcher::Event::Delete(obj.clone()));
                    out.push(watcher::Event::Delete(obj));
                }
                self.listed.insert(ns.clone());
                if !self.synced && self.listed.len() >= self.watches {
                    self.synced = true;
                    out.push(watcher::Event::InitDone);
                }
                out
            }
        }
    }
}

/// The tagged events applied through `writer`, with watch errors passed on
/// (the watches retry with their backoff).
pub fn reflect<K, S>(
    events: S,
    mut writer: ScopedWriter<K>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = Tagged<K>> + Send,
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
    use crate::crd::DtsJob;
    use kube::runtime::reflector;

    fn job(ns: &str, name: &str, generation: i64) -> DtsJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": name, "namespace": ns, "generation": generation},
            "spec": {"jobId": "j", "regionId": "cn-hangzhou"}
        }))
        .unwrap()
    }

    fn names(store: &Store<DtsJob>) -> Vec<String> {
        let mut v: Vec<String> = store
            .state()
            .iter()
            .map(|j| format!("{}/{}", j.namespace().unwrap(), j.name_any()))
            .collect();
        v.sort();
        v
    }

    fn list(w: &mut ScopedWriter<DtsJob>, ns: &str, jobs: &[DtsJob]) -> Vec<watcher::Event<DtsJob>> {
        let ns = Some(ns.to_owned());
        let mut out = w.apply(&ns, watcher::Event::Init);
        for j in jobs {
            out.extend(w.apply(&ns, watcher::Event::InitApply(j.clone())));
        }
        out.extend(w.apply(&ns, watcher::Event::InitDone));
        out
    }

    #[test]
    fn one_namespace_relisting_keeps_the_others_objects() {
        let (reader, writer) = reflector::store::<DtsJob>();
        let mut w = ScopedWriter::new(writer, 2);
        let first = list(&mut w, "a", &[job("a", "one", 1), job("a", "two", 1)]);
        assert!(
            !first.iter().any(|e| matches!(e, watcher::Event::InitDone)),
            "not synced until every watch listed"
        );
        let second = list(&mut w, "b", &[job("b", "three", 1)]);
        assert!(matches!(second.last(), Some(watcher::Event::InitDone)), "synced once");
        assert_eq!(names(&reader), ["a/one", "a/two", "b/three"]);

        // Namespace a relists after a watch gap in which "two" was deleted.
        let relist = list(&mut w, "a", &[job("a", "one", 2)]);
        assert_eq!(names(&reader), ["a/one", "b/three"], "b is untouched");
        assert!(relist
            .iter()
            .any(|e| matches!(e, watcher::Event::Delete(j) if j.name_any() == "two")));
        assert!(
            !relist.iter().any(|e| matches!(e, watcher::Event::InitDone)),
            "InitDone only once"
        );
        let one = reader.get(&ObjectRef::new("one").within("a")).unwrap();
        assert_eq!(one.metadata.generation, Some(2), "the relisted version is stored");
    }

    #[tokio::test]
    async fn the_store_is_ready_and_events_pass_through() {
        let (reader, writer) = reflector::store::<DtsJob>();
        let mut w = ScopedWriter::new(writer, 1);
        tokio::time::timeout(std::time::Duration::from_secs(1), reader.wait_until_ready())
            .await
            .expect("ready at once")
            .expect("ready");
        let ns = Some("a".to_owned());
        let out = w.apply(&ns, watcher::Event::Apply(job("a", "x", 1)));
        assert!(matches!(out.as_slice(), [watcher::Event::Apply(_)]));
        assert_eq!(names(&reader), ["a/x"]);
        w.apply(&ns, watcher::Event::Delete(job("a", "x", 1)));
        assert!(names(&reader).is_empty());
    }

    #[test]
    fn an_all_namespaces_relist_replaces_everything() {
        let (reader, writer) = reflector::store::<DtsJob>();
        let mut w = ScopedWriter::new(writer, 1);
        let all = None;
        for j in [job("a", "x", 1), job("b", "y", 1)] {
            w.apply(&all, watcher::Event::Apply(j));
        }
        w.apply(&all, watcher::Event::Init);
        w.apply(&all, watcher::Event::InitApply(job("b", "y", 1)));
        w.apply(&all, watcher::Event::InitDone);
        assert_eq!(names(&reader), ["b/y"]);
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
