//! `docs/reference.md` is the DtsJob reference generated from the CRD's
//! schema (crds/dtsjob.yaml, itself generated from src/crd.rs): every field
//! with its type, validation and description. This test renders it and
//! fails when the committed file differs; `UPDATE_DOCS=1 cargo test --test
//! docs_reference` rewrites it.

use serde_yaml::Value;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md");

#[test]
fn reference_is_generated_from_the_crd() {
    let crd: Value = serde_yaml::from_str(&dts_operator::crd::crd_yaml()).expect("the CRD is YAML");
    let rendered = render(&crd);
    if std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1") {
        std::fs::write(PATH, &rendered).expect("writing docs/reference.md");
    }
    let committed = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/reference.md is out of date with the CRD: run `UPDATE_DOCS=1 cargo test -p dts-operator --test docs_reference`"
    );
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn type_of(s: &Value) -> String {
    let t = s["type"].as_str().unwrap_or("object");
    match t {
        "array" => format!("[]{}", type_of(&s["items"])),
        "string" if s["format"].as_str() == Some("date-time") => "string (date-time)".into(),
        "integer" => match s["format"].as_str() {
            Some(f) => format!("integer ({f})"),
            None => "integer".into(),
        },
        other => other.into(),
    }
}

fn validation(s: &Value) -> String {
    let mut out = Vec::new();
    if let Some(values) = s["enum"].as_sequence() {
        let v: Vec<String> = values
            .iter()
            .filter_map(|v| v.as_str())
            .map(|v| format!("`{v}`"))
            .collect();
        out.push(format!("one of {}", v.join(", ")));
    }
    for (key, word) in [
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("minimum", "minimum"),
        ("maximum", "maximum"),
    ] {
        if let Some(n) = s[key].as_i64() {
            out.push(format!("{word} {n}"));
        }
    }
    if let Some(p) = s["pattern"].as_str() {
        out.push(format!("pattern `{}`", p.replace('|', "\\|")));
    }
    if let Some(t) = s["x-kubernetes-list-type"].as_str() {
        match s["x-kubernetes-list-map-keys"].as_sequence() {
            Some(keys) => {
                let keys: Vec<&str> = keys.iter().filter_map(|k| k.as_str()).collect();
                out.push(format!("list-type {t} (keys: {})", keys.join(", ")));
            }
            None => out.push(format!("list-type {t}")),
        }
    }
    if s["default"] != Value::Null {
        let d = serde_json::to_string(&s["default"]).unwrap_or_default();
        out.push(format!("default `{d}`"));
    }
    if let Some(rules) = s["x-kubernetes-validations"].as_sequence() {
        for r in rules {
            out.push(format!(
                "rule `{}`: {}",
                r["rule"].as_str().unwrap_or_default().replace('|', "\\|"),
                one_line(r["message"].as_str().unwrap_or_default())
            ));
        }
    }
    out.join("; ")
}

fn fields(s: &Value, path: &str, out: &mut Vec<String>) {
    let required: Vec<&str> = s["required"]
        .as_sequence()
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let Some(props) = s["properties"].as_mapping() else {
        return;
    };
    for (name, prop) in props {
        let name = name.as_str().unwrap_or("?");
        let path = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        out.push(format!(
            "| `{path}` | {} | {} | {} | {} |",
            type_of(prop),
            if required.contains(&name) { "yes" } else { "" },
            validation(prop),
            one_line(prop["description"].as_str().unwrap_or_default())
        ));
        if prop["type"].as_str() == Some("array") {
            fields(&prop["items"], &format!("{path}[]"), out);
        } else {
            fields(prop, &path, out);
        }
    }
}

fn render(crd: &Value) -> String {
    let spec = &crd["spec"];
    let mut md = String::new();
    md += "<!-- Generated from crds/dtsjob.yaml by tests/docs_reference.rs; do not edit.\n";
    md += "     UPDATE_DOCS=1 cargo test -p dts-operator --test docs_reference rewrites it. -->\n";
    md += "# DtsJob reference\n\n";
    for version in spec["versions"].as_sequence().expect("versions") {
        let name = version["name"].as_str().unwrap_or_default();
        let schema = &version["schema"]["openAPIV3Schema"];
        md += &format!(
            "`{}/{name}`, kind `{}` (plural `{}`, short name `{}`), {}.\n\n",
            spec["group"].as_str().unwrap_or_default(),
            spec["names"]["kind"].as_str().unwrap_or_default(),
            spec["names"]["plural"].as_str().unwrap_or_default(),
            spec["names"]["shortNames"][0].as_str().unwrap_or_default(),
            if spec["scope"].as_str() == Some("Namespaced") {
                "namespaced"
            } else {
                "cluster-scoped"
            }
        );
        md += &one_line(schema["description"].as_str().unwrap_or_default());
        md += "\n\n`kubectl explain dtsjob.spec` (and any field below) prints the same descriptions.\n\n";
        md += "## Printer columns (`kubectl get dtsjobs`)\n\n| column | type | JSONPath |\n| --- | --- | --- |\n";
        for c in version["additionalPrinterColumns"].as_sequence().into_iter().flatten() {
            md += &format!(
                "| {} | {} | `{}` |\n",
                c["name"].as_str().unwrap_or_default(),
                c["type"].as_str().unwrap_or_default(),
                c["jsonPath"].as_str().unwrap_or_default().replace('|', "\\|")
            );
        }
        for (section, key) in [("spec", "spec"), ("status", "status")] {
            let s = &schema["properties"][key];
            md += &format!(
                "\n## `{section}`\n\n{}\n\n",
                one_line(s["description"].as_str().unwrap_or_default())
            );
            let rules = validation(&Value::Mapping(
                [(
                    Value::from("x-kubernetes-validations"),
                    s["x-kubernetes-validations"].clone(),
                )]
                .into_iter()
                .collect(),
            ));
            if !rules.is_empty() {
                md += &format!("Admission: {rules}.\n\n");
            }
            md += "| field | type | required | validation | description |\n| --- | --- | --- | --- | --- |\n";
            let mut rows = Vec::new();
            fields(s, key, &mut rows);
            for r in rows {
                md += &r;
                md += "\n";
            }
        }
    }
    md
}
