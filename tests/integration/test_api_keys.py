"""API keys on the real local stack: `up` leaves a working local key; a key made through
the control API (or the CLI) authenticates its tenant at the gateway until it is revoked,
and a revoked key is refused within seconds."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import time

import grpc
import pytest

from interns.api.v1 import chat_pb2, control_pb2, control_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from interns.common.chat import input_from_openai
from tests.conftest import openai_log_line
from tests.integration.test_local_stack import wait_for_trace

pytestmark = pytest.mark.integration


def weather_call(session: str) -> gateway_pb2.CreateChatCompletionRequest:
    return gateway_pb2.CreateChatCompletionRequest(
        metadata=chat_pb2.RequestMetadata(agent_id="key-test", session_id=session),
        input=input_from_openai(openai_log_line("Lima", session)["request"]),
    )


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def test_up_leaves_a_local_key_readable_by_its_owner_only(stack, api_key):
    settings, _ = stack
    assert api_key.startswith("ik_")
    assert stat.S_IMODE(settings.api_key_file.stat().st_mode) == 0o600


async def test_a_call_without_a_key_is_unauthenticated(stack):
    settings, _ = stack
    async with grpc.aio.insecure_channel(f"{settings.host}:{settings.gateway_port}") as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateChatCompletion(weather_call("no-key"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer <key>" in refused.value.details()


async def test_a_key_from_the_control_api_works_until_revoked(stack):
    settings, _ = stack
    async with (
        grpc.aio.insecure_channel(f"{settings.host}:{settings.trainer_port}") as control_channel,
        grpc.aio.insecure_channel(f"{settings.host}:{settings.gateway_port}") as gateway_channel,
    ):
        control = control_pb2_grpc.ControlServiceStub(control_channel)
        gateway = gateway_pb2_grpc.GatewayServiceStub(gateway_channel)
        created = await control.CreateApiKey(
            control_pb2.CreateApiKeyRequest(tenant_id="acme-it", name="integration"), timeout=10
        )
        key = created.key
        listed = await control.ListApiKeys(
            control_pb2.ListApiKeysRequest(tenant_id="acme-it"), timeout=10
        )
        assert [k.key_id for k in listed.api_keys] == [created.api_key.key_id]
        assert listed.api_keys[0].prefix == key[:12] and key not in str(listed)

        answered = await gateway.CreateChatCompletion(
            weather_call("acme-1"), metadata=bearer(key), timeout=20
        )
        stored = await asyncio.to_thread(wait_for_trace, settings, answered.trace_id)
        assert stored is not None and stored.tenant_id == "acme-it"

        await control.RevokeApiKey(
            control_pb2.RevokeApiKeyRequest(key_id=created.api_key.key_id), timeout=10
        )
        revoked_at = time.monotonic()
        code = grpc.StatusCode.OK
        while code != grpc.StatusCode.UNAUTHENTICATED and time.monotonic() - revoked_at < 15:
            try:
                await gateway.CreateChatCompletion(
                    weather_call("acme-2"), metadata=bearer(key), timeout=20
                )
            except grpc.aio.AioRpcError as error:
                code = error.code()
            await asyncio.sleep(0.25)
        refused_after = time.monotonic() - revoked_at
    assert code == grpc.StatusCode.UNAUTHENTICATED
    # The gateway remembers a checked key for GATEWAY_API_KEY_CACHE_S (5 s by default).
    assert refused_after < 8, refused_after


def interns_cli(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "interns.cli", "keys", *args],
        env={
            **os.environ,
            "COLUMNS": "200",
            "TRAINER_ADDR": f"{settings.host}:{settings.trainer_port}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_creates_lists_and_revokes_keys(stack):
    settings, _ = stack
    created = interns_cli(settings, "create", "--tenant", "cli-team", "--name", "laptop")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ik_")

    listed = interns_cli(settings, "list", "--tenant", "cli-team")
    assert listed.returncode == 0, listed.stderr
    assert "laptop" in listed.stdout and key[:12] in listed.stdout
    assert key not in listed.stdout

    with grpc.insecure_channel(f"{settings.host}:{settings.gateway_port}") as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        stub.CreateChatCompletion(weather_call("cli-1"), metadata=bearer(key), timeout=20)

    key_id = next(word for word in listed.stdout.split() if word.startswith("key_"))
    revoked = interns_cli(settings, "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert f"key {key_id} is revoked" in revoked.stdout

    unknown = interns_cli(settings, "revoke", "key_nope")
    assert unknown.returncode == 1
    assert "key_id: no API key 'key_nope'" in unknown.stderr
