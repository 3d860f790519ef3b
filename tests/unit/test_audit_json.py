"""The audit writer's JSON encoder (no `json` import on the hot path) must
produce exactly what json.dumps produces, for any text xguard may log."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from xguard.audit.log import dumps

TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF))
PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(PLAIN)
def test_dumps_equals_json_dumps(obj: object) -> None:
    assert dumps(obj) == json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    assert dumps(obj, ascii_only=True) == json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
    assert json.loads(dumps(obj)) == obj
