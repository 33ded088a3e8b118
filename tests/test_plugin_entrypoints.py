"""Third-party plugins: a provider registered through the `freeapi` entry-point group works
without touching freeapi, and a plugin that fails to load is reported and skipped.

The entry points are registered as an installed distribution would register them: a
`*.dist-info` directory with `entry_points.txt` on sys.path (the same metadata
`pip install ./tests/plugin_example` writes), so the test needs no install step.
"""

import logging
import shutil
import sys
from pathlib import Path

import pytest

from freeapi.plugins import make_plugin_manager, provider_types
from tests.fakes import openai_compat as fake_local
from tests.fakes.common import ANSWER
from tests.helpers import HI, client

EXAMPLE_DIR = Path(__file__).parent / "plugin_example"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "freeapi_example_plugin-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: freeapi-example-plugin\n"
                                   "Version: 0.1.0\n")
    (info / "entry_points.txt").write_text("[freeapi]\nexample = freeapi_example\n"
                                           "broken = freeapi_broken_example\n")
    (site / "freeapi_broken_example.py").write_text(
        "raise RuntimeError('this plugin is broken on purpose')\n")
    # The module is copied, not imported in place: a `pip install ./tests/plugin_example`
    # leaves build metadata there that would shadow this registration.
    shutil.copy(EXAMPLE_DIR / "freeapi_example.py", site)
    monkeypatch.syspath_prepend(str(site))
    yield
    for name in ("freeapi_example", "freeapi_broken_example"):
        sys.modules.pop(name, None)


def test_external_plugin_registers_and_broken_one_is_reported(installed, caplog):
    caplog.set_level(logging.ERROR, logger="freeapi.plugins")
    types = provider_types(make_plugin_manager())
    assert types["example"].__module__ == "freeapi_example"
    assert {"deepseek", "kimi", "openai"} <= set(types)  # the built-ins still load
    broken = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert broken and "failed to load" in broken[0] and "RuntimeError" in broken[0]


async def test_external_provider_serves_requests(installed, start_vendor, make_gateway):
    url, state = start_vendor(fake_local)
    base, gw = make_gateway({"providers": {"ex": {"type": "example", "base_url": url + "/v1"}}})
    c = client(base, "none")
    assert {"example-chat"} <= {m.id for m in (await c.models.list()).data}
    r = await c.chat.completions.create(model="ex/llama3.2:1b", messages=HI)
    assert r.choices[0].message.content == "".join(ANSWER)
    assert state.requests[-1]["body"]["user"] == "freeapi"  # the plugin's quirk ran
