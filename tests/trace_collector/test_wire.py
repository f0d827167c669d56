"""The fast decoder (msgspec) accepts only what `TraceRecorded` accepts, and stores what the
pydantic path stores: the same rows, the same redaction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from interns.common.events import TraceRecorded
from interns.trace_collector.redact import Redactor
from interns.trace_collector.store import RawRecord, parse_records, trace_row
from interns.trace_collector.wire import TraceWire, decode_trace

SGD = Path(__file__).parents[3] / "shared/workloads/sgd/sgd_service_calls_dev.jsonl"

BASE = {
    "event_id": "e1",
    "occurred_at": "2026-11-25T17:24:06.393838Z",
    "trace_id": "t1",
    "tenant_id": "acme",
    "session_id": "s1",
    "request": {
        "model": "gpt",
        "messages": [
            {"role": "system", "content": "You book tables."},
            {"role": "user", "content": "Table for 2, call me at 408-247-8880"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "function": {"name": "book", "arguments": '{"n": 2}'}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": '{"phone": "408-247-8880"}'},
        ],
        "tools": [{"type": "function", "function": {"name": "book", "default": None}}],
        "temperature": 0.2,
    },
    "response": {"message": {"role": "assistant", "content": "Booked."}, "prompt_tokens": 9},
    "route": {"target": "expert", "reason": "no intern"},
    "latency_ms": 12,
}


def variant(path: str, value) -> bytes:
    """BASE with the value at a dotted path set (None removes the key)."""
    document = json.loads(json.dumps(BASE))
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return json.dumps(document).encode()


def comparable(row: dict) -> dict:
    return {**row, "request": json.loads(row["request"]), "response": json.loads(row["response"])}


PAYLOADS = [
    json.dumps(BASE).encode(),
    b" " + json.dumps(BASE, indent=2).encode() + b"\n",
    variant("occurred_at", "2026-11-25T17:24:06"),  # naive: read as UTC
    variant("occurred_at", "2026-11-25"),
    variant("occurred_at", "2026-11-25 17:24:06+02:00"),
    variant("occurred_at", 1_700_000_000),
    variant("occurred_at", "2026-11-25T23:59:60Z"),
    variant("occurred_at", None),
    variant("latency_ms", "12.5"),
    variant("latency_ms", True),
    variant("route.model_version", "3"),
    variant("route.model_version", 3.0),
    variant("route.model_version", 3.5),
    variant("route.target", "somewhere"),
    variant("route", None),
    variant("response", None),
    variant("response.message", None),
    variant("request.messages", []),
    variant("request.messages.0.role", "robot"),
    variant("request.messages.0.content", 7),
    variant("request.messages.2.tool_calls.0.type", "code"),
    variant("request.messages.2.tool_calls.0.function", {"arguments": "{}"}),
    variant("request.tools", [1]),
    variant("request.tools", [{"a": 1}, []]),
    variant("request.tools", ["{}"]),
    variant("request.tools", [{"a": [1, 2.5, None, {"b": "é"}]}]),
    variant("request.tool_choice", "auto"),
    variant("request.tool_choice", {"type": "function", "function": {"name": "book"}}),
    variant("request.tool_choice", 3),
    variant("request.max_tokens", 2**70),
    variant("request.unknown_nested", "ignored, as pydantic ignores it"),
    variant("unknown_top_level", "refused, as extra='forbid'"),
    variant("schema_version", 2),
    variant("tenant_id", None),
    variant("status", "error"),
    json.dumps(BASE).replace('"gpt"', '"gpt \\u00e9\\ud83d\\ude00"').encode(),
    json.dumps(BASE).replace('"gpt"', '"\\ud800"').encode(),
    json.dumps(BASE).replace("0.2", "NaN").encode(),
    json.dumps(BASE).replace("0.2", "Infinity").encode(),
    json.dumps(BASE).replace("0.2", "1e400").encode(),
    json.dumps(BASE).replace('"t1"', '"t1", "trace_id": "t2"').encode(),
    json.dumps({**BASE, "request": {**BASE["request"], "extra": "x"}}).encode()[:-1]
    + b', "z": {"bad": "\xff"}}',
    json.dumps(BASE).encode().replace(b'"gpt"', b'"g\xed\xa0\x80"'),
    json.dumps(BASE).encode() + b" trailing",
    b"",
    b"null",
    b"[]",
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_the_fast_decoder_vouches_only_for_what_pydantic_accepts_and_reads_it_alike(payload):
    fast = decode_trace(payload)
    try:
        slow = TraceRecorded.model_validate_json(payload)
    except ValidationError:
        assert fast is None, "the fast path accepted what TraceRecorded refuses"
        return
    if fast is None:  # refused by the fast path: parse_records asks pydantic
        traces, dead = parse_records([RawRecord("t", 0, 0, payload)])
        assert isinstance(traces[0], TraceRecorded) and not dead
        return
    if "occurred_at" not in json.loads(payload):  # both default to the time of decoding
        fast.occurred_at = slow.occurred_at
    assert comparable(trace_row(fast)) == comparable(trace_row(slow))


def test_tool_definitions_are_kept_as_written():
    payload = json.dumps(BASE).replace('"default": null', '"default": 1e400, "n": 1E2').encode()
    stored = json.loads(trace_row(decode_trace(payload))["request"])["tools"][0]["function"]
    assert stored == {"name": "book", "default": float("inf"), "n": 100.0}  # pydantic: null


def test_the_canonical_events_take_the_fast_path():
    # What the gateway and the importer publish: the model's own JSON.
    event = TraceRecorded.model_validate_json(json.dumps(BASE))
    assert isinstance(decode_trace(event.to_bytes()), TraceWire)


def test_redaction_of_a_fast_trace_stores_what_the_pydantic_path_stores():
    redactor = Redactor(b"a-test-key-of-some-length")
    payload = json.dumps(BASE).encode()
    fast = redactor.redact_trace(decode_trace(payload))
    slow = redactor.redact_trace(TraceRecorded.model_validate_json(payload))
    row = comparable(trace_row(fast))
    assert row == comparable(trace_row(slow))
    assert "408-247-8880" not in json.dumps(row, default=str)


@pytest.mark.skipif(not SGD.exists(), reason="needs the SGD workload")
def test_sgd_traces_are_stored_alike_by_both_paths():
    from interns.bench.collector import build_traces

    redactor = Redactor(b"a-test-key-of-some-length")
    for _, payload in build_traces(SGD, 6_027)[::7]:
        fast = decode_trace(payload)
        assert fast is not None
        slow = TraceRecorded.model_validate_json(payload)
        assert comparable(trace_row(redactor.redact_trace(fast))) == comparable(
            trace_row(redactor.redact_trace(slow))
        )


def test_the_structs_have_the_models_fields_in_their_order():
    from interns.common import events
    from interns.trace_collector import wire

    pairs = [
        (events.TraceRecorded, wire.TraceWire),
        (events.TraceRequest, wire.RequestWire),
        (events.TraceResponse, wire.ResponseWire),
        (events.MessageRecord, wire.MessageWire),
        (events.ToolCallRecord, wire.ToolCallWire),
        (events.FunctionCallRecord, wire.FunctionCallWire),
        (events.RouteRecord, wire.RouteWire),
    ]
    for model, struct in pairs:
        assert list(model.model_fields) == list(struct.__struct_fields__), model
