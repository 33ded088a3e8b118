"""The typed core type-checks clean: mypy (pinned in the test extra) over the pipeline, the
provider base classes and the dialect translators, with the [mypy] section of setup.cfg.
CI runs only pytest, so the type check is this test. The package also says it is typed
(PEP 561's py.typed, shipped as package data)."""

import configparser
import pathlib

from mypy import api

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECKED = ["freeapi/pipeline/", "freeapi/dialects/",
           *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "freeapi").glob("provider*.py"))]


def test_the_typed_core_has_no_mypy_error(monkeypatch, tmp_path):
    # Paths relative to the repository root, so the checked package is this checkout's;
    # a fresh cache (no stale result, nothing left in the checkout).
    monkeypatch.chdir(ROOT)
    stdout, stderr, status = api.run(
        ["--config-file", "setup.cfg", "--cache-dir", str(tmp_path / "mypy"),
         "--show-error-codes", *CHECKED])
    assert status == 0, f"mypy reported errors:\n{stdout}{stderr}"
    assert "Success: no issues found" in stdout, stdout + stderr


def test_the_config_does_not_silence_errors_wholesale():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    for section in cfg.sections():
        if section == "mypy" or section.startswith("mypy-"):
            assert cfg.get(section, "ignore_errors", fallback="False").lower() != "true", section
    assert cfg.get("mypy", "follow_imports") == "silent"


def test_the_package_ships_py_typed():
    assert (ROOT / "freeapi" / "py.typed").is_file()
    setup_py = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert '"py.typed"' in setup_py
