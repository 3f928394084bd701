"""Fixtures for the SDK compatibility suite: a real `dts-emulator` process on
127.0.0.1 (port 0) with a temporary config, stopped after each test."""

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

AK, SECRET = "testAccessKeyId", "testAccessKeySecret"
STS_AK, STS_SECRET, STS_TOKEN = "stsAccessKeyId", "stsAccessKeySecret", "CAIS-sts-token-value"

CONFIG = {
    "accounts": [
        {"accessKeyId": AK, "accessKeySecret": SECRET},
        {"accessKeyId": STS_AK, "accessKeySecret": STS_SECRET, "securityToken": STS_TOKEN},
    ],
    "jobs": [
        {"jobId": "dtsjob2way", "instanceId": "dtsinst2way", "regionId": "cn-hangzhou", "twoWay": True, "status": "Synchronizing"},
        {"jobId": "dtsjob1way", "regionId": "cn-hangzhou", "twoWay": False, "status": "Synchronizing"},
        {"jobId": "dtsjobtrack", "regionId": "cn-hangzhou", "jobType": "SUBSCRIBE", "status": "Normal"},
    ]
    # Enough jobs in another region for DescribeDtsJobs to need three pages of 30.
    + [{"jobId": f"dtspage{i:02}", "regionId": "cn-shanghai"} for i in range(65)],
}


class Emulator:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.endpoint = f"{host}:{port}"

    def admin(self, path):
        with urllib.request.urlopen(f"http://{self.endpoint}/_emulator/{path}", timeout=10) as r:
            return json.loads(r.read())

    def status(self, job_id):
        return next(j for j in self.admin("jobs") if j["jobId"] == job_id)["status"]

    def journal(self):
        return self.admin("journal")

    def post(self, path, body):
        req = urllib.request.Request(
            f"http://{self.endpoint}/_emulator/{path}",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())


@pytest.fixture
def emulator(tmp_path):
    yield from run_emulator(tmp_path, CONFIG)


def run_emulator(tmp_path, config):
    """Runs the emulator binary with `config` until the test ends."""
    binary = Path(os.environ.get("DTS_EMULATOR_BIN", ROOT / "target" / "debug" / "dts-emulator"))
    if not binary.is_file():
        pytest.fail(f"dts-emulator binary not found at {binary} (build it or set DTS_EMULATOR_BIN)")
    cfg = tmp_path / "emulator.yaml"
    # JSON is valid YAML: the emulator reads either.
    cfg.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [str(binary), "--listen", "127.0.0.1:0", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        prefix = "listening on "
        if not line.startswith(prefix):
            pytest.fail(f"unexpected first line from dts-emulator: {line!r}")
        host, port = line[len(prefix):].rsplit(":", 1)
        yield Emulator(host, int(port))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
