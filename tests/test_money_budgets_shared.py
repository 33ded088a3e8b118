"""A money budget is one budget for every gateway sharing the state store: two gateways on
one Redis, and `--workers 2` on one SQLite file, admit exactly the N requests it is worth
between them and refuse the next (the prices of tests/test_money_budgets.py make each
request's estimate its real cost: 0.007)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import free_port
from tests.fakes.deepseek import GOOD
from tests.helpers import ThreadedFake, chat_body, error_of, request, wait_listening
from tests.test_money_budgets import ALICE, COST, ask, config
from tests.test_workers_share_state import ROOT, spread_over_workers, stop
from tests.test_workers_share_state import post_chat as post_chat_to


async def test_two_gateways_on_one_redis_admit_n_between_them(make_gateway, redis_state):
    cfg = config({"daily": 4 * COST}, state=redis_state)
    gateways = [make_gateway(cfg) for _ in range(2)]
    codes = []
    for i in range(4):
        base, _ = gateways[i % 2]
        codes.append((await request(base + "/v1/chat/completions", "POST", ask(),
                                    key=ALICE)).code)
    assert codes == [200] * 4
    for base, _ in gateways:  # the fifth is refused by either
        err = error_of(await request(base + "/v1/chat/completions", "POST", ask(),
                                     key=ALICE), 429)
        assert err["code"] == "budget_exceeded"


def post_chat(port: int) -> int:
    return post_chat_to(port, ALICE, chat_body(max_tokens=7))


def serve(tmp_path, fake, budget: float):
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"server: {{host: 127.0.0.1, port: {port}}}\n"
                   f"auth: {{keys: [{{name: alice, key: {ALICE}, "
                   f"budget: {{monthly: {budget}}}}}]}}\n"
                   f"providers:\n  deepseek: {{base_url: '{fake.url}', api_keys: ['{GOOD}']}}\n"
                   f"prices: {{deepseek-flash: {{input: 0, cached: 0, output: 1000}}}}\n"
                   f"state: {{path: state.db}}\n")
    env = dict(os.environ, TMPDIR=str(tmp_path))  # where the workers' metrics dir is made
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg),
                             "--workers", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_listening(port, proc)
    return port, proc


def test_two_worker_processes_on_one_sqlite_file_admit_n_between_them(tmp_path):
    n = 12
    with ThreadedFake() as fake:
        port, proc = serve(tmp_path, fake, n * COST)
        try:
            codes = spread_over_workers(tmp_path, lambda: post_chat(port))
        finally:
            stop(proc)
    assert codes.count(200) == n
    assert codes.count(429) == len(codes) - n
