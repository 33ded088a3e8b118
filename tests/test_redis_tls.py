"""`state.redis_url: rediss://...`: the store talks TLS to a real redis-server (its
tls-port, a self-signed certificate made here with openssl), verifying the server's
certificate against `ssl_ca_certs`."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.fakes.deepseek import GOOD
from tests.helpers import chat_body, error_of, request
from tests.redis_procs import RedisProc


ALICE = "fa-tls-alice-0123456789"


@pytest.fixture
def tls_redis(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    from tests.conftest import free_port
    port = free_port()
    proc = RedisProc(tmp_path, "tls", [
        "port 0", f"tls-port {port}", f"tls-cert-file {cert}", f"tls-key-file {key}",
        f"tls-ca-cert-file {cert}", "tls-auth-clients no"], port=port,
        tls_args=("--tls", "--cacert", str(cert)))
    yield proc, cert
    proc.stop()


def _cfg(url, prefix):
    return {"auth": {"keys": [{"key": ALICE, "name": "alice", "rpm": 1000}]},
            "providers": {"deepseek": {"api_keys": [GOOD]}},
            "state": {"redis_url": url, "prefix": prefix, "timeout": 2}}


async def test_limits_are_kept_on_a_redis_reached_over_tls(make_gateway, tls_redis):
    proc, cert = tls_redis
    prefix = f"freeapi-test:{os.urandom(6).hex()}:"
    base, gw = make_gateway(_cfg(f"rediss://127.0.0.1:{proc.port}/0?ssl_ca_certs={cert}",
                                 prefix))
    for _ in range(3):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=ALICE)
        assert resp.code == 200
    assert proc.cli("KEYS", f"{prefix}c:*")  # the rpm counter went over TLS
    await gw.store.flush()
    assert proc.cli("ZCARD", f"{prefix}ledger") == "3"


async def test_a_redis_certificate_nobody_vouches_for_is_refused(make_gateway, tls_redis):
    proc, _ = tls_redis
    prefix = f"freeapi-test:{os.urandom(6).hex()}:"
    base, gw = make_gateway(_cfg(f"rediss://127.0.0.1:{proc.port}/0", prefix))
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=ALICE)
    assert error_of(resp, 503)["code"] == "state_unavailable"  # fail closed, as when down
    assert not proc.cli("KEYS", f"{prefix}*")
