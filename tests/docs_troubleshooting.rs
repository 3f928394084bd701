//! docs/troubleshooting.md has a row for every condition reason the
//! operator writes (`Reason::ALL`) and for every DTS error code the client
//! knows by name (`dts_api::error::KNOWN_CODES`), and names nothing else in
//! those tables' first column.

use std::collections::BTreeSet;

use dts_operator::reason::Reason;

const DOC: &str = include_str!("../docs/troubleshooting.md");

/// The backticked names of the first column of the table after `heading`.
fn first_column(heading: &str) -> BTreeSet<String> {
    let section = DOC
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("docs/troubleshooting.md has the section {heading:?}"));
    let mut names = BTreeSet::new();
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
    {
        let first = line.split('|').nth(1).unwrap_or_default();
        names.extend(first.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    names
}

fn compare(what: &str, documented: BTreeSet<String>, known: BTreeSet<String>) {
    let missing: Vec<_> = known.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "{what} missing from docs/troubleshooting.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/troubleshooting.md lists {what} that do not exist: {unknown:?}"
    );
}

#[test]
fn every_reason_has_a_row() {
    let known = Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    compare("reasons", first_column("## By condition reason"), known);
}

#[test]
fn every_known_dts_error_code_has_a_row() {
    let mut known: BTreeSet<String> = dts_api::error::KNOWN_CODES.iter().map(|c| (*c).to_owned()).collect();
    known.insert("Other".into());
    compare("error codes", first_column("## By DTS error code"), known);
}
