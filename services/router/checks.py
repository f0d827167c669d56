"""Checks an intern's answer must pass before it is returned: otherwise the expert answers.

A tool call must parse, name a tool of the request, and its arguments must validate
against that tool's JSON schema; a JSON response format must parse (and match its schema).
Validators are compiled once per schema (fastjsonschema) so that a check costs microseconds.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import fastjsonschema


class CheckFailed(ValueError):
    """The intern's answer cannot be returned; the message says why (it goes in the trace)."""


@lru_cache(maxsize=1024)
def _validator(schema_json: str):
    return fastjsonschema.compile(json.loads(schema_json))


def _validate(schema: dict[str, Any] | None, value: Any, what: str) -> None:
    if not schema:
        return
    try:
        validate = _validator(json.dumps(schema, sort_keys=True))
    except fastjsonschema.JsonSchemaDefinitionException:
        return  # the request's own schema is unusable: the expert would face the same
    try:
        validate(value)
    except fastjsonschema.JsonSchemaValueException as error:
        raise CheckFailed(f"{what} does not match its schema: {error.message}") from None


def check_answer(body: dict[str, Any], message: dict[str, Any]) -> None:
    """Raises CheckFailed when `message` (an intern's assistant message) is not a valid
    answer to `body` (the OpenAI request)."""
    tools = {
        (t.get("function") or {}).get("name"): (t.get("function") or {})
        for t in body.get("tools") or []
    }
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise CheckFailed("tool_calls is not a list")
    if body.get("tool_choice") == "required" and not calls:
        raise CheckFailed("the request requires a tool call and the intern made none")
    for call in calls:
        function = (call or {}).get("function") or {}
        name = function.get("name")
        if name not in tools:
            raise CheckFailed(f"tool call names a tool the request does not offer: {name!r}")
        raw = function.get("arguments", "")
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as error:
            raise CheckFailed(f"arguments of {name} are not JSON: {error.msg}") from None
        if not isinstance(arguments, dict):
            raise CheckFailed(f"arguments of {name} are not a JSON object")
        _validate(tools[name].get("parameters"), arguments, f"arguments of {name}")
    if calls:
        return
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        raise CheckFailed("the intern answered neither text nor a tool call")
    fmt = body.get("response_format") or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        try:
            value = json.loads(content)
        except json.JSONDecodeError as error:
            raise CheckFailed(f"the answer is not the JSON asked for: {error.msg}") from None
        if fmt["type"] == "json_schema":
            _validate((fmt.get("json_schema") or {}).get("schema"), value, "the answer")
