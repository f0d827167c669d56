"""How far an intern's answer agrees with the expert's: tool calls by name and parsed
arguments (a score per argument), text by equality."""

from __future__ import annotations

from typing import Any

from interns.common.answers import tool_calls


def compare_answers(expert: dict[str, Any], intern: dict[str, Any]) -> tuple[bool, float]:
    """(agree, score in [0, 1]). Agreement is exact; the score gives partial credit: the
    share of the expert's calls named right, weighted by the share of their arguments
    with the expert's value."""
    expert_calls, intern_calls = tool_calls(expert), tool_calls(intern)
    if not expert_calls and not intern_calls:
        same = (expert.get("content") or "").strip() == (intern.get("content") or "").strip()
        return same, 1.0 if same else 0.0
    if expert_calls == intern_calls:
        return True, 1.0
    total = 0.0
    for index, (name, arguments) in enumerate(expert_calls):
        if index >= len(intern_calls) or intern_calls[index][0] != name:
            continue
        got = intern_calls[index][1]
        keys = set(arguments) | set(got)
        matched = sum(arguments.get(k) == got.get(k) for k in keys)
        total += (matched / len(keys)) if keys else 1.0
    return False, total / max(len(expert_calls), len(intern_calls))
