"""Fine-tuning one intern: transformers' Trainer, PEFT LoRA or full fine-tuning.

The loss is on the answer only (the prompt's labels are masked). The training split may
first get value-swapped copies of its examples (`augment_copies`, see augment.py).
Checkpoints go to `workdir/checkpoints` every `checkpoint_every` steps; a job started again
on the same workdir resumes from the last one, so a killed worker loses at most that many
steps. The trained model lands in `workdir/model` with an `intern.json` that says how to load
and prompt it (see `interns.trainer.runtime`).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from interns.common.answers import tool_calls
from interns.trainer.augment import augment
from interns.trainer.copying import copied_arguments
from interns.trainer.examples import Example
from interns.trainer.models import BaseModelSpec, load_base
from interns.trainer.prompting import PromptOptions, answer_text, encode, prompt_budget

INTERN_FILE = "intern.json"
# In intern.json: the confidence below which the intern defers to the expert (calibrated
# on held-out answers by the evaluation; absent: it never defers).
DEFER_KEY = "defer_below"
# In intern.json: by tool, the arguments whose values the intern copies from its prompt
# (copying.py; absent or empty: every value is free).
COPIED_KEY = "copied_arguments"
FORMAT_VERSION = 1
IGNORED = -100
# A fully fine-tuned intern is written in float16: half the bytes of float32 on disk, in
# the model repository and in every copy to Triton (SmolLM2-135M: 270 MB instead of 540),
# and the runtime reads it back as float32. float16 rather than bfloat16: three more bits
# of mantissa, and trained weights are far inside its range.
SAVED_DTYPE = "float16"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class TrainConfig:
    # None: the base model's recipe (`recipe`).
    epochs: float | None = None
    max_steps: int | None = None
    batch_size: int = 8
    learning_rate: float | None = None
    max_length: int = 384
    answer_tokens: int = 96
    checkpoint_every: int = 20
    seed: int = 0
    lora_rank: int = 16
    # LoRA on the top layers only: the frozen lower layers need no backward pass, which
    # is most of the cost on a CPU. None trains adapters in every layer.
    trainable_layers: int | None = None
    # bfloat16 autocast where the hardware does it natively (a GPU, or a CPU with AVX512-
    # BF16 or AMX): measured 1.7x faster per step on this project's 2-core CPU machines.
    bf16: bool | None = None
    # List the tools in the prompt (see prompting.system_prompt and TrainingOptions).
    tool_lines: bool = False
    # Value-swapped copies of each training example (see augment.py and TrainingOptions).
    augment_copies: int = 0
    # Times and counts in the conversation written as arguments write them (normalize.py).
    normalize_values: bool = False
    # Over budget, drop the tool results before the oldest turns (prompting.encode).
    tool_results_first: bool = False
    # Over budget, the agent's earlier tool calls go last (prompting.encode).
    keep_tool_calls: bool = False
    # Arguments copied from the prompt in at least this share of the training examples
    # may take only the prompt's spans as values (copying.py); None: every value is free.
    copy_min_share: float | None = None
    # Batches of examples of like length (transformers' length-grouped sampler: shuffled,
    # then sorted within windows of up to 50 batches), so less of each batch is padding.
    group_by_length: bool = False
    # The answer writes every parameter of its tool, null where absent (prompting.answer_text).
    every_parameter: bool = False

    @property
    def prompt(self) -> PromptOptions:
        """How this run renders a request as a prompt (recorded in intern.json)."""
        return PromptOptions(
            self.tool_lines,
            self.normalize_values,
            self.tool_results_first,
            self.keep_tool_calls,
            self.every_parameter,
        )


# Passes over the training split and learning rate by method, where neither the training
# options nor the catalog entry set them. Measured on SGD (SmolLM2-135M, CPU, same splits
# and prompts), LoRA r=16 on the top 8 layers, 4 epochs at 1e-3, against full fine-tuning,
# 3 epochs at 1e-4: task-201e81267a49 exact match 0.69 -> 0.84 (arguments 0.86 -> 0.93);
# the sub-task task-88771fd90728-a14e10 0.85 -> 0.93; a step takes 2.5 times as long.
METHOD_RECIPES: dict[str, tuple[float, float]] = {"lora": (4.0, 1e-3), "full": (3.0, 1e-4)}


def recipe(spec: BaseModelSpec, config: TrainConfig) -> tuple[float, float]:
    """(epochs, learning rate) of a run: the training options' where set, else the catalog
    entry's, else its method's."""
    epochs, rate = METHOD_RECIPES[spec.method]
    return (
        config.epochs or spec.epochs or epochs,
        config.learning_rate or spec.learning_rate or rate,
    )


def bf16_supported() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass
class Progress:
    step: int
    total_steps: int
    loss: float | None
    eta_seconds: float | None


class TrainingCancelled(Exception):
    """Training stopped on request; the last checkpoint is kept for a later resume."""


def tokenize_example(tokenizer: Any, example: Example, config: TrainConfig) -> dict[str, list]:
    """input_ids and labels (the prompt masked), at most `config.max_length` tokens."""
    layout = example.request if config.every_parameter else None
    answer = tokenizer(answer_text(example.answer, layout), add_special_tokens=False)["input_ids"]
    answer = answer[: config.answer_tokens] + [tokenizer.eos_token_id]
    prompt = prompt_ids(tokenizer, example.request, config)
    return {
        "input_ids": prompt + answer,
        "labels": [IGNORED] * len(prompt) + answer,
    }


def prompt_ids(tokenizer: Any, request: dict[str, Any], config: TrainConfig) -> list[int]:
    """The prompt of `request` as `config` renders it, in training and when counting copies."""
    return encode(
        tokenizer, request, prompt_budget(config.max_length, config.answer_tokens), config.prompt
    )


def copied_from_examples(
    tokenizer: Any, examples: list[Example], config: TrainConfig
) -> dict[str, dict[str, str]]:
    """By tool, the arguments the expert copies from the prompt (as `config` renders it)
    in at least `config.copy_min_share` of `examples` (copying.py); {} when off."""
    if config.copy_min_share is None:
        return {}
    rows = []
    for example in examples:
        calls = tool_calls(example.answer)
        if not calls:
            continue
        name, arguments = calls[0]
        ids = prompt_ids(tokenizer, example.request, config)
        prompt = tokenizer.decode(ids, skip_special_tokens=True)
        rows.append((example.request, prompt, name, arguments))
    return copied_arguments(rows, config.copy_min_share)


def _collator(pad_id: int) -> Callable[[list[dict]], dict]:
    import torch

    def collate(features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [pad_id] * pad)
            labels.append(f["labels"] + [IGNORED] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }

    return collate


def answer_loss(model: Any, batch: dict[str, Any], answer_tokens: Any = None) -> Any:
    """The causal LM loss of `batch` on its answer tokens (labels not IGNORED), with the
    vocabulary projection computed at those positions only: the same loss, and gradients, as
    the model's own, which projects every position (the answer is about a tenth of a
    prompt, and for a small model the projection onto its 49k-token vocabulary is a fifth of
    the forward pass). Summed over the answer tokens and divided by `answer_tokens` (the
    count over the whole accumulated batch), or by this batch's count."""
    import torch.nn.functional as F  # noqa: N812 - torch's own convention

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels = batch["labels"][:, 1:]
    answer = labels != IGNORED
    hidden = causal.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    logits = causal.lm_head(hidden[:, :-1][answer])
    loss = F.cross_entropy(logits.float(), labels[answer], reduction="sum")
    return loss / (answer_tokens if answer_tokens is not None else answer.sum().clamp(min=1))


def _with_adapters(model: Any, spec: BaseModelSpec, config: TrainConfig) -> Any:
    if spec.method != "lora":
        return model
    from peft import LoraConfig, get_peft_model

    layers = model.config.num_hidden_layers
    top = config.trainable_layers
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=2 * config.lora_rank,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        layers_to_transform=list(range(layers - top, layers)) if top else None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _progress_callback(
    on_progress: Callable[[Progress], None], should_stop: Callable[[], bool], cancelled: list
):
    from transformers import TrainerCallback

    class Reporter(TrainerCallback):
        """Progress after each optimisation step (logged every step), then the stop check."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()
            self.first_step = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            done = state.global_step - self.first_step
            per_step = (time.monotonic() - self.started) / max(done, 1)
            eta = per_step * (state.max_steps - state.global_step)
            on_progress(Progress(state.global_step, state.max_steps, float(logs["loss"]), eta))
            # Checked here, before the Trainer decides whether to save this step.
            if should_stop():
                cancelled.append(state.global_step)
                control.should_save = True
                control.should_training_stop = True

    return Reporter()


def train(
    spec: BaseModelSpec,
    examples: list[Example],
    config: TrainConfig,
    workdir: Path,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Path:
    """Fine-tunes `spec` on `examples`; returns `workdir/model`. Resumes from checkpoints."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    if not examples:
        raise ValueError("no training examples")
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoints = workdir / "checkpoints"
    torch.manual_seed(config.seed)
    model, tokenizer = load_base(spec)
    model = _with_adapters(model, spec, config)
    training_set = augment(examples, config.augment_copies, config.seed)
    features = [tokenize_example(tokenizer, example, config) for example in training_set]
    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    epochs, learning_rate = recipe(spec, config)
    max_steps = config.max_steps or max(1, math.ceil(steps_per_epoch * epochs))
    arguments = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.batch_size,
        learning_rate=learning_rate,
        max_steps=max_steps,
        lr_scheduler_type="cosine",
        warmup_steps=min(10, max_steps // 10),
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.checkpoint_every,
        save_total_limit=2,
        report_to=[],
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        bf16=bf16_supported() if config.bf16 is None else config.bf16,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
    )

    class AnswerLossTrainer(Trainer):
        # Scaled for gradient accumulation as the model's own loss is: by the accumulated
        # batch's answer tokens when the Trainer counts them, otherwise by the Trainer.
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs:  # not on the training path: the model's own loss and logits
                return super().compute_loss(model, inputs, True, num_items_in_batch)
            return answer_loss(model, inputs, num_items_in_batch)

    cancelled: list[int] = []
    trainer = AnswerLossTrainer(
        model=model,
        args=arguments,
        train_dataset=features,
        data_collator=_collator(tokenizer.pad_token_id),
        callbacks=[_progress_callback(on_progress, should_stop, cancelled)],
    )
    trainer.remove_callback(PrinterCallback)
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    if cancelled:
        raise TrainingCancelled(f"cancelled at step {cancelled[0]} of {max_steps}")
    copied = copied_from_examples(tokenizer, examples, config)
    return save_intern(trainer.model, tokenizer, spec, config, workdir / "model", copied)


def save_intern(
    model: Any,
    tokenizer: Any,
    spec: BaseModelSpec,
    config: TrainConfig,
    target: Path,
    copied: dict[str, dict[str, str]] | None = None,
) -> Path:
    """Writes the trained weights (the adapter alone for LoRA; a fully fine-tuned model in
    SAVED_DTYPE) and `intern.json`, with the arguments it copies (`copied`)."""
    target.mkdir(parents=True, exist_ok=True)
    if spec.method == "full":
        import torch

        # A copy: the caller's model stays as it was trained.
        copy.deepcopy(model).to(getattr(torch, SAVED_DTYPE)).save_pretrained(target)
    else:
        model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    description = {
        "format_version": FORMAT_VERSION,
        "base": asdict(spec),
        "max_length": config.max_length,
        "answer_tokens": config.answer_tokens,
        **asdict(config.prompt),
        COPIED_KEY: copied or {},
    }
    (target / INTERN_FILE).write_text(json.dumps(description, indent=2))
    return target


def set_defer_threshold(model_dir: Path, threshold: float | None) -> None:
    """Records in the intern's `intern.json` the confidence below which it defers to the
    expert (None: it defers every call; no threshold was reliable enough)."""
    path = model_dir / INTERN_FILE
    if not path.is_file():
        return
    description = json.loads(path.read_text())
    description[DEFER_KEY] = threshold if threshold is not None else math.inf
    path.write_text(json.dumps(description, indent=2))
