//! docs/ram-policy.json grants exactly the DTS actions the client calls:
//! every `self.call(…, "Action", …)` in crates/dts-api/src/client.rs, and
//! nothing more (least privilege).

use std::collections::BTreeSet;

#[test]
fn ram_policy_grants_exactly_the_actions_the_client_calls() {
    let client = include_str!("../crates/dts-api/src/client.rs");
    let called: BTreeSet<String> = client
        .lines()
        .filter_map(|l| l.split_once("self.call(").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split('"').nth(1))
        .map(|action| format!("dts:{action}"))
        .collect();
    assert!(called.len() >= 5, "actions found in client.rs: {called:?}");

    let policy: serde_json::Value =
        serde_json::from_str(include_str!("../docs/ram-policy.json")).expect("docs/ram-policy.json is JSON");
    let statements = policy["Statement"].as_array().expect("Statement");
    let mut granted = BTreeSet::new();
    for s in statements {
        assert_eq!(s["Effect"], "Allow", "{s}");
        for a in s["Action"].as_array().expect("Action list") {
            let a = a.as_str().expect("action string");
            assert!(!a.contains('*'), "no wildcard actions: {a}");
            granted.insert(a.to_owned());
        }
    }
    assert_eq!(
        granted, called,
        "docs/ram-policy.json vs the actions in crates/dts-api/src/client.rs"
    );

    // The explanation lists the same actions.
    let doc = include_str!("../docs/ram-policy.md");
    for a in &called {
        assert!(doc.contains(&format!("`{a}`")), "docs/ram-policy.md explains {a}");
    }
}
