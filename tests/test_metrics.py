"""GET /metrics: counters match the traffic exactly (streams and errors included, across
`--workers 2`), key health and limit refusals show, no raw key in any label."""

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.fakes.deepseek import BUSY, GOOD, GOOD2
from tests.helpers import ThreadedFake, assert_no_keys, chat_body, request, stream_raw, \
    wait_listening

ROOT = Path(__file__).resolve().parent.parent
ADMIN, USER = "gw-admin-key-0001", "gw-user-key-0002"
AUTH = {"auth": {"keys": [{"name": "ops", "key": ADMIN, "role": "admin"},
                          {"name": "app", "key": USER}]}}


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value}"""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(got: dict, name: str, **labels) -> float:
    return got.get((name, frozenset(labels.items())), 0.0)


async def scrape(base, key=ADMIN) -> dict:
    resp = await request(base + "/metrics", key=key)
    assert resp.code == 200, resp.body
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = resp.body.decode()
    assert_no_keys(text)
    return samples(text)


async def test_requests_streams_errors_and_tokens_are_counted_exactly(make_gateway):
    base, gw = make_gateway()
    for _ in range(5):
        assert (await request(base + "/v1/chat/completions", "POST", chat_body())).code == 200
    for _ in range(3):
        resp, _ = await stream_raw(base, chat_body(stream=True))
        assert resp.code == 200
    for _ in range(2):
        resp = await request(base + "/v1/chat/completions", "POST", chat_body("!status 400"))
        assert resp.code == 400
    # Not routed (unknown model, bad JSON): not counted, as they are not in the ledger.
    assert (await request(base + "/v1/chat/completions", "POST",
                          chat_body(model="nope"))).code == 404
    assert (await request(base + "/v1/chat/completions", "POST", "{")).code == 400
    got = await scrape(base, key=None)  # no gateway keys: open
    req = "freeapi_requests_total"
    assert value(got, req, endpoint="chat", provider="deepseek", model="deepseek-chat",
                 status="2xx") == 8
    # A failed request names the provider it was routed to (the ledger's provider is null).
    assert value(got, req, endpoint="chat", provider="deepseek", model="deepseek-chat",
                 status="4xx") == 2
    assert sum(v for (name, _), v in got.items() if name == req) == 10
    assert value(got, "freeapi_request_duration_seconds_count", endpoint="chat",
                 provider="deepseek", model="deepseek-chat") == 10
    assert value(got, "freeapi_time_to_first_token_seconds_count", provider="deepseek",
                 model="deepseek-chat") == 3
    tok = dict(provider="deepseek", model="deepseek-chat")
    # The fake's usage: 11 prompt (8 cached), 7 completion; streams report it too.
    assert value(got, "freeapi_tokens_total", type="input", **tok) == 8 * 11
    assert value(got, "freeapi_tokens_total", type="output", **tok) == 8 * 7
    assert value(got, "freeapi_tokens_total", type="cached", **tok) == 8 * 8
    assert value(got, "freeapi_tokens_total", type="reasoning", **tok) == 0
    assert value(got, "freeapi_inflight_requests", endpoint="chat") == 0


async def test_metrics_need_an_admin_key_unless_public(make_gateway):
    base, _ = make_gateway(AUTH)
    assert (await request(base + "/metrics", key=None)).code == 401
    assert (await request(base + "/metrics", key=USER)).code == 403
    assert (await request(base + "/metrics", key=ADMIN)).code == 200
    base, _ = make_gateway(dict(AUTH, metrics={"public": True}))
    assert (await request(base + "/metrics", key=None)).code == 200


async def test_a_cooling_key_shows_in_key_state_and_limits_count_refusals(make_gateway):
    config = {"auth": {"keys": [{"name": "ops", "key": ADMIN, "role": "admin"},
                                {"name": "app", "key": USER, "rpm": 2}]},
              "providers": {"deepseek": {"api_keys": [BUSY, GOOD, GOOD2]}}}
    base, gw = make_gateway(config)
    for _ in range(2):  # both answered: whoever met the 429 key moved on to another
        resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
        assert resp.code == 200
    resp = await request(base + "/v1/chat/completions", "POST", chat_body(), key=USER)
    assert resp.code == 429  # rpm: 2
    for _ in range(3):  # make sure the 429 key was tried at least once
        assert (await request(base + "/v1/chat/completions", "POST", chat_body(),
                              key=ADMIN)).code == 200
    got = await scrape(base)
    states = {dict(labels)["key"]: v for (name, labels), v in got.items()
              if name == "freeapi_key_state"}
    assert states == {"sk-...0429": 1, "sk-...0001": 0, "sk-...0002": 0}
    assert {dict(labels)["key"] for (name, labels), v in got.items()
            if name == "freeapi_key_inflight"} == set(states)
    assert value(got, "freeapi_limit_rejections_total", limit="rpm") == 1
    assert value(got, "freeapi_requests_total", endpoint="chat", provider="deepseek",
                 model="deepseek-chat", status="4xx") == 1


async def test_upstream_attempts_by_outcome_and_gateway_overhead(make_gateway, upstream,
                                                                  upstream_state):
    config = dict(AUTH, providers={
        "deepseek": {"api_keys": [GOOD, GOOD2]},
        "ds2": {"type": "deepseek", "base_url": upstream, "api_keys": [GOOD]},
        "ds3": {"type": "deepseek", "base_url": upstream, "api_keys": [BUSY]}},
        fallbacks={"ds3/deepseek-chat": ["ds2/deepseek-chat"]},
        models={"deepseek-chat": "deepseek/deepseek-chat"})
    base, gw = make_gateway(config)
    chat = base + "/v1/chat/completions"
    upstream_state.fail_next = 1  # one 503: the other key of the same provider answers
    resp = await request(chat, "POST", chat_body(), key=ADMIN)
    assert resp.code == 200, resp.body
    # ds3's only key is rate limited: the fallback target answers.
    assert (await request(chat, "POST", chat_body(model="ds3/deepseek-chat"),
                          key=ADMIN)).code == 200
    # The request itself is wrong: no retry, the one attempt failed.
    assert (await request(chat, "POST", chat_body("!status 400"), key=ADMIN)).code == 400
    resp, _ = await stream_raw(base, chat_body(stream=True), key=ADMIN)
    assert resp.code == 200
    got = await scrape(base)
    attempts = {tuple(sorted(dict(labels).items())): v for (name, labels), v in got.items()
                if name == "freeapi_upstream_attempts_total"}
    assert attempts == {
        (("outcome", "retried"), ("provider", "deepseek")): 1,
        (("outcome", "ok"), ("provider", "deepseek")): 2,
        (("outcome", "failed"), ("provider", "deepseek")): 1,
        (("outcome", "fallback"), ("provider", "ds3")): 1,
        (("outcome", "ok"), ("provider", "ds2")): 1}
    # Overhead: one observation per answered request, each less than its duration.
    assert value(got, "freeapi_gateway_overhead_seconds_count") == 3
    durations = sum(v for (name, _), v in got.items()
                    if name == "freeapi_request_duration_seconds_sum")
    assert 0 < value(got, "freeapi_gateway_overhead_seconds_sum") < durations


async def test_a_vendors_pauses_mid_stream_are_not_counted_as_gateway_overhead(make_gateway):
    # The fake pauses 0.15 s before each of its 7 pieces: the vendor's time, every pause
    # of it, which the overhead (the request's duration less its time waiting for the
    # vendor) must leave out, while keeping the gateway's own time, never nothing.
    base, _ = make_gateway(dict(AUTH, providers={"deepseek": {"api_keys": [GOOD]}}))
    resp, _ = await stream_raw(base, chat_body("!drip 0.15", stream=True), key=ADMIN)
    assert resp.code == 200
    got = await scrape(base)
    assert value(got, "freeapi_gateway_overhead_seconds_count") == 1
    assert 0 < value(got, "freeapi_gateway_overhead_seconds_sum") < 0.5


# -- the real CLI with --workers 2 ----------------------------------------------------------

def test_a_users_multiprocess_directory_is_wiped_of_the_last_runs_files(tmp_path,
                                                                        monkeypatch):
    from freeapi.metrics import prepare_processes
    stale = tmp_path / "counter_12345.db"
    stale.write_bytes(b"old run")
    keep = tmp_path / "notes.txt"
    keep.write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert prepare_processes(2) is None  # the user's directory: not removed at exit
    assert not stale.exists() and keep.exists()
    assert prepare_processes(1) is None  # one process: the plain registry
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def _call(port, method, path, body=None, key=ADMIN):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a new connection each
    try:  # time, so the kernel spreads them over the workers
        c.request(method, path, json.dumps(body) if body is not None else None,
                  {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_two_workers_report_one_exact_view(tmp_path):
    port = free_port()
    with ThreadedFake() as fake:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"server: {{host: 127.0.0.1, port: {port}}}\n"
                       f"auth: {{keys: [{{name: ops, key: {ADMIN}, role: admin}}]}}\n"
                       f"providers:\n  deepseek: {{base_url: '{fake.url}', "
                       f"api_keys: ['{GOOD}', '{GOOD2}']}}\n")
        env = dict(os.environ, TMPDIR=str(tmp_path))  # where the metrics dir is made
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg),
                                 "--workers", "2"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(port, proc)
            # Traffic until both workers have served some (the second may start listening
            # a moment after the first): every request is counted, whichever took it.
            tmp = None
            ok = bad = streams = 0
            for i in range(400):
                if i % 4 == 3:
                    status, _ = _call(port, "POST", "/v1/chat/completions",
                                      chat_body("!status 400"))
                    assert status == 400
                    bad += 1
                else:
                    status, _ = _call(port, "POST", "/v1/chat/completions",
                                      chat_body(stream=i % 4 == 0))
                    assert status == 200
                    ok, streams = ok + 1, streams + (i % 4 == 0)
                if tmp is None:
                    found = [p for p in tmp_path.iterdir()
                             if p.name.startswith("freeapi-metrics-")]
                    tmp = found[0] if found else None
                pids = {f.name.rsplit("_", 1)[1] for f in tmp.glob("counter_*.db")} \
                    if tmp is not None else set()
                if i >= 15 and len(pids) == 2:
                    break
            assert len(pids) == 2, "the second worker never served a request"
            assert bad >= 4 and streams >= 4
            def scrape_workers():
                status, raw = _call(port, "GET", "/metrics")
                assert status == 200
                text = raw.decode()
                assert_no_keys(text)
                return samples(text)

            # A worker counts a request right after its last byte is written; on a loaded
            # machine give the last one a moment before the exact checks.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and sum(
                    v for (name, _), v in scrape_workers().items()
                    if name == "freeapi_requests_total") < ok + bad:
                time.sleep(0.05)
            for _ in range(6):  # whichever worker answers the scrape, the same totals
                got = scrape_workers()
                assert value(got, "freeapi_requests_total", endpoint="chat",
                             provider="deepseek", model="deepseek-chat", status="2xx") == ok
                assert value(got, "freeapi_requests_total", endpoint="chat",
                             provider="deepseek", model="deepseek-chat", status="4xx") == bad
                assert value(got, "freeapi_time_to_first_token_seconds_count",
                             provider="deepseek", model="deepseek-chat") == streams
                assert value(got, "freeapi_tokens_total", provider="deepseek",
                             model="deepseek-chat", type="output") == ok * 7
                assert value(got, "freeapi_key_state", provider="deepseek",
                             key="sk-...0001") == 0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    assert proc.returncode == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("freeapi-metrics-")]
