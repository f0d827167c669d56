"""S4, model selection: the catalog of base models and the choice of one per task.

The default catalog works offline on CPU (SmolLM2-135M-Instruct from its wheel) and lists
larger bases for GPU workers; a YAML file (TRAINER_CATALOG) replaces it, so a site scales to
bigger models by configuration alone:

    models:
      - name: smollm2-360m-instruct
        source: HuggingFaceTB/SmolLM2-360M-Instruct   # HF id, local path, wheel:<gguf>, config:tiny
        method: lora                                  # lora or full
        license: Apache-2.0
        params_millions: 362
        context_length: 8192
        memory_mb: 4000                               # training memory estimate
        device: gpu                                   # cpu or gpu
        output_kinds: [tool_call, json, text]

`select_base` keeps the entries that fit the task (output kind, context length, license,
memory budget, device) and takes the largest (of one base, fully fine-tuned rather than
with LoRA); every entry it passes over gets a reason, recorded on the training job. An
entry may carry its own recipe (`epochs`, `learning_rate`) where the method's does not
suit it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from interns.trainer.models import BaseModelSpec

# Fully fine-tuned: on SGD's largest task exact match 0.84 against 0.69 with LoRA (see
# training.METHOD_RECIPES). Peak resident memory measured at 9.5 GB (512 tokens, batch 8):
# weights, gradients and Adam's moments in float32, and the logits of the batch.
SMOLLM2_135M = BaseModelSpec(
    name="smollm2-135m-instruct",
    source="wheel:SmolLM2-135M-Instruct.Q4_1.gguf",
    method="full",
    license="Apache-2.0",
    params_millions=134.5,
    context_length=8192,
    memory_mb=10000,
    device="cpu",
)

DEFAULT_CATALOG: tuple[BaseModelSpec, ...] = (
    SMOLLM2_135M,
    # The same base with LoRA on its top layers, for a smaller memory budget and for short
    # runs (a step takes 8 s on 2 cores instead of 20).
    replace(SMOLLM2_135M, name="smollm2-135m-instruct-lora", method="lora", memory_mb=2500),
    BaseModelSpec(
        name="smollm2-360m-instruct",
        source="HuggingFaceTB/SmolLM2-360M-Instruct",
        method="lora",
        license="Apache-2.0",
        params_millions=362,
        context_length=8192,
        memory_mb=4000,
        device="gpu",
    ),
    BaseModelSpec(
        name="qwen2.5-0.5b-instruct",
        source="Qwen/Qwen2.5-0.5B-Instruct",
        method="lora",
        license="Apache-2.0",
        params_millions=494,
        context_length=32768,
        memory_mb=5000,
        device="gpu",
    ),
    BaseModelSpec(
        name="smollm2-1.7b-instruct",
        source="HuggingFaceTB/SmolLM2-1.7B-Instruct",
        method="lora",
        license="Apache-2.0",
        params_millions=1711,
        context_length=8192,
        memory_mb=14000,
        device="gpu",
    ),
    # Random init from a config: learns formats, copies values poorly. For tests.
    BaseModelSpec(
        name="tiny",
        source="config:tiny",
        method="full",
        license="Apache-2.0",
        params_millions=4,
        context_length=512,
        memory_mb=300,
        device="cpu",
        # Random weights learn from scratch: a higher rate than a pretrained base's.
        epochs=4.0,
        learning_rate=1e-3,
    ),
)


class CatalogError(ValueError):
    """A catalog file that cannot be read, or a base model that is not in the catalog."""


_SPECS = TypeAdapter(list[BaseModelSpec])


def load_catalog(path: str | Path | None = None) -> tuple[BaseModelSpec, ...]:
    """The catalog in the YAML file `path`, or the default one when `path` is empty."""
    if not path:
        return DEFAULT_CATALOG
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CatalogError(f"catalog {path}: {error}") from None
    entries = document.get("models") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CatalogError(f"catalog {path}: expected a non-empty list under 'models'")
    try:
        specs = _SPECS.validate_python(entries)
    except ValidationError as error:
        problems = "; ".join(
            f"models[{p['loc'][0]}].{'.'.join(str(x) for x in p['loc'][1:])}: {p['msg']}"
            for p in error.errors()
        )
        raise CatalogError(f"catalog {path}: {problems}") from None
    names = [spec.name for spec in specs]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise CatalogError(f"catalog {path}: names used twice: {', '.join(duplicates)}")
    return tuple(specs)


def find_spec(catalog: Iterable[BaseModelSpec], name: str) -> BaseModelSpec:
    for spec in catalog:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in catalog)
    raise CatalogError(f"base model {name!r} is not in the catalog (known: {known})")


@dataclass(frozen=True)
class Selection:
    spec: BaseModelSpec
    reasons: list[str] = field(default_factory=list)


def _misfit(
    spec: BaseModelSpec,
    output_kind: str,
    *,
    device: str,
    memory_budget_mb: int,
    allowed_licenses: Sequence[str],
    context_needed: int,
) -> str | None:
    """Why `spec` cannot serve the task, or None when it can."""
    if output_kind not in spec.output_kinds:
        return f"does not produce {output_kind} outputs"
    if spec.context_length < context_needed:
        return f"context {spec.context_length} < {context_needed} tokens needed"
    if allowed_licenses and spec.license not in allowed_licenses:
        return f"license {spec.license} is not allowed"
    if spec.device == "gpu" and device != "gpu":
        return "needs a GPU worker"
    if spec.memory_mb > memory_budget_mb:
        return f"needs {spec.memory_mb} MB > budget {memory_budget_mb} MB"
    return None


def select_base(
    output_kind: str,
    catalog: Sequence[BaseModelSpec],
    *,
    device: str,
    memory_budget_mb: int,
    allowed_licenses: Sequence[str] = (),
    context_needed: int = 0,
    requested: str = "",
) -> Selection:
    """The base model for a task whose answers are `output_kind`: the largest catalog entry
    that fits (on a GPU worker CPU entries fit too), or `requested` when it fits. Raises
    CatalogError, with every entry's reason, when none does."""
    limits = dict(
        device=device,
        memory_budget_mb=memory_budget_mb,
        allowed_licenses=allowed_licenses,
        context_needed=context_needed,
    )
    if requested:
        spec = find_spec(catalog, requested)
        if misfit := _misfit(spec, output_kind, **limits):
            raise CatalogError(f"requested base model {requested}: {misfit}")
        return Selection(spec, [f"{spec.name}: requested"])
    fitting, reasons = [], []
    for spec in catalog:
        if misfit := _misfit(spec, output_kind, **limits):
            reasons.append(f"{spec.name}: {misfit}")
        else:
            fitting.append(spec)
    if not fitting:
        raise CatalogError(f"no base model fits a {output_kind} task: " + "; ".join(reasons))
    # Of one base, full fine-tuning when it fits: it learns more than adapters.
    chosen = max(
        fitting,
        key=lambda spec: (spec.device == device, spec.params_millions, spec.method == "full"),
    )
    for spec in fitting:
        if spec is chosen:
            continue
        if spec.params_millions < chosen.params_millions:
            reasons.append(f"{spec.name}: fits, but smaller than {chosen.name}")
        else:
            reasons.append(f"{spec.name}: fits, but {chosen.name} trains it {chosen.method}")
    reasons.insert(
        0,
        f"{chosen.name}: chosen, the largest that fits ({chosen.params_millions:g}M params,"
        f" {chosen.method}, {chosen.memory_mb} MB <= {memory_budget_mb} MB, context"
        f" {chosen.context_length} >= {context_needed}, {chosen.license}, {chosen.device})",
    )
    return Selection(chosen, reasons)
