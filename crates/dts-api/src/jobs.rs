//! What the describe calls answer, read into plain values:
//! [`JobDetail`] (`DescribeDtsJobDetail`) and [`JobPage`] / [`JobView`]
//! (`DescribeDtsJobs`), and the [`JobsQuery`] that asks for a page.
//!
//! The readers are pure functions of an [`ApiSuccess`], so every answer
//! shape is testable without a transport. They are lenient in the ways DTS
//! and its SDK models are inconsistent (docs/dts-api.md §6): the official
//! Python model types `Checkpoint` as an int in DescribeDtsJobDetail but as
//! a string in DescribeDtsJobs, so every number is accepted as a JSON number
//! or as a string. A field that is missing, empty or of an unexpected type
//! is `None`, never a panic. Field names are matched exactly first, then
//! case-insensitively, as [`crate::response`] matches the envelope (the
//! instance id is `DtsInstanceID` in these answers, `DtsInstanceId` in most
//! requests).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::client::ApiSuccess;
use super::error::DtsError;

/// The largest `PageSize` this client asks DescribeDtsJobs for. The request
/// model of alibabacloud-dts20200101 5.11.7 documents 30 as the maximum;
/// later SDK models list 20/30/50/100. 30 is accepted by both descriptions,
/// so [`JobsQuery`] clamps to it rather than risk an `InvalidParameter`.
pub const MAX_PAGE_SIZE: u32 = 30;

/// The part of `DescribeDtsJobDetail` the controller acts on, and the
/// progress fields a status report can show. `Default` is "nothing known"
/// (`http_status` 0), for struct literals in tests that name a few fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobDetail {
    pub request_id: Option<String>,
    pub http_status: u16,
    /// The job's top-level `Status` (e.g. `Synchronizing`, `Finished`).
    pub status: Option<String>,
    /// `Delay`: the latency of incremental migration or synchronization.
    /// The DescribeDtsJobDetail model documents it in milliseconds.
    pub delay_ms: Option<i64>,
    /// `Checkpoint`: the start offset of incremental migration or
    /// synchronization, in unix seconds.
    pub checkpoint: Option<i64>,
    /// `ErrorMessage`: why the *job* failed (not an API error: those are
    /// `ErrMessage` and become a [`DtsError`]).
    pub error_message: Option<String>,
    /// `DtsJobDirection` (`Forward` / `Reverse`), returned only for two-way
    /// synchronization.
    pub direction: Option<String>,
}

impl JobDetail {
    /// Reads a DescribeDtsJobDetail answer. Pure, never panics.
    pub fn from_success(ok: &ApiSuccess) -> Self {
        let body = ok.body.as_object();
        Self {
            request_id: ok.request_id.clone(),
            http_status: ok.http_status,
            status: body.and_then(|m| text(m, "Status")),
            delay_ms: body.and_then(|m| int(m, "Delay")),
            checkpoint: body.and_then(|m| int(m, "Checkpoint")),
            error_message: body.and_then(|m| text(m, "ErrorMessage")),
            direction: body.and_then(|m| text(m, "DtsJobDirection")),
        }
    }

    /// `Status == Finished`, compared case-insensitively: the docs and the
    /// Terraform provider disagree on the casing of status values.
    pub fn is_finished(&self) -> bool {
        self.status_is("Finished")
    }

    /// Whether `Status` is `wanted`, ignoring case and surrounding spaces
    /// (the DescribeDtsJobDetail docs spell `synchronizing` in lowercase,
    /// docs/dts-api.md §6.1). A missing status matches nothing.
    pub fn status_is(&self, wanted: &str) -> bool {
        status_matches(self.status.as_deref(), wanted)
    }
}

/// One page of DescribeDtsJobs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobsQuery {
    /// Selects the endpoint, and is sent both as `Region` (required by
    /// DescribeDtsJobs) and as `RegionId` (deprecated there, but what every
    /// other operation and the endpoint rules use).
    pub region_id: String,
    /// `JobType`: `MIGRATION` (DTS's default when unset), `SYNC` or
    /// `SUBSCRIBE`. Sent as given.
    pub job_type: Option<String>,
    /// Only these jobs, sent as one comma-separated `DtsJobId`. Empty means
    /// no filter. An id containing a comma is refused: it would silently
    /// ask for two jobs.
    pub job_ids: Vec<String>,
    /// `PageNumber`; pages start at 1, so 0 is sent as 1.
    pub page_number: u32,
    /// `PageSize`, clamped to `1..=`[`MAX_PAGE_SIZE`].
    pub page_size: u32,
}

impl JobsQuery {
    /// The API parameters of this query, or the reason it cannot be sent.
    pub(crate) fn params(&self) -> Result<BTreeMap<String, String>, DtsError> {
        let mut params = BTreeMap::new();
        params.insert("Region".to_owned(), self.region_id.clone());
        params.insert("RegionId".to_owned(), self.region_id.clone());
        if let Some(job_type) = self.job_type.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            params.insert("JobType".to_owned(), job_type.to_owned());
        }
        let mut ids = Vec::with_capacity(self.job_ids.len());
        for id in &self.job_ids {
            let id = id.trim();
            if id.contains(',') {
                return Err(DtsError::invalid_request(format!(
                    "DtsJobId {id:?} contains a comma, the list separator"
                )));
            }
            if !id.is_empty() {
                ids.push(id);
            }
        }
        if !ids.is_empty() {
            params.insert("DtsJobId".to_owned(), ids.join(","));
        }
        params.insert("PageNumber".to_owned(), self.page_number.max(1).to_string());
        params.insert(
            "PageSize".to_owned(),
            self.page_size.clamp(1, MAX_PAGE_SIZE).to_string(),
        );
        Ok(params)
    }
}

/// A page of DescribeDtsJobs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobPage {
    pub request_id: Option<String>,
    pub http_status: u16,
    /// `DtsJobList`, in DTS's order; entries without a `DtsJobId` are left
    /// out. A missing or non-array list is an empty page, as the official
    /// SDK model reads it.
    pub jobs: Vec<JobView>,
    /// `TotalRecordCount`: jobs matching the query, all pages together.
    pub total_record_count: Option<u64>,
    /// `PageNumber` of this page, as DTS reports it.
    pub page_number: Option<u32>,
    /// `PageRecordCount`: the entries DTS says this page has.
    pub page_record_count: Option<u32>,
}

impl JobPage {
    /// Reads a DescribeDtsJobs answer. Pure, never panics.
    pub fn from_success(ok: &ApiSuccess) -> Self {
        let body = ok.body.as_object();
        let jobs = body
            .and_then(|m| get(m, "DtsJobList"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(|v| JobView::from_entry(v, true)).collect())
            .unwrap_or_default();
        Self {
            request_id: ok.request_id.clone(),
            http_status: ok.http_status,
            jobs,
            total_record_count: body
                .and_then(|m| int(m, "TotalRecordCount"))
                .and_then(|n| u64::try_from(n).ok()),
            page_number: body
                .and_then(|m| int(m, "PageNumber"))
                .and_then(|n| u32::try_from(n).ok()),
            page_record_count: body
                .and_then(|m| int(m, "PageRecordCount"))
                .and_then(|n| u32::try_from(n).ok()),
        }
    }
}

/// One entry of `DtsJobList`, or its `ReverseJob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    /// `DtsJobId`; an entry without one is not a job this client can name.
    pub job_id: String,
    /// `DtsInstanceID` (this answer's spelling).
    pub instance_id: Option<String>,
    pub status: Option<String>,
    /// `Delay`. Caution: the SDK model of DescribeDtsJobs documents this
    /// field in milliseconds for migration tasks but in **seconds** for
    /// synchronization tasks and for `ReverseJob`; DescribeDtsJobDetail
    /// documents milliseconds. The value is passed on as DTS sent it.
    pub delay_ms: Option<i64>,
    /// `Checkpoint`, unix seconds (a string in this answer's SDK model).
    pub checkpoint: Option<i64>,
    /// `ErrorMessage`: why the job failed.
    pub error_message: Option<String>,
    /// `DtsJobDirection`: `Forward` / `Reverse`, two-way sync only.
    pub direction: Option<String>,
    /// `ReverseJob`: the reverse direction of a two-way sync, with the same
    /// fields. Its own `reverse` is always `None` (the model has none).
    pub reverse: Option<Box<JobView>>,
}

impl JobView {
    /// Whether `Status` is `wanted`, ignoring case and surrounding spaces.
    pub fn status_is(&self, wanted: &str) -> bool {
        status_matches(self.status.as_deref(), wanted)
    }

    /// `None` for anything that is not an object with a `DtsJobId`.
    fn from_entry(v: &Value, with_reverse: bool) -> Option<Self> {
        let m = v.as_object()?;
        let reverse = if with_reverse {
            get(m, "ReverseJob")
                .and_then(|r| Self::from_entry(r, false))
                .map(Box::new)
        } else {
            None
        };
        Some(Self {
            job_id: text(m, "DtsJobId")?,
            instance_id: text(m, "DtsInstanceID"),
            status: text(m, "Status"),
            delay_ms: int(m, "Delay"),
            checkpoint: int(m, "Checkpoint"),
            error_message: text(m, "ErrorMessage"),
            direction: text(m, "DtsJobDirection"),
            reverse,
        })
    }
}

fn status_matches(status: Option<&str>, wanted: &str) -> bool {
    status.is_some_and(|s| s.trim().eq_ignore_ascii_case(wanted.trim()))
}

/// `key` exactly, else the first key equal to it ignoring ASCII case.
fn get<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key)
        .or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// A non-empty trimmed string; numbers are rendered (an id sent as a number
/// is still an id). `null`, objects, arrays and booleans are `None`.
fn text(m: &Map<String, Value>, key: &str) -> Option<String> {
    match get(m, key)? {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer sent as a JSON number or as a string (`12`, `"12"`,
/// `" 12 "`, `12.0`). Fractions, out-of-range values and anything else are
/// `None`.
fn int(m: &Map<String, Value>, key: &str) -> Option<i64> {
    match get(m, key)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(integral)),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<i64>()
                .ok()
                .or_else(|| t.parse::<f64>().ok().and_then(integral))
        }
        _ => None,
    }
}

/// `f` as an i64 when it is a whole number in range.
fn integral(f: f64) -> Option<i64> {
    // i64::MAX as f64 rounds up to 2^63, which is out of range: hence `<`.
    (f.is_finite() && f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: Value) -> ApiSuccess {
        ApiSuccess {
            request_id: Some("R".into()),
            http_status: 200,
            body,
        }
    }

    #[test]
    fn detail_reads_numbers_as_numbers() {
        let d = JobDetail::from_success(&ok(serde_json::json!({
            "RequestId": "R", "Success": true, "Status": "Synchronizing",
            "Delay": 1200, "Checkpoint": 1_764_633_600, "ErrorMessage": "",
            "DtsJobDirection": "Forward", "DtsJobId": "j1",
        })));
        assert_eq!(d.request_id.as_deref(), Some("R"));
        assert_eq!(d.http_status, 200);
        assert_eq!(d.status.as_deref(), Some("Synchronizing"));
        assert_eq!(d.delay_ms, Some(1200));
        assert_eq!(d.checkpoint, Some(1_764_633_600));
        assert_eq!(d.error_message, None, "an empty ErrorMessage is no message");
        assert_eq!(d.direction.as_deref(), Some("Forward"));
        assert!(d.status_is("synchronizing"));
        assert!(d.status_is(" SYNCHRONIZING "));
        assert!(!d.status_is("Finished"));
        assert!(!d.is_finished());
    }

    #[test]
    fn detail_reads_numbers_sent_as_strings() {
        let d = JobDetail::from_success(&ok(serde_json::json!({
            "Status": " Failed ", "Delay": "35", "Checkpoint": " 1764633600 ",
            "ErrorMessage": "DTS-070211: Connect Source DB failed",
        })));
        assert_eq!(d.status.as_deref(), Some("Failed"));
        assert_eq!(d.delay_ms, Some(35));
        assert_eq!(d.checkpoint, Some(1_764_633_600));
        assert_eq!(d.error_message.as_deref(), Some("DTS-070211: Connect Source DB failed"));
        assert_eq!(d.direction, None);
        assert!(d.status_is("failed"));
    }

    #[test]
    fn detail_tolerates_missing_and_odd_fields() {
        for body in [
            serde_json::json!({}),
            serde_json::json!({"Status": null, "Delay": null, "Checkpoint": "soon", "DtsJobDirection": true}),
            serde_json::json!({"Status": ["Finished"], "Delay": 1.5, "Checkpoint": {}, "ErrorMessage": 7}),
            serde_json::json!({"Delay": 1e300, "Checkpoint": "99999999999999999999"}),
            Value::Null,
            serde_json::json!([1, 2]),
        ] {
            let d = JobDetail::from_success(&ok(body.clone()));
            assert_eq!(d.status, None, "{body}");
            assert_eq!(d.delay_ms, None, "{body}");
            assert_eq!(d.checkpoint, None, "{body}");
            assert_eq!(d.direction, None, "{body}");
            assert!(!d.is_finished());
            assert!(!d.status_is(""), "a missing status matches nothing");
        }
        // A whole number sent as a float is still that number.
        let d = JobDetail::from_success(&ok(serde_json::json!({"Delay": 20.0, "Checkpoint": "7.0"})));
        assert_eq!((d.delay_ms, d.checkpoint), (Some(20), Some(7)));
    }

    #[test]
    fn detail_field_names_fall_back_to_any_case() {
        let d = JobDetail::from_success(&ok(serde_json::json!({"status": "finished", "delay": "3"})));
        assert!(d.is_finished());
        assert_eq!(d.delay_ms, Some(3));
    }

    #[test]
    fn page_reads_a_two_way_entry_with_its_reverse_job() {
        let page = JobPage::from_success(&ok(serde_json::json!({
            "RequestId": "R", "Success": true, "HttpStatusCode": 200,
            "TotalRecordCount": 2, "PageNumber": 1, "PageRecordCount": 2,
            "DtsJobList": [
                {
                    "DtsJobId": "j-two-way", "DtsInstanceID": "dtsi-1", "Status": "Synchronizing",
                    "Delay": 0, "Checkpoint": "1764633600", "ErrorMessage": "",
                    "DtsJobDirection": "Forward",
                    "ReverseJob": {
                        "DtsJobId": "j-reverse", "DtsInstanceID": "dtsi-1", "Status": "Suspending",
                        "Delay": "12", "Checkpoint": 1764633000, "DtsJobDirection": "Reverse",
                        "ErrorMessage": "paused by user",
                        "ReverseJob": {"DtsJobId": "not-in-the-model"}
                    }
                },
                {"DtsJobId": "j-one-way", "Status": "Finished"}
            ]
        })));
        assert_eq!(page.request_id.as_deref(), Some("R"));
        assert_eq!(page.total_record_count, Some(2));
        assert_eq!(page.page_number, Some(1));
        assert_eq!(page.page_record_count, Some(2));
        assert_eq!(page.jobs.len(), 2);
        let fwd = &page.jobs[0];
        assert_eq!(fwd.job_id, "j-two-way");
        assert_eq!(fwd.instance_id.as_deref(), Some("dtsi-1"));
        assert!(fwd.status_is("synchronizing"));
        assert_eq!((fwd.delay_ms, fwd.checkpoint), (Some(0), Some(1_764_633_600)));
        assert_eq!(fwd.error_message, None);
        assert_eq!(fwd.direction.as_deref(), Some("Forward"));
        let rev = fwd.reverse.as_deref().expect("reverse job");
        assert_eq!(
            rev,
            &JobView {
                job_id: "j-reverse".into(),
                instance_id: Some("dtsi-1".into()),
                status: Some("Suspending".into()),
                delay_ms: Some(12),
                checkpoint: Some(1_764_633_000),
                error_message: Some("paused by user".into()),
                direction: Some("Reverse".into()),
                reverse: None,
            }
        );
        let one_way = &page.jobs[1];
        assert_eq!(one_way.job_id, "j-one-way");
        assert!(one_way.status_is("FINISHED"));
        assert_eq!(
            (
                &one_way.instance_id,
                one_way.delay_ms,
                one_way.checkpoint,
                &one_way.direction
            ),
            (&None, None, None, &None)
        );
        assert!(one_way.reverse.is_none());
    }

    #[test]
    fn page_counts_may_be_strings() {
        let page = JobPage::from_success(&ok(serde_json::json!({
            "TotalRecordCount": "61", "PageNumber": "3", "PageRecordCount": "1",
            "DtsJobList": [{"DtsJobId": "j"}]
        })));
        assert_eq!(
            (page.total_record_count, page.page_number, page.page_record_count),
            (Some(61), Some(3), Some(1))
        );
    }

    #[test]
    fn an_empty_or_missing_list_is_an_empty_page() {
        for body in [
            serde_json::json!({"DtsJobList": [], "TotalRecordCount": 0, "PageNumber": 1, "PageRecordCount": 0}),
            serde_json::json!({"RequestId": "R", "Success": true}),
            serde_json::json!({"DtsJobList": null}),
            serde_json::json!({"DtsJobList": {"DtsJobId": "j"}}),
            Value::Null,
        ] {
            let page = JobPage::from_success(&ok(body.clone()));
            assert!(page.jobs.is_empty(), "{body}");
        }
        let page = JobPage::from_success(&ok(serde_json::json!({"DtsJobList": [], "TotalRecordCount": 0})));
        assert_eq!(page.total_record_count, Some(0));
        assert_eq!(page.page_number, None);
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let page = JobPage::from_success(&ok(serde_json::json!({
            "TotalRecordCount": -1,
            "PageNumber": 5_000_000_000u64,
            "DtsJobList": [
                null, 7, "j-as-a-string", [],
                {"Status": "Synchronizing"},
                {"DtsJobId": ""},
                {"DtsJobId": "   "},
                {"DtsJobId": null},
                {"DtsJobId": {"Id": "j"}},
                {"DtsJobId": "j-ok", "ReverseJob": {"Status": "Failed"}},
                {"DtsJobId": 12345, "ReverseJob": "j-reverse"}
            ]
        })));
        let ids: Vec<&str> = page.jobs.iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(ids, ["j-ok", "12345"]);
        assert!(
            page.jobs.iter().all(|j| j.reverse.is_none()),
            "reverse entries without an id"
        );
        assert_eq!(page.total_record_count, None, "a negative count is no count");
        assert_eq!(page.page_number, None, "out of u32 range");
    }

    fn query(ids: &[&str], page_number: u32, page_size: u32) -> JobsQuery {
        JobsQuery {
            region_id: "cn-hangzhou".into(),
            job_type: Some("SYNC".into()),
            job_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            page_number,
            page_size,
        }
    }

    #[test]
    fn query_params_join_ids_and_clamp_the_page() {
        let p = query(&["j1", " j2 ", "", "j3"], 2, 30).params().expect("params");
        let want: BTreeMap<String, String> = [
            ("DtsJobId", "j1,j2,j3"),
            ("JobType", "SYNC"),
            ("PageNumber", "2"),
            ("PageSize", "30"),
            ("Region", "cn-hangzhou"),
            ("RegionId", "cn-hangzhou"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(p, want);

        let p = query(&[], 0, 0).params().expect("params");
        assert!(!p.contains_key("DtsJobId"), "no ids, no filter");
        assert_eq!(p.get("PageNumber").map(String::as_str), Some("1"));
        assert_eq!(p.get("PageSize").map(String::as_str), Some("1"));
        let p = query(&[], 1, 100).params().expect("params");
        assert_eq!(p.get("PageSize").map(String::as_str), Some("30"));
        assert_eq!(MAX_PAGE_SIZE, 30);

        let mut q = query(&[], 1, 10);
        q.job_type = Some("  ".into());
        assert!(!q.params().expect("params").contains_key("JobType"));
        q.job_type = None;
        assert!(!q.params().expect("params").contains_key("JobType"));
    }

    #[test]
    fn an_id_with_a_comma_is_refused() {
        let err = query(&["j1,j2"], 1, 10).params().expect_err("refused");
        assert_eq!(err.class, crate::ErrorClass::Terminal);
        assert_eq!(err.reason(), crate::ErrorReason::InvalidParameter);
    }
}
