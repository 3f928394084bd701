//! The credentials a throw-away control plane needs: a CA, the API server's
//! serving certificate, the service-account signing key pair and a static
//! admin token.
//!
//! Everything is generated fresh for each `up`, so no secret ever lives in the
//! repository and two clusters never trust each other.

use std::{fs, io::Read, path::Path};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Result;

/// Paths (relative to the cluster directory) of the generated files, shared by
/// the code that writes them and the code that passes them to the API server.
pub const CA_CERT: &str = "pki/ca.crt";
pub const SERVING_CERT: &str = "pki/apiserver.crt";
pub const SERVING_KEY: &str = "pki/apiserver.key";
pub const SA_KEY: &str = "pki/sa.key";
pub const SA_PUB: &str = "pki/sa.pub";
pub const TOKENS: &str = "tokens.csv";

/// What the rest of `up` needs in memory: the CA to embed in the kubeconfig
/// and the admin token to authenticate with.
pub struct Pki {
    pub ca_pem: String,
    pub admin_token: String,
}

/// Generates and writes all credentials under `dir`.
pub fn generate(dir: &Path) -> Result<Pki> {
    fs::create_dir_all(dir.join("pki")).map_err(|e| format!("creating {}/pki: {e}", dir.display()))?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("dts-testcluster-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();

    // The client connects to https://127.0.0.1:<port>, and kubectl users may
    // type localhost; rustls checks IP SANs strictly, so both are listed.
    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec!["localhost".to_string()])?;
    serving
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    serving.distinguished_name = name("kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let issuer = Issuer::new(ca_params, ca_key);
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    // ECDSA P-256 in PKCS#8/SPKI PEM: kube-apiserver reads both formats, and
    // the pair is what makes TokenRequest (`kubectl create token`) work.
    let sa_key = KeyPair::generate()?;

    let admin_token = random_hex(32)?;
    write(dir, CA_CERT, &ca_pem, false)?;
    write(dir, SERVING_CERT, &serving_cert.pem(), false)?;
    write(dir, SERVING_KEY, &serving_key.serialize_pem(), true)?;
    write(dir, SA_KEY, &sa_key.serialize_pem(), true)?;
    write(dir, SA_PUB, &sa_key.public_key_pem(), false)?;
    // Static token file format: token,user,uid,"group1,group2".
    write(
        dir,
        TOKENS,
        &format!("{admin_token},admin,admin-uid,\"system:masters\"\n"),
        true,
    )?;
    Ok(Pki { ca_pem, admin_token })
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a file; private material is made readable by the owner only.
pub fn write(dir: &Path, rel: &str, contents: &str, private: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(rel);
    let _ = fs::remove_file(&path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}
