"""End to end: the real Claude Code CLI (`@anthropic-ai/claude-code`, unmodified) completes
a tool loop through freeapi's /v1/messages, twice: in front of a vendor that speaks only
chat completions (the door translates), and in front of one with a native Anthropic
endpoint (the door passes through). Run by .ci/run before the unit tests:

    python tests/e2e/claude_code_e2e.py PATH/TO/claude

The scripted vendor asks for a shell command on the first turn (the Bash tool); the CLI
runs it; the vendor's final answer quotes the tool result, and the check asserts that the
CLI printed it. The command's output appears nowhere in the command itself, so only a
command that really ran can produce it. Nothing leaves 127.0.0.1: telemetry, error
reports, auto-updates and other nonessential traffic are off through Claude Code's
documented variables (https://code.claude.com/docs/en/env-vars), HOME is a temp dir.

Not collected by pytest (it needs Node and the CLI).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

from tornado import web
from tornado.httpserver import HTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tests.helpers import wait_listening  # noqa: E402

GATEWAY_KEY = "gw-claude-e2e-0001"
VENDOR_KEY = "sk-claude-e2e-vendor-0001"
COMMAND = "echo freeapi-$((6*7))-ok"
OUTPUT = "freeapi-42-ok"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the scripted vendor ----------------------------------------------------------------------

def _tool_output(messages) -> str | None:
    """The Bash result the conversation carries, whichever format it came in."""
    for m in messages:
        if m.get("role") == "tool":
            return str(m.get("content"))
        content = m.get("content")
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, list):
                    inner = "".join(b.get("text", "") for b in inner if isinstance(b, dict))
                return str(inner)
    return None


def _tool_names(tools) -> set:
    names = set()
    for t in tools or ():
        names.add(t.get("name") or (t.get("function") or {}).get("name"))
    return names


def plan(body) -> tuple[str, str | None]:
    """("call", None) to ask for the command, or ("say", text)."""
    if "Bash" not in _tool_names(body.get("tools")):
        return "say", "ok"  # Claude Code's side requests (titles, summaries)
    out = _tool_output(body.get("messages") or [])
    if out is None:
        return "call", None
    return "say", f"The command printed: {out.strip()}"


class Vendor:
    def __init__(self):
        self.chat_requests, self.native_requests = [], []


class ChatCompletions(web.RequestHandler):
    def initialize(self, vendor):
        self.vendor = vendor

    async def post(self):
        if self.request.headers.get("Authorization") != f"Bearer {VENDOR_KEY}":
            self.set_status(401)
            return self.finish({"error": {"message": "bad key", "type": "invalid_request_error"}})
        body = json.loads(self.request.body)
        self.vendor.chat_requests.append(body)
        action, text = plan(body)
        if action == "call":
            delta = {"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": "call_e2e_1", "type": "function", "function": {
                    "name": "Bash", "arguments": json.dumps(
                        {"command": COMMAND, "description": "Print a marker"})}}]}
            finish = "tool_calls"
        else:
            delta, finish = {"role": "assistant", "content": text}, "stop"
        usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        base = {"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1,
                "model": body["model"]}
        if not body.get("stream"):
            message = {k: v for k, v in delta.items()}
            message.pop("index", None)
            for call in message.get("tool_calls") or ():
                call.pop("index", None)
            return self.finish({**base, "object": "chat.completion", "usage": usage,
                                "choices": [{"index": 0, "message": message,
                                             "finish_reason": finish}]})
        self.set_header("Content-Type", "text/event-stream")
        for chunk in ({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                      {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
                      {**base, "choices": [], "usage": usage}):
            self.write(f"data: {json.dumps(chunk)}\n\n")
        self.write("data: [DONE]\n\n")


class NativeMessages(web.RequestHandler):
    def initialize(self, vendor):
        self.vendor = vendor

    def send(self, name, data):
        self.write(f"event: {name}\ndata: {json.dumps(data)}\n\n")

    async def post(self):
        if self.request.headers.get("x-api-key") != VENDOR_KEY:
            self.set_status(401)
            return self.finish({"type": "error", "error": {"type": "authentication_error",
                                                           "message": "bad key"}})
        body = json.loads(self.request.body)
        self.vendor.native_requests.append(body)
        action, text = plan(body)
        if action == "call":
            block = {"type": "tool_use", "id": "toolu_e2e_1", "name": "Bash",
                     "input": {"command": COMMAND, "description": "Print a marker"}}
            stop = "tool_use"
        else:
            block, stop = {"type": "text", "text": text}, "end_turn"
        usage = {"input_tokens": 100, "output_tokens": 10}
        message = {"id": "msg_e2e", "type": "message", "role": "assistant",
                   "model": body["model"], "stop_sequence": None}
        if not body.get("stream"):
            return self.finish({**message, "content": [block], "stop_reason": stop,
                                "usage": usage})
        self.set_header("Content-Type", "text/event-stream")
        self.send("message_start", {"type": "message_start", "message": {
            **message, "content": [], "stop_reason": None, "usage": usage}})
        start = dict(block, input={}) if block["type"] == "tool_use" else dict(block, text="")
        self.send("content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": start})
        delta = ({"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
                 if block["type"] == "tool_use" else {"type": "text_delta", "text": text})
        self.send("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": delta})
        self.send("content_block_stop", {"type": "content_block_stop", "index": 0})
        self.send("message_delta", {"type": "message_delta", "delta": {
            "stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 10}})
        self.send("message_stop", {"type": "message_stop"})


def start_vendor(vendor: Vendor) -> tuple[int, callable]:
    port = free_port()
    ready = threading.Event()
    box = {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application([(r"/v1/chat/completions", ChatCompletions, {"vendor": vendor}),
                               (r"/anthropic/v1/messages", NativeMessages, {"vendor": vendor})])
        server = HTTPServer(app)
        server.listen(port, "127.0.0.1")
        box["loop"] = loop
        ready.set()
        loop.run_forever()
        server.stop()

    threading.Thread(target=run, daemon=True).start()
    assert ready.wait(5)
    return port, lambda: box["loop"].call_soon_threadsafe(box["loop"].stop)


# -- one run of the CLI -------------------------------------------------------------------

def run_cli(claude: str, native: bool, work: str, vendor_port: int) -> str | None:
    """None when the check passed, else what went wrong."""
    port = free_port()
    cfg = os.path.join(work, f"freeapi-{'native' if native else 'chat'}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""server: {{host: 127.0.0.1, port: {port}, log_level: warning}}
auth: {{keys: [{GATEWAY_KEY}]}}
state: {{path: ":memory:"}}
providers:
  vendor:
    type: openai
    base_url: "http://127.0.0.1:{vendor_port}/v1"
    api_keys: [{VENDOR_KEY}]
    models: [agent-model]
    discover: false
    anthropic_base_url: {'"/anthropic"' if native else 'false'}
models:
  agent-model: vendor/agent-model
  "claude-*": vendor/agent-model
""")
    gw = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", cfg],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    home = tempfile.mkdtemp(prefix="claude-home-", dir=work)
    project = tempfile.mkdtemp(prefix="project-", dir=work)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    env.update(HOME=home, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}",
               ANTHROPIC_AUTH_TOKEN=GATEWAY_KEY, ANTHROPIC_MODEL="agent-model",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_TELEMETRY="1",
               DISABLE_ERROR_REPORTING="1", DISABLE_AUTOUPDATER="1",
               DISABLE_BUG_COMMAND="1")
    try:
        wait_listening(port, gw, 30)
        p = subprocess.run([claude, "-p", "Run the marker command and tell me its output.",
                            "--output-format", "json", "--allowedTools", "Bash"],
                           cwd=project, env=env, capture_output=True, text=True, timeout=240,
                           stdin=subprocess.DEVNULL)  # -p also reads a piped stdin
    except (AssertionError, OSError, subprocess.TimeoutExpired) as e:
        return f"{type(e).__name__}: {e}"
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(15)
        except subprocess.TimeoutExpired:
            gw.kill()
    if p.returncode != 0:
        return f"claude exited {p.returncode}: {p.stdout[-800:]} {p.stderr[-800:]}"
    try:
        result = json.loads(p.stdout)
    except ValueError:
        return f"not JSON: {p.stdout[-800:]}"
    if result.get("is_error") or OUTPUT not in str(result.get("result")):
        return f"the answer does not quote the command's output: {p.stdout[-800:]}"
    return None


def main(claude: str) -> int:
    work = tempfile.mkdtemp(prefix="freeapi-claude-e2e-")
    vendor = Vendor()
    vport, stop = start_vendor(vendor)
    results = []
    try:
        for native in (False, True):
            name = ("native Anthropic endpoint (pass-through)" if native
                    else "chat-completions-only vendor (translated)")
            before = (len(vendor.chat_requests), len(vendor.native_requests))
            err = run_cli(claude, native, work, vport)
            if err is None:
                chat = len(vendor.chat_requests) - before[0]
                nat = len(vendor.native_requests) - before[1]
                if (nat if native else chat) < 2 or (chat if native else nat):
                    err = f"the wrong vendor endpoint served it ({chat} chat, {nat} native)"
            results.append((name, err))
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in results if r[1]]
    for name, err in results:
        print(f"e2e claude code: {name}: {'ok' if not err else 'FAILED: ' + err}")
    print(f"e2e claude code: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(os.path.abspath(sys.argv[1])))
