"""Triton's model control answers only the deploy controller: on the stack's Triton, a
load, unload or repository index without the control key (or with a wrong one) is refused
over gRPC and HTTP, inference and health need no key, and the deploy controller's client
(`interns.deployer.triton.TritonModels`) loads, counts and unloads with it."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton

from interns.common.intern_contract import INPUT_NAME, OUTPUT_NAME, config_json, encode_request
from interns.deployer.triton import CONTROL_HEADER, TritonError, TritonModels, control_headers

pytestmark = pytest.mark.integration

MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "REQUEST").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("RESPONSE", text)]))
        return responses
"""

REFUSED = "This protocol is restricted, expecting header 'triton-grpc-protocol-interns-control'"


def refusal(call) -> triton.InferenceServerException:
    with pytest.raises(triton.InferenceServerException) as refused:
        call()
    # Triton answers UNAVAILABLE, not PERMISSION_DENIED: the message tells them apart.
    assert refused.value.status() == "StatusCode.UNAVAILABLE"
    assert refused.value.message() == REFUSED
    return refused.value


def echo(client, name: str) -> bytes:
    request = triton.InferInput(INPUT_NAME, [1, 1], "BYTES")
    request.set_data_from_numpy(np.array([[encode_request({"city": "Lima"})]], dtype=object))
    result = client.infer(
        name, [request], outputs=[triton.InferRequestedOutput(OUTPUT_NAME)], client_timeout=60
    )
    return result.as_numpy(OUTPUT_NAME).reshape(-1)[0]


def test_model_control_needs_the_key_and_inference_does_not(stack_triton):
    settings, key, client = stack_triton.settings, stack_triton.key, stack_triton.client
    name = "guarded-echo"
    stack_triton.plant(name, MODEL)
    config = config_json(name, [1])
    wrong = control_headers("w" * len(key))

    refusal(lambda: client.load_model(name, config=config, client_timeout=60))
    refusal(lambda: client.load_model(name, headers=wrong, config=config, client_timeout=60))
    refusal(lambda: client.get_model_repository_index())
    refusal(lambda: client.get_inference_statistics(name))
    assert not client.is_model_ready(name)

    client.load_model(name, headers=control_headers(key), config=config, client_timeout=120)
    assert client.is_model_ready(name)
    assert echo(client, name) == encode_request({"city": "Lima"})

    refusal(lambda: client.unload_model(name, headers=wrong, client_timeout=60))
    assert client.is_model_ready(name)

    # HTTP: the same key, in the header `interns-control` itself; health stays open.
    http = f"http://{settings.host}:{settings.triton_http_port}"
    unload = f"{http}/v2/repository/models/{name}/unload"
    for headers in ({}, {CONTROL_HEADER: "w" * len(key)}):
        answer = httpx.post(unload, json={}, headers=headers, timeout=30)
        assert answer.status_code == 403, answer.text
        assert "This API is restricted" in answer.text
    assert httpx.get(f"{http}/v2/health/ready", timeout=10).status_code == 200
    assert client.is_model_ready(name)

    client.unload_model(name, headers=control_headers(key), client_timeout=60)
    index = client.get_model_repository_index(headers=control_headers(key), as_json=True)
    assert not any(
        m.get("name") == name and m.get("state") == "READY" for m in index.get("models", [])
    )


async def test_the_deploy_controller_s_client_sends_the_key(stack_triton):
    settings, key = stack_triton.settings, stack_triton.key
    name = "guarded-intern"
    stack_triton.plant(name, MODEL)
    address = f"{settings.host}:{settings.triton_grpc_port}"

    stranger = TritonModels(address)
    with pytest.raises(TritonError, match="restricted"):
        await stranger.serve_versions(name, {1}, timeout_s=60)
    with pytest.raises(TritonError, match="restricted"):
        await stranger.loaded_versions(name)
    await stranger.close()

    models = TritonModels(address, control_key=key)
    try:
        await models.serve_versions(name, {1}, timeout_s=120)
        assert await models.loaded_versions(name) == {1}
        # Warm-up is inference: open to all; its count is statistics: the key's.
        assert await models.answer(name, 1, {"city": "Lima"}, timeout_s=60) == {"city": "Lima"}
        assert await models.call_count(name, 1) == 1
        await models.serve_versions(name, set(), timeout_s=60)
        assert await models.loaded_versions(name) == set()
    finally:
        await models.close()
