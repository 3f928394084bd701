//! What the DtsJob watch cache keeps of each object: [`CachedJob`].
//!
//! The cache holds every DtsJob in scope for the life of the process, so
//! its entry is what sets the operator's memory at fleet scale. A decoded
//! `DtsJob` costs about 2 KB on the heap (three conditions, the direction
//! records, up to ten history entries, each field its own allocation); most
//! of it is status that only a reconcile reads, and a reconcile runs rarely
//! (on a change, not on a timer). So an entry keeps:
//!
//! * the metadata the operator reads (no managed fields, labels, owner
//!   references or foreign annotations: see [`slim`]), decoded, because the
//!   controller's store and every ObjectRef need it;
//! * the spec, decoded: the observer and the Secret watch read it for every
//!   job;
//! * a [`Glance`] at the status: what the observer and the phase gauge read
//!   for every job, every cycle;
//! * the whole status, packed: compact JSON compressed with zstd against a
//!   built-in dictionary of typical statuses (about 150 bytes for a Running
//!   job instead of about 1.5 KB decoded). A reconcile unpacks it
//!   ([`CachedJob::job`]) in a few microseconds.
//!
//! The dictionary only makes the bytes smaller: any status packs and
//! unpacks exactly, whatever it holds.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use serde::{Deserialize, Deserializer};

use crate::crd::{Direction, DirectionState, DtsJob, DtsJobSpec, DtsJobStatus, Phase};

/// The compression level: higher levels cost more CPU for a few bytes on
/// inputs this small.
const LEVEL: i32 = 3;

/// Typical statuses (their keys, values and messages): what zstd refers to
/// instead of repeating it in every entry.
static DICTIONARY: &[u8] = include_bytes!("cache/dictionary.json");

static ENCODER: LazyLock<zstd::dict::EncoderDictionary<'static>> =
    LazyLock::new(|| zstd::dict::EncoderDictionary::copy(DICTIONARY, LEVEL));
static DECODER: LazyLock<zstd::dict::DecoderDictionary<'static>> =
    LazyLock::new(|| zstd::dict::DecoderDictionary::copy(DICTIONARY));

thread_local! {
    // One context per thread: creating one costs more than the work itself.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// The most a packed status may unpack to (a status is a few KB at most;
/// the API server caps the object at 1.5 MB).
const MAX_STATUS_BYTES: usize = 3 * 1024 * 1024;

/// Why a cache entry could not be read back (a defect, never input: the
/// reconcile then reads the object from the API server).
#[derive(Debug, thiserror::Error)]
#[error("the cached status does not unpack: {0}")]
pub struct UnpackError(String);

/// A DtsJob as the watch cache keeps it (see the module docs).
#[derive(Clone)]
pub struct CachedJob {
    pub metadata: ObjectMeta,
    pub spec: DtsJobSpec,
    glance: Glance,
    status: Option<Packed>,
}

/// What is read of every job's status on every observer cycle and scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Glance {
    pub phase: Option<Phase>,
    /// The record of each direction (Forward, Reverse) for the spec's jobId.
    directions: [Option<DirectionGlance>; 2],
}

/// Of one direction's record: what the observer's schedule needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectionGlance {
    pub state: DirectionState,
    /// DTS last showed this direction `Finished`.
    pub dts_finished: bool,
    /// When DTS was last read for it, in unix seconds (as the status
    /// records it; 8 bytes instead of a timestamp's 16 keep the entry in a
    /// smaller allocation class).
    observed_at: Option<i64>,
}

impl DirectionGlance {
    /// When DTS was last read for this direction.
    pub fn observed_at(&self) -> Option<Time> {
        self.observed_at
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map(Time)
    }
}

impl Glance {
    fn of(spec: &DtsJobSpec, status: Option<&DtsJobStatus>) -> Self {
        let records = status.map(|s| s.directions.as_slice()).unwrap_or_default();
        let at = |d: Direction| {
            crate::controller::decide::record_of(spec, records, d).map(|r| DirectionGlance {
                state: r.state,
                dts_finished: r.observed.as_ref().is_some_and(|o| {
                    o.status
                        .as_deref()
                        .is_some_and(|s| s.trim().eq_ignore_ascii_case("Finished"))
                }),
                observed_at: r.observed.as_ref().map(|o| o.observed_at.0.as_second()),
            })
        };
        Self {
            phase: status.and_then(|s| s.phase),
            directions: [at(Direction::Forward), at(Direction::Reverse)],
        }
    }

    /// The record of `d` for the spec's jobId, if there is one.
    pub fn direction(&self, d: Direction) -> Option<&DirectionGlance> {
        self.directions[d as usize].as_ref()
    }
}

/// A status as compressed bytes (a zstd frame that records its size).
#[derive(Clone)]
struct Packed(Box<[u8]>);

impl Packed {
    fn pack(status: &DtsJobStatus) -> Self {
        let json = serde_json::to_vec(status).expect("a DtsJobStatus always serializes");
        let compressed = COMPRESSOR.with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = zstd::bulk::Compressor::with_prepared_dictionary(&ENCODER).ok();
            }
            c.as_mut()?.compress(&json).ok()
        });
        // Without a compressor (out of memory), the JSON itself: a frame
        // never starts with `{`, so either unpacks.
        Packed(compressed.unwrap_or(json).into_boxed_slice())
    }

    fn unpack(&self) -> Result<DtsJobStatus, UnpackError> {
        let bytes = &self.0;
        if bytes.first() == Some(&b'{') {
            return serde_json::from_slice(bytes).map_err(|e| UnpackError(e.to_string()));
        }
        let json = DECOMPRESSOR.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::with_prepared_dictionary(&DECODER).map_err(|e| e.to_string())?);
            }
            let d = d.as_mut().expect("set above");
            let size = zstd::zstd_safe::get_frame_content_size(bytes)
                .ok()
                .flatten()
                .map_or(MAX_STATUS_BYTES, |n| (n as usize).min(MAX_STATUS_BYTES));
            d.decompress(bytes, size).map_err(|e| e.to_string())
        });
        let json = json.map_err(UnpackError)?;
        serde_json::from_slice(&json).map_err(|e| UnpackError(e.to_string()))
    }
}

/// Drops what the operator never reads: managed fields, labels (the
/// selector is applied by the API server), annotations other than
/// `kubedts.io/` ones (GitOps tools and `kubectl apply` add theirs; the
/// last-applied one repeats the whole object), owner references,
/// generateName and selfLink.
pub fn slim(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    meta.generate_name = None;
    meta.self_link = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.retain(|k, _| k.starts_with("kubedts.io/"));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

impl CachedJob {
    /// The whole DtsJob (but what [`slim`] drops), for a reconcile.
    pub fn job(&self) -> Result<DtsJob, UnpackError> {
        Ok(DtsJob {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status: self.status.as_ref().map(Packed::unpack).transpose()?,
        })
    }

    pub fn glance(&self) -> &Glance {
        &self.glance
    }

    /// The packed status's size in bytes (0 without a status).
    pub fn packed_len(&self) -> usize {
        self.status.as_ref().map_or(0, |p| p.0.len())
    }
}

impl From<DtsJob> for CachedJob {
    fn from(job: DtsJob) -> Self {
        let DtsJob {
            mut metadata,
            spec,
            status,
        } = job;
        slim(&mut metadata);
        Self {
            glance: Glance::of(&spec, status.as_ref()),
            status: status.as_ref().map(Packed::pack),
            metadata,
            spec,
        }
    }
}

impl std::fmt::Debug for CachedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedJob")
            .field("metadata", &self.metadata)
            .field("spec", &self.spec)
            .field("glance", &self.glance)
            .field("packed_status_bytes", &self.packed_len())
            .finish()
    }
}

/// The object as the API server sends it, with only the metadata the cache
/// keeps decoded: the managed fields (most of a small object's bytes),
/// labels and owner references are skipped while parsing, never built.
#[derive(Deserialize)]
struct Wire {
    metadata: WireMeta,
    spec: DtsJobSpec,
    #[serde(default)]
    status: Option<DtsJobStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
    #[serde(default)]
    creation_timestamp: Option<Time>,
    #[serde(default)]
    deletion_timestamp: Option<Time>,
    #[serde(default)]
    deletion_grace_period_seconds: Option<i64>,
    #[serde(default)]
    finalizers: Option<Vec<String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

impl<'de> Deserialize<'de> for CachedJob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Wire {
            metadata: m,
            spec,
            status,
        } = Wire::deserialize(deserializer)?;
        let metadata = ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            uid: m.uid,
            resource_version: m.resource_version,
            generation: m.generation,
            creation_timestamp: m.creation_timestamp,
            deletion_timestamp: m.deletion_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            finalizers: m.finalizers,
            annotations: m.annotations,
            ..ObjectMeta::default()
        };
        Ok(DtsJob { metadata, spec, status }.into())
    }
}

impl Resource for CachedJob {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        DtsJob::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        DtsJob::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        DtsJob::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        DtsJob::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        DtsJob::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests;
