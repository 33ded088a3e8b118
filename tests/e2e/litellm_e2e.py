"""End to end: freeapi's generic `openai` provider against a real OpenAI-compatible server
that nobody here wrote (LiteLLM proxy, answering from its own mock_response, so no vendor
is called). Run by .ci/run before the unit tests:

    python tests/e2e/litellm_e2e.py PATH/TO/litellm

Not collected by pytest (it needs LiteLLM, a 700 MB install, in a venv of its own).
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import openai

ANSWER = "Hello from a real OpenAI-compatible server."
MASTER = "sk-litellm-e2e-master-0001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float, proc) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds:g}s")


async def checks(base: str) -> list[tuple[str, str | None]]:
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="gw-e2e-key-0001",
                                max_retries=0)
    results = []

    async def check(name, coro):
        try:
            await coro
            results.append((name, None))
        except Exception as e:  # one line per failed check, then go on
            results.append((name, f"{type(e).__name__}: {e}"))

    async def non_stream():
        r = await client.chat.completions.create(
            model="local/mock-model", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == ANSWER, r
        assert r.usage and r.usage.total_tokens > 0, r.usage

    async def stream():
        s = await client.chat.completions.create(
            model="local/mock-model", messages=[{"role": "user", "content": "hi"}],
            stream=True, stream_options={"include_usage": True})
        text = "".join([c.choices[0].delta.content or "" async for c in s if c.choices])
        assert text == ANSWER, text

    async def discovered():
        for _ in range(50):  # discovery runs in the background after startup
            ids = [m.id async for m in client.models.list()]
            if "mock-model" in ids:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"mock-model was not discovered: {ids}")

    await check("non-stream completion", non_stream())
    await check("streamed completion", stream())
    await check("model discovery", discovered())
    return results


def main(litellm: str) -> int:
    work = tempfile.mkdtemp(prefix="freeapi-e2e-")
    lport, fport = free_port(), free_port()
    with open(os.path.join(work, "litellm.yaml"), "w") as f:
        f.write(f"""model_list:
  - model_name: mock-model
    litellm_params: {{model: openai/gpt-4o-mini, api_key: sk-none, mock_response: "{ANSWER}"}}
general_settings: {{master_key: {MASTER}}}
""")
    with open(os.path.join(work, "freeapi.yaml"), "w") as f:
        f.write(f"""server: {{host: 127.0.0.1, port: {fport}, log_level: warning}}
auth: {{keys: [gw-e2e-key-0001]}}
state: {{path: ":memory:"}}
providers:
  local: {{type: openai, base_url: "http://127.0.0.1:{lport}/v1", api_keys: [{MASTER}]}}
""")
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    procs = []
    try:
        lite = subprocess.Popen([litellm, "--config", os.path.join(work, "litellm.yaml"),
                                 "--host", "127.0.0.1", "--port", str(lport)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(lite)
        wait_for(f"http://127.0.0.1:{lport}/health/liveliness", 120, lite)
        gw = subprocess.Popen([sys.executable, "-m", "freeapi", "--config",
                               os.path.join(work, "freeapi.yaml")])
        procs.append(gw)
        wait_for(f"http://127.0.0.1:{fport}/ping", 30, gw)
        results = asyncio.run(checks(f"http://127.0.0.1:{fport}"))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    failed = [(n, e) for n, e in results if e]
    for name, err in results:
        print(f"e2e litellm: {name}: {'ok' if not err else 'FAILED: ' + err}")
    print(f"e2e litellm: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
