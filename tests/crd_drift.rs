//! `crds/dtsjob.yaml` is the committed output of `dts-operator crd`; users
//! apply it, so it must never drift from the Rust types.

#[test]
fn committed_crd_matches_the_types() {
    let path = format!("{}/crds/dtsjob.yaml", env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = dts_operator::crd::crd_yaml();
    assert!(
        committed == generated,
        "crds/dtsjob.yaml is out of date: run `cargo run --bin dts-operator -- crd > crds/dtsjob.yaml`"
    );
}

/// `kubectl explain dtsjob[.field…]` prints the schema's descriptions: every
/// property has one, and the root's is ours, not kube-derive's boilerplate.
#[test]
fn every_schema_field_has_a_description() {
    let crd: serde_yaml::Value = serde_yaml::from_str(&dts_operator::crd::crd_yaml()).expect("the CRD is YAML");
    let mut undocumented = Vec::new();
    let mut fields = 0;
    for version in crd["spec"]["versions"].as_sequence().expect("versions") {
        let root = &version["schema"]["openAPIV3Schema"];
        let description = root["description"].as_str().unwrap_or_default();
        assert!(
            description.len() > 40 && !description.contains("Auto-generated") && description.contains("DTS"),
            "the root description (kubectl explain dtsjob) is {description:?}"
        );
        walk(root, "dtsjob", &mut fields, &mut undocumented);
    }
    assert!(fields > 40, "only {fields} fields found: the walk missed the schema");
    assert!(
        undocumented.is_empty(),
        "fields without a description (add a doc comment in src/crd.rs): {undocumented:?}"
    );
}

fn walk(schema: &serde_yaml::Value, path: &str, fields: &mut usize, undocumented: &mut Vec<String>) {
    if let Some(props) = schema["properties"].as_mapping() {
        for (name, prop) in props {
            let path = format!("{path}.{}", name.as_str().unwrap_or("?"));
            *fields += 1;
            if prop["description"].as_str().is_none_or(|d| d.trim().is_empty()) {
                undocumented.push(path.clone());
            }
            walk(prop, &path, fields, undocumented);
        }
    }
    for key in ["items", "additionalProperties"] {
        if schema[key].is_mapping() {
            walk(&schema[key], &format!("{path}[]"), fields, undocumented);
        }
    }
}
