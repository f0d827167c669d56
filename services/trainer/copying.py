"""Copied argument values: for the arguments an intern learned to copy, it may only write a
value that stands in its prompt.

A small intern learns which argument to fill but miscopies its value: it writes a value
frequent in its training set instead of the one in the conversation, or a city one word
off. Most argument values of a task are copied (on SGD, once times and counts are
normalized, 87 to 99% of the non-date values stand verbatim in the prompt). Training
measures, per tool and argument, how often the expert's value is one of the prompt's
spans (`spans`); an argument copied in at least `min_share` of at least `MIN_EXAMPLES`
examples is recorded in `intern.json` with the kind of its values (`value_kind`: digits
with their punctuation, capitalised words, or any), and constrained decoding
(constrained.py) then offers that argument only the spans of the request's prompt of that
kind (a time argument cannot take a date, a city cannot be written in lower case). An
argument with an enum is copied the same way when its values stand in the prompt (a
party size the agent's confirmation names): its enum shrinks to the values the prompt
writes, and stays whole when the prompt writes none of them. Arguments the expert
computes (dates: the dialogues never say which day today is) or infers ("reasonably
priced" is `moderate`: 3 of 10 on SGD's restaurant searches) stay free.

A span is one to `MAX_SPAN_WORDS` consecutive words of the prompt's text (its special
tokens left out), as written or with each word capitalised ("vietnamese" is the category
Vietnamese), with or without the punctuation at its two ends; words are split at white
space and at JSON's quotes, braces and brackets, so that a value in an earlier tool call
of the conversation counts.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Any

MAX_SPAN_WORDS = 8
# An argument is copied when its value is a span of the prompt in this share of examples.
MIN_SHARE = 0.9
# ... of at least this many examples with the argument.
MIN_EXAMPLES = 5
_WORD = re.compile(r'[^\s"{}\[\]]+')
_EDGES = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~“”‘’«»…"


def spans(text: str, max_words: int = MAX_SPAN_WORDS) -> set[str]:
    """Every run of one to `max_words` words of `text`, as written and without the
    punctuation at its ends."""
    words = _WORD.findall(text)
    found: set[str] = set()
    for start in range(len(words)):
        for end in range(start + 1, min(start + max_words, len(words)) + 1):
            span = " ".join(words[start:end])
            stripped = span.strip(_EDGES)
            for variant in (span, stripped):
                if variant:
                    found.add(variant)
                    found.add(string.capwords(variant))
    return found


def string_arguments(tool: dict[str, Any]) -> set[str]:
    """The tool's parameters that take a string, with or without an enum (an enum argument
    copied from the prompt may take only those of its values the prompt writes: the party
    of 2 the agent's confirmation names, not a 1 the intern is drawn to)."""
    function = tool.get("function", tool)
    properties = (function.get("parameters") or {}).get("properties") or {}
    return {
        name
        for name, schema in properties.items()
        if isinstance(schema, dict) and schema.get("type") == "string"
    }


def value_kind(values: Iterable[str]) -> str:
    """What every one of an argument's values looks like, as a filter on spans: `digits`
    followed by their punctuation (no letter in any: "18:15" gives `digits::`, "2" gives
    `digits:`; mixed punctuation gives `digits`), `capitalized` (every word starts with a
    capital or a digit: names and cities), else `any`."""
    values = list(values)
    if values and not any(_has_letter(value) for value in values):
        marks = {_marks(value) for value in values}
        return f"digits:{marks.pop()}" if len(marks) == 1 else "digits"
    if values and all(_capitalized(value) for value in values):
        return "capitalized"
    return "any"


def _has_letter(text: str) -> bool:
    return any(char.isalpha() for char in text)


def _marks(text: str) -> str:
    return "".join(sorted({char for char in text if not char.isalnum() and not char.isspace()}))


def _capitalized(text: str) -> bool:
    return all(word[0].isupper() or word[0].isdigit() for word in text.split())


def _fits(kind: str, span: str) -> bool:
    if kind.startswith("digits"):
        if _has_letter(span):
            return False
        marks = kind.partition(":")[2]
        return ":" not in kind or _marks(span) == marks
    if kind == "capitalized":
        return _capitalized(span)
    return True


def copied_arguments(
    examples: Iterable[tuple[dict[str, Any], str, str, dict[str, Any]]],
    min_share: float = MIN_SHARE,
    min_examples: int = MIN_EXAMPLES,
) -> dict[str, dict[str, str]]:
    """The arguments, by tool, whose value is a span of the prompt in at least `min_share`
    of the `min_examples` or more examples that give them, each with the kind of its values
    (`value_kind`). `examples`: (request, prompt text, tool name, arguments) of each
    training example answered with a tool call."""
    seen: dict[tuple[str, str], list[int]] = {}
    values: dict[tuple[str, str], list[str]] = {}
    for request, prompt, name, arguments in examples:
        tool = next(
            (t for t in request.get("tools") or [] if t.get("function", t).get("name") == name),
            None,
        )
        if tool is None:
            continue
        free = string_arguments(tool)
        prompt_spans: set[str] | None = None
        for argument, value in arguments.items():
            if argument not in free or not isinstance(value, str) or not value:
                continue
            if prompt_spans is None:
                prompt_spans = spans(prompt)
            counts = seen.setdefault((name, argument), [0, 0])
            counts[0] += value in prompt_spans
            counts[1] += 1
            values.setdefault((name, argument), []).append(value)
    copied: dict[str, dict[str, str]] = {}
    for (name, argument), (hits, total) in sorted(seen.items()):
        if total >= min_examples and hits >= min_share * total:
            copied.setdefault(name, {})[argument] = value_kind(values[(name, argument)])
    return copied


def allowed_values(
    copied: dict[str, dict[str, str] | list[str]], prompt: str
) -> dict[str, dict[str, list[str]]] | None:
    """The values each copied argument may take in a request whose prompt is `prompt`: the
    prompt's spans of the argument's kind (None when the intern copies nothing). An intern
    that recorded its copied arguments as a list (no kinds) takes any span."""
    if not copied:
        return None
    every = spans(prompt)
    if not every:
        return None
    by_kind: dict[str, list[str]] = {}
    allowed: dict[str, dict[str, list[str]]] = {}
    for name, arguments in copied.items():
        kinds = dict.fromkeys(arguments, "any") if isinstance(arguments, list) else arguments
        for argument, kind in kinds.items():
            if kind not in by_kind:
                by_kind[kind] = sorted(span for span in every if _fits(kind, span))
            allowed.setdefault(name, {})[argument] = by_kind[kind]
    return allowed
