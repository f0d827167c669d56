"""The intern's prompt and answer format: one module for training, evaluation and serving.

The prompt is compact on purpose (a small model on a CPU pays for every token): the tools
as one line each with their parameter names and allowed values, no descriptions; the
conversation's turns, oldest dropped first when the budget is exceeded. The answer is the
expert's message: for a tool call `{"name": ..., "arguments": {...}}` as compact JSON, with
the arguments' keys sorted, else the text itself.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, fields
from typing import Any

from interns.trainer.normalize import normalize_values

TOOL_SYSTEM = "Call one of these tools with arguments taken from the conversation.\n"
TOOL_SYSTEM_SHORT = "Call a tool with arguments taken from the conversation."
TEXT_SYSTEM = "Answer the conversation's last message."
JSON_SYSTEM = "Answer the conversation's last message with one JSON object."
TOOL_RESULT = "[tool result]"


@dataclass(frozen=True)
class PromptOptions:
    """How a request becomes an intern's prompt. Chosen for training (TrainConfig), recorded
    in the intern's `intern.json` and read from there at serve time: the intern sees the
    prompt it was trained on. See `system_prompt` (tool_lines), `conversation`
    (normalize_values) and `encode` (tool_results_first, keep_tool_calls)."""

    tool_lines: bool = True
    normalize_values: bool = False
    tool_results_first: bool = False
    keep_tool_calls: bool = False
    # The answer (not the prompt) writes every parameter of its tool, null where the
    # expert gave none (see answer_text); recorded with the prompt options for the same
    # reason: the intern is served with the layout it was trained on.
    every_parameter: bool = False

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> PromptOptions:
        """The options an `intern.json` records; one written before an option existed was
        trained without it (the defaults)."""
        return cls(**{f.name: bool(description.get(f.name, f.default)) for f in fields(cls)})


def tool_line(tool: dict[str, Any]) -> str:
    """`name(param, param=a|b, ...)`: the tool's parameters, enums listed."""
    function = tool.get("function", tool)
    properties = (function.get("parameters") or {}).get("properties") or {}
    params = []
    for key, schema in properties.items():
        allowed = schema.get("enum") if isinstance(schema, dict) else None
        params.append(f"{key}={'|'.join(map(str, allowed))}" if allowed else key)
    return f"{function.get('name', '')}({', '.join(params)})"


def system_prompt(request: dict[str, Any], tool_lines: bool = True) -> str:
    """The system line. Without `tool_lines` the tools are not listed: every example of a
    task offers the same tools, so a fine-tuned intern learns them, and constrained
    decoding (constrained.py) holds its answer to them; the tokens go to the conversation."""
    tools = request.get("tools") or []
    if tools:
        if not tool_lines:
            return TOOL_SYSTEM_SHORT
        return TOOL_SYSTEM + "\n".join(tool_line(tool) for tool in tools)
    response_format = request.get("response_format") or {}
    if response_format.get("type") in {"json_object", "json_schema"}:
        return JSON_SYSTEM
    return TEXT_SYSTEM


def conversation(request: dict[str, Any], normalize: bool = False) -> list[dict[str, str]]:
    """The request's turns as plain role/content pairs; tool results as user turns. With
    `normalize`, times and counts in the user's and the agent's words are rewritten the
    way arguments write them (normalize.py); tool calls and results are left as they are."""
    turns = []
    for message in request.get("messages") or []:
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        if role in {"system", "developer"}:
            continue
        if role == "tool":
            turns.append({"role": "user", "content": f"{TOOL_RESULT} {content or ''}"})
        elif role == "assistant" and message.get("tool_calls"):
            calls = [answer_text({"tool_calls": [call]}) for call in message["tool_calls"]]
            turns.append({"role": "assistant", "content": "\n".join(calls)})
        elif role in {"user", "assistant"}:
            text = content or ""
            turns.append({"role": role, "content": normalize_values(text) if normalize else text})
    return turns


def prompt_messages(
    request: dict[str, Any],
    max_turns: int | None = None,
    tool_lines: bool = True,
    normalize: bool = False,
) -> list[dict[str, str]]:
    """The chat messages the tokenizer's chat template renders (without the answer)."""
    turns = conversation(request, normalize)
    if max_turns is not None and len(turns) > max_turns:
        turns = turns[-max_turns:]
    return [{"role": "system", "content": system_prompt(request, tool_lines)}, *turns]


def tool_parameters(request: dict[str, Any], name: str) -> list[str]:
    """The parameters the request's tool `name` declares ([] when it has no such tool)."""
    for tool in request.get("tools") or []:
        function = tool.get("function", tool)
        if isinstance(function, dict) and function.get("name") == name:
            properties = (function.get("parameters") or {}).get("properties") or {}
            return list(properties)
    return []


def answer_text(message: dict[str, Any], request: dict[str, Any] | None = None) -> str:
    """The training target for an expert's assistant message. With `request` (the
    `every_parameter` layout) a tool call writes every parameter its tool declares, null
    where the expert gave none: the intern then decides on each parameter where its name
    stands in the answer ("furnished" right after the word "furnished" of the
    conversation) instead of skipping it after its neighbour."""
    calls = message.get("tool_calls") or []
    if calls:
        function = calls[0].get("function") or {}
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                arguments = {"_raw": arguments}
        if request is not None and isinstance(arguments, dict):
            absent = dict.fromkeys(tool_parameters(request, function.get("name", "")))
            arguments = {**absent, **arguments}
        # The name first: the model picks the tool, then fills its arguments.
        arguments_json = json.dumps(
            arguments, separators=(",", ":"), sort_keys=True, ensure_ascii=False
        )
        return f'{{"name":{json.dumps(function.get("name", ""))},"arguments":{arguments_json}}}'
    return message.get("content") or ""


def parse_answer(
    text: str, request: dict[str, Any], every_parameter: bool = False
) -> dict[str, Any]:
    """The assistant message for a generated answer.

    For a request with tools, an answer that parses as `{"name", "arguments"}` becomes a
    tool call; anything else is returned as text (the router's checks then decide whether
    the expert must answer instead). With `every_parameter` (the layout the intern was
    trained on) the null arguments are the ones it leaves out.
    """
    text = text.strip()
    if request.get("tools") and text.startswith("{"):
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("name"), str):
            arguments = payload.get("arguments")
            if every_parameter and isinstance(arguments, dict):
                arguments = {key: value for key, value in arguments.items() if value is not None}
            return {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{uuid.uuid4().hex[:24]}",
                        "type": "function",
                        "function": {
                            "name": payload["name"],
                            "arguments": json.dumps(
                                arguments if isinstance(arguments, dict) else {},
                                separators=(",", ":"),
                                ensure_ascii=False,
                            ),
                        },
                    }
                ],
            }
    return {"role": "assistant", "content": text}


def prompt_budget(max_length: int, answer_tokens: int) -> int:
    """Prompt tokens left when an example holds at most `max_length` tokens: the same in
    training and serving, so the model sees at serve time what it was trained on."""
    return max_length - answer_tokens - 1


def encode(
    tokenizer: Any,
    request: dict[str, Any],
    max_prompt_tokens: int,
    options: PromptOptions = PromptOptions(),
) -> list[int]:
    """The prompt's token ids as `options` render it, the oldest turns dropped until it fits
    (with `tool_results_first`, the tool results before the last turn go first, oldest first;
    with `keep_tool_calls`, the agent's earlier tool calls go last: a call is a few
    compact tokens that hold the values the conversation settled, the city of a search the
    next call needs "there").

    The system line (the tools) and the last turn are always kept; when even they do not
    fit, the prompt keeps its last `max_prompt_tokens` tokens. Measured on SGD at the
    default budget (319 tokens): dropping the oldest turns keeps 71% of the argument
    values the expert copied from the conversation in the prompt; dropping the agent's
    turns first keeps 53% (the agent's turns name the entities it found). Over the three
    largest SGD tasks' examples (without tool lines, values normalized), of the non-date
    argument values written somewhere in the conversation, dropping the oldest turns keeps
    89%, 89% and 99% in the prompt; dropping the tool results first 94%, 99.8% and 100%:
    a search's result list is hundreds of tokens, and the turns it pushes out name the
    city or the date the next call needs (the agent's turns name what it found). With the
    earlier tool calls kept too, at 415 tokens (max_length 512): 92%, 95% and 98% (the
    restaurant search's city, said before the apartment search, 44% -> 100%).
    """
    messages = prompt_messages(
        request, tool_lines=options.tool_lines, normalize=options.normalize_values
    )
    while True:
        ids = tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, return_dict=False
        )
        if len(ids) <= max_prompt_tokens or len(messages) <= 2:
            return list(ids[-max_prompt_tokens:])
        middle = range(1, len(messages) - 1)
        drop = 1
        if options.tool_results_first:
            results = [i for i in middle if _is_tool_result(messages[i])]
            drop = results[0] if results else drop
        if options.keep_tool_calls and drop == 1 and _is_tool_call(messages[1]):
            turns = [i for i in middle if not _is_tool_call(messages[i])]
            drop = turns[0] if turns else drop
        messages = [*messages[:drop], *messages[drop + 1 :]]


def _is_tool_result(message: dict[str, str]) -> bool:
    return message["role"] == "user" and message["content"].startswith(TOOL_RESULT)


def _is_tool_call(message: dict[str, str]) -> bool:
    return message["role"] == "assistant" and message["content"].startswith('{"name":')
