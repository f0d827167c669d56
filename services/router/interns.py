"""Calling interns on Triton over gRPC (asyncio), within a deadline, behind a circuit
breaker per model version: a model that keeps failing is left alone for a while."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from tritonclient.utils import InferenceServerException

from interns.common.intern_contract import (
    INPUT_NAME,
    OUTPUT_NAME,
    decode_response,
    encode_request,
)
from interns.router.checks import CheckFailed

Check = Callable[[dict[str, Any]], None]


class InternFailed(Exception):
    """The intern gave no usable answer; the message says why (it goes in the trace)."""


class InternDeferred(InternFailed):
    """The intern was not confident enough in its answer (below its calibrated threshold):
    the expert answers. Normal behaviour, not a fault: the breaker does not count it."""


class InternClient:
    def __init__(
        self,
        triton_addr: str,
        breaker_threshold: int = 5,
        breaker_ttl_s: float = 30,
        client_options: dict[str, Any] | None = None,
    ):
        """`client_options`: TLS to Triton (`interns.common.tls.triton_client_options`)."""
        self._client = triton.InferenceServerClient(triton_addr, **(client_options or {}))
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=breaker_threshold, default_ttl=breaker_ttl_s
        )

    async def close(self) -> None:
        await self._client.close()

    async def answer(
        self, model: str, version: int, body: dict[str, Any], timeout_s: float, check: Check
    ) -> dict[str, Any]:
        """The intern's assistant message for `body`, already checked by `check`. Every
        failure (Triton down or slow, bad output, failed check) counts against the model's
        breaker and raises InternFailed."""
        breaker = await self._breakers.get_breaker(f"{model}:{version}")
        try:
            async with breaker:
                message = await self._infer(model, version, body, timeout_s)
                if not message.get("defer"):
                    check(message)
        except OpenedState:
            raise InternFailed(f"circuit open for {model} v{version}") from None
        except InferenceServerException as error:
            raise InternFailed(f"triton: {error.message()}") from None
        except CheckFailed as error:
            raise InternFailed(f"check failed: {error}") from None
        except ValueError as error:
            raise InternFailed(f"unreadable output: {error}") from None
        if message.get("defer"):
            raise InternDeferred(f"intern deferred (confidence {message.get('confidence')})")
        return message

    async def _infer(
        self, model: str, version: int, body: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]:
        request = triton.InferInput(INPUT_NAME, [1, 1], "BYTES")
        request.set_data_from_numpy(np.array([[encode_request(body)]], dtype=object))
        result = await self._client.infer(
            model,
            [request],
            model_version=str(version) if version else "",
            outputs=[triton.InferRequestedOutput(OUTPUT_NAME)],
            client_timeout=timeout_s,
        )
        raw = result.as_numpy(OUTPUT_NAME)
        if raw is None or raw.size == 0:
            raise ValueError("no RESPONSE tensor")
        return decode_response(raw.reshape(-1)[0])
