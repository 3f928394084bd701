//! End to end: every class of invalid DtsJob spec, sent to the real
//! kube-apiserver serving the committed CRD, is rejected with the exact
//! message a user sees (`kubectl apply` prints it after `The DtsJob "NAME"
//! is invalid:`), and the valid inputs at each boundary are accepted, and
//! readable as the operator's typed `DtsJob` (one object it could not
//! deserialize would break its watch of all of them), so the table fails
//! both ways: a rule that goes missing, and a rule that grows too strict.
//!
//! The table is also the user's reference: `docs/validation.md` is rendered
//! from it. The test fails when the committed file differs;
//! `UPDATE_DOCS=1 scripts/test-e2e-env.sh cargo test -p dts-operator --test
//! e2e_admission` rewrites it.

mod support;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::TestNamespace;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/validation.md");

/// How the input reaches the API server.
enum Op {
    /// `POST` of a DtsJob with this spec (`Value::Null`: no spec at all), as
    /// a client without field validation sends it.
    Create(Value),
    /// `POST` with `fieldValidation=Strict`, as `kubectl apply` and
    /// `kubectl create` send it by default.
    CreateStrict(Value),
    /// A server-side apply with `fieldValidation=Strict`, as
    /// `kubectl apply --server-side` sends it by default.
    ApplyStrict(Value),
    /// Created with `from`, then changed with a JSON merge patch of the spec
    /// (what `kubectl patch --type merge` and `kubectl edit` send): the
    /// rules that compare with the old object (`oldSelf`).
    Update { from: Value, patch: Value },
}

/// What the API server must answer.
enum Expect {
    /// The HTTP status and the message after `DtsJob.kubedts.io "NAME" is
    /// invalid: ` (the whole message when it does not start so), with the
    /// object's name written `NAME`.
    Rejected(u16, &'static str),
    Accepted,
    /// Accepted, with this spec field silently dropped (pruned).
    Pruned(&'static str),
}

struct Case {
    /// The field the row is about (the docs group by it).
    field: &'static str,
    /// The input, for the docs.
    input: String,
    op: Op,
    expect: Expect,
}

/// The smallest valid spec, which each case changes.
fn base() -> Value {
    json!({"jobId": "j1", "regionId": "cn-hangzhou"})
}

/// `base()` with `patch`'s keys set.
fn spec(patch: Value) -> Value {
    let mut s = base();
    for (k, v) in patch.as_object().expect("a patch is an object") {
        s[k] = v.clone();
    }
    s
}

/// JSON for the docs, with long strings shortened to their length.
fn show(v: &Value) -> String {
    fn short(v: &Value) -> Value {
        match v {
            Value::String(s) if s.len() > 40 => Value::String(format!("<{} chars: {}…>", s.len(), &s[..8])),
            Value::Array(a) => Value::Array(a.iter().map(short).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), short(v))).collect()),
            other => other.clone(),
        }
    }
    short(v).to_string()
}

fn create(field: &'static str, patch: Value, expect: Expect) -> Case {
    Case {
        field,
        input: show(&patch),
        op: Op::Create(spec(patch)),
        expect,
    }
}

fn rejected(field: &'static str, patch: Value, message: &'static str) -> Case {
    create(field, patch, Expect::Rejected(422, message))
}

fn accepted(field: &'static str, patch: Value) -> Case {
    create(field, patch, Expect::Accepted)
}

fn update(field: &'static str, from: Value, patch: Value, expect: Expect) -> Case {
    Case {
        field,
        input: format!("{} → {}", show(&from), show(&patch)),
        op: Op::Update {
            from: spec(from),
            patch,
        },
        expect,
    }
}

/// `base()` without the required `field`.
fn missing(field: &'static str, message: &'static str) -> Case {
    let mut s = base();
    s.as_object_mut().unwrap().remove(field);
    Case {
        field,
        input: format!("no {field}"),
        op: Op::Create(s),
        expect: Expect::Rejected(422, message),
    }
}

fn chars(n: usize) -> String {
    "a".repeat(n)
}

/// A schema error message as the API server words it when the error also
/// kept it from running the spec's CEL rule (the jobId rule), which it
/// says in a second error.
macro_rules! skipped {
    ($errors:literal) => {
        concat!(
            "[",
            $errors,
            ", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; \
             correct the existing errors to complete validation]"
        )
    };
}

/// The table. Messages are the API server's, verbatim.
fn cases() -> Vec<Case> {
    let r = rejected;
    let a = accepted;
    vec![
        Case {
            field: "spec",
            input: "no spec".into(),
            op: Op::Create(Value::Null),
            expect: Expect::Rejected(422, skipped!("spec: Required value")),
        },
        missing("jobId", skipped!("spec.jobId: Required value")),
        r("jobId", json!({"jobId": ""}), "spec.jobId: Invalid value: \"\": spec.jobId in body should be at least 1 chars long"),
        r("jobId", json!({"jobId": "dts job 1"}), "spec.jobId: Invalid value: \"dts job 1\": spec.jobId in body should match '^[A-Za-z0-9_-]+$'"),
        r("jobId", json!({"jobId": "../j1"}), "spec.jobId: Invalid value: \"../j1\": spec.jobId in body should match '^[A-Za-z0-9_-]+$'"),
        r("jobId", json!({"jobId": chars(65)}), skipped!("spec.jobId: Too long: may not be more than 64 bytes")),
        r("jobId", json!({"jobId": 12345}), skipped!("spec.jobId: Invalid value: \"integer\": spec.jobId in body must be of type string: \"integer\"")),
        a("jobId", json!({"jobId": "a"})),
        a("jobId", json!({"jobId": format!("Aa0_-{}", chars(59))})),
        r("instanceId", json!({"instanceId": ""}), "spec.instanceId: Invalid value: \"\": spec.instanceId in body should be at least 1 chars long"),
        r("instanceId", json!({"instanceId": "dts/instance"}), "spec.instanceId: Invalid value: \"dts/instance\": spec.instanceId in body should match '^[A-Za-z0-9_-]+$'"),
        r("instanceId", json!({"instanceId": chars(65)}), skipped!("spec.instanceId: Too long: may not be more than 64 bytes")),
        a("instanceId", json!({"instanceId": chars(64)})),
        a("instanceId", json!({"instanceId": null})),
        missing("regionId", skipped!("spec.regionId: Required value")),
        r("regionId", json!({"regionId": "cn-hangzhou.evil.example"}), "spec.regionId: Invalid value: \"cn-hangzhou.evil.example\": spec.regionId in body should match '^[a-z]{2,}(-[a-z0-9]+)+$'"),
        r("regionId", json!({"regionId": "CN-HANGZHOU"}), "spec.regionId: Invalid value: \"CN-HANGZHOU\": spec.regionId in body should match '^[a-z]{2,}(-[a-z0-9]+)+$'"),
        r("regionId", json!({"regionId": "hangzhou"}), "spec.regionId: Invalid value: \"hangzhou\": spec.regionId in body should match '^[a-z]{2,}(-[a-z0-9]+)+$'"),
        r("regionId", json!({"regionId": format!("cn-{}", chars(62))}), skipped!("spec.regionId: Too long: may not be more than 64 bytes")),
        a("regionId", json!({"regionId": format!("cn-{}", chars(61))})),
        a("regionId", json!({"regionId": "ap-southeast-1"})),
        r("directions", json!({"directions": ["Sideways"]}), skipped!("spec.directions[0]: Unsupported value: \"Sideways\": supported values: \"Forward\", \"Reverse\"")),
        r("directions", json!({"directions": ["Forward", "Forward"]}), "spec.directions[1]: Duplicate value: \"Forward\""),
        r("directions", json!({"directions": []}), "spec.directions: Invalid value: 0: spec.directions in body should have at least 1 items"),
        r(
            "directions",
            json!({"directions": ["Forward", "Reverse", "Forward"]}),
            skipped!("spec.directions: Too many: 3: must have at most 2 items, spec.directions[2]: Duplicate value: \"Forward\""),
        ),
        r("directions", json!({"directions": "Forward"}), skipped!("spec.directions: Invalid value: \"string\": spec.directions in body must be of type array: \"string\"")),
        a("directions", json!({"directions": ["Reverse", "Forward"]})),
        r("desiredState", json!({"desiredState": "Stop"}), skipped!("spec.desiredState: Unsupported value: \"Stop\": supported values: \"Running\", \"Suspended\", \"Stopped\"")),
        r("desiredState", json!({"desiredState": "stopped"}), skipped!("spec.desiredState: Unsupported value: \"stopped\": supported values: \"Running\", \"Suspended\", \"Stopped\"")),
        r(
            "desiredState",
            json!({"desiredState": "null"}),
            skipped!(
                "spec.desiredState: Unsupported value: \"null\": supported values: \"Running\", \"Suspended\", \"Stopped\""
            ),
        ),
        a("desiredState", json!({"desiredState": "Suspended"})),
        r(
            "desiredState",
            json!({"desiredState": null}),
            skipped!("spec.desiredState: Unsupported value: null: supported values: \"Running\", \"Suspended\", \"Stopped\""),
        ),
        r("stopAt", json!({"stopAt": "tomorrow"}), skipped!("spec.stopAt: Invalid value: \"tomorrow\": spec.stopAt in body must be of type date-time: \"tomorrow\"")),
        r("stopAt", json!({"stopAt": "2026-12-01 22:00"}), skipped!("spec.stopAt: Invalid value: \"2026-12-01 22:00\": spec.stopAt in body must be of type date-time: \"2026-12-01 22:00\"")),
        r("stopAt", json!({"stopAt": "2026-12-01T22:00:00"}), skipped!("spec.stopAt: Invalid value: \"2026-12-01T22:00:00\": spec.stopAt in body must be of type date-time: \"2026-12-01T22:00:00\"")),
        r("stopAt", json!({"stopAt": 1764626400}), skipped!("spec.stopAt: Invalid value: \"int64\": spec.stopAt in body must be of type date-time: \"int64\"")),
        a("stopAt", json!({"stopAt": "2026-12-01T22:00:00Z"})),
        a("stopAt", json!({"stopAt": "2026-12-01t22:00:00z"})),
        a("stopAt", json!({"stopAt": null})),
        a("stopAt", json!({"stopAt": "2026-12-01T22:00:00.5+08:00"})),
        r(
            "stopPolicy",
            json!({"stopPolicy": {}}),
            skipped!("spec.stopPolicy.maxDelaySeconds: Required value"),
        ),
        r("stopPolicy", json!({"stopPolicy": "5s"}), skipped!("spec.stopPolicy: Invalid value: \"string\": spec.stopPolicy in body must be of type object: \"string\"")),
        a("stopPolicy", json!({"stopPolicy": null})),
        r(
            "stopPolicy.maxDelaySeconds",
            json!({"stopPolicy": {"maxDelaySeconds": -1}}),
            "spec.stopPolicy.maxDelaySeconds: Invalid value: -1: spec.stopPolicy.maxDelaySeconds in body should be greater than or equal to 0",
        ),
        r(
            "stopPolicy.maxDelaySeconds",
            json!({"stopPolicy": {"maxDelaySeconds": 604801}}),
            "spec.stopPolicy.maxDelaySeconds: Invalid value: 604801: spec.stopPolicy.maxDelaySeconds in body should be less than or equal to 604800",
        ),
        r(
            "stopPolicy.maxDelaySeconds",
            json!({"stopPolicy": {"maxDelaySeconds": "5"}}),
            skipped!("spec.stopPolicy.maxDelaySeconds: Invalid value: \"string\": spec.stopPolicy.maxDelaySeconds in body must be of type integer: \"string\""),
        ),
        r(
            "stopPolicy.maxDelaySeconds",
            json!({"stopPolicy": {"maxDelaySeconds": 1.5}}),
            skipped!("spec.stopPolicy.maxDelaySeconds: Invalid value: \"number\": spec.stopPolicy.maxDelaySeconds in body must be of type integer: \"number\""),
        ),
        a(
            "stopPolicy.maxDelaySeconds",
            json!({"stopPolicy": {"maxDelaySeconds": 0}}),
        ),
        a(
            "stopPolicy.maxDelaySeconds",
            json!({"stopPolicy": {"maxDelaySeconds": 604800}}),
        ),
        r(
            "stopPolicy.deadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "deadline": "1h30"}}),
            "spec.stopPolicy.deadline: Invalid value: \"string\": deadline must be a duration such as 90s, 30m or 1h30m, or an RFC 3339 time such as 2026-12-01T22:00:00Z",
        ),
        r(
            "stopPolicy.deadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "deadline": "30 minutes"}}),
            "spec.stopPolicy.deadline: Invalid value: \"string\": deadline must be a duration such as 90s, 30m or 1h30m, or an RFC 3339 time such as 2026-12-01T22:00:00Z",
        ),
        r(
            "stopPolicy.deadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "deadline": "-5m"}}),
            "spec.stopPolicy.deadline: Invalid value: \"string\": deadline must be a duration such as 90s, 30m or 1h30m, or an RFC 3339 time such as 2026-12-01T22:00:00Z",
        ),
        r(
            "stopPolicy.deadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "deadline": "2026-12-01 22:00"}}),
            "spec.stopPolicy.deadline: Invalid value: \"string\": deadline must be a duration such as 90s, 30m or 1h30m, or an RFC 3339 time such as 2026-12-01T22:00:00Z",
        ),
        r(
            "stopPolicy.deadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "deadline": ""}}),
            "[spec.stopPolicy.deadline: Invalid value: \"\": spec.stopPolicy.deadline in body should be at least 1 chars long, spec.stopPolicy.deadline: Invalid value: \"string\": deadline must be a duration such as 90s, 30m or 1h30m, or an RFC 3339 time such as 2026-12-01T22:00:00Z]",
        ),
        r(
            "stopPolicy.deadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "deadline": format!("{}s", "1".repeat(64))}}),
            skipped!("spec.stopPolicy.deadline: Too long: may not be more than 64 bytes"),
        ),
        a(
            "stopPolicy.deadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "deadline": "1h30m"}}),
        ),
        a(
            "stopPolicy.deadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "deadline": "1.5h"}}),
        ),
        a(
            "stopPolicy.deadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "deadline": "2026-12-01T22:00:00+08:00"}}),
        ),
        r(
            "stopPolicy.onDeadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "onDeadline": "Continue"}}),
            skipped!("spec.stopPolicy.onDeadline: Unsupported value: \"Continue\": supported values: \"Stop\", \"Stall\""),
        ),
        a(
            "stopPolicy.onDeadline",
            json!({"stopPolicy": {"maxDelaySeconds": 5, "onDeadline": "Stop"}}),
        ),
        r(
            "managementPolicy",
            json!({"managementPolicy": null}),
            skipped!("spec.managementPolicy: Unsupported value: null: supported values: \"Manage\", \"ObserveOnly\""),
        ),
        r("managementPolicy", json!({"managementPolicy": "Observe"}), skipped!("spec.managementPolicy: Unsupported value: \"Observe\": supported values: \"Manage\", \"ObserveOnly\"")),
        a("managementPolicy", json!({"managementPolicy": "ObserveOnly"})),
        r("deletionPolicy", json!({"deletionPolicy": "Delete"}), skipped!("spec.deletionPolicy: Unsupported value: \"Delete\": supported values: \"Orphan\", \"Stop\"")),
        a("deletionPolicy", json!({"deletionPolicy": "Stop"})),
        r("credentialsSecretRef", json!({"credentialsSecretRef": "creds"}), skipped!("spec.credentialsSecretRef: Invalid value: \"string\": spec.credentialsSecretRef in body must be of type object: \"string\"")),
        r("credentialsSecretRef", json!({"credentialsSecretRef": {}}), skipped!("spec.credentialsSecretRef.name: Required value")),
        r(
            "credentialsSecretRef.name",
            json!({"credentialsSecretRef": {"name": ""}}),
            "spec.credentialsSecretRef.name: Invalid value: \"\": spec.credentialsSecretRef.name in body should be at least 1 chars long",
        ),
        r(
            "credentialsSecretRef.name",
            json!({"credentialsSecretRef": {"name": "Aliyun_Creds"}}),
            "spec.credentialsSecretRef.name: Invalid value: \"Aliyun_Creds\": spec.credentialsSecretRef.name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'",
        ),
        r(
            "credentialsSecretRef.name",
            json!({"credentialsSecretRef": {"name": "creds..v2"}}),
            "spec.credentialsSecretRef.name: Invalid value: \"creds..v2\": spec.credentialsSecretRef.name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'",
        ),
        r(
            "credentialsSecretRef.name",
            json!({"credentialsSecretRef": {"name": "creds.-v2"}}),
            "spec.credentialsSecretRef.name: Invalid value: \"creds.-v2\": spec.credentialsSecretRef.name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'",
        ),
        r(
            "credentialsSecretRef.name",
            json!({"credentialsSecretRef": {"name": chars(254)}}),
            skipped!("spec.credentialsSecretRef.name: Too long: may not be more than 253 bytes"),
        ),
        a(
            "credentialsSecretRef.name",
            json!({"credentialsSecretRef": {"name": "aliyun-dts.creds-v2"}}),
        ),
        a(
            "credentialsSecretRef.name",
            json!({"credentialsSecretRef": {"name": chars(253)}}),
        ),
        Case {
            field: "(unknown field)",
            input: show(&json!({"desiredstate": "Stopped"})),
            op: Op::CreateStrict(spec(json!({"desiredstate": "Stopped"}))),
            expect: Expect::Rejected(
                400,
                "DtsJob in version \"v1alpha1\" cannot be handled as a DtsJob: strict decoding error: \
                 unknown field \"spec.desiredstate\"",
            ),
        },
        Case {
            field: "(unknown field)",
            input: show(&json!({"desiredstate": "Stopped"})),
            op: Op::ApplyStrict(spec(json!({"desiredstate": "Stopped"}))),
            expect: Expect::Rejected(
                500,
                "failed to create typed patch object (/NAME; kubedts.io/v1alpha1, Kind=DtsJob): \
                 .spec.desiredstate: field not declared in schema",
            ),
        },
        create(
            "(unknown field)",
            json!({"desiredstate": "Stopped"}),
            Expect::Pruned("desiredstate"),
        ),
        update(
            "jobId (update)",
            json!({"desiredState": "Stopped"}),
            json!({"jobId": "j2"}),
            Expect::Rejected(422, "spec: Invalid value: \"object\": jobId cannot change while desiredState is Stopped: the recorded stop belongs to the old job; create a new DtsJob instead"),
        ),
        update(
            "jobId (update)",
            json!({"desiredState": "Stopped"}),
            json!({"jobId": "j2", "desiredState": null}),
            Expect::Rejected(422, "spec: Invalid value: \"object\": jobId cannot change while desiredState is Stopped: the recorded stop belongs to the old job; create a new DtsJob instead"),
        ),
        update(
            "jobId (update)",
            json!({"desiredState": "Running"}),
            json!({"jobId": "j2"}),
            Expect::Accepted,
        ),
        update(
            "jobId (update)",
            json!({"desiredState": "Stopped"}),
            json!({"directions": ["Forward", "Reverse"], "stopPolicy": {"maxDelaySeconds": 5}}),
            Expect::Accepted,
        ),
        update(
            "desiredState (update)",
            json!({"desiredState": "Stopped"}),
            json!({"desiredState": "Running"}),
            Expect::Accepted,
        ),
    ]
}

/// The API server's answer to one case: `Ok` or the status and message
/// (without the `DtsJob.kubedts.io "NAME" is invalid: ` prefix).
async fn answer(ns: &TestNamespace, name: &str, op: &Op) -> Result<Value, (u16, String)> {
    let api = ns.dynamic_dtsjobs();
    let object = |spec: &Value| -> DynamicObject {
        let mut o = json!({
            "apiVersion": "kubedts.io/v1alpha1",
            "kind": "DtsJob",
            "metadata": {"name": name},
        });
        if !spec.is_null() {
            o["spec"] = spec.clone();
        }
        serde_json::from_value(o).expect("a DtsJob object")
    };
    let result = match op {
        Op::Create(spec) => api.create(&PostParams::default(), &object(spec)).await,
        Op::CreateStrict(spec) => {
            let url = format!(
                "/apis/kubedts.io/v1alpha1/namespaces/{}/dtsjobs?fieldValidation=Strict",
                ns.name
            );
            let body = serde_json::to_vec(&object(spec)).expect("a DtsJob serializes");
            let request = http::Request::post(url)
                .header("content-type", "application/json")
                .body(body)
                .expect("a request");
            ns.client.request::<DynamicObject>(request).await
        }
        Op::ApplyStrict(spec) => {
            api.patch(
                name,
                &PatchParams::apply("dts-e2e-admission").validation_strict(),
                &Patch::Apply(&object(spec)),
            )
            .await
        }
        Op::Update { from, patch } => {
            api.create(&PostParams::default(), &object(from))
                .await
                .unwrap_or_else(|e| panic!("creating the starting object of {name}: {e}"));
            api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": patch})))
                .await
        }
    };
    match result {
        Ok(o) => Ok(o.data["spec"].clone()),
        Err(kube::Error::Api(status)) => {
            let message = status.message.replace(name, "NAME");
            let message = message
                .strip_prefix("DtsJob.kubedts.io \"NAME\" is invalid: ")
                .unwrap_or(&message);
            Err((status.code, message.to_owned()))
        }
        Err(e) => panic!("{name}: not an answer of the API server: {e}"),
    }
}

#[tokio::test]
async fn api_server_rejects_every_invalid_spec_with_its_message_and_accepts_the_boundaries() {
    let ns = TestNamespace::new("admission-table").await;
    let cases = cases();
    let typed = ns.api::<dts_operator::crd::DtsJob>();
    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = format!("case-{i:02}");
        let got = answer(&ns, &name, &case.op).await;
        let ok = match (&case.expect, &got) {
            (Expect::Rejected(code, message), Err((c, m))) => code == c && message == m,
            (Expect::Accepted, Ok(_)) => true,
            (Expect::Pruned(field), Ok(spec)) => spec.get(field).is_none() && spec["jobId"] == "j1",
            _ => false,
        };
        if !ok {
            wrong.push(format!("{name} {} {}: got {got:?}", case.field, case.input));
        } else if got.is_ok() {
            if let Err(e) = typed.get(&name).await {
                wrong.push(format!(
                    "{name} {} {}: accepted, but the operator cannot read it: {e}",
                    case.field, case.input
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases answered otherwise:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );

    let rendered = render(&cases);
    if std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::write(DOC, &rendered).expect("writing docs/validation.md");
    }
    let committed = std::fs::read_to_string(DOC).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/validation.md is out of date with this table: run \
         `UPDATE_DOCS=1 scripts/test-e2e-env.sh cargo test -p dts-operator --test e2e_admission`"
    );
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Create(_) => "create",
        Op::CreateStrict(_) => "create (strict)",
        Op::ApplyStrict(_) => "server-side apply",
        Op::Update { .. } => "update",
    }
}

/// `docs/validation.md`: the rejected inputs with their messages, then the
/// accepted ones.
fn render(cases: &[Case]) -> String {
    let mut md = String::new();
    md += "<!-- Generated from the table in tests/e2e_admission.rs, whose every row the real\n";
    md += "     kube-apiserver answered as shown; do not edit. `UPDATE_DOCS=1\n";
    md += "     scripts/test-e2e-env.sh cargo test -p dts-operator --test e2e_admission` rewrites it. -->\n";
    md += "# What the API server refuses\n\n";
    md += "The DtsJob CRD (crds/dtsjob.yaml) carries every rule the API server can check, \
           so a bad spec is refused when it is applied, with the message below \
           (`kubectl` prints it after `The DtsJob \"NAME\" is invalid:`), and never reaches the \
           operator. Inputs are shown as the changed part of the smallest valid spec \
           `{\"jobId\": \"j1\", \"regionId\": \"cn-hangzhou\"}`; an update row shows the spec \
           it starts from and the merge patch. Field reference: [reference.md](reference.md).\n\n";
    md += "## Rejected\n\n| field | input | request | HTTP | message |\n| --- | --- | --- | --- | --- |\n";
    for c in cases {
        if let Expect::Rejected(code, message) = &c.expect {
            md += &format!(
                "| `{}` | `{}` | {} | {code} | `{}` |\n",
                c.field,
                cell(&c.input),
                op_name(&c.op),
                cell(message)
            );
        }
    }
    md += "\n## Accepted\n\nThe valid values at the edges of each rule; each is also read back as \
           the operator's typed DtsJob (an object it could not read would stop its watch).\n\n";
    md += "| field | input | request | result |\n| --- | --- | --- | --- |\n";
    for c in cases {
        let result = match &c.expect {
            Expect::Rejected(..) => continue,
            Expect::Accepted => "accepted".to_owned(),
            Expect::Pruned(f) => format!(
                "accepted, and `{f}` silently dropped: a client that does not ask for strict \
                 field validation loses a misspelt field"
            ),
        };
        md += &format!(
            "| `{}` | `{}` | {} | {result} |\n",
            c.field,
            cell(&c.input),
            op_name(&c.op)
        );
    }
    md
}
