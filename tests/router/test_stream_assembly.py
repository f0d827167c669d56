"""Streamed answers: text passes through, tool-call fragments arrive whole and parse."""

from __future__ import annotations

import json

from interns.router.serving import ToolCallAssembler


def chunk(delta=None, finish=None, usage=None):
    body = {"id": "c1", "model": "m", "choices": []}
    if delta is not None or finish is not None:
        body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        body["usage"] = usage
    return body


def test_tool_call_fragments_are_joined_into_one_parsable_call():
    assembler = ToolCallAssembler()
    fragments = [
        chunk({"role": "assistant"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "Get"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "Weather", "arguments": '{"ci'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Lima"}'}}]}),
        chunk(finish="tool_calls"),
        chunk(usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}),
    ]
    deltas = [d for f in fragments for d in assembler.feed(f)]
    assert [d.role for d in deltas] == ["assistant"]
    final = assembler.finish()
    (call,) = final.tool_calls
    assert call.id == "call_1" and call.function.name == "GetWeather"
    assert json.loads(call.function.arguments) == {"city": "Lima"}
    assert final.finish_reason == "tool_calls" and final.usage.total_tokens == 8


def test_text_streams_as_it_comes_and_ends_with_stop():
    assembler = ToolCallAssembler()
    pieces = [chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk(finish="stop")]
    text = "".join(d.content for p in pieces for d in assembler.feed(p))
    assert text == "Hello"
    assert assembler.finish().finish_reason == "stop"
