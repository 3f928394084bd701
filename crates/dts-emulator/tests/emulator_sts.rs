//! The emulator's STS with the operator's own STS client (dts-api), in
//! process: AssumeRoleWithOIDC verifies the token (signature by kid against
//! the provider's JWKS, issuer, audience, expiry) and AssumeRole verifies
//! the signature and the role's trust; the temporary credentials they issue
//! are accepted by the DTS operations until they expire. The real RS256
//! path, with a kube-apiserver's ServiceAccount tokens and JWKS, is proven
//! end to end (tests/e2e_credentials.rs of the operator); here the tokens
//! are ES256, signed with a key generated for the test.

mod emulator_support;

use base64::Engine as _;
use dts_api::{
    AssumeRole, AssumeRoleWithOidc, ClientConfig, Credentials, DtsClient, ErrorClass, ErrorReason, JobRef, StsClient,
};
use emulator_support::Emu;
use jsonwebtoken::{EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const PROVIDER: &str = "acs:ram::1234567890:oidc-provider/ack-rrsa";
const ROLE: &str = "acs:ram::1234567890:role/dts-operator";
const SUBJECT: &str = "system:serviceaccount:dts-system:dts-operator";

/// A P-256 key, its PKCS#8 (to sign) and its JWK (for the emulator).
struct Key {
    pkcs8: Vec<u8>,
    jwk: Value,
}

fn key(kid: &str) -> Key {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    Key {
        pkcs8: pkcs8.as_ref().to_vec(),
        jwk: json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                    "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
    }
}

fn token(key: &Key, kid: &str, aud: &str, exp_in: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.into());
    let claims = json!({"iss": ISSUER, "sub": SUBJECT, "aud": [aud], "iat": now, "nbf": now, "exp": now + exp_in});
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
}

fn config(jwk: &Value, lifetime: u64) -> String {
    json!({
        "accounts": [{"accessKeyId": "LTAIplatform", "accessKeySecret": "platform-secret"},
                     {"accessKeyId": "LTAIother", "accessKeySecret": "other-secret"}],
        "jobs": [{"jobId": "stsjob1", "regionId": "cn-hangzhou"}],
        "sts": {
            "credentialLifetimeSeconds": lifetime,
            "roles": [
                {"arn": ROLE, "oidcProviderArns": [PROVIDER], "subjects": [SUBJECT]},
                {"arn": "acs:ram::222:role/tenant", "trustedAccessKeyIds": ["LTAIplatform"], "externalId": "tenant-42"},
            ],
            "oidcProviders": [{"arn": PROVIDER, "issuer": ISSUER, "audiences": ["sts.aliyuncs.com"], "jwks": {"keys": [jwk]}}],
        },
    })
    .to_string()
}

fn clients(emu: &Emu) -> (StsClient, DtsClient) {
    let cfg = ClientConfig {
        endpoint_override: Some(url::Url::parse(&emu.url()).unwrap()),
        ..ClientConfig::default()
    };
    (StsClient::new(cfg.clone(), false), DtsClient::new(cfg))
}

fn oidc(token: String) -> AssumeRoleWithOidc {
    AssumeRoleWithOidc {
        role_arn: ROLE.into(),
        oidc_provider_arn: PROVIDER.into(),
        oidc_token: token,
        role_session_name: "dts-operator".into(),
        duration_seconds: 3600,
    }
}

async fn admin_get(emu: &Emu, path: &str) -> Value {
    let r = emu
        .http
        .get(format!("{}/_emulator/{path}", emu.url()))
        .send()
        .await
        .unwrap();
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

fn job() -> JobRef {
    JobRef {
        job_id: "stsjob1".into(),
        instance_id: None,
        region_id: "cn-hangzhou".into(),
        direction: None,
    }
}

#[tokio::test]
async fn an_oidc_token_becomes_temporary_credentials_that_dts_accepts_until_they_expire() {
    let k = key("k1");
    let emu = emulator_support::start_with(&config(&k.jwk, 3600)).await;
    let (sts, dts) = clients(&emu);
    let issued = sts
        .assume_role_with_oidc(None, &oidc(token(&k, "k1", "sts.aliyuncs.com", 600)))
        .await
        .expect("the token is accepted");
    let c = &issued.credentials;
    assert!(c.access_key_id.starts_with("STS."), "{}", c.access_key_id);
    assert!(c.security_token.as_deref().is_some_and(|t| t.starts_with("CAIS")));
    let left = issued.expiration.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((3500..=3600).contains(&left), "lifetime {left}");
    assert_eq!(
        issued.assumed_role_arn.as_deref(),
        Some(&*format!("{ROLE}/dts-operator"))
    );

    dts.describe_dts_job_detail(c, &job()).await.expect("DTS accepts them");
    // Without the token the key is refused, as for any STS credential.
    let bare = Credentials::new(&c.access_key_id, &c.access_key_secret);
    let e = dts.describe_dts_job_detail(&bare, &job()).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("InvalidSecurityToken.MismatchWithAccessKey"));

    let r = emu
        .http
        .post(format!("{}/_emulator/sts/expire", emu.url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let e = dts.stop_dts_job(c, &job()).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("InvalidSecurityToken.Expired"));
    assert_eq!(
        (e.class, e.reason()),
        (ErrorClass::Retryable, ErrorReason::CredentialsExpired)
    );

    let journal = admin_get(&emu, "journal").await;
    let text = journal.to_string();
    let first = &journal[0];
    assert_eq!(first["action"], "AssumeRoleWithOIDC");
    assert_eq!(first["params"]["OIDCToken"], "** REDACTED **");
    assert!(
        !text.contains(c.security_token.as_deref().unwrap()),
        "no token in the journal"
    );
    emu.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_oidc_tokens_are_refused_with_sts_codes() {
    let k = key("k1");
    let other = key("k1");
    let emu = emulator_support::start_with(&config(&k.jwk, 3600)).await;
    let (sts, _) = clients(&emu);
    let cases = [
        (
            token(&k, "k1", "other-audience", 600),
            "AuthenticationFail.OIDCToken.AudienceNotMatch",
        ),
        (
            token(&k, "k1", "sts.aliyuncs.com", -30),
            "AuthenticationFail.OIDCToken.Expired",
        ),
        (
            token(&other, "k1", "sts.aliyuncs.com", 600),
            "AuthenticationFail.OIDCToken.InvalidSignature",
        ),
        (
            token(&k, "unknown-kid", "sts.aliyuncs.com", 600),
            "AuthenticationFail.OIDCToken.InvalidSignature",
        ),
        ("not-a-jwt".to_owned(), "AuthenticationFail.OIDCToken.Invalid"),
    ];
    for (t, code) in cases {
        let e = sts.assume_role_with_oidc(None, &oidc(t)).await.unwrap_err();
        assert_eq!(e.code.as_deref(), Some(code));
        assert_eq!(e.http_status, Some(401), "{code}");
        assert_eq!(
            (e.class, e.reason()),
            (ErrorClass::Terminal, ErrorReason::AuthenticationFailed),
            "{code}"
        );
    }
    let mut wrong_provider = oidc(token(&k, "k1", "sts.aliyuncs.com", 600));
    wrong_provider.oidc_provider_arn = "acs:ram::1:oidc-provider/nope".into();
    let e = sts.assume_role_with_oidc(None, &wrong_provider).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("AuthenticationFail.NoPermission"));
    emu.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn assume_role_checks_the_signature_and_the_roles_trust() {
    let k = key("k1");
    let emu = emulator_support::start_with(&config(&k.jwk, 3600)).await;
    let (sts, dts) = clients(&emu);
    let platform = Credentials::new("LTAIplatform", "platform-secret");
    let req = |external_id: Option<&str>| AssumeRole {
        role_arn: "acs:ram::222:role/tenant".into(),
        role_session_name: "dts-operator".into(),
        external_id: external_id.map(str::to_owned),
        duration_seconds: 900,
    };
    let issued = sts
        .assume_role(&platform, Some("cn-hangzhou"), &req(Some("tenant-42")))
        .await
        .expect("the platform key may assume the tenant's role");
    dts.describe_dts_job_detail(&issued.credentials, &job())
        .await
        .expect("DTS accepts them");

    let e = sts.assume_role(&platform, None, &req(Some("wrong"))).await.unwrap_err();
    assert_eq!((e.code.as_deref(), e.http_status), (Some("NoPermission"), Some(403)));
    let other = Credentials::new("LTAIother", "other-secret");
    let e = sts
        .assume_role(&other, None, &req(Some("tenant-42")))
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some("NoPermission"));
    let forged = Credentials::new("LTAIplatform", "not-the-secret");
    let e = sts
        .assume_role(&forged, None, &req(Some("tenant-42")))
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some("SignatureDoesNotMatch"));
    let mut missing = req(Some("tenant-42"));
    missing.role_arn = "acs:ram::222:role/none".into();
    let e = sts.assume_role(&platform, None, &missing).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("EntityNotExist.Role"));

    // The issued credentials are listed for the test harness, secrets included.
    let listed = admin_get(&emu, "sts/credentials").await;
    assert_eq!(listed[0]["accessKeyId"], issued.credentials.access_key_id);
    assert_eq!(listed[0]["issuedBy"], "AssumeRole");
    emu.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_configured_lifetime_wins_over_duration_seconds() {
    let k = key("k1");
    let emu = emulator_support::start_with(&config(&k.jwk, 5)).await;
    let (sts, _) = clients(&emu);
    let issued = sts
        .assume_role_with_oidc(None, &oidc(token(&k, "k1", "sts.aliyuncs.com", 600)))
        .await
        .unwrap();
    let left = issued.expiration.duration_since(jiff::Timestamp::now()).as_secs();
    assert!((3..=5).contains(&left), "lifetime {left}");
    emu.handle.shutdown().await.unwrap();
}
