//! Which watch events start a reconcile: those that change what a
//! reconcile acts on (see [`trigger_hash`]), so the operator's own status
//! writes never trigger one.
//!
//! kube-runtime's `predicate_filter` does the same with a map keyed by the
//! object's full `ObjectRef` (name, namespace, uid and resourceVersion
//! strings, about 230 bytes a DtsJob) that it never shrinks. This keeps 16
//! bytes a DtsJob (a 64-bit hash of namespace, name and uid, and the
//! trigger hash) and forgets deleted objects.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use kube::{Resource, ResourceExt};

use crate::crd::{PAUSED, RECONCILE_REQUESTED_AT};

/// What triggers a reconcile: a new generation, a new
/// reconcile-requested-at or paused annotation, deletion or finalizer
/// changes. The operator's own status writes change none of these.
pub fn trigger_hash(job: &impl Resource) -> u64 {
    let mut h = DefaultHasher::new();
    let meta = job.meta();
    meta.generation.hash(&mut h);
    job.annotations().get(RECONCILE_REQUESTED_AT).hash(&mut h);
    job.annotations().get(PAUSED).hash(&mut h);
    meta.deletion_timestamp.as_ref().map(|t| t.0.as_second()).hash(&mut h);
    meta.finalizers.hash(&mut h);
    h.finish()
}

/// The object's identity as one number: a DtsJob recreated under the same
/// name (a new uid) is another object. SipHash with fixed keys; two of
/// 10,000 objects colliding has odds of about 3 in 10^12.
fn identity(job: &impl Resource) -> u64 {
    let mut h = DefaultHasher::new();
    let meta = job.meta();
    (meta.namespace.as_deref(), meta.name.as_deref(), meta.uid.as_deref()).hash(&mut h);
    h.finish()
}

/// The trigger hash last passed on, per object.
#[derive(Debug, Default)]
pub struct Triggers {
    last: Mutex<HashMap<u64, u64>>,
}

impl Triggers {
    /// Whether `job` is worth a reconcile: first seen, or its trigger hash
    /// changed since the last one passed on.
    pub fn changed(&self, job: &impl Resource) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let hash = trigger_hash(job);
        last.insert(identity(job), hash) != Some(hash)
    }

    /// Forgets a deleted object (a new one of the same name and uid would
    /// trigger again).
    pub fn forget(&self, job: &impl Resource) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.remove(&identity(job));
    }

    /// Keeps only the objects of `live` (after a relist, which reports no
    /// deletions).
    pub fn retain<'a, K: Resource + 'a>(&self, live: impl IntoIterator<Item = &'a K>) {
        let keep: HashSet<u64> = live.into_iter().map(|k| identity(k)).collect();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.retain(|k, _| keep.contains(k));
        last.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DtsJob;
    use serde_json::json;

    fn job(uid: &str, generation: i64, phase: &str) -> DtsJob {
        serde_json::from_value(json!({
            "apiVersion": "kubedts.io/v1alpha1", "kind": "DtsJob",
            "metadata": {"name": "a", "namespace": "ns", "uid": uid, "generation": generation},
            "spec": {"jobId": "j", "regionId": "cn-hangzhou"},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn a_status_write_does_not_trigger_and_a_spec_change_does() {
        let t = Triggers::default();
        assert!(t.changed(&job("u1", 1, "Running")), "first seen");
        assert!(!t.changed(&job("u1", 1, "Stopping")), "the operator's own status write");
        assert!(t.changed(&job("u1", 2, "Stopping")), "a new generation");
        assert!(!t.changed(&job("u1", 2, "Stopped")));
        let mut paused = job("u1", 2, "Stopped");
        paused.annotations_mut().insert(PAUSED.into(), "true".into());
        assert!(t.changed(&paused), "the paused annotation");
        assert!(
            t.changed(&job("u2", 2, "Stopped")),
            "recreated under the same name: a new uid"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn deleted_and_relisted_away_objects_are_forgotten() {
        let t = Triggers::default();
        let (a, b) = (job("u1", 1, "Running"), job("u2", 1, "Running"));
        t.changed(&a);
        t.changed(&b);
        t.forget(&a);
        assert_eq!(t.len(), 1);
        assert!(t.changed(&a), "seen anew after its deletion");
        t.retain([&a]);
        assert_eq!(t.len(), 1, "b is gone from the relist");
        assert!(!t.changed(&a));
    }
}
