"""Constrained decoding: an intern can only write an answer the request allows.

For a request with tools the answer is `{"name": <one of the request's tools>, "arguments":
<an object valid for that tool's parameter schema>}`, in the training target's layout
(compact separators, the name first, argument keys sorted, enum values only from the enum,
and the arguments the intern learned to copy only from the prompt's spans: copying.py);
for a JSON response format, JSON valid for its schema. A small model then never names a
tool the request does not have, never invents a parameter, never leaves a brace open and
never repeats keys until the token cap: it spends its tokens on the values only. Free text
is not constrained.

The grammar is compiled by llguidance (a Rust library: a token mask costs tens of
microseconds) from a JSON schema built per request; `GrammarLogits` applies one matcher per
row of a batch inside `transformers`' `generate`.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

# The answer's layout in training (see prompting.answer_text): no whitespace at all.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}


def _sorted_object(schema: Any) -> Any:
    """`schema` with every object's properties in sorted order (the order they are written)."""
    if not isinstance(schema, dict):
        return schema
    result = dict(schema)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        result["properties"] = {key: _sorted_object(properties[key]) for key in sorted(properties)}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            result[key] = _sorted_object(schema[key])
    return result


def _arguments_schema(
    function: dict[str, Any],
    allowed: dict[str, list[str]] | None = None,
    defs: dict[str, Any] | None = None,
    every_parameter: bool = False,
) -> dict[str, Any]:
    parameters = function.get("parameters")
    if not isinstance(parameters, dict) or not parameters.get("properties"):
        return {"type": "object", "properties": {}, "additionalProperties": False}
    schema = _sorted_object(parameters)
    schema.setdefault("type", "object")
    # A parameter the tool does not declare is never right.
    schema["additionalProperties"] = False
    for name, values in (allowed or {}).items():
        declared = schema["properties"].get(name)
        if not isinstance(declared, dict) or not values or defs is None:
            continue
        if "enum" in declared:
            # Of the enum, the values the prompt writes; all of them when it writes none.
            written = set(values)
            narrowed = [value for value in declared["enum"] if value in written]
            if narrowed:
                schema["properties"][name] = {**declared, "enum": narrowed}
        else:
            schema["properties"][name] = {"$ref": f"#/$defs/{_define(defs, values)}"}
    if every_parameter:
        # Every parameter written, in order, null where the intern gives none.
        schema["properties"] = {
            name: {"anyOf": [declared, {"type": "null"}]}
            for name, declared in schema["properties"].items()
        }
        schema["required"] = list(schema["properties"])
    return schema


def _define(defs: dict[str, Any], values: list[str]) -> str:
    """The name of the definition of a string among `values` (one for each list: the copied
    arguments of a request share the prompt's spans, thousands of them, written once)."""
    for name, definition in defs.items():
        if definition["enum"] is values:
            return name
    name = f"copied{len(defs)}"
    defs[name] = {"type": "string", "enum": values}
    return name


def answer_schema(
    request: dict[str, Any],
    allowed: dict[str, dict[str, list[str]]] | None = None,
    every_parameter: bool = False,
) -> dict[str, Any] | None:
    """The JSON schema every valid answer to `request` follows, or None (free text).
    `allowed`: by tool and argument, the only values an argument may take (copying.py);
    `every_parameter`: the arguments write each parameter, null where absent
    (prompting.answer_text)."""
    tools = [tool.get("function", tool) for tool in request.get("tools") or []]
    tools = [tool for tool in tools if isinstance(tool, dict) and tool.get("name")]
    if tools:
        allowed = allowed or {}
        defs: dict[str, Any] = {}
        variants = [
            {
                "type": "object",
                "properties": {
                    "name": {"const": tool["name"]},
                    "arguments": _arguments_schema(
                        tool, allowed.get(tool["name"]), defs, every_parameter
                    ),
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for tool in tools
        ]
        schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
        return {**schema, "$defs": defs} if defs else schema
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else {"type": "object"}
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return None


@lru_cache(maxsize=512)
def _grammar(schema_json: str) -> str | None:
    """The compiled grammar text for a schema, or None when llguidance cannot take it (the
    answer is then generated unconstrained and the router's checks still apply)."""
    import llguidance

    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema_json, overrides={**JSON_OPTIONS, "lenient": True}
        )
    except ValueError as error:
        log.warning("answer schema not usable for constrained decoding: %s", error)
        return None
    problem = llguidance.LLMatcher.validate_grammar(grammar)
    if problem and not problem.startswith("WARNING"):
        log.warning("answer schema not usable for constrained decoding: %s", problem)
        return None
    return grammar


class GrammarLogits:
    """A `transformers` logits processor: row i of the batch may only continue its answer
    along request i's grammar. Rows without a grammar are left alone."""

    def __init__(self, ll_tokenizer: Any, grammars: list[str | None], prompt_width: int):
        import llguidance
        import llguidance.torch

        self._torch = llguidance.torch
        self.matchers = [
            llguidance.LLMatcher(ll_tokenizer, grammar, log_level=0) if grammar else None
            for grammar in grammars
        ]
        self.prompt_width = prompt_width
        self.eos = ll_tokenizer.eos_token
        bit = 1 << (self.eos % 32)
        # The mask is int32: bit 31 set is a negative number.
        self.eos_bit = bit - (1 << 32) if bit >= 1 << 31 else bit
        self.bitmask = self._torch.allocate_token_bitmask(len(grammars), ll_tokenizer.vocab_size)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        constrained = False
        for row, matcher in enumerate(self.matchers):
            if matcher is None:
                self.bitmask[row].fill_(-1)
                continue
            if input_ids.shape[1] > self.prompt_width and not matcher.is_stopped():
                matcher.consume_token(int(input_ids[row, -1]))
            if matcher.is_error() or matcher.is_stopped():
                # Finished (or, never expected, off the grammar): only the end may follow.
                self.bitmask[row].fill_(0)
                self.bitmask[row, self.eos // 32] = self.eos_bit
            else:
                self._torch.fill_next_token_bitmask(matcher, self.bitmask, row)
            constrained = True
        if constrained:
            self._torch.apply_token_bitmask_inplace(scores, self.bitmask)
        return scores


class AnswerGrammars:
    """Builds the logits processor for a batch of requests (one llguidance tokenizer, made
    once per intern)."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int):
        import llguidance.hf

        self.ll_tokenizer = llguidance.hf.from_tokenizer(
            hf_tokenizer, n_vocab=vocab_size, eos_token=hf_tokenizer.eos_token_id
        )

    def processor(
        self,
        requests: list[dict[str, Any]],
        prompt_width: int,
        allowed: list[dict[str, dict[str, list[str]]] | None] | None = None,
        every_parameter: bool = False,
    ) -> GrammarLogits | None:
        """`allowed`: per request, the values its copied arguments may take (copying.py);
        `every_parameter`: the answer layout the intern was trained on."""
        grammars = []
        for index, request in enumerate(requests):
            values = allowed[index] if allowed else None
            schema = answer_schema(request, values, every_parameter)
            if schema is None:
                grammars.append(None)
                continue
            text = json.dumps(schema, sort_keys=False)
            # A request's copied values are its own: its grammar is not worth caching.
            grammars.append(_grammar.__wrapped__(text) if values else _grammar(text))
        if not any(grammars):
            return None
        return GrammarLogits(self.ll_tokenizer, grammars, prompt_width)
