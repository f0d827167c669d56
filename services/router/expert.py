"""Client of the expert: any OpenAI-compatible chat-completions endpoint.

Retries 429, 5xx and connection errors with exponential backoff (tenacity), within the
caller's deadline; other errors are the caller's to see.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class ExpertError(Exception):
    """The expert did not answer; `code` is the gRPC status to give the caller."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


def _status_to_code(status: int) -> grpc.StatusCode:
    if status == 400 or status == 422:
        return grpc.StatusCode.INVALID_ARGUMENT
    if status == 404:
        return grpc.StatusCode.NOT_FOUND
    if status in (401, 403):
        return grpc.StatusCode.FAILED_PRECONDITION
    if status == 429:
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.UNAVAILABLE


def _error_text(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except Exception:
        return response.text[:500]


def _retryable(error: BaseException) -> bool:
    if isinstance(error, ExpertError):
        return error.http_status in RETRYABLE_STATUS
    return isinstance(error, httpx.TransportError) and not isinstance(error, httpx.TimeoutException)


class ExpertClient:
    """Calls the expert's `/chat/completions`, unary or streaming."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        timeout_s: float = 60.0,
        max_attempts: int = 4,
        http: httpx.AsyncClient | None = None,
    ):
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = http or httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts

    async def aclose(self) -> None:
        await self._http.aclose()

    def _retrying(self, budget: float) -> AsyncRetrying:
        return AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self._max_attempts) | stop_after_delay(budget),
            wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1),
            reraise=True,
        )

    def _budget(self, deadline_s: float | None) -> float:
        return min(self._timeout_s, deadline_s) if deadline_s else self._timeout_s

    async def complete(self, body: dict[str, Any], deadline_s: float | None = None) -> dict:
        """The expert's answer to `body` (an OpenAI request body), as a response body."""
        budget = self._budget(deadline_s)
        started = time.monotonic()
        try:
            async for attempt in self._retrying(budget):
                with attempt:
                    remaining = max(budget - (time.monotonic() - started), 0.001)
                    response = await self._http.post(
                        "chat/completions", json={**body, "stream": False}, timeout=remaining
                    )
                    if response.status_code != 200:
                        raise ExpertError(
                            _status_to_code(response.status_code),
                            f"expert answered {response.status_code}: {_error_text(response)}",
                            response.status_code,
                        )
                    return response.json()
        except httpx.TimeoutException:
            raise ExpertError(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"expert did not answer within {budget:.1f}s"
            ) from None
        except httpx.TransportError as error:
            raise ExpertError(grpc.StatusCode.UNAVAILABLE, f"expert unreachable: {error}") from None
        raise AssertionError("unreachable")  # AsyncRetrying either returns or raises

    async def stream(
        self, body: dict[str, Any], deadline_s: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The expert's answer as OpenAI stream chunks. Only the connection is retried:
        once a chunk has been passed on, a failure ends the stream with an error."""
        budget = self._budget(deadline_s)
        request = {**body, "stream": True, "stream_options": {"include_usage": True}}
        try:
            async for attempt in self._retrying(budget):
                with attempt:
                    response = await self._http.send(
                        self._http.build_request(
                            "POST", "chat/completions", json=request, timeout=budget
                        ),
                        stream=True,
                    )
                    if response.status_code != 200:
                        await response.aread()
                        await response.aclose()
                        raise ExpertError(
                            _status_to_code(response.status_code),
                            f"expert answered {response.status_code}: {_error_text(response)}",
                            response.status_code,
                        )
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    yield json.loads(data)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise ExpertError(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"expert did not answer within {budget:.1f}s"
            ) from None
        except httpx.TransportError as error:
            raise ExpertError(grpc.StatusCode.UNAVAILABLE, f"expert unreachable: {error}") from None
