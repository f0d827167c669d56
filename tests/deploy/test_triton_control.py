"""In Kubernetes, Triton's model control answers only the deploy controller: Triton
restricts its administrative protocols to the key TRITON_CONTROL_KEY of the Secret, with
the header and groups the controller's client uses, and no other pod gets that key."""

from __future__ import annotations

import pytest

from interns.deployer.triton import CONTROL_HEADER, CONTROL_PROTOCOLS
from tests.deploy.test_k8s_rules import OVERLAYS, render

KEY = "TRITON_CONTROL_KEY"


def containers(docs: list[dict]) -> dict[str, dict]:
    return {
        f"{doc['metadata']['name']}/{container['name']}": container
        for doc in docs
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_restricts_model_control_to_the_deploy_controller_s_key(overlay):
    docs = render(overlay)
    found = containers(docs)
    rule = f"{','.join(CONTROL_PROTOCOLS)}:{CONTROL_HEADER}=$({KEY})"
    triton = found["triton/triton"]
    assert f"--grpc-restricted-protocol={rule}" in triton["args"]
    assert f"--http-restricted-api={rule}" in triton["args"]

    # Never in a ConfigMap, which every service reads.
    assert not any(KEY in doc.get("data", {}) for doc in docs if doc["kind"] == "ConfigMap")
    holders = {
        name
        for name, container in found.items()
        if any(variable["name"] == KEY for variable in container.get("env", []))
    }
    assert holders == {"triton/triton", "deployer/deployer"}
    for name in holders:
        (variable,) = [v for v in found[name]["env"] if v["name"] == KEY]
        assert variable["valueFrom"]["secretKeyRef"] == {
            "name": "interns-secrets",
            "key": KEY,
            "optional": False,
        }
