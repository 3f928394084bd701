//! The emulator's DTS API and admin API, in-process: signature checks of
//! both schemes, replay and clock checks, STS, gateway error shapes, and the
//! job state machine.

mod emulator_support;

use dts_api::sign::{rpc_v1, v3, Credentials};
use emulator_support::*;
use serde_json::json;

fn stop_args(job: &str, dir: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DtsJobId", job.to_owned()),
        ("RegionId", "cn-hangzhou".to_owned()),
        ("SynchronizationDirection", dir.to_owned()),
    ]
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Asserts a gateway error: status, code, Alibaba's body keys, upper-case
/// UUID RequestId.
fn assert_gateway(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.code(), code, "{}", r.text);
    let mut keys: Vec<&String> = r.json.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["Code", "HostId", "Message", "Recommend", "RequestId"]);
    assert!(is_upper_uuid(r.json["RequestId"].as_str().unwrap()), "{}", r.text);
}

#[tokio::test]
async fn stop_with_hmac_sha1_finishes_forward_and_is_journaled() {
    let emu = start().await;
    let r = emu
        .v1(
            "StopDtsJob",
            &[("DtsJobId", "dtsjob2way"), ("RegionId", "cn-hangzhou")],
            &creds(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["Success"], true);
    assert_eq!(r.json["HttpStatusCode"], 200);
    let rid = r.json["RequestId"].as_str().unwrap();
    assert!(is_upper_uuid(rid));
    assert_eq!(
        emu.job_status("dtsjob2way").await,
        json!({"Forward": "Finished", "Reverse": "Synchronizing"})
    );

    let e = emu.last_entry().await;
    assert_eq!(e["action"], "StopDtsJob");
    assert_eq!(e["scheme"], "HMAC-SHA1");
    assert_eq!(e["accessKeyId"], AK);
    assert_eq!(e["authOk"], true);
    assert_eq!(e["httpStatus"], 200);
    assert_eq!(e["requestId"], rid);
    assert_eq!(e["errorCode"], serde_json::Value::Null);
    assert_eq!(e["params"]["DtsJobId"], "dtsjob2way");
    let t = e["time"].as_str().unwrap();
    assert!(
        t.parse::<jiff::Timestamp>().is_ok() && t.len() == "2026-01-01T00:00:00.000Z".len(),
        "{t}"
    );
    emu.stop().await;
}

#[tokio::test]
async fn stop_reverse_with_v3_finishes_only_reverse() {
    let emu = start().await;
    let args = stop_args("dtsjob2way", "Reverse");
    let r = emu.v3("StopDtsJob", &as_refs(&args), &creds()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["Success"], true);
    assert_eq!(
        emu.job_status("dtsjob2way").await,
        json!({"Forward": "Synchronizing", "Reverse": "Finished"})
    );
    let e = emu.last_entry().await;
    assert_eq!(e["scheme"], "ACS3-HMAC-SHA256");
    assert_eq!(e["params"]["SynchronizationDirection"], "Reverse");
    assert_eq!(e["authOk"], true);
    emu.stop().await;
}

#[tokio::test]
async fn legacy_sdk_shape_is_accepted_with_plus_or_percent_spaces() {
    let emu = start().await;
    // aliyun-python-sdk-core: Format=JSON and an empty SignatureType, both signed.
    let c = creds();
    let mut p = rpc_v1::signed_parameters(
        "DescribeDtsJobDetail",
        "2020-01-01",
        &params(&[("DtsJobId", "dtsjob2way"), ("ResourceGroupId", "rg with space*~")]),
        &c,
        &now(),
        &nonce(),
    );
    p.insert("Format".into(), "JSON".into());
    p.insert("SignatureType".into(), String::new());
    let sig = rpc_v1::signature(
        SECRET,
        &rpc_v1::string_to_sign("POST", &rpc_v1::canonicalized_query_string(&p)),
    );
    let mut wire = p.clone();
    wire.insert("Signature".into(), sig.clone());
    // Form style: spaces as `+`.
    let r = emu.raw("POST", &form_encode(&wire), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["Status"], "Synchronizing");

    // Same parameters, fresh nonce, spaces as %20 and `Format=json`.
    p.insert("SignatureNonce".into(), nonce());
    p.insert("Format".into(), "json".into());
    let q = rpc_v1::signed_query("POST", &p, SECRET);
    assert!(q.contains("rg%20with%20space"));
    let r = emu.raw("POST", &q, &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    emu.stop().await;
}

#[tokio::test]
async fn hmac_sha1_signs_form_body_parameters_too() {
    let emu = start().await;
    let c = creds();
    let all = rpc_v1::signed_parameters(
        "StopDtsJob",
        "2020-01-01",
        &params(&[("DtsJobId", "dtsjob2way"), ("ResourceGroupId", "rg-1")]),
        &c,
        &now(),
        &nonce(),
    );
    let sig = rpc_v1::signature(
        SECRET,
        &rpc_v1::string_to_sign("POST", &rpc_v1::canonicalized_query_string(&all)),
    );
    let mut query = all.clone();
    query.remove("ResourceGroupId");
    query.insert("Signature".into(), sig);
    let form = "application/x-www-form-urlencoded";
    let r = emu
        .raw("POST", &form_encode(&query), &[], Some((form, "ResourceGroupId=rg-1")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(emu.last_entry().await["params"]["ResourceGroupId"], "rg-1");

    // A tampered body parameter breaks the signature.
    query.insert("SignatureNonce".into(), nonce());
    let r = emu
        .raw("POST", &form_encode(&query), &[], Some((form, "ResourceGroupId=rg-2")))
        .await;
    assert_gateway(&r, 400, "SignatureDoesNotMatch");
    emu.stop().await;
}

#[tokio::test]
async fn wrong_secret_gets_signature_does_not_match_with_server_string_to_sign() {
    let emu = start().await;
    let bad = Credentials::new(AK, "not-the-secret");
    let (ts, n) = (now(), nonce());
    let r = emu
        .v1_with("StopDtsJob", &[("DtsJobId", "dtsjob2way")], &bad, &ts, &n, |_| {})
        .await;
    assert_gateway(&r, 400, "SignatureDoesNotMatch");
    let p = rpc_v1::signed_parameters(
        "StopDtsJob",
        "2020-01-01",
        &params(&[("DtsJobId", "dtsjob2way")]),
        &bad,
        &ts,
        &n,
    );
    let expected = rpc_v1::string_to_sign("POST", &rpc_v1::canonicalized_query_string(&p));
    let msg = r.json["Message"].as_str().unwrap();
    assert!(msg.ends_with(&format!("server string to sign is:{expected}")), "{msg}");

    let r = emu.v3("StopDtsJob", &[("DtsJobId", "dtsjob2way")], &bad).await;
    assert_gateway(&r, 400, "SignatureDoesNotMatch");
    assert!(r.json["Message"]
        .as_str()
        .unwrap()
        .contains("server string to sign is:ACS3-HMAC-SHA256\n"));

    assert_eq!(emu.job_status("dtsjob2way").await["Forward"], "Synchronizing");
    let e = emu.last_entry().await;
    assert_eq!(e["authOk"], false);
    assert_eq!(e["errorCode"], "SignatureDoesNotMatch");
    assert_eq!(e["httpStatus"], 400);
    assert!(!emu.admin_get("journal").await.to_string().contains("not-the-secret"));
    emu.stop().await;
}

#[tokio::test]
async fn unknown_access_key_is_404_in_both_schemes() {
    let emu = start().await;
    let c = Credentials::new("LTAInobody", "x");
    assert_gateway(
        &emu.v1("StopDtsJob", &[("DtsJobId", "dtsjob2way")], &c).await,
        404,
        "InvalidAccessKeyId.NotFound",
    );
    assert_gateway(
        &emu.v3("StopDtsJob", &[("DtsJobId", "dtsjob2way")], &c).await,
        404,
        "InvalidAccessKeyId.NotFound",
    );
    assert_eq!(emu.last_entry().await["accessKeyId"], "LTAInobody");
    emu.stop().await;
}

#[tokio::test]
async fn reused_nonce_is_rejected_in_and_across_schemes() {
    let emu = start().await;
    let c = creds();
    let api = [("DtsJobId", "dtsjob2way"), ("SynchronizationDirection", "Forward")];
    let n = nonce();
    let r = emu.v1_with("DescribeDtsJobDetail", &api, &c, &now(), &n, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = emu.v1_with("DescribeDtsJobDetail", &api, &c, &now(), &n, |_| {}).await;
    assert_gateway(&r, 400, "SignatureNonceUsed");
    // The same nonce under the other scheme.
    let r = emu.v3_with("DescribeDtsJobDetail", &api, &c, &now(), &n, |_| {}).await;
    assert_gateway(&r, 400, "SignatureNonceUsed");

    let n3 = nonce();
    let r = emu.v3_with("DescribeDtsJobDetail", &api, &c, &now(), &n3, |_| {}).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = emu.v3_with("DescribeDtsJobDetail", &api, &c, &now(), &n3, |_| {}).await;
    assert_gateway(&r, 400, "SignatureNonceUsed");
    assert_eq!(emu.last_entry().await["authOk"], false);
    emu.stop().await;
}

#[tokio::test]
async fn timestamps_more_than_15_minutes_off_are_expired() {
    let emu = start().await;
    let c = creds();
    let api = [("DtsJobId", "dtsjob2way")];
    for off in [-16, 16] {
        let r = emu
            .v1_with("DescribeDtsJobDetail", &api, &c, &minutes_off(off), &nonce(), |_| {})
            .await;
        assert_gateway(&r, 400, "InvalidTimeStamp.Expired");
        let r = emu
            .v3_with("DescribeDtsJobDetail", &api, &c, &minutes_off(off), &nonce(), |_| {})
            .await;
        assert_gateway(&r, 400, "InvalidTimeStamp.Expired");
    }
    for off in [-14, 14] {
        let r = emu
            .v1_with("DescribeDtsJobDetail", &api, &c, &minutes_off(off), &nonce(), |_| {})
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = emu
            .v3_with("DescribeDtsJobDetail", &api, &c, &minutes_off(off), &nonce(), |_| {})
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = emu
        .v1_with("DescribeDtsJobDetail", &api, &c, "yesterday", &nonce(), |_| {})
        .await;
    assert_gateway(&r, 400, "InvalidTimeStamp.Format");
    emu.stop().await;
}

#[tokio::test]
async fn sts_token_must_be_sent_signed_and_right() {
    let emu = start().await;
    let api = [("DtsJobId", "dtsjob2way")];
    let sts = sts_creds();
    assert_eq!(emu.v1("DescribeDtsJobDetail", &api, &sts).await.status, 200);
    assert_eq!(emu.v3("DescribeDtsJobDetail", &api, &sts).await.status, 200);

    let no_token = Credentials::new(STS_AK, STS_SECRET);
    let wrong = Credentials::new(STS_AK, STS_SECRET).with_security_token("other-token");
    for c in [&no_token, &wrong] {
        let r = emu.v1("DescribeDtsJobDetail", &api, c).await;
        assert_gateway(&r, 400, "InvalidSecurityToken.MismatchWithAccessKey");
        let r = emu.v3("DescribeDtsJobDetail", &api, c).await;
        assert_gateway(&r, 400, "InvalidSecurityToken.MismatchWithAccessKey");
    }
    // A token on a non-STS key is a mismatch too.
    let r = emu
        .v1("DescribeDtsJobDetail", &api, &creds().with_security_token(STS_TOKEN))
        .await;
    assert_gateway(&r, 400, "InvalidSecurityToken.MismatchWithAccessKey");

    // V3: a token header that is not signed is refused.
    let q = params(&api);
    let mut h = v3::request_headers(
        &emu.handle.local_addr().to_string(),
        "DescribeDtsJobDetail",
        "2020-01-01",
        b"",
        &sts,
        &now(),
        &nonce(),
    );
    let token = h.remove("x-acs-security-token").unwrap();
    let auth = v3::sign("POST", &q, &h, b"", &sts);
    h.insert("authorization".into(), auth);
    h.insert("x-acs-security-token".into(), token);
    let hs: Vec<(String, String)> = h.into_iter().filter(|(k, _)| k != "host").collect();
    let r = emu.raw("POST", &v3::canonical_query_string(&q), &hs, None).await;
    assert_gateway(&r, 400, "IncompleteSignature");

    let journal = emu.admin_get("journal").await.to_string();
    assert!(!journal.contains(STS_TOKEN), "token leaked into the journal");
    assert!(!journal.contains("other-token"), "token leaked into the journal");
    assert!(journal.contains("** REDACTED **"));
    emu.stop().await;
}

#[tokio::test]
async fn v3_requires_the_documented_signed_headers_and_a_matching_body_hash() {
    let emu = start().await;
    let c = creds();
    let q = params(&[("DtsJobId", "dtsjob2way")]);
    let host = emu.handle.local_addr().to_string();
    let send = |h: std::collections::BTreeMap<String, String>, body: Option<(&'static str, &'static str)>| {
        let hs: Vec<(String, String)> = h.into_iter().filter(|(k, _)| k != "host").collect();
        let query = v3::canonical_query_string(&q);
        let emu = &emu;
        async move { emu.raw("POST", &query, &hs, body).await }
    };
    // Each required header, left out of the signed set (but still sent).
    for name in [
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    ] {
        let mut h = v3::request_headers(&host, "DescribeDtsJobDetail", "2020-01-01", b"", &c, &now(), &nonce());
        let value = h.remove(name).unwrap();
        let auth = v3::sign("POST", &q, &h, b"", &c);
        h.insert("authorization".into(), auth);
        h.insert(name.into(), value);
        let r = send(h, None).await;
        assert_gateway(&r, 400, "IncompleteSignature");
        assert!(r.json["Message"].as_str().unwrap().contains(name), "{}", r.text);
    }
    // A body whose hash is not the claimed one.
    let mut h = v3::request_headers(&host, "DescribeDtsJobDetail", "2020-01-01", b"", &c, &now(), &nonce());
    h.insert("content-type".into(), "application/x-www-form-urlencoded".into());
    let auth = v3::sign("POST", &q, &h, b"", &c);
    h.insert("authorization".into(), auth);
    let r = send(h, Some(("application/x-www-form-urlencoded", "ResourceGroupId=x"))).await;
    assert_gateway(&r, 400, "InvalidParameter");
    assert!(r.text.contains("x-acs-content-sha256"));

    // A real body, hashed and signed, with content-type signed: accepted.
    let body = b"ResourceGroupId=x";
    let mut h = v3::request_headers(&host, "DescribeDtsJobDetail", "2020-01-01", body, &c, &now(), &nonce());
    h.insert("content-type".into(), "application/x-www-form-urlencoded".into());
    let auth = v3::sign("POST", &q, &h, body, &c);
    h.insert("authorization".into(), auth);
    h.remove("content-type");
    let r = send(h, Some(("application/x-www-form-urlencoded", "ResourceGroupId=x"))).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A signed header whose value changed after signing.
    let mut h = v3::request_headers(&host, "DescribeDtsJobDetail", "2020-01-01", b"", &c, &now(), &nonce());
    let auth = v3::sign("POST", &q, &h, b"", &c);
    h.insert("authorization".into(), auth);
    h.insert("accept".into(), "text/xml".into());
    assert_gateway(&send(h, None).await, 400, "SignatureDoesNotMatch");

    // Garbage Authorization.
    let mut h = v3::request_headers(&host, "DescribeDtsJobDetail", "2020-01-01", b"", &c, &now(), &nonce());
    h.insert("authorization".into(), "ACS3-HMAC-SHA256 nonsense".into());
    assert_gateway(&send(h, None).await, 400, "IncompleteSignature");
    emu.stop().await;
}

#[tokio::test]
async fn missing_parameters_and_unknown_apis_get_gateway_errors() {
    let emu = start().await;
    let c = creds();
    let r = emu
        .v1_with("StopDtsJob", &[("DtsJobId", "dtsjob2way")], &c, &now(), &nonce(), |p| {
            p.remove("Timestamp");
        })
        .await;
    assert_gateway(&r, 400, "MissingParameter");
    assert!(r.json["Message"].as_str().unwrap().contains("Timestamp"));
    // Everything signed, but no job named.
    assert_gateway(
        &emu.v1("StopDtsJob", &[("RegionId", "cn-hangzhou")], &c).await,
        400,
        "MissingParameter",
    );
    assert_gateway(&emu.v3("StopDtsJob", &[], &c).await, 400, "MissingParameter");
    let r = emu.raw("POST", "DtsJobId=x", &[], None).await;
    assert_gateway(&r, 400, "MissingParameter");

    assert_gateway(&emu.v1("DeleteEverything", &[], &c).await, 404, "InvalidApi.NotFound");
    assert_gateway(&emu.v3("DeleteEverything", &[], &c).await, 404, "InvalidApi.NotFound");
    let r = emu
        .v1_with("StopDtsJob", &[("DtsJobId", "dtsjob2way")], &c, &now(), &nonce(), |p| {
            p.insert("Version".into(), "2016-08-01".into());
        })
        .await;
    assert_gateway(&r, 404, "InvalidApi.NotFound");
    let e = emu.last_entry().await;
    assert_eq!(e["authOk"], false);
    assert_eq!(e["errorCode"], "InvalidApi.NotFound");
    assert_eq!(emu.journal().await.len(), 7);
    emu.stop().await;
}

#[tokio::test]
async fn business_errors_are_200_with_success_false() {
    let emu = start().await;
    let c = creds();
    // Reverse on a one-way job: the rendered InvalidParameter answer.
    for r in [
        emu.v1("StopDtsJob", &as_refs(&stop_args("dtsjob1way", "Reverse")), &c)
            .await,
        emu.v3("StopDtsJob", &as_refs(&stop_args("dtsjob1way", "Reverse")), &c)
            .await,
    ] {
        assert_eq!(r.status, 200);
        assert_eq!(r.json["Success"], false);
        assert_eq!(r.err_code(), "InvalidParameter");
        assert_eq!(r.json["ErrMessage"], "The Value of Input Parameter %s is not valid.");
        assert_eq!(r.json["DynamicMessage"], "SynchronizationDirection");
    }
    assert_eq!(emu.last_entry().await["errorCode"], "InvalidParameter");
    assert_eq!(emu.job_status("dtsjob1way").await, json!({"Forward": "Synchronizing"}));

    // Unknown job, and a job asked for in another region.
    let r = emu
        .v3("StopDtsJob", &as_refs(&stop_args("nosuchjob", "Forward")), &c)
        .await;
    assert_eq!(
        (r.status, r.json["Success"].clone(), r.err_code()),
        (200, json!(false), "Forbidden.InstanceNotFound")
    );
    assert_eq!(r.json["DynamicMessage"], "nosuchjob");
    let r = emu
        .v1(
            "StopDtsJob",
            &[("DtsJobId", "dtsjob1way"), ("RegionId", "cn-beijing")],
            &c,
        )
        .await;
    assert_eq!(r.err_code(), "Forbidden.InstanceNotFound");

    // Stopping twice: InvalidJobStatus the second time.
    let r = emu
        .v1("StopDtsJob", &as_refs(&stop_args("dtsjob1way", "Forward")), &c)
        .await;
    assert_eq!(r.json["Success"], true);
    let r = emu
        .v3("StopDtsJob", &as_refs(&stop_args("dtsjob1way", "Forward")), &c)
        .await;
    assert_eq!((r.status, r.err_code()), (200, "InvalidJobStatus"));
    assert_eq!(r.json["Success"], false);

    // An invalid direction value.
    let r = emu
        .v1(
            "StopDtsJob",
            &[("DtsJobId", "dtsjob2way"), ("SynchronizationDirection", "Sideways")],
            &c,
        )
        .await;
    assert_eq!(r.err_code(), "InvalidParameter");
    emu.stop().await;
}

#[tokio::test]
async fn describe_reports_each_direction_and_nests_reverse_jobs() {
    let emu = start().await;
    let c = creds();
    emu.v1("StopDtsJob", &as_refs(&stop_args("dtsjob2way", "Reverse")), &c)
        .await;
    emu.v3("SuspendDtsJob", &as_refs(&stop_args("dtsjob2way", "Forward")), &c)
        .await;

    // DescribeDtsJobDetail by instance, spelled DtsInstanceID.
    let r = emu
        .v3(
            "DescribeDtsJobDetail",
            &[
                ("DtsInstanceID", "dtsinst2way"),
                ("SynchronizationDirection", "Reverse"),
            ],
            &c,
        )
        .await;
    assert_eq!(r.json["Success"], true, "{}", r.text);
    assert_eq!(r.json["Status"], "Finished");
    assert_eq!(r.json["SynchronizationDirection"], "Reverse");
    assert_eq!(r.json["DtsJobDirection"], "Reverse");
    assert_eq!(r.json["DtsJobId"], "dtsjob2way");
    let r = emu.v1("DescribeDtsJobDetail", &[("DtsJobId", "dtsjob2way")], &c).await;
    assert_eq!(r.json["Status"], "Suspending");
    let r = emu
        .v1(
            "DescribeDtsJobDetail",
            &[("DtsJobId", "dtsjob1way"), ("SynchronizationDirection", "Reverse")],
            &c,
        )
        .await;
    assert_eq!(r.err_code(), "InvalidParameter");

    // Start resumes the suspended direction.
    let r = emu
        .v1("StartDtsJob", &as_refs(&stop_args("dtsjob2way", "Forward")), &c)
        .await;
    assert_eq!(r.json["Success"], true);
    assert_eq!(
        emu.job_status("dtsjob2way").await,
        json!({"Forward": "Synchronizing", "Reverse": "Finished"})
    );
    // A finished direction cannot be restarted.
    let r = emu
        .v1("StartDtsJob", &as_refs(&stop_args("dtsjob2way", "Reverse")), &c)
        .await;
    assert_eq!(r.err_code(), "InvalidJobStatus");

    let r = emu
        .v3("DescribeDtsJobs", &[("Region", "cn-hangzhou"), ("PageSize", "30")], &c)
        .await;
    assert_eq!(
        r.json["TotalRecordCount"], 0,
        "without JobType DTS lists MIGRATION jobs only: {}",
        r.text
    );
    let r = emu
        .v3(
            "DescribeDtsJobs",
            &[("Region", "cn-hangzhou"), ("JobType", "SYNC"), ("PageSize", "30")],
            &c,
        )
        .await;
    assert_eq!(r.json["TotalRecordCount"], 2, "{}", r.text);
    let list = r.json["DtsJobList"].as_array().unwrap();
    let two = list.iter().find(|j| j["DtsJobId"] == "dtsjob2way").unwrap();
    assert_eq!(two["Status"], "Synchronizing");
    assert_eq!(two["DtsJobDirection"], "Forward");
    assert_eq!(two["ReverseJob"]["Status"], "Finished");
    assert_eq!(two["ReverseJob"]["DtsJobDirection"], "Reverse");
    let one = list.iter().find(|j| j["DtsJobId"] == "dtsjob1way").unwrap();
    assert!(one.get("ReverseJob").is_none());

    let r = emu
        .v1("DescribeDtsJobs", &[("Region", "cn-beijing"), ("JobType", "SYNC")], &c)
        .await;
    assert_eq!(r.json["TotalRecordCount"], 0);
    let r = emu
        .v1(
            "DescribeDtsJobs",
            &[("DtsJobId", "dtsjob1way"), ("JobType", "SYNC"), ("PageSize", "1")],
            &c,
        )
        .await;
    assert_eq!(r.json["DtsJobList"].as_array().unwrap().len(), 1);
    assert_gateway(
        &emu.v1("DescribeDtsJobs", &[("PageSize", "0")], &c).await,
        400,
        "InvalidParameter",
    );
    emu.stop().await;
}

#[tokio::test]
async fn admin_api_adds_and_lists_jobs_and_validates_input() {
    let emu = start_with("accounts: [{accessKeyId: testAccessKeyId, accessKeySecret: testAccessKeySecret}]\n").await;
    assert_eq!(emu.admin_get("jobs").await, json!([]));
    let r = emu
        .admin_post("jobs", json!({"jobId": "added", "instanceId": "inst", "regionId": "cn-shanghai", "twoWay": true, "status": "Synchronizing"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        emu.admin_get("jobs").await,
        json!([{"jobId": "added", "instanceId": "inst", "regionId": "cn-shanghai", "twoWay": true,
                "status": {"Forward": "Synchronizing", "Reverse": "Synchronizing"}}])
    );
    assert_eq!(
        emu.admin_post("jobs", json!({"jobId": "added", "regionId": "cn-shanghai"}))
            .await
            .status,
        409
    );
    assert_eq!(
        emu.admin_post("jobs", json!({"jobId": "", "regionId": "cn-shanghai"}))
            .await
            .status,
        400
    );
    let r = emu
        .admin_post("jobs", json!({"jobId": "x", "regionId": "r", "colour": "red"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("colour"), "{}", r.text);

    // The added job is served like a configured one.
    let r = emu
        .v1(
            "StopDtsJob",
            &[
                ("DtsJobId", "added"),
                ("RegionId", "cn-shanghai"),
                ("SynchronizationDirection", "Reverse"),
            ],
            &creds(),
        )
        .await;
    assert_eq!(r.json["Success"], true, "{}", r.text);

    let r = emu.admin_post("faults", json!({"throttleNext": "many"})).await;
    assert_eq!(r.status, 400);
    let r = emu
        .admin_post("faults", json!({"failNext": {"count": 1, "status": 200, "code": "X"}}))
        .await;
    assert_eq!(r.status, 400);
    let r = emu.admin_post("faults", json!({"latencyMs": 5})).await;
    assert_eq!(r.json["latencyMs"], 5);
    assert_eq!(emu.admin_get("faults").await["latencyMs"], 5);

    assert_eq!(emu.journal().await.len(), 1);
    let del = emu
        .http
        .delete(format!("{}/_emulator/journal", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(emu.journal().await.len(), 0);
    emu.stop().await;
}

#[tokio::test]
async fn garbage_requests_get_answers_not_panics() {
    let emu = start().await;
    for q in [
        "",
        "%",
        "Action=%ZZ&&&==",
        "Action=StopDtsJob&Signature=",
        "Action=StopDtsJob&AccessKeyId=%FF%FE",
    ] {
        let r = emu.raw("POST", q, &[], None).await;
        assert!((400..500).contains(&r.status), "{q}: {}", r.text);
        assert!(!r.code().is_empty());
    }
    let r = emu
        .raw(
            "POST",
            "",
            &[
                ("authorization".into(), "ACS3-HMAC-SHA256".into()),
                ("x-acs-action".into(), "StopDtsJob".into()),
            ],
            None,
        )
        .await;
    assert_gateway(&r, 400, "IncompleteSignature");
    let r = emu.http.get(format!("{}/elsewhere", emu.url())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    emu.stop().await;
}
