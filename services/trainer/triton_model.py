"""The Triton `model.py` of every intern (python backend), copied as is into each exported
version folder beside the trained model (`<version>/model/`).

A thin adapter over `interns.trainer.runtime.InternRuntime`: `initialize` loads the model,
`execute` answers a (dynamic) batch through the intern contract, REQUEST (chat request
JSON) in, RESPONSE (assistant message JSON) out. A request that cannot be answered gets a
Triton error of its own; the other requests of the batch are still answered. The batching
logic is the plain function `answer_batch`, tested without Triton.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from interns.common.intern_contract import INPUT_NAME, OUTPUT_NAME

Answer = Callable[[list[dict]], list[dict]]


def _answer_rows(answer: Answer, bodies: list[dict]) -> list[bytes]:
    messages = answer(bodies)
    if len(messages) != len(bodies):
        raise RuntimeError(f"the intern gave {len(messages)} answers to {len(bodies)} requests")
    return [json.dumps(message, separators=(",", ":")).encode() for message in messages]


def answer_batch(answer: Answer, batch: list[list[bytes]]) -> list[list[bytes] | Exception]:
    """One result per request of `batch` (each a list of REQUEST rows): its RESPONSE rows,
    or the error that request gets. Every valid row is answered in one `answer` call; when
    that call fails, each request is tried on its own, so one bad request fails alone."""
    bodies: list[list[dict] | Exception] = []
    for rows in batch:
        try:
            decoded = [json.loads(row) for row in rows]
            if not all(isinstance(body, dict) for body in decoded):
                raise ValueError("REQUEST must be a JSON object")
            bodies.append(decoded)
        except (ValueError, UnicodeDecodeError) as error:
            bodies.append(ValueError(f"bad REQUEST: {error}"))
    valid = [b for b in bodies if not isinstance(b, Exception)]
    try:
        flat = _answer_rows(answer, [body for rows in valid for body in rows])
    except Exception:
        flat = None
    results: list[list[bytes] | Exception] = []
    for rows in bodies:
        if isinstance(rows, Exception):
            results.append(rows)
        elif flat is not None:
            results.append(flat[: len(rows)])
            flat = flat[len(rows) :]
        else:
            try:
                results.append(_answer_rows(answer, rows))
            except Exception as error:
                results.append(RuntimeError(f"the intern failed: {error}"))
    return results


class TritonPythonModel:
    def initialize(self, args):
        import locale

        # Triton's stub starts Python isolated, in the C locale: files opened without an
        # encoding would be read as ASCII (torch's inductor fails on its UTF-8 templates at
        # the first generation).
        with contextlib.suppress(locale.Error):
            locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
        from interns.trainer.runtime import InternRuntime

        self.runtime = InternRuntime.load(Path(__file__).resolve().parent / "model")

    def execute(self, requests):
        import numpy as np
        import triton_python_backend_utils as pb_utils

        batch = [
            [row[0] for row in pb_utils.get_input_tensor_by_name(r, INPUT_NAME).as_numpy()]
            for r in requests
        ]
        responses = []
        for result in answer_batch(self.runtime.answer, batch):
            if isinstance(result, Exception):
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(str(result))
                    )
                )
            else:
                tensor = np.array([[row] for row in result], dtype=object)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(OUTPUT_NAME, tensor)]))
        return responses
