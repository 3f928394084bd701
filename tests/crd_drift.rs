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
