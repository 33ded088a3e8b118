"""Dockerfile, compose.yaml and the systemd unit, checked statically; the image itself is
built and run by tests/e2e/container_e2e.py (podman, in .ci/run). What can run here does:
the image's config is a valid freeapi config, and the image's health check command works
against a real gateway, on the port that gateway was started on."""

import ast
import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from freeapi.config import load_config
from freeapi.healthcheck import address
from freeapi.plugins import make_plugin_manager, provider_types
from tests.conftest import free_port
from tests.helpers import wait_listening

ROOT = Path(__file__).resolve().parent.parent
README_INSTALL = "pip install ."


def dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck_and_a_data_volume():
    lines = dockerfile()
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(froms) == 2 and all("python:3.11-slim" in ln for ln in froms)
    final = lines[lines.index(froms[-1]):]
    user = [ln for ln in final if ln.startswith("USER ")]
    assert user and re.fullmatch(r"USER \d+:0", user[-1])  # numeric, group 0
    assert int(user[-1].split()[1].split(":")[0]) != 0
    assert any(ln.startswith("VOLUME") and "/data" in ln for ln in final)
    assert any("chown" in ln and ":0 /data" in ln and "chmod" in ln for ln in final)
    [health] = [ln for ln in final if ln.startswith("HEALTHCHECK")]
    assert "freeapi.healthcheck" in health and "curl" not in health and "wget" not in health
    build = " ".join(ln for ln in lines if ln.startswith("RUN"))
    assert README_INSTALL in build  # the install the README's first command runs
    assert README_INSTALL in (ROOT / "README.md").read_text()
    assert any(ln.startswith("ENTRYPOINT") and "freeapi" in ln for ln in final)


def test_the_images_config_is_valid_and_keeps_state_on_the_volume(monkeypatch):
    types = provider_types(make_plugin_manager())
    monkeypatch.delenv("FREEAPI_REDIS_URL", raising=False)
    monkeypatch.delenv("FREEAPI_DATABASE_URL", raising=False)
    cfg = load_config(str(ROOT / "deploy" / "container.yaml"), types)
    assert cfg.state.path == "/data/freeapi.db" and cfg.state.redis_url is None
    assert cfg.state.database_url is None  # unset: SQLite on the volume
    assert (cfg.host, cfg.port, cfg.log_format) == ("0.0.0.0", 8000, "text")
    monkeypatch.setenv("FREEAPI_REDIS_URL", "redis://:pw@redis:6379/0")
    monkeypatch.setenv("FREEAPI_LOG_FORMAT", "json")
    monkeypatch.setenv("FREEAPI_DATABASE_URL", "postgresql://u:pw@postgres:5432/freeapi")
    cfg = load_config(str(ROOT / "deploy" / "container.yaml"), types)
    assert cfg.state.redis_url == "redis://:pw@redis:6379/0" and cfg.log_format == "json"
    assert cfg.state.database_url == "postgresql://u:pw@postgres:5432/freeapi"
    copied = [ln for ln in dockerfile() if ln.startswith("COPY deploy/container.yaml")]
    assert copied == ["COPY deploy/container.yaml /etc/freeapi/config.yaml"]


def test_compose_runs_freeapi_after_a_healthy_redis_and_postgres():
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    app, redis = doc["services"]["freeapi"], doc["services"]["redis"]
    assert app["depends_on"] == {"redis": {"condition": "service_healthy"},
                                 "postgres": {"condition": "service_healthy"}}
    pg = doc["services"]["postgres"]
    assert pg["image"] == "docker.io/library/postgres:15"
    assert pg["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "${POSTGRES_PASSWORD:-" in pg["environment"]["POSTGRES_PASSWORD"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert "postgres-data" in doc["volumes"]
    url = app["environment"]["FREEAPI_DATABASE_URL"]
    assert url.startswith("postgresql://") and "@postgres:5432/" in url
    assert "${POSTGRES_PASSWORD:-" in url
    assert app["healthcheck"]["test"] == ["CMD", *health_argv()]  # the image's own
    assert "ping" in " ".join(redis["healthcheck"]["test"])
    assert "--requirepass" in redis["command"]
    assert app["environment"]["FREEAPI_REDIS_URL"].startswith("redis://:")
    assert "@redis:6379" in app["environment"]["FREEAPI_REDIS_URL"]
    assert any(v.endswith(":/data") for v in app["volumes"])
    assert app["build"] == "."


def setup_package_data() -> dict:
    """setup.py's `package_data`, read from its syntax tree (setup.py is not run)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    return next(ast.literal_eval(kw.value) for node in ast.walk(tree)
                if isinstance(node, ast.Call) for kw in node.keywords
                if kw.arg == "package_data")


def test_the_status_page_ships_as_package_data():
    """`pip install .` (README, Dockerfile) must carry the page, not only a checkout."""
    assert "static/*.html" in setup_package_data()["freeapi"]
    assert (ROOT / "freeapi" / "static" / "status.html").read_text().startswith("<!doctype")


def test_systemd_unit_runs_the_cli_with_a_state_directory():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "deploy" / "freeapi.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[:3] == ["/opt/freeapi/bin/freeapi", "--config",
                                                "/etc/freeapi/config.yaml"]
    assert service["StateDirectory"] == "freeapi" and service["DynamicUser"] == "yes"
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) > 30
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def health_argv() -> list[str]:
    [health] = [ln for ln in dockerfile() if ln.startswith("HEALTHCHECK")]
    return yaml.safe_load(health[health.index("CMD") + 3:].strip())  # the JSON exec form


def run_health(pid: int) -> int:
    """The image's HEALTHCHECK, as is, asking about process `pid` (PID 1 in the image)."""
    argv = health_argv()
    assert argv[0] == "python3"
    return subprocess.run([sys.executable, *argv[1:], str(pid)], cwd=ROOT, timeout=20,
                          capture_output=True).returncode


@pytest.mark.parametrize("given", ["--port", "config"])
def test_the_images_health_check_asks_the_port_the_gateway_was_started_on(tmp_path, given):
    """A fixed :8000 reported a gateway started on another port unhealthy."""
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"server: {{host: 0.0.0.0, port: {port if given == 'config' else 1}}}\n")
    extra = ["--port", str(port)] if given == "--port" else []
    proc = subprocess.Popen([sys.executable, "-m", "freeapi", "--config", str(cfg), *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port, proc)
        assert run_health(proc.pid) == 0
    finally:
        proc.terminate()
        proc.wait(10)
    assert run_health(proc.pid) != 0  # nothing answers there any more


def test_the_health_checks_address_falls_back_to_the_config_then_8000(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server: {host: '::1', port: 9100}\n")
    assert address(["--config", str(cfg)]) == ("[::1]", 9100)
    assert address(["--config", str(cfg), "--port=9200", "--host", "0.0.0.0"]) == \
        ("127.0.0.1", 9200)
    assert address(["--config", str(tmp_path / "missing.yaml")]) == ("127.0.0.1", 8000)
    cfg.write_text("server: {port: '${PORT}'}\n")  # not a port the server would take
    assert address(["--config", str(cfg)]) == ("127.0.0.1", 8000)
