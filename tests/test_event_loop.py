"""The real `freeapi` command serves chat completions, streamed and not, on either event
loop: uvloop's, taken when it is installed (a dependency on CPython outside Windows), and
asyncio's, the fallback without it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import uvloop  # noqa: F401  (a dependency: this file must not skip)

from tests.conftest import free_port
from tests.fakes.deepseek import GOOD
from tests.helpers import ThreadedFake, wait_listening

ROOT = Path(__file__).resolve().parent.parent
GW_KEY = "gw-event-loop-0001"

# `python -m freeapi`, with uvloop hidden from the import system for the asyncio case.
HIDE_UVLOOP = ("import sys, runpy; sys.modules['uvloop'] = None; "
               "runpy.run_module('freeapi', run_name='__main__', alter_sys=True)")


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_gateway_serves_chat_and_a_stream_on_either_event_loop(tmp_path, loop):
    port = free_port()
    with ThreadedFake() as fake:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"server: {{host: 127.0.0.1, port: {port}}}\n"
            f"auth: {{keys: [{GW_KEY}]}}\n"
            f"providers:\n  deepseek: {{base_url: '{fake.url}', api_keys: ['{GOOD}']}}\n")
        run = ["-m", "freeapi"] if loop == "uvloop" else ["-c", HIDE_UVLOOP]
        err = open(tmp_path / "stderr.txt", "w+")
        proc = subprocess.Popen([sys.executable, *run, "--config", str(cfg)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_listening(port, proc)
            with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=GW_KEY,
                               max_retries=0) as client:
                answer = client.chat.completions.create(
                    model="deepseek-chat", messages=[{"role": "user", "content": "hi"}])
                assert answer.choices[0].message.content
                pieces = [c.choices[0].delta.content or "" for c in
                          client.chat.completions.create(
                              model="deepseek-chat", stream=True,
                              messages=[{"role": "user", "content": "hi"}]) if c.choices]
                assert len(pieces) > 1 and "".join(pieces)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        err.seek(0)
        log = err.read()
    assert f"event loop: {loop}" in log, log
    assert "Traceback" not in log, log
