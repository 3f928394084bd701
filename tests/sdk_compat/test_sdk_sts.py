"""Alibaba's credentials and STS SDKs against the emulator's STS.

`alibabacloud-credentials`' OIDC provider (what RRSA pods use) reads a token
file and calls AssumeRoleWithOIDC; `alibabacloud-sts20150401` calls
AssumeRole (signed) and AssumeRoleWithOIDC. The emulator verifies the token
(RS256 against the provider's JWKS, issuer, audience, expiry) as STS does,
and the temporary credentials then sign a StopDtsJob with the DTS SDK.
"""

import base64
import json
import time

import pytest
from alibabacloud_credentials.provider.oidc import OIDCRoleArnCredentialsProvider
from alibabacloud_sts20150401 import models as sts_models
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi.models import Config
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from Tea.core import TeaCore

from conftest import AK, CONFIG, SECRET, run_emulator
from test_sdk_compat import stop, tea_client

ISSUER = "https://kubernetes.default.svc.cluster.local"
PROVIDER = "acs:ram::1234567890:oidc-provider/ack-rrsa"
ROLE = "acs:ram::1234567890:role/dts-operator"
SUBJECT = "system:serviceaccount:dts-system:dts-operator"
KID = "sdk-test-key"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key):
    numbers = key.public_key().public_numbers()
    as_bytes = lambda n: n.to_bytes((n.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID, "n": b64url(as_bytes(numbers.n)), "e": b64url(as_bytes(numbers.e))}


def token(key, aud="sts.aliyuncs.com", exp_in=3600):
    """A ServiceAccount-shaped token, RS256, as a kube-apiserver issues it."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "RS256", "kid": KID, "typ": "JWT"}).encode())
    claims = {"iss": ISSUER, "sub": SUBJECT, "aud": [aud], "iat": now, "nbf": now, "exp": now + exp_in}
    payload = b64url(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{b64url(signature)}"


@pytest.fixture
def sts_emulator(tmp_path, rsa_key):
    config = dict(CONFIG)
    config["sts"] = {
        "roles": [{"arn": ROLE, "trustedAccessKeyIds": [AK], "oidcProviderArns": [PROVIDER], "subjects": [SUBJECT]}],
        "oidcProviders": [{"arn": PROVIDER, "issuer": ISSUER, "audiences": ["sts.aliyuncs.com"], "jwks": {"keys": [jwk(rsa_key)]}}],
    }
    yield from run_emulator(tmp_path, config)


@pytest.fixture
def plain_http(monkeypatch):
    """The credentials SDK always asks for https; the emulator serves http on
    127.0.0.1. Only the scheme is changed: query, token and parsing are the SDK's."""
    original = TeaCore.do_action

    def do_action(request, runtime=None):
        request.protocol = "http"
        return original(request, runtime)

    monkeypatch.setattr(TeaCore, "do_action", staticmethod(do_action))


def sts_client(emu, ak=AK, secret=SECRET):
    return StsClient(Config(endpoint=emu.endpoint, protocol="http", region_id="cn-hangzhou", access_key_id=ak, access_key_secret=secret))


def stop_with(emu, creds):
    client = tea_client(emu, ak=creds.access_key_id, secret=creds.access_key_secret, token=creds.security_token)
    resp = stop(client)
    assert resp.body.success is True, resp.body.to_map()
    last = emu.journal()[-1]
    assert (last["action"], last["accessKeyId"], last["authOk"]) == ("StopDtsJob", creds.access_key_id, True)


def test_credentials_oidc_provider_assumes_the_role_with_the_token_file(sts_emulator, rsa_key, tmp_path, plain_http):
    path = tmp_path / "token"
    path.write_text(token(rsa_key))
    provider = OIDCRoleArnCredentialsProvider(
        role_arn=ROLE,
        oidc_provider_arn=PROVIDER,
        oidc_token_file_path=str(path),
        role_session_name="sdk-compat",
        sts_endpoint=sts_emulator.endpoint,
    )
    creds = provider.get_credentials()
    assert creds.get_access_key_id().startswith("STS.")
    entry = next(e for e in sts_emulator.journal() if e["action"] == "AssumeRoleWithOIDC")
    assert entry["httpStatus"] == 200 and entry["params"]["RoleSessionName"] == "sdk-compat"
    assert entry["params"]["OIDCToken"] != path.read_text(), "the journal redacts the token"

    class C:
        access_key_id = creds.get_access_key_id()
        access_key_secret = creds.get_access_key_secret()
        security_token = creds.get_security_token()

    stop_with(sts_emulator, C)


def test_credentials_oidc_provider_reports_a_wrong_audience(sts_emulator, rsa_key, tmp_path, plain_http):
    path = tmp_path / "token"
    path.write_text(token(rsa_key, aud="someone-else"))
    provider = OIDCRoleArnCredentialsProvider(
        role_arn=ROLE, oidc_provider_arn=PROVIDER, oidc_token_file_path=str(path), sts_endpoint=sts_emulator.endpoint
    )
    with pytest.raises(Exception) as e:
        provider.get_credentials()
    assert "AuthenticationFail.OIDCToken.AudienceNotMatch" in str(e.value)


def test_sts_sdk_assume_role_signed_with_an_access_key(sts_emulator):
    resp = sts_client(sts_emulator).assume_role(
        sts_models.AssumeRoleRequest(role_arn=ROLE, role_session_name="sdk-assume", duration_seconds=900)
    )
    creds = resp.body.credentials
    assert creds.access_key_id.startswith("STS.") and creds.expiration.endswith("Z")
    assert resp.body.assumed_role_user.arn == f"{ROLE}/sdk-assume"
    entry = next(e for e in sts_emulator.journal() if e["action"] == "AssumeRole")
    assert (entry["accessKeyId"], entry["authOk"], entry["httpStatus"]) == (AK, True, 200)
    stop_with(sts_emulator, creds)


def test_sts_sdk_assume_role_refused_for_an_untrusted_key(sts_emulator):
    with pytest.raises(Exception) as e:
        sts_client(sts_emulator, secret="wrong-secret").assume_role(
            sts_models.AssumeRoleRequest(role_arn=ROLE, role_session_name="s")
        )
    assert e.value.code == "SignatureDoesNotMatch"


def test_sts_sdk_assume_role_with_oidc(sts_emulator, rsa_key):
    resp = sts_client(sts_emulator).assume_role_with_oidc(
        sts_models.AssumeRoleWithOIDCRequest(
            role_arn=ROLE, oidcprovider_arn=PROVIDER, oidctoken=token(rsa_key), role_session_name="sdk-oidc"
        )
    )
    assert resp.body.oidctoken_info.subject == SUBJECT
    assert resp.body.oidctoken_info.issuer == ISSUER
    stop_with(sts_emulator, resp.body.credentials)
    with pytest.raises(Exception) as e:
        sts_client(sts_emulator).assume_role_with_oidc(
            sts_models.AssumeRoleWithOIDCRequest(
                role_arn=ROLE, oidcprovider_arn=PROVIDER, oidctoken=token(rsa_key, exp_in=-60), role_session_name="s"
            )
        )
    assert e.value.code == "AuthenticationFail.OIDCToken.Expired"
