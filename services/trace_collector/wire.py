"""A fast path for decoding trace events: msgspec structs that mirror `TraceRecorded`.

pydantic validates a trace of the SGD workload (6 KB, a dozen messages and tool
definitions) in about 100 us; msgspec decodes the same bytes into these structs in about
25 us, and encodes the stored JSON back in a few. The structs are stricter than the
pydantic model: strict types (no "1" for an int, no 1.0 for an int), RFC 3339 times only,
no NaN or Infinity, and the payload must be UTF-8 throughout. What they refuse, the
pydantic model judges (`store.parse_records`), so the collector accepts and rejects
exactly what `TraceRecorded` does, with pydantic's reasons; what they accept has the
values pydantic would give. One difference, deliberate: tool definitions are kept as
written, so a number too large for a float (`1e400`) stays as it is where pydantic
writes null. `tests/trace_collector/test_wire.py` holds the two to that.

Field order and defaults follow `interns.common.events`: a field added there must be
added here, or the strict top level (`forbid_unknown_fields`, as `extra="forbid"`) sends
every trace carrying it to the slow path, which still stores it right.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from interns.common.events import new_id, utc_now


class FunctionCallWire(msgspec.Struct, kw_only=True):
    name: str
    arguments: str = ""


class ToolCallWire(msgspec.Struct, kw_only=True):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCallWire


# Every default of a message is None: omitting defaults is pydantic's `exclude_none`.
class MessageWire(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCallWire] | None = None


class RequestWire(msgspec.Struct, kw_only=True):
    model: str = ""
    messages: Annotated[list[MessageWire], msgspec.Meta(min_length=1)]
    # The agent's tool definitions are stored as written: never redacted, so never built
    # into dicts (a third of the decoding time). `decode_trace` checks they are objects.
    tools: list[msgspec.Raw] = []
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None


class ResponseWire(msgspec.Struct, kw_only=True):
    model: str = ""
    message: MessageWire | None = None
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class RouteWire(msgspec.Struct, kw_only=True):
    target: Literal["expert", "intern"] = "expert"
    model: str = ""
    model_version: int = 0
    task_id: str = ""
    reason: str = ""


class TraceWire(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    schema_version: Literal[1] = 1
    event_id: str = msgspec.field(default_factory=new_id)
    occurred_at: datetime = msgspec.field(default_factory=utc_now)
    trace_id: str
    tenant_id: str
    agent_id: str = ""
    session_id: str = ""
    source: str = "gateway"
    request: RequestWire
    response: ResponseWire | None = None
    route: RouteWire = msgspec.field(default_factory=RouteWire)
    status: Literal["ok", "error"] = "ok"
    error: str = ""
    latency_ms: float = 0.0
    cost_usd: float = 0.0


_DECODER = msgspec.json.Decoder(TraceWire)
_ENCODER = msgspec.json.Encoder()


def decode_trace(value: bytes | None) -> TraceWire | None:
    """The trace in `value`, or None when the fast path does not vouch for it (then the
    pydantic model decides)."""
    if not value:
        return None
    # msgspec does not check the UTF-8 of the values it skips (unknown nested fields).
    if not value.isascii():
        try:
            value.decode()
        except UnicodeDecodeError:
            return None
    try:
        trace = _DECODER.decode(value)
    except msgspec.DecodeError:
        return None
    # A raw value is valid JSON (and UTF-8, checked above); a tool must be an object.
    if any(memoryview(tool)[:1] != b"{" for tool in trace.request.tools):
        return None
    return trace


def request_json(request: RequestWire) -> str:
    """The request as `TraceRequest.model_dump_json(exclude_none=True)` writes it (the
    same JSON document; spacing and escapes may differ)."""
    document: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "tools": request.tools,
    }
    if request.tool_choice is not None:
        document["tool_choice"] = request.tool_choice
    if request.response_format is not None:
        document["response_format"] = request.response_format
    if request.temperature is not None:
        document["temperature"] = request.temperature
    if request.max_tokens is not None:
        document["max_tokens"] = request.max_tokens
    return _ENCODER.encode(document).decode()


def response_json(response: ResponseWire | None) -> str:
    """The response as `TraceResponse.model_dump_json(exclude_none=True)` writes it; JSON
    null for no response."""
    if response is None:
        return "null"
    document: dict[str, Any] = {"model": response.model}
    if response.message is not None:
        document["message"] = response.message
    document["finish_reason"] = response.finish_reason
    document["prompt_tokens"] = response.prompt_tokens
    document["completion_tokens"] = response.completion_tokens
    return _ENCODER.encode(document).decode()
