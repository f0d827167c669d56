"""The contract between the router and an intern served by Triton.

An intern is a Triton model with one BYTES input `REQUEST` (the OpenAI chat-completions
request body as JSON) and one BYTES output `RESPONSE` (the assistant message as JSON:
`{"content": ..., "tool_calls": [...]}`), each of shape [batch, 1]. Any model honouring
this (a fine-tuned SLM behind the python backend, or anything else) can be routed to.
"""

from __future__ import annotations

import json
from typing import Any

INPUT_NAME = "REQUEST"
OUTPUT_NAME = "RESPONSE"


def config_pbtxt(name: str, max_batch_size: int = 8, instances: int = 1) -> str:
    """The Triton `config.pbtxt` of an intern model served by the python backend on CPU."""
    return f"""name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [{{ name: "{INPUT_NAME}", data_type: TYPE_STRING, dims: [1] }}]
output [{{ name: "{OUTPUT_NAME}", data_type: TYPE_STRING, dims: [1] }}]
dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
instance_group [{{ kind: KIND_CPU, count: {instances} }}]
"""


def config_json(name: str, versions: list[int], max_batch_size: int = 8, instances: int = 1) -> str:
    """The same config as JSON, serving exactly `versions` (Triton's `specific` version
    policy): what a deploy controller passes to Triton's load call, so that an old version
    stays loaded beside a new one until it is drained."""
    return json.dumps(
        {
            "name": name,
            "backend": "python",
            "max_batch_size": max_batch_size,
            "input": [{"name": INPUT_NAME, "data_type": "TYPE_STRING", "dims": [1]}],
            "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_STRING", "dims": [1]}],
            "dynamic_batching": {"max_queue_delay_microseconds": 2000},
            "instance_group": [{"kind": "KIND_CPU", "count": instances}],
            "version_policy": {"specific": {"versions": versions}},
        }
    )


def encode_request(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def decode_response(raw: bytes) -> dict[str, Any]:
    """The intern's assistant message; raises ValueError when it is not a JSON object."""
    message = json.loads(raw)
    if not isinstance(message, dict):
        raise ValueError("the intern's RESPONSE is not a JSON object")
    return message
