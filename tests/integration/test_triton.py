"""The stack's Triton serves python-backend models on CPU with explicit model control:
load, infer, unload, as the trainer and the deploy controller will."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton

from interns.deployer.triton import control_headers

pytestmark = pytest.mark.integration

CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 8
input [{ name: "TEXT", data_type: TYPE_STRING, dims: [1] }]
output [{ name: "TEXT_OUT", data_type: TYPE_STRING, dims: [1] }]
instance_group [{ kind: KIND_CPU, count: 1 }]
"""

MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            upper = np.array([[t[0].upper()] for t in text], dtype=object)
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("TEXT_OUT", upper)])
            )
        return responses
"""


def test_a_python_backend_model_loads_answers_and_unloads(stack_triton):
    stack_triton.plant("echo", MODEL, CONFIG)

    client = stack_triton.client
    assert not client.is_model_ready("echo")
    key = control_headers(stack_triton.key)
    client.load_model("echo", headers=key, client_timeout=120)
    assert client.is_model_ready("echo")

    text = triton.InferInput("TEXT", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[b"book a table"]], dtype=object))
    result = client.infer(
        "echo", [text], outputs=[triton.InferRequestedOutput("TEXT_OUT")], client_timeout=30
    )
    assert result.as_numpy("TEXT_OUT")[0][0] == b"BOOK A TABLE"

    client.unload_model("echo", headers=key, client_timeout=60)
    assert not client.is_model_ready("echo")
