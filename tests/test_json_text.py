"""freeapi.json_text.compact writes what json.dumps(..., ensure_ascii=False,
separators=(",", ":")) writes, for any JSON value."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freeapi.json_text import compact

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30)


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(JSON_VALUES)
def test_compact_writes_what_json_dumps_writes(value):
    assert compact(value) == dumps(value)


@pytest.mark.parametrize("value", [
    {"t": "世界\u2028\x00\"\\/"}, [math.inf, -math.inf], {"n": math.nan}, "\ud800",
    {1: "int key", 2.5: "float key", None: "null key"}, {True: "bool key"}, (1, 2), 10 ** 30,
])
def test_compact_writes_the_corner_cases_as_json_dumps_does(value):
    assert compact(value) == dumps(value)


def test_compact_refuses_what_json_cannot_write_as_json_dumps_does():
    with pytest.raises(TypeError, match="^Object of type set is not JSON serializable$"):
        compact({"a": {1}})
    with pytest.raises(TypeError, match="^keys must be str, int, float, bool or None"):
        compact({(1,): 1})
