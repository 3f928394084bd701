//! Events (`events.k8s.io/v1`), aggregated the way client-go's events
//! recorder does: an Event isomorphic to one sent in the last
//! [`SERIES_WINDOW`] (same object, type, reason, action and note, same
//! reporter) is not created again; the first one's `series` is patched
//! instead (`count`, `lastObservedTime`), so a job failing the same way on
//! every retry costs one Event and a small PATCH per retry.
//!
//! Why not kube-runtime's `Recorder`: it keeps a whole `Event` object per
//! key for six minutes (after a burst of 10,000 stops, some 10–20 MB held
//! for nothing), sweeps that map under a global write lock on every publish
//! (quadratic in a burst), leaves the note out of the key (a later note
//! with another RequestId is folded into the first Event and never shown),
//! and patches a series with the whole Event. This keeps a hash, a name and
//! a count per key, sweeps at most every [`SWEEP_EVERY`], and patches only
//! `series`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use serde_json::json;

/// How long an Event can gain a series: client-go's isomorphic-event window.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// The least time between two sweeps of expired keys.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Publishes Events as one reporter (`reportingController` /
/// `reportingInstance`).
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    cache: Mutex<Cache>,
}

struct Cache {
    series: HashMap<u64, Series>,
    swept: Instant,
}

/// What is remembered of an Event sent in the window: its name is the
/// regarding object's name and this stamp (see [`Recorder::new_event`]), so
/// only the stamp is kept (no allocation a key).
struct Series {
    stamp: u64,
    count: i32,
    last: Instant,
}

/// A new Event's stamp: its time in nanoseconds.
fn stamp_of(at: jiff::Timestamp) -> u64 {
    at.as_nanosecond() as u64
}

/// An Event's name: `<object>.<stamp in hex>`, as client-go names them.
fn event_name(regarding: &ObjectReference, controller: &str, stamp: u64) -> String {
    format!("{}.{stamp:x}", regarding.name.as_deref().unwrap_or(controller))
}

impl Recorder {
    /// `instance` defaults to `controller` (as kube's and client-go's do).
    pub fn new(client: Client, controller: &str, instance: Option<&str>) -> Self {
        Recorder {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or(controller).to_owned(),
            cache: Mutex::new(Cache {
                series: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Sends `ev` about `regarding`: a new Event, or the next count of an
    /// isomorphic one's series.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        let key = self.key(ev, regarding);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        if let Some((stamp, count)) = self.next_in_series(key, Instant::now()) {
            let name = event_name(regarding, &self.controller, stamp);
            let patch = json!({"series": EventSeries { count, last_observed_time: MicroTime(jiff::Timestamp::now()) }});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                // Gone already (the API server's Event TTL): start anew.
                Err(kube::Error::Api(s)) if s.code == 404 => self.forget(key),
                Err(e) => return Err(e),
            }
        }
        let now = jiff::Timestamp::now();
        let stamp = stamp_of(now);
        let event = self.new_event(ev, regarding, now);
        api.create(&PostParams::default(), &event).await?;
        self.lock().series.insert(
            key,
            Series {
                stamp,
                count: 1,
                last: Instant::now(),
            },
        );
        Ok(())
    }

    /// Keys remembered (for the memory figures and tests).
    pub fn held(&self) -> usize {
        self.lock().series.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Event to patch and its new count, when `key` was sent within the
    /// window; sweeps expired keys at most every [`SWEEP_EVERY`].
    fn next_in_series(&self, key: u64, now: Instant) -> Option<(u64, i32)> {
        let mut cache = self.lock();
        if now.duration_since(cache.swept) >= SWEEP_EVERY {
            cache.series.retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
            // A burst's keys are gone a window later: give their room back.
            if cache.series.capacity() > 64 && cache.series.len() < cache.series.capacity() / 4 {
                cache.series.shrink_to_fit();
            }
            cache.swept = now;
        }
        let s = cache.series.get_mut(&key)?;
        if now.duration_since(s.last) >= SERIES_WINDOW {
            return None;
        }
        s.count = s.count.saturating_add(1);
        s.last = now;
        Some((s.stamp, s.count.max(2)))
    }

    fn forget(&self, key: u64) {
        self.lock().series.remove(&key);
    }

    /// What makes two Events isomorphic (client-go's `getKey`): reporter,
    /// the object, type, reason, action and note.
    fn key(&self, ev: &Event, regarding: &ObjectReference) -> u64 {
        let mut h = DefaultHasher::new();
        self.controller.hash(&mut h);
        self.instance.hash(&mut h);
        (&regarding.namespace, &regarding.name, &regarding.uid, &regarding.kind).hash(&mut h);
        matches!(ev.type_, EventType::Warning).hash(&mut h);
        (&ev.reason, &ev.action, &ev.note).hash(&mut h);
        h.finish()
    }

    /// A new Event at `now`, named for [`stamp_of`] `now`.
    fn new_event(&self, ev: &Event, regarding: &ObjectReference, now: jiff::Timestamp) -> K8sEvent {
        K8sEvent {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(event_name(regarding, &self.controller, stamp_of(now))),
                ..Default::default()
            },
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> Recorder {
        // Never connects: the tests exercise the cache only (a kube Client
        // needs a runtime to be built, hence the async tests).
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        Recorder::new(Client::try_from(config).unwrap(), "dts-operator", Some("pod-a"))
    }

    fn event(note: &str) -> Event {
        Event {
            type_: EventType::Warning,
            reason: "StopFailed".into(),
            note: Some(note.into()),
            action: "StopForward".into(),
            secondary: None,
        }
    }

    fn job(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("DtsJob".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_same_event_within_the_window_continues_its_series() {
        let r = recorder();
        let key = r.key(&event("Forward: throttled"), &job("a"));
        let t0 = Instant::now();
        assert_eq!(r.next_in_series(key, t0), None, "never sent: create");
        r.lock().series.insert(
            key,
            Series {
                stamp: 0x1f,
                count: 1,
                last: t0,
            },
        );
        assert_eq!(r.next_in_series(key, t0 + Duration::from_secs(1)), Some((0x1f, 2)));
        assert_eq!(r.next_in_series(key, t0 + Duration::from_secs(2)), Some((0x1f, 3)));
        assert_eq!(
            event_name(&job("a"), "dts-operator", 0x1f),
            "a.1f",
            "the name it was created with"
        );
        // Quiet for a whole window after its last occurrence: a new Event.
        assert_eq!(r.next_in_series(key, t0 + Duration::from_secs(2) + SERIES_WINDOW), None);
    }

    #[tokio::test]
    async fn another_note_object_or_reporter_is_another_event() {
        let r = recorder();
        let base = r.key(&event("Forward: throttled"), &job("a"));
        assert_ne!(base, r.key(&event("Forward: throttled (RequestId X)"), &job("a")));
        assert_ne!(base, r.key(&event("Forward: throttled"), &job("b")));
        let other = Recorder::new(r.client.clone(), "dts-operator", Some("pod-b"));
        assert_ne!(base, other.key(&event("Forward: throttled"), &job("a")));
        assert_eq!(base, r.key(&event("Forward: throttled"), &job("a")));
    }

    #[tokio::test]
    async fn expired_keys_are_swept_so_the_cache_stays_small() {
        let r = recorder();
        let t0 = Instant::now();
        for i in 0..100u64 {
            r.lock().series.insert(
                i,
                Series {
                    stamp: i,
                    count: 1,
                    last: t0,
                },
            );
        }
        r.lock().swept = t0;
        let later = t0 + SERIES_WINDOW + SWEEP_EVERY;
        assert!(r.lock().series.capacity() >= 100);
        assert_eq!(r.next_in_series(1000, later), None);
        assert_eq!(r.held(), 0, "every key outlived the window");
        assert!(r.lock().series.capacity() < 100, "and their room is given back");
    }
}
