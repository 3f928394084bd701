//! Every secret the end-to-end tests use, in one place, and the run's
//! secret ledger.
//!
//! A new test secret belongs here and in [`KNOWN`]: the secret scan at the
//! end of a `make test` run (`testcluster secret-scan`, started by
//! scripts/test-e2e-env.sh) searches every log, Event, DtsJob and the test
//! output for each ledger entry, and fails on any hit.
//!
//! The ledger is the file named by `DTS_SECRET_LEDGER` (the script exports
//! it; without it nothing is recorded): one `label<TAB>value` a line. The
//! harness writes [`KNOWN`] and the tokens it obtains; each emulator
//! (`--secret-ledger`) adds the signatures it received and the credentials
//! its STS issued.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Once;

/// The emulator account's AccessKeySecret ([`super::stack::ACCESS_KEY_ID`]).
pub const ACCESS_KEY_SECRET: &str = "e2e-secret-value-Zq8vX2";
/// The second account of the two-account limits test.
pub const SECOND_SECRET: &str = "e2e-second-secret-Kp3vW9";
/// The secret of an AccessKey the emulator does not know (a revoked key).
pub const REVOKED_SECRET: &str = "e2e-revoked-secret-Qm4xT1";
/// A secret the emulator does not know: signatures made with it fail.
pub const WRONG_SECRET: &str = "wrong-secret-value-Kp3Lm9";
/// Another wrong secret, for a Secret that is later fixed.
pub const OTHER_WRONG_SECRET: &str = "not-the-right-secret-Wq3";
/// An STS account of the emulator: its AccessKeySecret and SecurityToken.
pub const STS_SECRET: &str = "e2e-sts-secret-value-Wd4Rt7";
pub const STS_TOKEN: &str = "e2e-sts-token-value-Hq2Zc5";

/// The rotated-away secret of the default-credentials directory test.
pub const OLD_DIR_SECRET: &str = "wrong-dir-secret-value-Hv7Qp2";

/// Every constant above, labelled for the ledger.
pub const KNOWN: &[(&str, &str)] = &[
    ("ACCESS_KEY_SECRET", ACCESS_KEY_SECRET),
    ("SECOND_SECRET", SECOND_SECRET),
    ("REVOKED_SECRET", REVOKED_SECRET),
    ("WRONG_SECRET", WRONG_SECRET),
    ("OTHER_WRONG_SECRET", OTHER_WRONG_SECRET),
    ("STS_SECRET", STS_SECRET),
    ("STS_TOKEN", STS_TOKEN),
    ("OLD_DIR_SECRET", OLD_DIR_SECRET),
];

/// The environment variable naming the run's ledger file.
pub const LEDGER_ENV: &str = "DTS_SECRET_LEDGER";

/// The run's ledger file, when the run keeps one.
pub fn ledger_path() -> Option<PathBuf> {
    std::env::var_os(LEDGER_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Appends `value` to the ledger (one write, so parallel test binaries can
/// share the file). Panics when the ledger cannot be written: a scan with a
/// silently incomplete ledger would prove nothing.
pub fn record(label: &str, value: &str) {
    let Some(path) = ledger_path() else { return };
    if value.is_empty() || value.contains(['\n', '\r', '\t']) {
        return;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening the secret ledger {}: {e}", path.display()));
    file.write_all(format!("{label}\t{value}\n").as_bytes())
        .unwrap_or_else(|e| panic!("writing the secret ledger {}: {e}", path.display()));
}

/// Records [`KNOWN`], once per test binary.
pub fn record_known() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (label, value) in KNOWN {
            record(label, value);
        }
    });
}
