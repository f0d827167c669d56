"""Value-swap augmentation of a training split: teach the intern to copy, not to memorise.

A small model fine-tuned on a task's few examples tends to answer with the values it saw
most often in training ("Las Vegas") instead of the one the conversation names. For a
training example whose tool-call argument values occur in the conversation, an extra copy
replaces each such value, in every message (tool calls and tool results included) and in
the answer, by another value the same argument takes in other training examples. The
copy's conversation and answer still agree, so the only way to fit both is to copy.

Only values worth copying are swapped: strings of at least three characters that are not
dates, times, numbers or booleans (those are converted or inferred, not copied) and that
occur in the conversation as whole words. The evaluation split is never augmented: the
trainer calls this on the training split alone, right before tokenization.

Written by hand: the substitution has to follow the OpenAI message layout (tool-call
arguments and tool results are JSON text inside the messages) and no library does that.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from interns.common.answers import UNPARSABLE, tool_calls
from interns.trainer.examples import Example

MIN_LENGTH = 3
# Keys of a message that name or link things rather than carry conversation text.
STRUCTURAL_KEYS = frozenset({"role", "id", "tool_call_id", "type", "name"})
NOT_COPIED = re.compile(
    r"""
    [-+]?\d[\d,]*(\.\d+)?           # numbers
    | \d{4}-\d{1,2}-\d{1,2}         # ISO dates
    | \d{1,2}/\d{1,2}(/\d{2,4})?    # 3/5, 3/5/2019
    | \d{1,2}:\d{2}(:\d{2})?(\s*[ap]\.?m\.?)?  # times
    | true | false | yes | no | none | null | dontcare
    """,
    re.IGNORECASE | re.VERBOSE,
)

Substitute = Callable[..., str]


def is_copyable(value: Any) -> bool:
    """A value the expert copies from the conversation: a word-like string of at least
    three characters that is not a date, time, number or boolean. Values that JSON would
    escape are left alone: they could not be found verbatim in a tool result."""
    if not isinstance(value, str):
        return False
    value = value.strip()
    return (
        len(value) >= MIN_LENGTH
        and NOT_COPIED.fullmatch(value) is None
        and json.dumps(value, ensure_ascii=False)[1:-1] == value
    )


def call_arguments(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The decoded arguments of each tool call in an assistant message ({} for arguments
    that do not parse: nothing to swap)."""
    return [{} if UNPARSABLE in arguments else arguments for _, arguments in tool_calls(answer)]


def value_pools(examples: Iterable[Example]) -> dict[str, list[str]]:
    """Argument name -> the copyable values it takes in these examples (case-insensitively
    distinct, sorted so that the draw does not depend on hash order)."""
    pools: dict[str, dict[str, str]] = defaultdict(dict)
    for example in examples:
        for arguments in call_arguments(example.answer):
            for name, value in arguments.items():
                if is_copyable(value):
                    pools[name].setdefault(value.strip().lower(), value.strip())
    return {name: sorted(values.values()) for name, values in pools.items()}


def _occurrence_pattern(values: Iterable[str]) -> re.Pattern[str]:
    # Longest first, so "San Francisco Marriott" wins over "San Francisco".
    ordered = sorted(set(values), key=lambda v: (-len(v), v))
    alternatives = "|".join(re.escape(value) for value in ordered)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _in_case_of(found: str, replacement: str) -> str:
    if found.islower():
        return replacement.lower()
    if found.isupper() and len(found) > 1:
        return replacement.upper()
    return replacement


def _substitution(swaps: Mapping[str, str]) -> Substitute:
    """A function that replaces the swapped values in a text. In JSON text (a tool call's
    arguments, a tool result) the replacement is written as the body of a JSON string."""
    pattern = _occurrence_pattern(swaps)

    def substitute(text: str, escaped: bool | None = None) -> str:
        if escaped is None:
            escaped = _is_json_text(text)

        def swap(match: re.Match[str]) -> str:
            found = match.group(0)
            replacement = _in_case_of(found, swaps[found.lower()])
            return json.dumps(replacement, ensure_ascii=False)[1:-1] if escaped else replacement

        return pattern.sub(swap, text)

    return substitute


def _is_json_text(text: str) -> bool:
    if not text.lstrip().startswith(("{", "[")):
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _walk(node: Any, visit: Callable[[str], str]) -> Any:
    """A copy of a message (or part of one) with `visit` applied to its text leaves."""
    if isinstance(node, str):
        return visit(node)
    if isinstance(node, list):
        return [_walk(item, visit) for item in node]
    if isinstance(node, dict):
        return {
            key: value if key in STRUCTURAL_KEYS else _walk(value, visit)
            for key, value in node.items()
        }
    return node


def _texts(node: Any) -> Iterable[str]:
    texts: list[str] = []
    _walk(node, lambda text: texts.append(text) or text)
    return texts


def _swapped_answer(answer: dict[str, Any], substitute: Substitute) -> dict[str, Any]:
    calls = []
    for call, arguments in zip(answer.get("tool_calls") or [], call_arguments(answer), strict=True):
        if not arguments:  # nothing to swap (or arguments that do not parse): as it was
            calls.append(call)
            continue
        swapped = {
            name: substitute(value, False) if isinstance(value, str) else value
            for name, value in arguments.items()
        }
        function = {**call.get("function", {}), "arguments": json.dumps(swapped)}
        calls.append({**call, "function": function})
    return {**answer, "tool_calls": calls}


def swapped_copies(
    example: Example, pools: Mapping[str, list[str]], copies: int, seed: int
) -> list[Example]:
    """Up to `copies` variants of `example` with its copyable argument values that occur in
    the conversation replaced by other values of the same argument; none when it has no
    such value or no other value to swap in. Deterministic given `seed`."""
    messages = example.request.get("messages") or []
    conversation_text = "\n".join(_texts(messages))
    originals: dict[str, str] = {}
    # Every copyable value of the answer, found or not: a swap must not bring in another
    # argument's value (from and to the same city).
    taken_by_answer: set[str] = set()
    for arguments in call_arguments(example.answer):
        for name, value in arguments.items():
            if not is_copyable(value):
                continue
            taken_by_answer.add(value.strip().lower())
            if _occurrence_pattern([value.strip()]).search(conversation_text):
                originals.setdefault(value.strip().lower(), name)
    if not originals:
        return []
    variants = []
    for copy in range(copies):
        rng = random.Random(f"{seed}:{example.trace_id}:{copy}")
        swaps: dict[str, str] = {}
        taken = set(taken_by_answer)
        for original, name in sorted(originals.items()):
            candidates = [v for v in pools.get(name, []) if v.lower() not in taken]
            if candidates:
                swaps[original] = rng.choice(candidates)
                taken.add(swaps[original].lower())
        if not swaps:
            return []
        substitute = _substitution(swaps)
        request = {**example.request, "messages": _walk(messages, substitute)}
        variants.append(
            replace(
                example,
                trace_id=f"{example.trace_id}#swap{copy + 1}",
                request=request,
                answer=_swapped_answer(example.answer, substitute),
            )
        )
    return variants


def augment(examples: list[Example], copies: int, seed: int = 0) -> list[Example]:
    """The training examples followed by up to `copies` value-swapped variants of each (the
    replacements drawn from the values the same argument takes in these examples)."""
    if copies <= 0:
        return list(examples)
    pools = value_pools(examples)
    extra = [
        variant for example in examples for variant in swapped_copies(example, pools, copies, seed)
    ]
    return [*examples, *extra]
