"""Alibaba's official Python SDKs against the real dts-emulator binary.

This is the only check of the shared signing code that is not circular: the
SDKs sign, the emulator verifies with the crate's `dts::sign` functions.
"""

import http.client
import socket
import threading

import pytest
from alibabacloud_dts20200101 import models
from alibabacloud_dts20200101.client import Client
from alibabacloud_tea_openapi.models import Config
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkdts.request.v20200101.StopDtsJobRequest import StopDtsJobRequest as LegacyStop

from conftest import AK, SECRET, STS_AK, STS_SECRET, STS_TOKEN


def tea_client(emu, algorithm=None, ak=AK, secret=SECRET, token=None, **extra):
    cfg = Config(
        endpoint=emu.endpoint,
        protocol="http",
        region_id="cn-hangzhou",
        access_key_id=ak,
        access_key_secret=secret,
        security_token=token,
        **extra,
    )
    if algorithm:
        cfg.signature_algorithm = algorithm
    return Client(cfg)


def stop(client, job="dtsjob2way", direction=None):
    return client.stop_dts_job(
        models.StopDtsJobRequest(dts_job_id=job, region_id="cn-hangzhou", synchronization_direction=direction)
    )


def assert_stopped(emu, resp, scheme, direction="Forward", job="dtsjob2way"):
    assert resp.status_code == 200
    assert resp.body.success is True, resp.body.to_map()
    assert emu.status(job)[direction] == "Finished"
    last = emu.journal()[-1]
    assert (last["action"], last["scheme"], last["authOk"], last["errorCode"]) == ("StopDtsJob", scheme, True, None)
    assert last["requestId"] == resp.body.request_id


def test_stop_with_default_v3_signing(emulator):
    assert_stopped(emulator, stop(tea_client(emulator)), "ACS3-HMAC-SHA256")


def test_stop_with_v2_hmac_sha1_signing(emulator):
    resp = stop(tea_client(emulator, "v2"), direction="Reverse")
    assert_stopped(emulator, resp, "HMAC-SHA1", direction="Reverse")
    assert emulator.status("dtsjob2way")["Forward"] == "Synchronizing"


@pytest.mark.parametrize("algorithm,scheme", [(None, "ACS3-HMAC-SHA256"), ("v2", "HMAC-SHA1")])
def test_stop_with_sts_credentials(emulator, algorithm, scheme):
    client = tea_client(emulator, algorithm, ak=STS_AK, secret=STS_SECRET, token=STS_TOKEN)
    assert_stopped(emulator, stop(client), scheme)
    assert STS_TOKEN not in str(emulator.journal())


def test_sts_key_without_its_token_is_refused(emulator):
    with pytest.raises(Exception) as e:
        stop(tea_client(emulator, ak=STS_AK, secret=STS_SECRET))
    assert e.value.code == "InvalidSecurityToken.MismatchWithAccessKey"
    assert emulator.status("dtsjob2way")["Forward"] == "Synchronizing"


def legacy_client(emu, secret=SECRET, sts=False):
    if sts:
        return AcsClient(region_id="cn-hangzhou", credential=StsTokenCredential(STS_AK, STS_SECRET, STS_TOKEN))
    return AcsClient(AK, secret, "cn-hangzhou")


def legacy_stop(emu, client, job="dtsjob2way"):
    req = LegacyStop()
    req.set_DtsJobId(job)
    req.set_endpoint(emu.endpoint)
    req.set_protocol_type("http")
    return client.do_action_with_exception(req)


@pytest.mark.parametrize("sts", [False, True])
def test_stop_with_legacy_core_sdk(emulator, sts):
    body = legacy_stop(emulator, legacy_client(emulator, sts=sts))
    assert b'"Success":true' in body, body
    assert emulator.status("dtsjob2way")["Forward"] == "Finished"
    last = emulator.journal()[-1]
    # The legacy SDK's own shape: Format=JSON and an empty, signed SignatureType.
    assert last["params"]["Format"] == "JSON" and last["params"]["SignatureType"] == ""
    assert last["scheme"] == "HMAC-SHA1" and last["authOk"] is True


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_wrong_secret_gets_signature_does_not_match(emulator, algorithm):
    with pytest.raises(Exception) as e:
        stop(tea_client(emulator, algorithm, secret="wrong-secret"))
    assert e.value.code == "SignatureDoesNotMatch"
    assert e.value.status_code == 400
    assert "server string to sign is:" in e.value.message
    assert emulator.status("dtsjob2way")["Forward"] == "Synchronizing"


def test_wrong_secret_with_legacy_sdk_proves_same_string_to_sign(emulator):
    # The legacy SDK renames SignatureDoesNotMatch to InvalidAccessKeySecret
    # only when the server's string-to-sign equals its own: an independent
    # check that the emulator canonicalizes exactly like Alibaba's SDK.
    with pytest.raises(ServerException) as e:
        legacy_stop(emulator, legacy_client(emulator, secret="wrong-secret"))
    assert e.value.get_http_status() == 400
    assert e.value.get_error_code() == "InvalidAccessKeySecret", e.value


class CapturingProxy:
    """An HTTP proxy stand-in that records the SDK's exact request bytes and
    answers a canned success, so the request never reaches the emulator."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.captured = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            while len(body) < length:
                body += conn.recv(65536)
            self.captured = data[: len(head) + 4] + body
            answer = b'{"RequestId":"00000000-0000-4000-8000-000000000000","HttpStatusCode":200,"Success":true}'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=utf-8\r\n"
                + b"Content-Length: " + str(len(answer)).encode() + b"\r\nConnection: close\r\n\r\n" + answer
            )
        self.sock.close()


def send_raw(emu, raw):
    with socket.create_connection((emu.host, emu.port), timeout=10) as s:
        s.sendall(raw)
        resp = http.client.HTTPResponse(s)
        resp.begin()
        return resp.status, resp.read()


def test_replayed_signed_request_gets_signature_nonce_used(emulator):
    proxy = CapturingProxy()
    client = tea_client(emulator, http_proxy=f"http://127.0.0.1:{proxy.port}")
    assert stop(client).body.success is True  # the canned answer
    proxy.thread.join(timeout=10)
    raw = proxy.captured
    assert raw and b"authorization: acs3-hmac-sha256" in raw.lower(), raw
    status, body = send_raw(emulator, raw)
    assert status == 200 and b'"Success":true' in body, body
    status, body = send_raw(emulator, raw)
    assert status == 400 and b'"Code":"SignatureNonceUsed"' in body, body
    codes = [(e["authOk"], e["errorCode"]) for e in emulator.journal()]
    assert codes == [(True, None), (False, "SignatureNonceUsed")]


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_reverse_on_one_way_job_returns_rendered_invalid_parameter(emulator, algorithm):
    resp = stop(tea_client(emulator, algorithm), job="dtsjob1way", direction="Reverse")
    body = resp.body
    assert resp.status_code == 200 and body.success is False
    assert body.err_code == "InvalidParameter"
    assert body.err_message == "The Value of Input Parameter %s is not valid."
    assert body.dynamic_message == "SynchronizationDirection"
    rendered = body.err_message.replace("%s", body.dynamic_message)
    assert rendered == "The Value of Input Parameter SynchronizationDirection is not valid."
    assert emulator.status("dtsjob1way") == {"Forward": "Synchronizing"}


def test_describe_calls_read_back_the_stop(emulator):
    client = tea_client(emulator)
    stop(client, direction="Reverse")
    detail = client.describe_dts_job_detail(
        models.DescribeDtsJobDetailRequest(dts_instance_id="dtsinst2way", synchronization_direction="Reverse", region_id="cn-hangzhou")
    ).body
    assert (detail.status, detail.dts_job_direction) == ("Finished", "Reverse")
    jobs = tea_client(emulator, "v2").describe_dts_jobs(models.DescribeDtsJobsRequest(region="cn-hangzhou", job_type="SYNC")).body
    two = next(j for j in jobs.dts_job_list if j.dts_job_id == "dtsjob2way")
    assert (two.status, two.reverse_job.status) == ("Synchronizing", "Finished")


def lifecycle_request(cls, job="dtsjob2way", direction="Forward"):
    return cls(dts_job_id=job, region_id="cn-hangzhou", synchronization_direction=direction)


@pytest.mark.parametrize("algorithm,scheme", [(None, "ACS3-HMAC-SHA256"), ("v2", "HMAC-SHA1")])
def test_suspend_and_start_round_trip(emulator, algorithm, scheme):
    client = tea_client(emulator, algorithm)
    resp = client.suspend_dts_job(lifecycle_request(models.SuspendDtsJobRequest, direction="Reverse"))
    assert resp.status_code == 200 and resp.body.success is True, resp.body.to_map()
    assert emulator.status("dtsjob2way") == {"Forward": "Synchronizing", "Reverse": "Suspending"}
    resp = client.start_dts_job(lifecycle_request(models.StartDtsJobRequest, direction="Reverse"))
    assert resp.body.success is True, resp.body.to_map()
    assert emulator.status("dtsjob2way")["Reverse"] == "Synchronizing"
    actions = [(e["action"], e["scheme"], e["authOk"], e["errorCode"]) for e in emulator.journal()]
    assert actions == [("SuspendDtsJob", scheme, True, None), ("StartDtsJob", scheme, True, None)]


def test_suspend_on_change_tracking_job_succeeds_without_pausing(emulator):
    resp = tea_client(emulator).suspend_dts_job(lifecycle_request(models.SuspendDtsJobRequest, job="dtsjobtrack"))
    assert resp.body.success is True, resp.body.to_map()
    assert emulator.status("dtsjobtrack") == {"Forward": "Normal"}


def test_describe_dts_job_detail_parses_status_delay_checkpoint(emulator):
    emulator.post(
        "jobs/dtsjob2way/state",
        {"direction": "Reverse", "status": "Failed", "errorMessage": "binlog purged", "delayMs": 4200, "checkpoint": 1700000000},
    )
    for algorithm in (None, "v2"):
        body = tea_client(emulator, algorithm).describe_dts_job_detail(
            models.DescribeDtsJobDetailRequest(dts_job_id="dtsjob2way", synchronization_direction="Reverse", region_id="cn-hangzhou")
        ).body
        assert isinstance(body, models.DescribeDtsJobDetailResponseBody)
        assert (body.status, body.delay, body.checkpoint) == ("Failed", 4200, 1700000000)
        assert (body.error_message, body.dts_job_direction, body.dts_job_id) == ("binlog purged", "Reverse", "dtsjob2way")
    fwd = tea_client(emulator).describe_dts_job_detail(models.DescribeDtsJobDetailRequest(dts_job_id="dtsjob2way")).body
    assert (fwd.status, fwd.delay, fwd.error_message, fwd.dts_job_direction) == ("Synchronizing", 0, "", "Forward")
    assert isinstance(fwd.checkpoint, int) and fwd.checkpoint > 1700000000


def test_describe_dts_jobs_pages_and_filters_with_the_sdk_models(emulator):
    client = tea_client(emulator)
    seen = []
    for page, want in [(1, 30), (2, 30), (3, 5)]:
        body = client.describe_dts_jobs(
            models.DescribeDtsJobsRequest(region="cn-shanghai", job_type="SYNC", page_size=30, page_number=page)
        ).body
        assert (body.total_record_count, body.page_number, body.page_record_count) == (65, page, want)
        assert len(body.dts_job_list) == want
        assert all(isinstance(j, models.DescribeDtsJobsResponseBodyDtsJobList) for j in body.dts_job_list)
        seen += [j.dts_job_id for j in body.dts_job_list]
    assert seen == [f"dtspage{i:02}" for i in range(65)]

    tea_client(emulator, "v2").stop_dts_job(lifecycle_request(models.StopDtsJobRequest, direction="Reverse"))
    body = tea_client(emulator, "v2").describe_dts_jobs(
        models.DescribeDtsJobsRequest(
            region="cn-hangzhou", job_type="SYNC", dts_job_id="dtsjob2way,dtsjob1way,nosuchjob", page_size=10
        )
    ).body
    assert (body.total_record_count, body.page_record_count, body.page_number) == (2, 2, 1)
    by_id = {j.dts_job_id: j for j in body.dts_job_list}
    assert set(by_id) == {"dtsjob2way", "dtsjob1way"}
    two = by_id["dtsjob2way"]
    assert (two.status, two.dts_job_direction, two.delay) == ("Synchronizing", "Forward", 0)
    assert isinstance(two.reverse_job, models.DescribeDtsJobsResponseBodyDtsJobListReverseJob)
    rev = two.reverse_job
    assert (rev.dts_job_id, rev.status, rev.dts_job_direction, rev.delay) == ("dtsjob2way", "Finished", "Reverse", 0)
    # The SDK model types this Checkpoint as a string (DescribeDtsJobDetail: int).
    assert isinstance(rev.checkpoint, str) and int(rev.checkpoint) > 1700000000
    assert by_id["dtsjob1way"].reverse_job is None
