"""Recorded workloads and the replay of their answers.

A workload is a file of recorded LLM calls, each with a reference answer. Three formats are
read, told apart by their content:

- ``sgd``: Schema-Guided Dialogue tool calls (``messages``, ``services``, ``reference``),
  with the tools of each service in ``sgd_tools.json`` next to the file;
- ``openai_log``: one ``{"request", "response", "metadata"?}`` object per line, the request and
  response being chat-completions bodies;
- ``bfcl``: a Berkeley Function Calling Leaderboard question file (``id``, ``question``,
  ``function``), its answers in ``../possible_answer/`` under the same file name (either
  file may be given).

`load_workload` turns a file into `WorkloadRecord`s (request body, answer message,
metadata); `ReplayIndex` finds the answer to a request by its conversation, ignoring the
tools so that an agent sending a compact tool list still matches. `completion_body` and
`completion_chunks` shape an answer as an OpenAI response or stream. No web framework here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interns.common.logging import get_logger

log = get_logger(__name__)

WorkloadFormat = Literal["sgd", "openai_log", "bfcl"]

DEFAULT_MODEL = "replay-expert"
MAX_REPORTED_LINES = 10
SGD_TOOLS_FILE = "sgd_tools.json"

# BFCL writes parameter types in its own dialect (and Java's, for the Java items); OpenAI
# tools take JSON Schema. The mapping follows BFCL's own conversion for OpenAI models.
_BFCL_TYPES = {
    "dict": "object",
    "float": "number",
    "double": "number",
    "tuple": "array",
    "list": "array",
    "any": "string",
    "": "string",
    "String": "string",
    "Boolean": "boolean",
    "long": "integer",
    "char": "string",
    "Array": "array",
    "ArrayList": "array",
    "HashMap": "object",
}
# OpenAI rejects tool names outside this alphabet; BFCL's names often hold dots.
_TOOL_NAME_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


class WorkloadError(ValueError):
    """A workload file that cannot be read as any known format."""


class ChatMessage(BaseModel):
    """One chat message of a request; fields beyond these are kept, not checked."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None


class StreamOptions(BaseModel):
    """`stream_options` of a chat-completions request."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The parts of a chat-completions request body the replay expert reads."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


class WorkloadRecord(BaseModel):
    """One recorded call: what the agent sent, what the expert answered, and about what."""

    request: dict[str, Any] = Field(
        description="Chat-completions request body (model, messages, tools when recorded)"
    )
    answer: dict[str, Any] = Field(description="The reference assistant message")
    finish_reason: str = "stop"
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="record_id, session_id, task_label, format, line, and per-format extras",
    )


@dataclass
class Workload:
    """The records of a workload file and what could not be read of it."""

    path: Path
    format: WorkloadFormat
    records: list[WorkloadRecord] = field(default_factory=list)
    malformed_count: int = 0
    malformed_lines: list[int] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def __iter__(self) -> Iterator[WorkloadRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def _malformed(self, line: int) -> None:
        self.malformed_count += 1
        if len(self.malformed_lines) < MAX_REPORTED_LINES:
            self.malformed_lines.append(line)


@dataclass(frozen=True)
class ReplayEntry:
    """A recorded answer, found by its conversation key."""

    key: str
    message: dict[str, Any]
    finish_reason: str
    metadata: dict[str, Any]


# ---------------------------------------------------------------- conversation keys


def _text(content: Any) -> str:
    """Message content as one string; text parts are joined, other parts kept as JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list) and all(
        isinstance(part, Mapping) and part.get("type") == "text" for part in content
    ):
        return "\n".join(str(part.get("text", "")).strip() for part in content).strip()
    return json.dumps(content, sort_keys=True, ensure_ascii=False)


def _canonical_arguments(arguments: Any) -> Any:
    """Arguments compared by value: JSON text is parsed so that spacing and key order vanish."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments.strip()
    return arguments


def _call_signature(call: Mapping[str, Any]) -> Any:
    # Ids are left out: each model run mints its own, and the conversation is the same.
    function = call.get("function")
    if isinstance(function, Mapping):
        return [function.get("name"), _canonical_arguments(function.get("arguments"))]
    return {k: v for k, v in call.items() if k not in ("id", "index")}


def conversation_key(messages: Sequence[Mapping[str, Any] | ChatMessage]) -> str:
    """A stable hash of a conversation: each message's role, stripped content and tool calls
    (name and arguments, not ids). Tools and sampling settings are not part of it."""
    normal = []
    for raw in messages:
        message = raw if isinstance(raw, ChatMessage) else ChatMessage.model_validate(raw)
        # OpenAI renamed the system role for newer models; clients send either.
        role = "system" if message.role == "developer" else message.role
        calls = [_call_signature(call) for call in message.tool_calls or []]
        if message.function_call:
            calls.append(_call_signature({"function": message.function_call}))
        normal.append([role, _text(message.content), calls])
    text = json.dumps(normal, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def tool_call_id(key: str, index: int) -> str:
    """A tool call id derived from the conversation, so that replays give the same ids."""
    return "call_" + hashlib.sha256(f"{key}:{index}".encode()).hexdigest()[:24]


def _tool_call_message(key: str, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": tool_call_id(key, i),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
            }
            for i, (name, arguments) in enumerate(calls)
        ],
    }


# ---------------------------------------------------------------- reading files


@dataclass
class _Line:
    number: int
    data: Any


def _read_lines(path: Path, workload: Workload | None) -> list[_Line]:
    """The JSON values of a JSON-lines file; lines that are not JSON are counted as
    malformed in `workload` (when given), blank lines are ignored."""
    lines = []
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                lines.append(_Line(number, json.loads(text)))
            except ValueError:
                if workload is not None:
                    workload._malformed(number)
    return lines


def detect_format(path: str | Path) -> WorkloadFormat:
    """The format of a workload file, from the keys of its first JSON object line."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for text in handle:
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            if "messages" in data and "reference" in data:
                return "sgd"
            if "request" in data and "response" in data:
                return "openai_log"
            if "question" in data or "ground_truth" in data:
                return "bfcl"
    raise WorkloadError(
        f"{path}: no line is a record of a known workload format "
        "(SGD tool calls, OpenAI request/response log, BFCL question or answer file)"
    )


def load_workload(path: str | Path, model: str = DEFAULT_MODEL) -> Workload:
    """Reads a workload file of any known format (see the module docstring).

    Malformed lines are skipped, counted and their first line numbers kept in the result;
    records without a usable answer are counted in `skipped` by reason. Request bodies of
    formats that record no model name get `model`."""
    path = Path(path)
    kind = detect_format(path)
    workload = Workload(path=path, format=kind)
    if kind == "sgd":
        _load_sgd(workload, model)
    elif kind == "openai_log":
        _load_openai_log(workload)
    else:
        _load_bfcl(workload, model)
    if workload.malformed_count:
        log.warning(
            "malformed workload lines skipped",
            path=str(workload.path),
            count=workload.malformed_count,
            first_lines=workload.malformed_lines,
        )
    if workload.skipped:
        log.warning(
            "workload records without a usable answer skipped",
            path=str(workload.path),
            reasons=dict(workload.skipped),
        )
    log.info("workload loaded", path=str(path), format=kind, records=len(workload.records))
    return workload


# ---------------------------------------------------------------- SGD


class _SgdReference(BaseModel):
    name: str
    arguments: dict[str, Any]


class _SgdLine(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    dialogue_id: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    services: list[str] = Field(default_factory=list)
    reference: _SgdReference
    reference_reply: str | None = None
    task_label: str | None = None
    domain_intent_label: str | None = None


def _load_sgd(workload: Workload, model: str) -> None:
    tools_path = workload.path.parent / SGD_TOOLS_FILE
    if not tools_path.is_file():
        raise WorkloadError(f"{workload.path}: SGD tool definitions not found at {tools_path}")
    tools_by_service: dict[str, list[dict]] = json.loads(tools_path.read_text(encoding="utf-8"))
    for line in _read_lines(workload.path, workload):
        try:
            record = _SgdLine.model_validate(line.data)
        except ValidationError:
            workload._malformed(line.number)
            continue
        tools: dict[str, dict] = {}
        for service in record.services:
            for tool in tools_by_service.get(service, []):
                tools.setdefault(tool.get("function", {}).get("name", ""), tool)
        request: dict[str, Any] = {"model": model, "messages": line.data["messages"]}
        if tools:
            request["tools"] = list(tools.values())
        key = conversation_key(record.messages)
        workload.records.append(
            WorkloadRecord(
                request=request,
                answer=_tool_call_message(
                    key, [(record.reference.name, record.reference.arguments)]
                ),
                finish_reason="tool_calls",
                metadata={
                    "format": "sgd",
                    "line": line.number,
                    "record_id": record.id,
                    "session_id": record.dialogue_id,
                    "task_label": record.task_label or record.reference.name,
                    "domain_intent_label": record.domain_intent_label,
                    "services": record.services,
                    "reference_reply": record.reference_reply,
                },
            )
        )


# ---------------------------------------------------------------- OpenAI-format logs


class _LogChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: ChatMessage
    finish_reason: str | None = None


class _LogResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    choices: list[_LogChoice] = Field(min_length=1)


class _LogLine(BaseModel):
    request: ChatCompletionRequest
    response: _LogResponse
    metadata: dict[str, Any] = Field(default_factory=dict)


def _load_openai_log(workload: Workload) -> None:
    for line in _read_lines(workload.path, workload):
        try:
            record = _LogLine.model_validate(line.data)
        except ValidationError:
            workload._malformed(line.number)
            continue
        response = line.data["response"]
        answer = dict(response["choices"][0]["message"])
        answer.setdefault("role", "assistant")
        finish_reason = record.response.choices[0].finish_reason or (
            "tool_calls" if answer.get("tool_calls") else "stop"
        )
        workload.records.append(
            WorkloadRecord(
                request=line.data["request"],
                answer=answer,
                finish_reason=finish_reason,
                metadata={
                    "record_id": record.metadata.get("id") or response.get("id"),
                    "session_id": record.metadata.get("session_id"),
                    "task_label": record.metadata.get("task_label"),
                    # What the importer keeps of the response besides the answer.
                    "response_model": response.get("model"),
                    "created": response.get("created"),
                    "usage": response.get("usage"),
                    **record.metadata,
                    "format": "openai_log",
                    "line": line.number,
                },
            )
        )


# ---------------------------------------------------------------- BFCL


class _BfclQuestion(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    question: list[list[ChatMessage]] = Field(min_length=1)
    # Multi-turn, memory and web-search items name their tools by class instead.
    function: list[dict[str, Any]] | None = None


class _BfclAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    ground_truth: list[Any]


def _bfcl_schema(schema: Any) -> Any:
    """A BFCL parameter schema as JSON Schema (types mapped, nested schemas too)."""
    if not isinstance(schema, Mapping):
        return schema
    out = dict(schema)
    if isinstance(out.get("type"), str):
        out["type"] = _BFCL_TYPES.get(out["type"], out["type"])
    if isinstance(out.get("properties"), Mapping):
        out["properties"] = {k: _bfcl_schema(v) for k, v in out["properties"].items()}
    for nested in ("items", "additionalProperties"):
        if isinstance(out.get(nested), Mapping):
            out[nested] = _bfcl_schema(out[nested])
    return out


def _tool_name(name: str) -> str:
    return _TOOL_NAME_BAD_CHARS.sub("_", name)[:64]


def _bfcl_tool(function: Mapping[str, Any]) -> dict:
    definition = {
        "name": _tool_name(str(function.get("name", ""))),
        **{k: v for k, v in function.items() if k not in ("name", "parameters")},
    }
    if "parameters" in function:
        definition["parameters"] = _bfcl_schema(function["parameters"])
    return {"type": "function", "function": definition}


_OMIT = object()


def _first_accepted(values: Any) -> Any:
    """The first accepted value of a ground-truth argument, or `_OMIT` when that is "" (the
    argument is optional). Nested dicts list accepted values per key in turn."""
    if not isinstance(values, list):
        return values
    if not values or values[0] == "":
        return _OMIT
    return _pick(values[0])


def _pick(value: Any) -> Any:
    if isinstance(value, dict):
        picked = {k: _first_accepted(v) for k, v in value.items()}
        return {k: v for k, v in picked.items() if v is not _OMIT}
    if isinstance(value, list):
        return [_pick(item) if isinstance(item, dict) else item for item in value]
    return value


def _bfcl_calls(ground_truth: list[Any]) -> list[tuple[str, dict[str, Any]]] | None:
    """The calls of a ground truth, or None when it is not a list of calls (multi-turn
    items list code strings per turn, memory and web-search items list text answers)."""
    calls = []
    for call in ground_truth:
        if not (isinstance(call, dict) and len(call) == 1):
            return None
        ((name, arguments),) = call.items()
        if not isinstance(arguments, dict):
            return None
        calls.append((_tool_name(name), _pick(arguments)))
    return calls or None


def _bfcl_paths(path: Path) -> tuple[Path, Path]:
    """(question file, answer file) of a BFCL file given either of them."""
    if path.parent.name == "possible_answer":
        return path.parent.parent / "question" / path.name, path
    return path, path.parent.parent / "possible_answer" / path.name


def _load_bfcl(workload: Workload, model: str) -> None:
    question_path, answer_path = _bfcl_paths(workload.path)
    if question_path != workload.path:
        if not question_path.is_file():
            raise WorkloadError(f"{workload.path}: BFCL questions not found at {question_path}")
        workload.path = question_path
    answers: dict[str, list[Any]] = {}
    if answer_path.is_file():
        for line in _read_lines(answer_path, None):
            try:
                answer = _BfclAnswer.model_validate(line.data)
            except ValidationError:
                continue
            answers[answer.id] = answer.ground_truth
    else:
        log.warning(
            "BFCL answers not found", questions=str(question_path), answers=str(answer_path)
        )
    category = question_path.stem.removeprefix("BFCL_v4_")
    for line in _read_lines(question_path, workload):
        try:
            item = _BfclQuestion.model_validate(line.data)
        except ValidationError:
            workload._malformed(line.number)
            continue
        if item.id not in answers:
            workload.skipped["no ground truth"] += 1
            continue
        calls = _bfcl_calls(answers[item.id])
        if calls is None or item.function is None:
            workload.skipped["ground truth is not a single-turn list of calls"] += 1
            continue
        # Later turns need the earlier turns' tool results, which BFCL does not record.
        messages = line.data["question"][0]
        key = conversation_key(item.question[0])
        workload.records.append(
            WorkloadRecord(
                request={
                    "model": model,
                    "messages": messages,
                    "tools": [_bfcl_tool(function) for function in item.function],
                },
                answer=_tool_call_message(key, calls),
                finish_reason="tool_calls",
                metadata={
                    "format": "bfcl",
                    "line": line.number,
                    "record_id": item.id,
                    "session_id": item.id,
                    "task_label": "+".join(sorted({name for name, _ in calls})),
                    "category": category,
                },
            )
        )


# ---------------------------------------------------------------- the index


class ReplayIndex:
    """Recorded answers by conversation key. The first answer recorded for a conversation
    wins; later records of the same conversation are counted as duplicates (same answer)
    or conflicts (another answer)."""

    def __init__(self) -> None:
        self._entries: dict[str, ReplayEntry] = {}
        self.duplicates = 0
        self.conflicts = 0

    @classmethod
    def from_records(cls, records: Iterable[WorkloadRecord]) -> ReplayIndex:
        """An index of `records` (a `Workload` or any iterable of records)."""
        index = cls()
        for record in records:
            index.add(record)
        if index.conflicts:
            log.warning(
                "conversations recorded with different answers; the first is replayed",
                conflicts=index.conflicts,
            )
        return index

    def add(self, record: WorkloadRecord) -> bool:
        """Adds `record`; False when its conversation already has an answer."""
        key = conversation_key(record.request.get("messages", []))
        known = self._entries.get(key)
        if known is not None:
            if known.message == record.answer:
                self.duplicates += 1
            else:
                self.conflicts += 1
            return False
        self._entries[key] = ReplayEntry(
            key=key,
            message=record.answer,
            finish_reason=record.finish_reason,
            metadata=record.metadata,
        )
        return True

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, request: ChatCompletionRequest | Mapping[str, Any]) -> ReplayEntry | None:
        """The recorded answer to the request's conversation, or None.

        Raises pydantic's ValidationError for a mapping that is not a request body."""
        if not isinstance(request, ChatCompletionRequest):
            request = ChatCompletionRequest.model_validate(request)
        return self._entries.get(conversation_key(request.messages))

    def answer(self, request: ChatCompletionRequest | Mapping[str, Any]) -> dict | None:
        """The recorded assistant message for the request's conversation (a copy), or None."""
        entry = self.match(request)
        return copy.deepcopy(entry.message) if entry else None


# ---------------------------------------------------------------- response bodies


def estimate_tokens(chars: int) -> int:
    """A token count from a character count, at four characters a token."""
    return math.ceil(chars / 4)


def _message_chars(message: Mapping[str, Any]) -> int:
    chars = len(_text(message.get("content")))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        chars += len(str(function.get("name") or "")) + len(str(function.get("arguments") or ""))
    return chars


def estimate_usage(request: ChatCompletionRequest, message: Mapping[str, Any]) -> dict[str, int]:
    """OpenAI `usage` estimated from characters: the prompt's messages and tools, and the
    answer's content and tool calls."""
    prompt_chars = sum(_message_chars(m.model_dump()) for m in request.messages)
    if request.tools:
        prompt_chars += len(json.dumps(request.tools, ensure_ascii=False))
    prompt = estimate_tokens(prompt_chars)
    completion = estimate_tokens(_message_chars(message))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def new_completion_id() -> str:
    """An id for a chat completion, shaped like OpenAI's."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def _answer_message(entry: ReplayEntry) -> dict[str, Any]:
    message = copy.deepcopy(entry.message)
    message.setdefault("role", "assistant")
    message.setdefault("content", None)
    return message


def completion_body(
    entry: ReplayEntry,
    request: ChatCompletionRequest,
    model: str,
    completion_id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """The OpenAI `chat.completion` response body answering `request` with `entry`."""
    message = _answer_message(entry)
    return {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": entry.finish_reason}],
        "usage": estimate_usage(request, message),
    }


def _content_pieces(text: str) -> list[str]:
    # Word by word, each word with the whitespace after it, so the pieces join back exactly.
    return [piece for piece in re.findall(r"\S*\s*", text) if piece]


def completion_chunks(
    entry: ReplayEntry,
    request: ChatCompletionRequest,
    model: str,
    completion_id: str | None = None,
    created: int | None = None,
) -> list[dict[str, Any]]:
    """The OpenAI `chat.completion.chunk`s streaming `entry`: the role, the content word by
    word, all tool calls in one chunk, the finish reason, then usage when the request's
    `stream_options.include_usage` asks for it."""
    message = _answer_message(entry)
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    head = {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion.chunk",
        "created": created if created is not None else int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body = {
            **head,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        if include_usage:
            body["usage"] = None
        return body

    content = message.get("content")
    text = content if isinstance(content, str) else _text(content)
    chunks = [chunk({"role": "assistant", "content": "" if text else None})]
    chunks += [chunk({"content": piece}) for piece in _content_pieces(text)]
    if message.get("tool_calls"):
        calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        chunks.append(chunk({"tool_calls": calls}))
    chunks.append(chunk({}, entry.finish_reason))
    if include_usage:
        chunks.append({**head, "choices": [], "usage": estimate_usage(request, message)})
    return chunks
