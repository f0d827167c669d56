"""The structural signature of a chat request: what makes two calls "the same kind of
call" before their content is looked at.

It is built from the prompt template (the system prompt with its variable parts masked),
the set of tool names and the response format. The miner groups traces by it and the
router matches live calls to tasks by it, so both must compute it the same way: here.
At serve time it costs a few microseconds: the masking of a system prompt is cached.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

# Variable parts of a prompt template: what differs between two calls of one task.
_MASKS = [
    (re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"), "<email>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"
        ),
        "<date>",
    ),
    (re.compile(r"\b\d+(?:[.,:]\d+)*\b"), "<num>"),
    (re.compile(r"\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'"), "<str>"),
    (re.compile(r"\s+"), " "),
]
TEMPLATE_CHARS = 2000


@lru_cache(maxsize=4096)
def mask_template(text: str) -> str:
    """`text` with its variable parts replaced by placeholders, whitespace collapsed."""
    for pattern, placeholder in _MASKS:
        text = pattern.sub(placeholder, text)
    return text.strip()[:TEMPLATE_CHARS]


def _system_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for message in messages:
        if message.get("role") in ("system", "developer"):
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(content or "")
    return "\n".join(parts)


def _response_format(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    kind = fmt.get("type", "text")
    if kind == "json_schema":
        schema = fmt.get("json_schema") or {}
        return f"json_schema:{schema.get('name', '')}"
    return kind


def signature_parts(body: dict[str, Any]) -> tuple[str, tuple[str, ...], str]:
    """(masked template, sorted tool names, response format) of an OpenAI request body."""
    tools = tuple(
        sorted((t.get("function") or {}).get("name", "") for t in body.get("tools") or [])
    )
    return mask_template(_system_text(body.get("messages") or [])), tools, _response_format(body)


def request_signature(body: dict[str, Any]) -> str:
    """A short, stable id of the request's structure (16 hex characters)."""
    template, tools, fmt = signature_parts(body)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(template.encode())
    digest.update(b"\x00" + "\x1f".join(tools).encode())
    digest.update(b"\x00" + fmt.encode())
    return digest.hexdigest()
