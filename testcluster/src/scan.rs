//! `testcluster secret-scan`: searches files for the secrets of a test run.
//!
//! The ledger (one `label<TAB>value` a line, written by the e2e harness and
//! by `dts-emulator --secret-ledger`) lists every secret, token and
//! signature of the run. Each is searched as written, percent-encoded (as
//! in a query string) and base64-encoded (as in a Secret's `data`), in
//! every file under the given paths, all at once (Aho-Corasick). A hit is
//! reported as `file:line` with the ledger label and a SHA-256 prefix of
//! the secret, never the secret itself.
//!
//! Values shorter than [`MIN_LEN`] are left out: short strings match by
//! chance (a 4-character token is in any large log).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The shortest value searched for.
pub const MIN_LEN: usize = 12;

/// One secret of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub label: String,
    pub value: String,
}

impl Secret {
    /// What a report names it by: label and SHA-256 prefix.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.value.as_bytes());
        format!("{} sha256:{}", self.label, hex::encode(&digest[..4]))
    }
}

/// The ledger's distinct values of at least [`MIN_LEN`] bytes, and how many
/// shorter ones were left out.
pub fn parse_ledger(text: &str) -> (Vec<Secret>, usize) {
    let mut by_value: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines() {
        let (label, value) = line.split_once('\t').unwrap_or(("unlabelled", line));
        if !value.is_empty() {
            by_value.entry(value).or_insert(label);
        }
    }
    let short = by_value.keys().filter(|v| v.len() < MIN_LEN).count();
    let secrets = by_value
        .into_iter()
        .filter(|(v, _)| v.len() >= MIN_LEN)
        .map(|(value, label)| Secret {
            label: label.to_owned(),
            value: value.to_owned(),
        })
        .collect();
    (secrets, short)
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The forms a secret is searched in, with their names.
fn forms(value: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![("as is", value.to_owned())];
    let encoded = percent_encode(value);
    if encoded != value {
        v.push(("percent-encoded", encoded));
    }
    v.push(("base64", base64::engine::general_purpose::STANDARD.encode(value)));
    v
}

/// One secret found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// Index into the secrets.
    pub secret: usize,
    pub form: &'static str,
}

/// What a scan went through and found.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub bytes: u64,
    pub hits: Vec<Hit>,
}

/// Every regular file under `paths` (files as given; directories
/// recursively; symbolic links are not followed), sorted.
pub fn files_under(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let meta = fs::symlink_metadata(p)?;
        if meta.is_dir() {
            for entry in fs::read_dir(p)? {
                walk(&entry?.path(), out)?;
            }
        } else if meta.is_file() {
            out.push(p.to_owned());
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Searches `files` for every form of every secret.
pub fn scan(secrets: &[Secret], files: &[PathBuf]) -> std::io::Result<Report> {
    let mut patterns = Vec::new();
    let mut owner = Vec::new();
    for (i, s) in secrets.iter().enumerate() {
        for (form, text) in forms(&s.value) {
            patterns.push(text);
            owner.push((i, form));
        }
    }
    let matcher = AhoCorasick::new(&patterns).map_err(std::io::Error::other)?;
    let mut report = Report::default();
    for path in files {
        let bytes = fs::read(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        report.files += 1;
        report.bytes += bytes.len() as u64;
        let mut line = 1;
        let mut counted_to = 0;
        for m in matcher.find_overlapping_iter(&bytes) {
            // Matches come in order of their end, so their starts only
            // move back by less than the longest pattern: count lines up
            // to the start, never twice.
            if m.start() >= counted_to {
                line += bytes[counted_to..m.start()].iter().filter(|&&b| b == b'\n').count();
                counted_to = m.start();
            }
            let (secret, form) = owner[m.pattern().as_usize()];
            let hit = Hit {
                path: path.clone(),
                line,
                secret,
                form,
            };
            if !report.hits.contains(&hit) {
                report.hits.push(hit);
            }
        }
    }
    Ok(report)
}

/// Runs the subcommand: prints each hit and the summary line, and fails
/// when something was found or the ledger holds nothing to look for.
pub fn run(ledgers: &[PathBuf], newer: Option<&Path>, paths: &[PathBuf]) -> crate::Result<()> {
    let mut text = String::new();
    for l in ledgers {
        text += &fs::read_to_string(l).map_err(|e| format!("reading the ledger {}: {e}", l.display()))?;
        text.push('\n');
    }
    let (secrets, short) = parse_ledger(&text);
    if secrets.is_empty() {
        return Err(format!(
            "the ledger holds no secret of {MIN_LEN} or more characters ({short} shorter): nothing recorded, so a scan would prove nothing"
        )
        .into());
    }
    let mut files = files_under(paths)?;
    if let Some(stamp) = newer {
        let since = fs::metadata(stamp)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", stamp.display()))?;
        files.retain(|f| fs::metadata(f).and_then(|m| m.modified()).is_ok_and(|t| t > since));
    }
    let report = scan(&secrets, &files)?;
    for h in &report.hits {
        println!(
            "{}:{}: {} ({})",
            h.path.display(),
            h.line,
            secrets[h.secret].id(),
            h.form
        );
    }
    // What the ledger held, so a run shows which sources recorded (an
    // emulator that stopped recording would show as a missing label).
    let mut labels: BTreeMap<&str, usize> = BTreeMap::new();
    for secret in &secrets {
        *labels.entry(secret.label.as_str()).or_default() += 1;
    }
    let labels: Vec<String> = labels.iter().map(|(l, n)| format!("{l} {n}")).collect();
    println!("secret scan: ledger: {}", labels.join(", "));
    if short > 0 {
        println!("secret scan: {short} ledger values under {MIN_LEN} characters not searched");
    }
    println!(
        "secret scan: {} files, {} bytes, {} secrets, {} found",
        report.files,
        report.bytes,
        secrets.len(),
        report.hits.len()
    );
    if report.hits.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} secret(s) found in the run's output (listed above)",
            report.hits.len()
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANTED: &str = "planted-secret/value+Zq8=";

    fn ledger() -> Vec<Secret> {
        let (secrets, short) = parse_ledger(&format!(
            "STS_TOKEN\t{PLANTED}\nshort\tabc\nsignature\t{PLANTED}\nno-tab-value-long-enough\n"
        ));
        assert_eq!(short, 1, "the short value is left out");
        secrets
    }

    #[test]
    fn the_ledger_is_deduplicated_and_short_values_left_out() {
        let secrets = ledger();
        assert_eq!(
            secrets,
            [
                Secret {
                    label: "unlabelled".into(),
                    value: "no-tab-value-long-enough".into()
                },
                Secret {
                    label: "STS_TOKEN".into(),
                    value: PLANTED.into()
                },
            ]
        );
    }

    #[test]
    fn a_planted_secret_is_found_in_each_form_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("logs/op");
        fs::create_dir_all(&sub).unwrap();
        fs::write(dir.path().join("clean.log"), "nothing\nto see here\n").unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(PLANTED);
        fs::write(
            sub.join("operator.log"),
            format!(
                "line one\nline two\nDEBUG sent secret={PLANTED} oops\nq=Signature={}\ndata: {b64}\n",
                percent_encode(PLANTED)
            ),
        )
        .unwrap();
        let secrets = ledger();
        let files = files_under(&[dir.path().to_owned()]).unwrap();
        assert_eq!(files.len(), 2);
        let report = scan(&secrets, &files).unwrap();
        assert_eq!(report.files, 2);
        let found: Vec<(usize, &str)> = report.hits.iter().map(|h| (h.line, h.form)).collect();
        assert_eq!(found, [(3, "as is"), (4, "percent-encoded"), (5, "base64")]);
        assert!(report.hits.iter().all(|h| h.path.ends_with("logs/op/operator.log")));
        let id = secrets[report.hits[0].secret].id();
        assert!(id.starts_with("STS_TOKEN sha256:") && !id.contains(PLANTED), "{id}");
    }

    #[test]
    fn clean_files_give_no_hit() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.log"), "planted-secret/value but not the rest\n").unwrap();
        let files = files_under(&[dir.path().to_owned()]).unwrap();
        let report = scan(&ledger(), &files).unwrap();
        assert_eq!((report.files, report.hits.len()), (1, 0));
    }

    #[test]
    fn the_command_fails_on_a_hit_and_on_an_empty_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let ledger_path = dir.path().join("ledger");
        fs::write(&ledger_path, format!("STS_TOKEN\t{PLANTED}\n")).unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("clean.log"), "ok\n").unwrap();
        run(std::slice::from_ref(&ledger_path), None, std::slice::from_ref(&out)).expect("a clean directory passes");
        fs::write(out.join("leak.log"), format!("{PLANTED}\n")).unwrap();
        let e = run(std::slice::from_ref(&ledger_path), None, std::slice::from_ref(&out))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 secret(s) found"), "{e}");
        fs::write(&ledger_path, "short\tabc\n").unwrap();
        let e = run(&[ledger_path], None, &[out]).unwrap_err().to_string();
        assert!(e.contains("holds no secret"), "{e}");
    }

    #[test]
    fn newer_leaves_out_files_of_earlier_runs() {
        let dir = tempfile::tempdir().unwrap();
        let ledger_path = dir.path().join("ledger");
        fs::write(&ledger_path, format!("STS_TOKEN\t{PLANTED}\n")).unwrap();
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).unwrap();
        fs::write(logs.join("earlier-run.log"), format!("{PLANTED}\n")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let stamp = dir.path().join("started");
        fs::write(&stamp, "").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(logs.join("this-run.log"), "clean\n").unwrap();
        run(
            std::slice::from_ref(&ledger_path),
            Some(&stamp),
            std::slice::from_ref(&logs),
        )
        .expect("only this run's clean log is scanned");
        fs::write(logs.join("this-run.log"), format!("{PLANTED}\n")).unwrap();
        assert!(run(&[ledger_path], Some(&stamp), &[logs]).is_err());
    }
}
