"""Hypothesis strategies of malformed Kafka records: random bytes, text that is not JSON,
truncated events, JSON of the wrong shape, fields of the wrong type, missing fields,
unknown fields, unknown schema versions, and huge ones of each kind.

`is_event` is the judge of what a consumer must accept: FastStream's decoding (JSON) and
the event's pydantic model. A generated record it would accept (random bytes that happen
to be a valid event) is not malformed and is discarded with `assume`."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st
from pydantic import ValidationError

from interns.common.events import Event

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
# A value no lax pydantic validator turns into a string, number, bool or literal.
NOT_A_SCALAR = st.lists(JSON_VALUES, max_size=3) | st.dictionaries(
    st.text(min_size=1, max_size=8), JSON_VALUES, min_size=1, max_size=3
)
HUGE = 600_000


def is_event(event: type[Event], raw: bytes) -> bool:
    """Whether a consumer of `event` must take `raw` as an event."""
    try:
        event.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return False
    return True


def _dumps(document: Any) -> bytes:
    return json.dumps(document, allow_nan=True).encode()


@st.composite
def malformed_records(draw, event: type[Event], valid: dict) -> bytes:
    """One record that is not an `event`, built around `valid` (a valid event's JSON)."""
    required = [name for name, field in event.model_fields.items() if field.is_required()]
    scalar_fields = [
        name
        for name, value in valid.items()
        if isinstance(value, str | int | float | bool) and name != "schema_version"
    ]
    text = _dumps(valid)
    kind = draw(
        st.sampled_from(
            [
                "random bytes",
                "not json",
                "truncated",
                "wrong shape",
                "wrong type",
                "missing field",
                "unknown field",
                "unknown version",
                "huge garbage",
                "huge wrong type",
            ]
        )
    )
    if kind == "random bytes":
        raw = draw(st.binary(max_size=512))
    elif kind == "not json":
        raw = draw(st.text(max_size=200)).encode("utf-8", errors="surrogatepass")
    elif kind == "truncated":
        raw = text[: draw(st.integers(0, len(text) - 1))]
    elif kind == "wrong shape":
        raw = _dumps(draw(JSON_VALUES))
    elif kind == "wrong type":
        name = draw(st.sampled_from(scalar_fields))
        raw = _dumps({**valid, name: draw(NOT_A_SCALAR)})
    elif kind == "missing field":
        name = draw(st.sampled_from(required))
        raw = _dumps({key: value for key, value in valid.items() if key != name})
    elif kind == "unknown field":
        name = draw(st.text(min_size=1, max_size=20).filter(lambda n: n not in event.model_fields))
        raw = _dumps({**valid, name: draw(JSON_VALUES)})
    elif kind == "unknown version":
        version = draw(st.integers().filter(lambda v: v != 1) | st.text(max_size=5))
        raw = _dumps({**valid, "schema_version": version})
    elif kind == "huge garbage":
        raw = b'{"' + draw(st.sampled_from([b"x", b"\\", b"\xff", b"{"])) * HUGE
    else:
        name = draw(st.sampled_from(scalar_fields))
        raw = _dumps({**valid, name: ["y" * HUGE]})
    assume(not is_event(event, raw))
    return raw
