"""Comparing two assistant answers: the expert's and an intern's.

Tool calls are compared by name and parsed arguments (values as JSON, strings trimmed);
`ignore_dates` leaves out date arguments (a key with "date" in it or an ISO date value),
which a model cannot always infer (the SGD dialogues never say what day it is).
JSON answers compare parsed; free text by a similarity ratio.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
UNPARSABLE = "<unparsable>"


def tool_calls(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, arguments) of each tool call; unparsable arguments become one odd key."""
    calls = []
    for call in message.get("tool_calls") or []:
        function = (call or {}).get("function") or {}
        raw = function.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            arguments = {UNPARSABLE: raw}
        calls.append((function.get("name", ""), arguments if isinstance(arguments, dict) else {}))
    return calls


def _value(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def is_date_argument(key: str, value: Any) -> bool:
    return "date" in key.lower() or (isinstance(value, str) and bool(ISO_DATE.match(value)))


@dataclass(frozen=True)
class CallScore:
    """How one answer's tool call compares with the expected one."""

    name_match: bool
    arguments_matched: int
    arguments_total: int

    @property
    def exact(self) -> bool:
        return self.name_match and self.arguments_matched == self.arguments_total


def score_call(
    expected: dict[str, Any], got: dict[str, Any], *, ignore_dates: bool = False
) -> CallScore:
    """Compares the first tool call of each message; arguments over the union of keys."""
    expected_calls, got_calls = tool_calls(expected), tool_calls(got)
    if not expected_calls:
        return CallScore(not got_calls, 0, 0)
    name, arguments = expected_calls[0]
    got_name, got_arguments = got_calls[0] if got_calls else ("", {})
    keys = set(arguments) | set(got_arguments)
    if ignore_dates:
        keys = {k for k in keys if not is_date_argument(k, arguments.get(k, got_arguments.get(k)))}
    matched = sum(
        k in arguments and k in got_arguments and _value(arguments[k]) == _value(got_arguments[k])
        for k in keys
    )
    return CallScore(name == got_name, matched if name == got_name else 0, len(keys))


def json_equal(expected: dict[str, Any], got: dict[str, Any]) -> bool:
    try:
        return json.loads(expected.get("content") or "") == json.loads(got.get("content") or "")
    except json.JSONDecodeError:
        return False


def text_similarity(expected: dict[str, Any], got: dict[str, Any]) -> float:
    a, b = (expected.get("content") or "").strip(), (got.get("content") or "").strip()
    return difflib.SequenceMatcher(None, a, b).ratio() if a or b else 1.0
