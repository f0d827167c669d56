"""S4: the base model chosen per task, and why; catalogs from YAML files."""

from __future__ import annotations

import pytest

from interns.trainer.catalog import DEFAULT_CATALOG, CatalogError, load_catalog, select_base
from interns.trainer.training import TrainConfig, recipe


def choose(output_kind="tool_call", **limits):
    limits = {"device": "cpu", "memory_budget_mb": 12000, **limits}
    return select_base(output_kind, DEFAULT_CATALOG, **limits)


def test_offline_on_cpu_the_pretrained_smollm2_is_chosen_fully_fine_tuned():
    selection = choose()
    assert selection.spec.name == "smollm2-135m-instruct"
    assert selection.spec.method == "full"
    assert selection.reasons[0].startswith("smollm2-135m-instruct: chosen")
    assert "smollm2-1.7b-instruct: needs a GPU worker" in selection.reasons
    assert "tiny: fits, but smaller than smollm2-135m-instruct" in selection.reasons
    assert (
        "smollm2-135m-instruct-lora: fits, but smollm2-135m-instruct trains it full"
        in selection.reasons
    )


def test_a_smaller_memory_budget_gets_the_same_base_with_lora():
    selection = choose(memory_budget_mb=6000)
    assert selection.spec.name == "smollm2-135m-instruct-lora"
    assert selection.spec.method == "lora"
    assert "smollm2-135m-instruct: needs 10000 MB > budget 6000 MB" in selection.reasons


def test_each_method_has_its_recipe_and_the_options_or_the_entry_override_it():
    full, lora = choose().spec, choose(memory_budget_mb=6000).spec
    assert recipe(full, TrainConfig()) == (3.0, 1e-4)
    assert recipe(lora, TrainConfig()) == (4.0, 1e-3)
    assert recipe(full, TrainConfig(epochs=1, learning_rate=5e-5)) == (1, 5e-5)
    assert recipe(choose(requested="tiny").spec, TrainConfig()) == (4.0, 1e-3)


def test_a_gpu_worker_with_memory_gets_the_largest_base():
    assert choose(device="gpu", memory_budget_mb=24000).spec.name == "smollm2-1.7b-instruct"
    assert choose(device="gpu", memory_budget_mb=6000).spec.name == "qwen2.5-0.5b-instruct"


def test_a_long_context_task_gets_a_base_whose_context_fits():
    selection = choose(device="gpu", memory_budget_mb=24000, context_needed=20000)
    assert selection.spec.name == "qwen2.5-0.5b-instruct"
    assert "smollm2-1.7b-instruct: context 8192 < 20000 tokens needed" in selection.reasons


def test_a_small_memory_budget_falls_back_to_the_tiny_model():
    assert choose(memory_budget_mb=1000).spec.name == "tiny"


def test_no_fitting_base_is_an_error_that_gives_every_reason():
    with pytest.raises(CatalogError, match="license Apache-2.0 is not allowed"):
        choose(allowed_licenses=["MIT"])


def test_a_requested_base_is_taken_when_it_fits_and_refused_when_not():
    assert choose(requested="tiny").reasons == ["tiny: requested"]
    with pytest.raises(CatalogError, match="needs a GPU worker"):
        choose(requested="qwen2.5-0.5b-instruct")
    with pytest.raises(CatalogError, match="not in the catalog"):
        choose(requested="gpt-5")


def test_a_yaml_catalog_replaces_the_default(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(
        """
models:
  - name: phi-mini
    source: /models/phi
    method: lora
    license: MIT
    params_millions: 3800
    context_length: 4096
    memory_mb: 20000
    device: gpu
    output_kinds: [text]
"""
    )
    (spec,) = load_catalog(path)
    assert (spec.name, spec.device, spec.output_kinds) == ("phi-mini", "gpu", ("text",))
    with pytest.raises(CatalogError, match="does not produce tool_call"):
        select_base("tool_call", [spec], device="gpu", memory_budget_mb=24000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: []", "non-empty list under 'models'"),
        ("models:\n  - name: x\n    source: y\n    method: qlora", r"models\[0\]"),
        ("models: [", "catalog"),
    ],
)
def test_a_bad_catalog_file_names_the_problem(tmp_path, text, message):
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError, match=message):
        load_catalog(path)
