"""End to end: the real Codex CLI (`@openai/codex`, which speaks only the Responses API)
completes a tool loop through freeapi's /v1/responses in front of a chat-completions-only
vendor (tests/fakes/agent_vendor.py). The vendor asks for a shell command on the first
turn, Codex runs it, and the vendor's final answer quotes what it printed. Twice: with the
model as it is (Codex gets the reasoning and sends it back), and as `MODEL-silent` (Codex
never sees the reasoning; the gateway keeps it and puts it back into the tool turn, which
the vendor, like DeepSeek, refuses without it). And once through the vendor's own
Responses API (`responses_base_url`), which the gateway passes requests through to: there
the vendor calls Codex's first function tool, and refuses the call's return without its
reasoning item (which Codex keeps, or else the gateway puts back). Run by .ci/run:

    python tests/e2e/codex_e2e.py PATH/TO/codex

Codex runs offline against 127.0.0.1 only: a throwaway CODEX_HOME and HOME, the
`[model_providers]` recipe from the README (`wire_api = "responses"`), analytics and
feedback off, no update check, and the plugin marketplace off (`plugins`,
`remote_plugin`: otherwise it runs `git ls-remote https://github.com/openai/plugins.git`
at startup). Settings: https://developers.openai.com/codex/config-reference.
Not collected by pytest (it needs the Codex CLI from npm).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))

from tests.conftest import free_port  # noqa: E402
from tests.fakes import agent_vendor as fake  # noqa: E402
from tests.helpers import ThreadedFake, wait_listening  # noqa: E402

GATEWAY_KEY = "gw-codex-e2e-key-0001"
EXPECTED = fake.QUOTE + "freeapi-e2e-42"  # only a shell that ran `$((6*7))` prints 42

CODEX_CONFIG = """\
model = "{model}"
model_provider = "freeapi"
check_for_update_on_startup = false

[model_providers.freeapi]
name = "freeapi"
base_url = "http://127.0.0.1:{port}/v1"
env_key = "FREEAPI_KEY"
wire_api = "responses"

[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false
remote_plugin = false
"""


def run_codex(codex: str, port: int, work: str,
              model: str) -> tuple[subprocess.CompletedProcess, str]:
    work = os.path.join(work, model.replace("/", "_"))
    home = os.path.join(work, "home")
    codex_home = os.path.join(work, "codex-home")
    project = os.path.join(work, "project")
    for d in (home, codex_home, project):
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(codex_home, "config.toml"), "w") as f:
        f.write(CODEX_CONFIG.format(port=port, model=model))
    last = os.path.join(work, "last-message.txt")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
           "CODEX_HOME": codex_home, "FREEAPI_KEY": GATEWAY_KEY, "TERM": "dumb",
           "NO_COLOR": "1"}
    proc = subprocess.run(
        [codex, "exec", "--json", "--ephemeral", "--skip-git-repo-check",
         "--dangerously-bypass-approvals-and-sandbox", "-C", project, "-o", last,
         "Run the shell command you are asked for, then report what it printed."],
        # An empty, closed stdin: `codex exec` appends whatever stdin holds to the prompt.
        env=env, cwd=project, input="", capture_output=True, text=True, timeout=180)
    text = open(last).read() if os.path.exists(last) else ""
    return proc, text


def checks(proc, last: str, vendor, model: str) -> list[tuple[str, str | None]]:
    results = []

    def check(name, ok: bool, why: str):
        results.append((f"{model}: {name}", None if ok else why))

    events = []
    for line in proc.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    commands = [e["item"] for e in events if e.get("type") == "item.completed"
                and e.get("item", {}).get("type") == "command_execution"]
    check("codex exited 0", proc.returncode == 0,
          f"exit {proc.returncode}: {proc.stderr[-1500:]}")
    check("codex ran the shell command the vendor asked for",
          any("freeapi-e2e-42" in (c.get("aggregated_output") or "") for c in commands),
          f"command items: {commands!r}"[:1500])
    check("the final answer quotes the command's output", EXPECTED in last,
          f"last message: {last!r}; stdout tail: {proc.stdout[-1500:]}")
    check("the vendor accepted every request", vendor.rejected == [],
          f"the vendor answered 400: {vendor.rejected}")
    calls = [r for r in vendor.requests if any(m.get("role") == "tool"
                                               for m in r.get("messages", ()))]
    check("the tool turn went back with its reasoning", bool(calls) and all(
        m.get("reasoning_content") for r in calls for m in r["messages"]
        if m.get("role") == "assistant" and m.get("tool_calls")),
        f"{len(vendor.requests)} requests; with a tool result: {len(calls)}")
    tools = {t["function"]["name"] for r in vendor.requests for t in r.get("tools", ())}
    check("Codex's shell tool reached the vendor as a function", "exec_command" in tools,
          f"tools sent: {sorted(tools)}")
    return results


def native_checks(proc, last: str, vendor) -> list[tuple[str, str | None]]:
    sent = vendor.native_requests
    return [(f"native/thinker: {name}", None if ok else why) for name, ok, why in (
        ("codex exited 0", proc.returncode == 0,
         f"exit {proc.returncode}: {proc.stderr[-1500:]}"),
        ("Codex shows the answer of the vendor's own Responses API",
         fake.NATIVE_TEXT in last, f"last message: {last!r}"),
        ("the vendor got Codex's request as it came, model name rewritten",
         bool(sent) and sent[-1].get("model") == fake.MODEL and "store" not in sent[-1]
         and any(t.get("type") == "web_search" for t in sent[-1].get("tools", ())),
         f"requests: {[{k: v for k, v in r.items() if k != 'input'} for r in sent]}"[:1500]),
        ("the vendor accepted every request", vendor.rejected == [],
         f"the vendor answered 400: {vendor.rejected}"))]


def main(codex: str) -> int:
    codex = os.path.abspath(codex)  # Codex runs in a directory of its own
    work = tempfile.mkdtemp(prefix="freeapi-codex-e2e-")
    port = free_port()
    gw, results = None, [("the run", "did not finish")]
    try:
        with ThreadedFake(fake) as vendor_thread:
            with open(os.path.join(work, "freeapi.yaml"), "w") as f:
                f.write(f"""server: {{host: 127.0.0.1, port: {port}, log_level: warning}}
auth: {{keys: [{GATEWAY_KEY}]}}
state: {{path: ":memory:"}}
providers:
  agent:
    type: openai
    base_url: "{vendor_thread.url}/v1"
    api_keys: [{fake.KEY}]
    models: [{fake.MODEL}]
    reasoning_models: [{fake.MODEL}]
    discover: false
  native:
    type: openai
    base_url: "{vendor_thread.url}/v1"
    api_keys: [{fake.KEY}]
    models: [{fake.MODEL}]
    discover: false
    responses_base_url: /v1
""")
            # The gateway's log goes to a file: a pipe nobody reads could fill and stall it.
            log = open(os.path.join(work, "freeapi.log"), "wb")
            gw = subprocess.Popen([sys.executable, "-m", "freeapi", "--config",
                                   os.path.join(work, "freeapi.yaml")], stderr=log)
            wait_listening(port, gw, 30)
            results = []
            for model in ("agent/thinker", "agent/thinker-silent"):
                state = vendor_thread.state
                state.requests.clear()
                state.rejected.clear()
                proc, last = run_codex(codex, port, work, model)
                results += checks(proc, last, state, model)
            proc, last = run_codex(codex, port, work, "native/thinker")
            results += native_checks(proc, last, vendor_thread.state)
            if any(err for _, err in results):
                with open(os.path.join(work, "freeapi.log"), errors="replace") as f:
                    print("e2e codex: the gateway's log:\n" + f.read()[-3000:])
    finally:
        if gw is not None:
            gw.send_signal(signal.SIGTERM)
            try:
                gw.wait(15)
            except subprocess.TimeoutExpired:
                gw.kill()
        shutil.rmtree(work, ignore_errors=True)
    failed = [(n, e) for n, e in results if e]
    for name, err in results:
        print(f"e2e codex: {name}: {'ok' if not err else 'FAILED: ' + err}")
    print(f"e2e codex: {len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
