"""Client of the expert: any OpenAI-compatible chat-completions endpoint.

Retries 429, 5xx and connection errors with exponential backoff (tenacity), within the
caller's deadline; other errors are the caller's to see.

Speaks HTTP with aiohttp: at the router's rates httpx spent about four times its CPU per
call (its connection pool rescans every connection on each request, encode/httpcore#1035).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
from pydantic import SecretStr
from pydantic_core import from_json, to_json
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# Backoff before the first retry; it doubles at each further one, up to the maximum.
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0
# An SSE line longer than this (a whole answer in one chunk) fails the stream; aiohttp
# pauses reading at twice this size.
READ_BUFFER_BYTES = 1 << 20


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


def _refusal(status: int, body: bytes) -> ExpertError:
    """The error for a non-200 answer, with the message of its OpenAI error body."""
    try:
        text = json.loads(body)["error"]["message"]
    except Exception:
        text = body[:500].decode(errors="replace")
    return ExpertError(_status_to_code(status), f"expert answered {status}: {text}", status)


def _retryable(error: BaseException) -> bool:
    if isinstance(error, ExpertError):
        return error.http_status in RETRYABLE_STATUS
    return isinstance(error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError) and (
        not isinstance(error, TimeoutError)
    )


class ExpertClient:
    """Calls the expert's `/chat/completions`, unary or streaming, over one pool of at most
    `max_connections` connections."""

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr = "",
        timeout_s: float = 60.0,
        max_attempts: int = 4,
        max_connections: int = 200,
    ):
        self._url = base_url.rstrip("/") + "/chat/completions"
        # Bodies are serialized here (pydantic's JSON writer, a fraction of the `json`
        # module's time) and sent as bytes: the content type goes with every request.
        self._headers = {"content-type": "application/json"}
        if isinstance(api_key, SecretStr):
            api_key = api_key.get_secret_value()
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the event loop running then.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                headers=self._headers,
                read_bufsize=READ_BUFFER_BYTES,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _retrying(self, budget: float, attempts: int, first_backoff_s: float) -> AsyncRetrying:
        """Retries with exponential backoff (`first_backoff_s`, then twice as long each
        time, plus jitter) for at most `attempts` attempts and `budget` seconds."""
        return AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(attempts) | stop_after_delay(budget),
            wait=wait_exponential_jitter(multiplier=first_backoff_s, max=MAX_BACKOFF_S, jitter=0.1),
            reraise=True,
        )

    def _budget(self, deadline_s: float | None) -> float:
        return min(self._timeout_s, deadline_s) if deadline_s else self._timeout_s

    async def _post(self, payload: bytes, budget: float, started: float) -> dict:
        remaining = max(budget - (time.monotonic() - started), 0.001)
        async with self._http().post(
            self._url, data=payload, timeout=aiohttp.ClientTimeout(total=remaining)
        ) as response:
            answer = await response.read()
        if response.status != 200:
            raise _refusal(response.status, answer)
        return from_json(answer)

    async def complete(self, body: dict[str, Any], deadline_s: float | None = None) -> dict:
        """The expert's answer to `body` (an OpenAI request body), as a response body."""
        budget = self._budget(deadline_s)
        started = time.monotonic()
        payload = to_json({**body, "stream": False})
        try:
            # Nearly every call is answered at the first attempt: tenacity's loop (a
            # sizeable share of the router's own CPU per call) starts only after a failure
            # worth retrying, with the attempts, time and backoff schedule that are left.
            try:
                return await self._post(payload, budget, started)
            except Exception as error:
                if not _retryable(error) or self._max_attempts < 2:
                    raise
                failure = error
            backoff = FIRST_BACKOFF_S + random.uniform(0, 0.1)
            if time.monotonic() - started + backoff >= budget:
                raise failure
            await asyncio.sleep(backoff)
            retrying = self._retrying(
                budget - (time.monotonic() - started), self._max_attempts - 1, 2 * FIRST_BACKOFF_S
            )
            async for attempt in retrying:
                with attempt:
                    return await self._post(payload, budget, started)
        except TimeoutError:
            raise ExpertError(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"expert did not answer within {budget:.1f}s"
            ) from None
        except aiohttp.ClientError as error:
            raise ExpertError(grpc.StatusCode.UNAVAILABLE, f"expert unreachable: {error}") from None
        raise AssertionError("unreachable")  # AsyncRetrying either returns or raises

    async def stream(
        self, body: dict[str, Any], deadline_s: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The expert's answer as OpenAI stream chunks. Only the connection is retried:
        once a chunk has been passed on, a failure ends the stream with an error."""
        budget = self._budget(deadline_s)
        request = to_json({**body, "stream": True, "stream_options": {"include_usage": True}})
        # Like a read timeout: the expert may take longer than `budget` in all, as long as
        # it never goes quiet for that long.
        timeout = aiohttp.ClientTimeout(total=None, connect=budget, sock_read=budget)
        http = self._http()
        try:
            async for attempt in self._retrying(budget, self._max_attempts, FIRST_BACKOFF_S):
                with attempt:
                    response = await http.post(self._url, data=request, timeout=timeout)
                    if response.status != 200:
                        async with response:
                            raise _refusal(response.status, await response.read())
            async with response:
                async for line in response.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[len(b"data:") :].strip()
                    if data == b"[DONE]":
                        return
                    yield from_json(data)
        except TimeoutError:
            raise ExpertError(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"expert did not answer within {budget:.1f}s"
            ) from None
        except aiohttp.ClientError as error:
            raise ExpertError(grpc.StatusCode.UNAVAILABLE, f"expert unreachable: {error}") from None
