"""The direction of imports and the door contract: the pipeline, the modalities and every
other module below the HTTP handlers never import from freeapi/handlers (the handlers
import them); and the door the pipeline is written against is what DoorHandler gives."""

import ast
import pathlib

import freeapi
from freeapi.handlers.door import DoorHandler
from freeapi.pipeline.door import Door

PACKAGE = pathlib.Path(freeapi.__file__).parent
# The modules that assemble the handlers into an application: above them by design.
ASSEMBLY = {"app.py", "cli.py", "__main__.py"}


def imported(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_nothing_below_the_handlers_imports_from_them():
    below = [p for p in PACKAGE.rglob("*.py")
             if "handlers" not in p.relative_to(PACKAGE).parts and p.name not in ASSEMBLY]
    assert any(p.parts[-2] == "pipeline" for p in below)  # the walk found the pipeline
    upward = {str(p.relative_to(PACKAGE)): sorted(n for n in imported(p)
                                                  if n.startswith("freeapi.handlers"))
              for p in below}
    assert {k: v for k, v in upward.items() if v} == {}


def test_the_pipeline_and_the_operations_never_import_each_others_insides():
    # An operation gets a context from the pipeline; it imports nothing of it.
    for p in (PACKAGE / "modalities").glob("*.py"):
        assert not [n for n in imported(p) if n.startswith("freeapi.pipeline")], p.name


def test_the_door_handler_offers_everything_the_pipeline_needs_of_a_door():
    needed = {name for name in vars(Door) if not name.startswith("_")} | set(
        Door.__annotations__)
    assert {"endpoint", "keepalive", "error_body", "stream_error", "chat_encoder",
            "remembers_reasoning", "authorization", "cut"} <= needed
    assert sorted(n for n in needed if not hasattr(DoorHandler, n)) == []
