"""The stack's Triton serves python-backend models on CPU with explicit model control:
load, infer, unload, as the trainer and the deploy controller will."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import tritonclient.grpc as triton

from interns.deployer.triton import control_headers
from interns.stack.components import triton_control_key

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


def test_a_python_backend_model_loads_answers_and_unloads(stack):
    settings, _ = stack
    repository = settings.state_dir.resolve() / "model-repository"
    (repository / "echo" / "1").mkdir(parents=True, exist_ok=True)
    (repository / "echo" / "config.pbtxt").write_text(CONFIG)
    (repository / "echo" / "1" / "model.py").write_text(textwrap.dedent(MODEL))

    client = triton.InferenceServerClient(f"{settings.host}:{settings.triton_grpc_port}")
    assert not client.is_model_ready("echo")
    key = control_headers(triton_control_key(settings))
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
