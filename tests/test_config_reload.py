"""Hot reload with real `freeapi` processes: SIGHUP (or `freeapi reload`, through the pid
file) re-reads config.yaml's gateway keys and limits without dropping a request in flight,
in every --workers process; a broken file keeps the running config and logs one line."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai

from tests.conftest import free_port
from tests.fakes.deepseek import GOOD, GOOD2
from tests.helpers import ThreadedFake, wait_listening
from tests.test_admin_keys_shared import served

ROOT = Path(__file__).resolve().parent.parent
OLD, NEW = "gw-old-00000000000001", "gw-new-00000000000002"
FAILED = "config reload failed, keeping the running config"


def write(cfg: Path, port: int, fake, *keys, rpm=None, **providers):
    entries = [{"key": k, "name": f"k{i}"} for i, k in enumerate(keys)]
    if rpm is not None:
        entries[0]["rpm"] = rpm
    cfg.write_text(json.dumps({
        "server": {"host": "127.0.0.1", "port": port},
        "auth": {"keys": entries},
        "providers": {"deepseek": {"base_url": fake.url, "api_keys": [GOOD]}, **providers}}))


def start(tmp_path, fake, *extra):
    port = free_port()
    cfg = tmp_path / "config.yaml"
    write(cfg, port, fake, OLD)
    log = open(tmp_path / "stderr.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg), *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    wait_listening(port, proc)
    return f"http://127.0.0.1:{port}", port, cfg, proc


def eventually(check, what, seconds=15.0):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def log_lines(tmp_path, text):
    return [line for line in (tmp_path / "stderr.log").read_text().splitlines()
            if text in line]


def stop(proc):
    proc.terminate()
    proc.wait(10)


def test_sighup_adds_a_key_and_a_broken_file_keeps_the_running_config(tmp_path):
    with ThreadedFake() as fake:
        base, port, cfg, proc = start(tmp_path, fake)
        try:
            assert served(base, OLD) and not served(base, NEW)
            write(cfg, port, fake, OLD, NEW)
            os.kill(proc.pid, signal.SIGHUP)
            eventually(lambda: served(base, NEW), "the added key was never served")

            cfg.write_text(cfg.read_text().replace('"k1"', '"k0"'))  # a duplicate name
            os.kill(proc.pid, signal.SIGHUP)
            eventually(lambda: log_lines(tmp_path, FAILED), "no log line for the bad file")
            lines = log_lines(tmp_path, FAILED)
            assert len(lines) == 1 and "auth.keys[1].name" in lines[0], lines
            assert served(base, OLD) and served(base, NEW)

            # `freeapi reload` checks the file first: a broken one is reported and the
            # gateway is not signalled.
            cfg.write_text("auth: {keys: [")  # not YAML at all
            reload = [sys.executable, "-m", "freeapi", "reload", "--config", str(cfg)]
            out = subprocess.run(reload, cwd=ROOT, capture_output=True, timeout=60)
            assert out.returncode == 2 and b"line 1" in out.stderr, out.stderr
            write(cfg, port, fake, OLD)
            out = subprocess.run(reload + ["--pid-file", str(tmp_path / "nope.pid")],
                                 cwd=ROOT, capture_output=True, timeout=60)
            assert out.returncode == 1 and b"cannot read the pid file" in out.stderr
            assert len(log_lines(tmp_path, FAILED)) == 1 and served(base, NEW)

            # Limits reload too: OLD gets rpm 1, so of two requests the second is refused.
            write(cfg, port, fake, OLD, NEW, rpm=1)
            os.kill(proc.pid, signal.SIGHUP)

            def limited():
                try:
                    served(base, OLD)
                    served(base, OLD)
                except openai.RateLimitError:
                    return True
                return False
            eventually(limited, "the new rpm limit never held")
        finally:
            stop(proc)
        assert proc.returncode == 0  # SIGHUP never ended it


def test_freeapi_reload_finds_the_process_and_requests_in_flight_finish(tmp_path):
    with ThreadedFake() as fake:
        base, port, cfg, proc = start(tmp_path, fake)
        try:
            assert (tmp_path / f"freeapi-{port}.pid").read_text().strip() == str(proc.pid)
            write(cfg, port, fake, OLD, NEW)
            reload = [sys.executable, "-m", "freeapi", "reload", "--config", str(cfg)]
            assert subprocess.run(reload, cwd=ROOT, timeout=60).returncode == 0
            eventually(lambda: served(base, NEW), "the added key was never served")

            # A slow answer for NEW is in flight while NEW is removed from the file (10 s:
            # a `freeapi reload` process takes seconds to start on a loaded machine).
            result = {}

            def slow():
                with openai.OpenAI(base_url=base + "/v1", api_key=NEW,
                                   max_retries=0) as client:
                    result["answer"] = client.chat.completions.create(
                        model="deepseek-chat",
                        messages=[{"role": "user", "content": "!slow 10"}])
            before = fake.state.served
            thread = threading.Thread(target=slow)
            thread.start()
            eventually(lambda: fake.state.served > before, "the slow request never came")
            write(cfg, port, fake, OLD)
            assert subprocess.run(reload, cwd=ROOT, timeout=60).returncode == 0
            eventually(lambda: not served(base, NEW), "the removed key was still served")
            assert thread.is_alive(), "the slow answer finished before the reload"
            thread.join(30)
            assert result["answer"].choices[0].message.content  # answered, not dropped
            assert served(base, OLD)
        finally:
            stop(proc)
        assert not (tmp_path / f"freeapi-{port}.pid").exists()


def test_sighup_reaches_every_worker(tmp_path):
    with ThreadedFake() as fake:
        base, port, cfg, proc = start(tmp_path, fake, "--workers", "2")
        try:
            write(cfg, port, fake, OLD, NEW)
            os.kill(proc.pid, signal.SIGHUP)
            # Ten fresh connections in a row: both workers (1 chance in 512 of one only).
            eventually(lambda: all(served(base, NEW) for _ in range(10)),
                       "a worker never took the added key")
            cfg.write_text("server: [")
            os.kill(proc.pid, signal.SIGHUP)
            eventually(lambda: log_lines(tmp_path, FAILED), "no log line for the bad file")
            assert all(served(base, NEW) for _ in range(10))
            # A good file next: once both workers serve its key, any line a worker would
            # have logged about the bad one is in the log.
            third = "gw-third-000000000003"
            write(cfg, port, fake, OLD, NEW, third)
            os.kill(proc.pid, signal.SIGHUP)
            eventually(lambda: all(served(base, third) for _ in range(10)),
                       "a worker never took the third key")
            assert len(log_lines(tmp_path, FAILED)) == 1
        finally:
            stop(proc)


def spare(fake, *models) -> dict:
    """An OpenAI-compatible provider at the fake DeepSeek, serving `models`."""
    return {"type": "openai", "base_url": fake.url, "api_keys": [GOOD], "discover": False,
            "models": list(models)}


def answers(base, model) -> bool:
    """Whether `model` is served (False: an unknown model), on a fresh connection."""
    with openai.OpenAI(base_url=base + "/v1", api_key=OLD, max_retries=0) as client:
        try:
            client.chat.completions.create(model=model,
                                           messages=[{"role": "user", "content": "hi"}])
            return True
        except openai.NotFoundError:
            return False


def test_sighup_changes_the_providers_of_every_worker(tmp_path):
    flash = "spare/deepseek-v4-flash"
    with ThreadedFake() as fake:
        base, port, cfg, proc = start(tmp_path, fake, "--workers", "2")
        try:
            assert not answers(base, flash)
            write(cfg, port, fake, OLD, spare=spare(fake, "deepseek-v4-flash"))
            os.kill(proc.pid, signal.SIGHUP)
            # Ten fresh connections in a row: both workers (1 chance in 512 of one only).
            eventually(lambda: all(answers(base, flash) for _ in range(10)),
                       "a worker never served the added provider")
            # spare's key changed: every worker sends the new one.
            write(cfg, port, fake, OLD, spare=dict(spare(fake, "deepseek-v4-flash"),
                                                   api_keys=[GOOD2]))
            os.kill(proc.pid, signal.SIGHUP)

            def new_key() -> bool:
                return answers(base, flash) and fake.state.requests[-1]["headers"][
                    "Authorization"] == f"Bearer {GOOD2}"
            eventually(lambda: all(new_key() for _ in range(10)),
                       "a worker kept spare's old key")
            # A `models:` target nobody serves: the parent says so once, nobody applies it.
            cfg.write_text(cfg.read_text()[:-1] + ', "models": {"x": "nobody/none"}}')
            os.kill(proc.pid, signal.SIGHUP)
            eventually(lambda: log_lines(tmp_path, FAILED), "no log line for the bad file")
            assert all(new_key() for _ in range(10))
            write(cfg, port, fake, OLD)  # spare removed: its model is unknown everywhere
            os.kill(proc.pid, signal.SIGHUP)
            eventually(lambda: not any(answers(base, flash) for _ in range(10)),
                       "a worker still served the removed provider")
            lines = log_lines(tmp_path, FAILED)
            assert len(lines) == 1 and "models.x" in lines[0], lines
        finally:
            stop(proc)


def test_a_change_a_reload_cannot_apply_is_named_in_the_warning(make_gateway, tmp_path,
                                                                 caplog):
    # Every section the parser knows is either applied or reported: none is ignored
    # silently (files, free and the body limits came after the reload did).
    from freeapi.reload import reload_config
    _, gateway = make_gateway({"auth": {"keys": [{"key": OLD, "name": "k0"}]}})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(json.dumps({
        "auth": {"keys": [{"key": OLD, "name": "k0"}, {"key": NEW, "name": "k1"}]},
        "files": {"max_per_caller": 3}, "server": {"max_json_values": 1000},
        "providers": {"deepseek": {"base_url": gateway.config.providers["deepseek"].base_url}}}))
    with caplog.at_level("WARNING", logger="freeapi.reload"):
        assert reload_config(gateway, str(cfg))
    assert len(gateway.config.gateway_keys) == 2
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "files" in warning and "max_json_values" in warning


def test_a_reload_while_shutting_down_is_ignored(make_gateway, tmp_path, caplog):
    # Draining: the reload would start discovery or key-health sharing that close() stops.
    from freeapi.reload import reload_config
    _, gateway = make_gateway({"auth": {"keys": [{"key": OLD, "name": "k0"}]}})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(json.dumps({
        "auth": {"keys": [{"key": OLD, "name": "k0"}, {"key": NEW, "name": "k1"}]},
        "providers": {"deepseek": {"base_url": gateway.config.providers["deepseek"].base_url}}}))
    gateway.draining = True
    with caplog.at_level("WARNING", logger="freeapi.reload"):
        assert not reload_config(gateway, str(cfg))
    assert len(gateway.config.gateway_keys) == 1
    assert "shutting down" in caplog.text
