"""Triton, through its model control API (explicit mode): load and unload single versions
of an intern, warm a version with real calls, read its call count.

Triton loads the versions a model's `version_policy` names. Every load passes the whole
config (`interns.common.intern_contract.config_json`) with `specific` versions: the new
one and those still serving or draining. A reload keeps the versions that stay loaded
serving, so no call fails while a version comes or goes.

Triton restricts its administrative protocols (`CONTROL_PROTOCOLS`: model control among
them) to callers that send the control key (TRITON_CONTROL_KEY) in the `CONTROL_HEADER`
header; inference and health stay open. This client sends it on every restricted call.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException

from interns.common.intern_contract import (
    INPUT_NAME,
    OUTPUT_NAME,
    config_json,
    decode_response,
    encode_request,
)

CONTROL_HEADER = "interns-control"
"""The header Triton checks on its restricted protocols (`--grpc-restricted-protocol`,
`--http-restricted-api`): HTTP callers send it as is, gRPC callers as metadata
`triton-grpc-protocol-<CONTROL_HEADER>` (Triton adds the prefix)."""

CONTROL_PROTOCOLS = (
    "model-repository",
    "model-config",
    "shared-memory",
    "statistics",
    "trace",
    "logging",
)
"""Triton's administrative protocol groups, reserved to the deploy controller; only
`model-repository` (load, unload, index) and `statistics` are used, the others nobody
calls, so no caller without the key may reconfigure Triton either."""

# Header-safe and free of the flag's separators (`:`, `=`, `,`).
_CONTROL_KEY = re.compile(r"[A-Za-z0-9._~-]{16,}")


def check_control_key(key: str) -> str:
    """`key` when it can serve as the control key (empty: none); raises ValueError."""
    if key and not _CONTROL_KEY.fullmatch(key):
        raise ValueError(
            "TRITON_CONTROL_KEY needs at least 16 characters among A-Z a-z 0-9 . _ ~ -"
        )
    return key


def control_headers(key: str) -> dict[str, str]:
    """gRPC metadata that opens Triton's restricted protocols (none without a key, for a
    Triton started without restrictions)."""
    return {f"triton-grpc-protocol-{CONTROL_HEADER}": key} if key else {}


class TritonError(Exception):
    """Triton refused or failed a model operation; the message says which and why."""


class TritonModels:
    def __init__(
        self,
        address: str,
        max_batch_size: int = 8,
        instances: int = 1,
        client_options: dict[str, Any] | None = None,
        control_key: str = "",
    ):
        """`client_options`: TLS of the connection (`interns.common.tls.triton_client_options`);
        `control_key`: the key of Triton's restricted protocols (TRITON_CONTROL_KEY)."""
        self._client = triton.InferenceServerClient(address, **(client_options or {}))
        self._headers = control_headers(control_key)
        self._max_batch_size = max_batch_size
        self._instances = instances
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self._client.close()

    async def loaded_versions(self, model: str) -> set[int]:
        """The versions of `model` Triton serves now; raises TritonError when Triton refuses
        (a missing or wrong control key) or is away."""
        try:
            index = await self._client.get_model_repository_index(
                headers=self._headers, as_json=True
            )
        except InferenceServerException as error:
            raise TritonError(f"{model}: repository index: {error.message()}") from None
        return {
            int(entry["version"])
            for entry in index.get("models", [])
            if entry.get("name") == model and entry.get("state") == "READY" and entry.get("version")
        }

    async def serve_versions(self, model: str, versions: set[int], timeout_s: float) -> None:
        """Makes Triton serve exactly `versions` of `model` (none: unload the model)."""
        async with self._lock:
            try:
                if not versions:
                    await self._client.unload_model(
                        model, headers=self._headers, client_timeout=timeout_s
                    )
                    return
                config = config_json(model, sorted(versions), self._max_batch_size, self._instances)
                await self._client.load_model(
                    model, headers=self._headers, config=config, client_timeout=timeout_s
                )
            except InferenceServerException as error:
                wanted = sorted(versions)
                raise TritonError(f"{model} versions {wanted}: {error.message()}") from None

    async def answer(
        self, model: str, version: int, body: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]:
        """One call to `version` of `model` (warm-up); raises TritonError on failure."""
        request = triton.InferInput(INPUT_NAME, [1, 1], "BYTES")
        request.set_data_from_numpy(np.array([[encode_request(body)]], dtype=object))
        try:
            result = await self._client.infer(
                model,
                [request],
                model_version=str(version),
                outputs=[triton.InferRequestedOutput(OUTPUT_NAME)],
                client_timeout=timeout_s,
            )
            return decode_response(result.as_numpy(OUTPUT_NAME).reshape(-1)[0])
        except InferenceServerException as error:
            raise TritonError(f"{model} v{version}: {error.message()}") from None
        except ValueError as error:
            raise TritonError(f"{model} v{version}: unreadable answer: {error}") from None

    async def call_count(self, model: str, version: int) -> int:
        """Calls Triton finished for this version (successes and failures); 0 when the
        version is not loaded."""
        try:
            stats = await self._client.get_inference_statistics(
                model, model_version=str(version), headers=self._headers, as_json=True
            )
        except InferenceServerException:
            return 0
        total = 0
        for entry in stats.get("model_stats", []):
            inference = entry.get("inference_stats", {})
            for key in ("success", "fail"):
                total += int(inference.get(key, {}).get("count", 0))
        return total
