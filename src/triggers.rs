//! Which watch events start a reconcile: those that change what a
//! reconcile acts on (see [`trigger_hash`]), so the operator's own status
//! writes never trigger one.
//!
//! kube-runtime's `predicate_filter` does the same with a map keyed by the
//! object's full `ObjectRef` (name, namespace, uid and resourceVersion
//! strings, about 230 bytes a DtsJob) that it never shrinks. This keeps 16
//! bytes a DtsJob (a 64-bit hash of namespace, name and uid, and the
//! trigger hash) and forgets deleted objects.

use std::collections::HashMap;
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
pub fn identity(job: &impl Resource) -> u64 {
    let meta = job.meta();
    identity_of(meta.namespace.as_deref(), meta.name.as_deref(), meta.uid.as_deref())
}

/// [`identity`] of the object with this namespace, name and uid.
pub fn identity_of(namespace: Option<&str>, name: Option<&str>, uid: Option<&str>) -> u64 {
    let mut h = DefaultHasher::new();
    (namespace, name, uid).hash(&mut h);
    h.finish()
}

/// The trigger hash last passed on, per object.
#[derive(Debug, Default)]
pub struct Triggers {
    last: Mutex<HashMap<u64, u64>>,
}

impl Triggers {
    /// Whether the object of `identity`, whose trigger hash is now
    /// `trigger`, is worth a reconcile: first seen, or its trigger hash
    /// changed since the last one passed on.
    pub fn changed(&self, identity: u64, trigger: u64) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.insert(identity, trigger) != Some(trigger)
    }

    /// Forgets a deleted object (a new one of the same name and uid would
    /// trigger again). A map left mostly empty gives its room back.
    pub fn forget(&self, identity: u64) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.remove(&identity);
        if last.capacity() > 1024 && last.len() < last.capacity() / 4 {
            last.shrink_to_fit();
        }
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

    /// Passes `job` through `t` as the watch does.
    fn seen(t: &Triggers, job: &DtsJob) -> bool {
        t.changed(identity(job), trigger_hash(job))
    }

    #[test]
    fn a_status_write_does_not_trigger_and_a_spec_change_does() {
        let t = Triggers::default();
        assert!(seen(&t, &job("u1", 1, "Running")), "first seen");
        assert!(!seen(&t, &job("u1", 1, "Stopping")), "the operator's own status write");
        assert!(seen(&t, &job("u1", 2, "Stopping")), "a new generation");
        assert!(!seen(&t, &job("u1", 2, "Stopped")));
        let mut paused = job("u1", 2, "Stopped");
        paused.annotations_mut().insert(PAUSED.into(), "true".into());
        assert!(seen(&t, &paused), "the paused annotation");
        assert!(
            seen(&t, &job("u2", 2, "Stopped")),
            "recreated under the same name: a new uid"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn deleted_objects_are_forgotten() {
        let t = Triggers::default();
        let (a, b) = (job("u1", 1, "Running"), job("u2", 1, "Running"));
        seen(&t, &a);
        seen(&t, &b);
        t.forget(identity(&a));
        assert_eq!(t.len(), 1);
        assert!(seen(&t, &a), "seen anew after its deletion");
        assert!(!seen(&t, &b));
    }
}
