"""The documentation keeps up with the code: every config key the parser accepts, every
public hook and attribute of `Provider` and every pluggy hookspec is documented somewhere
under docs/ (docs/_incoming/ included), and the relative links of README.md and docs/
lead to files and headings that exist.

The lists come from the code (freeapi/config_keys.py, the tables the parser checks
against; the Provider class and a Provider instance; the hookspec markers), never from a
copy here. A name counts as documented where it is defined: in backticks as the first cell
of a table row, at the start of a list item, or in a heading; a mention in passing does
not count, so deleting its entry from the reference fails this test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from freeapi import hookspecs
from freeapi.config import ProviderConfig
from freeapi.config_keys import accepted_keys
from freeapi.plugins import make_plugin_manager, provider_types
from freeapi.provider import Provider
from freeapi.provider_modalities import ModalityHooks

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def doc_files() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def defined_names(text: str) -> set[str]:
    """The backticked names at a table row's first cell, a list item's start or in a
    heading (`name`, `name(args)` and `a` / `.b` shorthand are not expanded: one name,
    one entry)."""
    names = set()
    for line in text.splitlines():
        table = re.match(r"^\s*\|([^|]*)\|", line)
        item = re.match(r"^\s*(?:[-*+]|\d+\.)\s+(?:\*\*)?`([^`]+)`", line)
        heading = re.match(r"^#{1,6}\s+(.*)$", line)
        spans = []
        if table:
            spans = re.findall(r"`([^`]+)`", table.group(1))
        elif item:
            spans = [item.group(1)]
        elif heading:
            spans = re.findall(r"`([^`]+)`", heading.group(1))
        for span in spans:
            names.add(re.split(r"[\s(:=]", span.strip(), maxsplit=1)[0])
    return names


def documented() -> set[str]:
    names = set()
    for path in doc_files():
        names |= defined_names(path.read_text(encoding="utf-8"))
    return names


def public_provider_names() -> list[str]:
    """The class's own public attributes and methods (and its modality mixin's), and the
    public attributes an instance sets in __init__."""
    names = {n for cls in (Provider, ModalityHooks) for n in vars(cls)
             if not n.startswith("_")}
    instance = Provider(ProviderConfig(name="docs", type="openai", base_url="http://h"))
    names |= {n for n in vars(instance) if not n.startswith("_")}
    return sorted(names)


def hookspec_names() -> list[str]:
    return sorted(name for name, fn in vars(hookspecs).items()
                  if callable(fn) and hasattr(fn, "freeapi_spec"))


def test_the_code_lists_are_not_empty():
    """A broken introspection would make the checks below pass on nothing."""
    keys = accepted_keys(provider_types(make_plugin_manager()))
    assert {"server.port", "providers.NAME.timeouts.total", "auth.keys[].rpm",
            "providers.NAME.check_model", "prices.MODEL.cached"} <= set(keys)
    assert {"prepare_body", "embeddings_request", "document_mode", "base_url"} <= set(
        public_provider_names())
    assert {"register_providers", "resolve_model"} <= set(hookspec_names())


def test_every_config_key_the_parser_accepts_is_documented():
    missing = [k for k in accepted_keys(provider_types(make_plugin_manager()))
               if k not in documented()]
    assert not missing, f"config keys without an entry in docs/: {missing}"


def test_every_public_provider_hook_is_documented():
    missing = [n for n in public_provider_names() if n not in documented()]
    assert not missing, f"Provider hooks/attributes without an entry in docs/: {missing}"


def test_every_pluggy_hookspec_is_documented():
    missing = [n for n in hookspec_names() if n not in documented()]
    assert not missing, f"hookspecs without an entry in docs/: {missing}"


def test_a_deleted_entry_is_noticed():
    """The check reads entries, not mentions: the reference row of a key, removed, leaves
    only prose, which does not count."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = [ln for ln in text.splitlines() if ln.startswith("| `server.body_timeout`")]
    assert len(rows) == 1
    assert "server.body_timeout" in defined_names(text)
    assert "server.body_timeout" not in defined_names(text.replace(rows[0] + "\n", ""))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercased, punctuation but `-` and `_` dropped,
    spaces to `-`."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            yield target


@pytest.mark.parametrize("page", [ROOT / "README.md", *doc_files()],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_readme_leads_into_docs_and_stays_short():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 300
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in relative_links(ROOT / "README.md")
              if t.partition("#")[0]}
    for page in ("configuration.md", "operating.md", "agents.md", "beyond-chat.md",
                 "plugins.md", "architecture.md", "providers/README.md", "security.md"):
        assert (DOCS / page).resolve() in linked, f"README does not link docs/{page}"


def test_the_readme_test_command_is_the_one_ci_runs():
    """The README's second command is a contract: `.ci/run` ends with it, verbatim."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) >= 2
    install, test = blocks[0].strip(), blocks[1].strip()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1].strip() == test
    assert install.startswith("python3 -m venv .venv && .venv/bin/pip install . && ")
    assert install.endswith(".venv/bin/freeapi --config config.yaml")


def provider_roles() -> dict[str, str]:
    """docs/plugins.md's "The class at a glance": method -> its role (the column's first
    word: hooks, helpers, the); a name in two cells fails here."""
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    section = text.split("## The class at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    roles: dict[str, str] = {}
    for row in rows[2:]:
        for column, cell in zip(header[1:], row.strip("|").split("|")[1:]):
            for name in re.findall(r"`([^`]+)`", cell):
                assert name not in roles, f"{name} is in two cells of the table"
                roles[name] = column.split()[0]
    return roles


def public_provider_methods() -> set[str]:
    return {n for cls in (Provider, ModalityHooks) for n, v in vars(cls).items()
            if not n.startswith("_") and (callable(v) or isinstance(v, property))}


def test_every_public_provider_method_has_one_role_in_the_plugin_docs():
    roles = provider_roles()
    assert {"hooks", "helpers", "the"} == set(roles.values())
    assert sorted(roles) == sorted(public_provider_methods())


def test_built_in_providers_and_the_example_plugin_override_hooks_only():
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "plugin_example"))
    try:
        from freeapi_example import Example
    finally:
        sys.path.remove(str(ROOT / "tests" / "plugin_example"))
    roles = provider_roles()
    classes = {*provider_types(make_plugin_manager()).values(), Example}
    assert len(classes) > 5
    for cls in classes:
        for klass in cls.__mro__:
            if klass in (Provider, ModalityHooks) or not issubclass(klass, Provider):
                continue
            wrong = [n for n in vars(klass) if roles.get(n, "hooks") != "hooks"]
            assert not wrong, f"{klass.__name__} overrides what is not a hook: {wrong}"
