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
//!
//! Events give way to status writes ([`Sink::writing`]): the status is the
//! record and the Events are commentary, and in a burst both compete for
//! the same API server CPU. A queued Event waits until no status or
//! finalizer write has been in flight for [`EVENT_CALM`], for at most [`EVENT_DEFER`] after it
//! was queued, and not at all once its writer's queue is half full (so
//! giving way never drops an Event that would otherwise have been written).
//! A stop at rest delays its Events by the calm only: they are queued after
//! its last write has returned.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant as TokioInstant;
use tracing::warn;

use crate::metrics::{EventOutcome, Metrics};

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
    /// What [`Series::last`] counts seconds from.
    epoch: Instant,
}

const _: () = assert!(std::mem::size_of::<Series>() == 16);

/// `now` in whole seconds since `epoch` (the window is minutes long).
fn secs(epoch: Instant, now: Instant) -> u32 {
    u32::try_from(now.saturating_duration_since(epoch).as_secs()).unwrap_or(u32::MAX)
}

/// Whether a series last seen at `last` (in [`secs`]) is still open at `now`.
fn open(epoch: Instant, last: u32, now: Instant) -> bool {
    u64::from(secs(epoch, now).saturating_sub(last)) < SERIES_WINDOW.as_secs()
}

/// What is remembered of an Event sent in the window: its name is the
/// regarding object's name and this stamp (see [`Recorder::new_event`]), so
/// only the stamp is kept (no allocation a key). 16 bytes: after a burst
/// of 50,000 stops the table holds one per job for six minutes.
struct Series {
    stamp: u64,
    count: i32,
    /// When it last occurred, in [`secs`] since [`Cache::epoch`].
    last: u32,
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
                epoch: Instant::now(),
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
        self.remember(key, stamp, Instant::now());
        Ok(())
    }

    /// Opens the series of `key`, whose first Event has `stamp`, at `now`.
    fn remember(&self, key: u64, stamp: u64, now: Instant) {
        let mut cache = self.lock();
        let last = secs(cache.epoch, now);
        cache.series.insert(key, Series { stamp, count: 1, last });
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
            let epoch = cache.epoch;
            cache.series.retain(|_, s| open(epoch, s.last, now));
            // A burst's keys are gone a window later: give their room back.
            if cache.series.capacity() > 64 && cache.series.len() < cache.series.capacity() / 4 {
                cache.series.shrink_to_fit();
            }
            cache.swept = now;
        }
        let epoch = cache.epoch;
        let s = cache.series.get_mut(&key)?;
        if !open(epoch, s.last, now) {
            return None;
        }
        s.count = s.count.saturating_add(1);
        s.last = secs(epoch, now);
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

/// Event writers. Each object's Events go through one of them (by a hash of
/// its namespace and name), so they are written in the order they were
/// made; several writers keep one slow write from holding all the others.
pub const EVENT_WRITERS: usize = 4;

/// Events each writer holds before new ones are dropped (client-go's
/// broadcaster holds 1,000 and drops too): Events are best-effort, and a
/// queue without a bound would let an API server that stopped answering
/// fill the operator's memory.
pub const EVENT_QUEUE: usize = 1024;

/// One Event waiting for its writer, boxed in the queue: a Tokio channel
/// keeps the blocks its longest backlog needed for as long as it lives, so
/// a slot holds a pointer (8 bytes) rather than the Event itself (about 420
/// bytes): after a burst the four queues keep a few KiB, not 1.7 MiB.
type Queued = Box<QueuedEvent>;

struct QueuedEvent {
    ev: Event,
    regarding: ObjectReference,
    /// When it was queued: it gives way to status writes until
    /// [`EVENT_DEFER`] after this.
    queued: TokioInstant,
}

/// The longest an Event gives way to status writes (see the module doc):
/// long enough for a burst of a thousand stops to finish its status writes
/// first, short enough that `kubectl describe` shows the Event soon after.
pub const EVENT_DEFER: Duration = Duration::from_secs(10);

/// How long after the last status write returned the API server counts
/// as calm again: in a burst the writes of the many jobs in flight leave
/// gaps of a few milliseconds between them (a job waiting for DTS writes
/// nothing), which are not the end of the burst.
pub const EVENT_CALM: Duration = Duration::from_millis(100);

/// Status writes in flight, which queued Events give way to.
struct InFlight {
    count: AtomicUsize,
    /// When the last write returned, in ms since `epoch`, plus one (0: none
    /// yet).
    last_end: AtomicU64,
    epoch: TokioInstant,
    /// Woken when the count drops to zero.
    quiet: Notify,
}

impl InFlight {
    fn new() -> Self {
        InFlight {
            count: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
            epoch: TokioInstant::now(),
            quiet: Notify::new(),
        }
    }

    /// Returns once no status write has been in flight for [`EVENT_CALM`],
    /// or at `deadline`.
    async fn calm_by(&self, deadline: TokioInstant) {
        loop {
            let quiet = self.quiet.notified();
            tokio::pin!(quiet);
            quiet.as_mut().enable();
            if self.count.load(Ordering::Acquire) > 0 {
                tokio::select! {
                    _ = quiet => continue,
                    _ = tokio::time::sleep_until(deadline) => return,
                }
            }
            let calm_at = match self.last_end.load(Ordering::Acquire) {
                0 => return,
                ms => self.epoch + Duration::from_millis(ms - 1) + EVENT_CALM,
            };
            let now = TokioInstant::now();
            if now >= calm_at || now >= deadline {
                return;
            }
            // A write may start meanwhile: look again when the calm is due.
            tokio::time::sleep_until(calm_at.min(deadline)).await;
        }
    }
}

/// A status write in flight ([`Sink::writing`]); Events give way until it
/// is dropped.
pub struct Writing(Arc<InFlight>);

impl Drop for Writing {
    fn drop(&mut self) {
        let ended = self.0.epoch.elapsed().as_millis() as u64 + 1;
        self.0.last_end.fetch_max(ended, Ordering::AcqRel);
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.quiet.notify_waiters();
        }
    }
}

/// Publishes Events in the background through a [`Recorder`]: [`Sink::send`]
/// never waits, [`Sink::flush`] waits for what was queued.
pub struct Sink {
    writers: Vec<mpsc::Sender<Queued>>,
    pending: Arc<Pending>,
    in_flight: Arc<InFlight>,
    metrics: Arc<Metrics>,
}

/// Events queued or being written, and a wake-up for when none are.
#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    idle: Notify,
}

impl Pending {
    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

impl Sink {
    /// Starts the writers (on the current Tokio runtime). Each write of an
    /// Event (its POST, or its series PATCH) has `timeout`; an Event gives
    /// way to status writes for at most `defer` ([`EVENT_DEFER`]).
    pub fn spawn(recorder: Recorder, timeout: Duration, defer: Duration, metrics: Arc<Metrics>) -> Self {
        let recorder = Arc::new(recorder);
        let pending = Arc::new(Pending::default());
        let in_flight = Arc::new(InFlight::new());
        let writers = (0..EVENT_WRITERS)
            .map(|_| {
                let (tx, rx) = mpsc::channel(EVENT_QUEUE);
                let writer = Writer {
                    recorder: recorder.clone(),
                    timeout,
                    defer,
                    pending: pending.clone(),
                    in_flight: in_flight.clone(),
                    metrics: metrics.clone(),
                };
                tokio::spawn(writer.run(rx));
                tx
            })
            .collect();
        Sink {
            writers,
            pending,
            in_flight,
            metrics,
        }
    }

    /// Marks a status write in flight until the guard is dropped: queued
    /// Events give way to it.
    pub fn writing(&self) -> Writing {
        self.in_flight.count.fetch_add(1, Ordering::AcqRel);
        Writing(self.in_flight.clone())
    }

    /// Queues `ev` about `regarding`; dropped (counted, and logged now and
    /// then) when its writer's queue is full.
    pub fn send(&self, ev: Event, regarding: ObjectReference) {
        let mut h = DefaultHasher::new();
        (&regarding.namespace, &regarding.name).hash(&mut h);
        let writer = &self.writers[(h.finish() % self.writers.len() as u64) as usize];
        self.pending.count.fetch_add(1, Ordering::AcqRel);
        let queued = Box::new(QueuedEvent {
            ev,
            regarding,
            queued: TokioInstant::now(),
        });
        if let Err(e) = writer.try_send(queued) {
            self.pending.done();
            let dropped = self.metrics.event(EventOutcome::Dropped);
            if dropped.is_power_of_two() {
                let q = match &e {
                    mpsc::error::TrySendError::Full(q) | mpsc::error::TrySendError::Closed(q) => q,
                };
                warn!(reason = %q.ev.reason, dropped, "the Event queue is full: Event dropped");
            }
        }
    }

    /// Waits until every Event queued so far is written (or failed), at
    /// most `within`; whether it came to that.
    pub async fn flush(&self, within: Duration) -> bool {
        let waited = tokio::time::timeout(within, async {
            loop {
                let idle = self.pending.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.pending.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        });
        waited.await.is_ok()
    }
}

/// One writer of a [`Sink`].
struct Writer {
    recorder: Arc<Recorder>,
    timeout: Duration,
    defer: Duration,
    pending: Arc<Pending>,
    in_flight: Arc<InFlight>,
    metrics: Arc<Metrics>,
}

impl Writer {
    /// Writes its Events, in order, until the [`Sink`] is dropped.
    async fn run(self, mut queue: mpsc::Receiver<Queued>) {
        while let Some(queued) = queue.recv().await {
            let QueuedEvent { ev, regarding, queued } = *queued;
            if queue.len() < EVENT_QUEUE / 2 {
                self.in_flight.calm_by(queued + self.defer).await;
            }
            let published = tokio::time::timeout(self.timeout, self.recorder.publish(&ev, &regarding));
            let outcome = match published.await {
                Ok(Ok(())) => EventOutcome::Recorded,
                Ok(Err(e)) => {
                    warn!(error = %e, reason = %ev.reason, "could not record Event");
                    EventOutcome::Error
                }
                Err(_) => {
                    warn!(reason = %ev.reason, "recording an Event timed out");
                    EventOutcome::Timeout
                }
            };
            self.metrics.event(outcome);
            self.pending.done();
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
        r.remember(key, 0x1f, t0);
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
            r.remember(i, i, t0);
        }
        r.lock().swept = t0;
        let later = t0 + SERIES_WINDOW + SWEEP_EVERY;
        assert!(r.lock().series.capacity() >= 100);
        assert_eq!(r.next_in_series(1000, later), None);
        assert_eq!(r.held(), 0, "every key outlived the window");
        assert!(r.lock().series.capacity() < 100, "and their room is given back");
    }

    /// A kube Client whose API server is `answer`ed by the test: each
    /// request's JSON body goes to `seen`; the first `hold` requests are
    /// never answered.
    fn api(seen: Arc<Mutex<Vec<serde_json::Value>>>, hold: usize) -> Client {
        let (service, mut handle) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
                let body = req.into_body().collect_bytes().await.unwrap_or_default();
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                seen.lock().unwrap().push(json.clone());
                if held.len() < hold {
                    held.push(send);
                    continue;
                }
                let response = http::Response::builder()
                    .status(201)
                    .body(kube::client::Body::from(serde_json::to_vec(&json).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        Client::new(service, "default")
    }

    fn exported(registry: &prometheus_client::registry::Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[tokio::test]
    async fn events_are_written_in_the_background_in_their_order_and_flush_waits_for_them() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let recorder = Recorder::new(api(seen.clone(), 0), "dts-operator", None);
        let sink = Sink::spawn(recorder, Duration::from_secs(10), EVENT_DEFER, metrics);
        for i in 0..20 {
            sink.send(event(&format!("note {i}")), job("a"));
        }
        // send() only queued them (the writers have not run yet).
        assert!(seen.lock().unwrap().is_empty());
        assert!(sink.flush(Duration::from_secs(10)).await, "flushed");
        let notes: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|e| e["note"].as_str().unwrap().to_owned())
            .collect();
        let made: Vec<String> = (0..20).map(|i| format!("note {i}")).collect();
        assert_eq!(notes, made, "one object's Events keep their order");
        assert!(
            exported(&registry).contains("dts_operator_events_total{outcome=\"recorded\"} 20"),
            "{}",
            exported(&registry)
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_flush_gives_up_at_its_bound() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        // The API server never answers.
        let recorder = Recorder::new(api(seen.clone(), usize::MAX), "dts-operator", None);
        let sink = Sink::spawn(recorder, Duration::from_secs(60), EVENT_DEFER, metrics);
        // All for one object, so one writer; it has not taken any yet.
        for i in 0..EVENT_QUEUE + 6 {
            sink.send(event(&format!("note {i}")), job("a"));
        }
        let text = exported(&registry);
        assert!(
            text.contains("dts_operator_events_total{outcome=\"dropped\"} 6"),
            "{text}"
        );
        let start = Instant::now();
        assert!(!sink.flush(Duration::from_millis(200)).await, "nothing can be written");
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(seen.lock().unwrap().len(), 1, "the writer waits on its first Event");
    }

    fn sink_with(seen: &Arc<Mutex<Vec<serde_json::Value>>>, defer: Duration) -> Sink {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let recorder = Recorder::new(api(seen.clone(), 0), "dts-operator", None);
        Sink::spawn(recorder, Duration::from_secs(10), defer, metrics)
    }

    #[tokio::test]
    async fn an_event_gives_way_to_a_status_write_in_flight_until_it_returns() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = sink_with(&seen, Duration::from_secs(60));
        // With no write in flight an Event is written at once.
        sink.send(event("first"), job("a"));
        assert!(
            sink.flush(Duration::from_secs(10)).await,
            "written with nothing in flight"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);

        let writing = sink.writing();
        sink.send(event("second"), job("a"));
        assert!(
            !sink.flush(Duration::from_millis(300)).await,
            "held while the status write is in flight"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
        drop(writing);
        let returned = Instant::now();
        assert!(sink.flush(Duration::from_secs(10)).await, "written once it returned");
        assert!(
            returned.elapsed() >= EVENT_CALM,
            "and the calm passed: {:?}",
            returned.elapsed()
        );
        assert_eq!(seen.lock().unwrap()[1]["note"], "second");
    }

    #[tokio::test]
    async fn an_event_gives_way_for_at_most_its_defer() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let defer = Duration::from_millis(400);
        let sink = sink_with(&seen, defer);
        let _writing = sink.writing();
        let start = Instant::now();
        sink.send(event("late"), job("a"));
        assert!(
            sink.flush(Duration::from_secs(20)).await,
            "written although writes never pause"
        );
        assert!(start.elapsed() >= defer, "not before its defer: {:?}", start.elapsed());
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_half_full_queue_no_longer_gives_way_so_giving_way_drops_nothing() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = sink_with(&seen, Duration::from_secs(600));
        let writing = sink.writing();
        let n = EVENT_QUEUE / 2 + 20;
        for i in 0..n {
            sink.send(event(&format!("note {i}")), job("a"));
        }
        // The writer works the queue down to half without waiting.
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.lock().unwrap().len() < 20 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let written = seen.lock().unwrap().len();
        assert!(
            (20..=21).contains(&written),
            "written down to half the queue, then held: {written}"
        );
        drop(writing);
        assert!(sink.flush(Duration::from_secs(20)).await);
        assert_eq!(seen.lock().unwrap().len(), n, "none dropped");
    }
}
