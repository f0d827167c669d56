"""Fine-tuning on the training code path with a tiny model built from a config (seconds on
a CPU): it learns, it checkpoints, it stops on request and resumes where it stopped, and
the saved intern answers through the runtime the Triton adapter uses."""

from __future__ import annotations

import json

import pytest
import torch

from interns.trainer.evaluation import evaluate
from interns.trainer.examples import Example
from interns.trainer.models import BaseModelSpec, load_base
from interns.trainer.runtime import InternRuntime
from interns.trainer.training import (
    IGNORED,
    TrainConfig,
    TrainingCancelled,
    _collator,
    _with_adapters,
    answer_loss,
    save_intern,
    tokenize_example,
    train,
)
from tests.conftest import WEATHER_TOOL

TINY = BaseModelSpec("tiny", "config:tiny", "full", "Apache-2.0", 3.2, 2048, 200)
TINY_LORA = BaseModelSpec("tiny-lora", "config:tiny", "lora", "Apache-2.0", 3.2, 2048, 200)


def weather_example(n: int) -> Example:
    arguments = json.dumps({"city": "Paris"})
    answer = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "c",
                "type": "function",
                "function": {"name": "GetWeather", "arguments": arguments},
            }
        ],
    }
    request = {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
    }
    return Example(f"t{n}", f"s{n}", request, answer)


def test_training_lowers_the_loss_and_the_saved_intern_answers_through_the_runtime(tmp_path):
    examples = [weather_example(n) for n in range(8)]
    config = TrainConfig(max_steps=20, batch_size=8, learning_rate=1e-2, checkpoint_every=100)
    seen = []
    model_dir = train(TINY, examples, config, tmp_path, on_progress=seen.append)
    assert [p.step for p in seen] == list(range(1, 21))
    assert seen[-1].loss < seen[0].loss / 2
    assert seen[-1].eta_seconds == 0
    runtime = InternRuntime.load(model_dir)
    answers = runtime.answer([e.request for e in examples[:3]])
    assert len(answers) == 3 and all(a["role"] == "assistant" for a in answers)
    report = evaluate(runtime, examples[:2], "tool_call")
    assert report.n == 2 and set(report.scores) >= {"exact_match", "argument_accuracy"}


def test_a_stopped_job_keeps_its_checkpoint_and_resumes_after_it(tmp_path):
    examples = [weather_example(n) for n in range(4)]
    config = TrainConfig(max_steps=6, batch_size=2, checkpoint_every=2)
    first: list = []
    with pytest.raises(TrainingCancelled, match="step 3 of 6"):
        train(TINY, examples, config, tmp_path, first.append, should_stop=lambda: len(first) >= 3)
    assert (tmp_path / "checkpoints" / "checkpoint-3").is_dir()
    second: list = []
    model_dir = train(TINY, examples, config, tmp_path, second.append)
    assert [p.step for p in second] == [4, 5, 6]
    assert (model_dir / "intern.json").is_file()


def test_a_fully_fine_tuned_intern_is_written_in_half_the_bytes_and_read_back_as_float32(
    tmp_path,
):
    model, tokenizer = load_base(TINY)
    trained = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model_dir = save_intern(model, tokenizer, TINY, TrainConfig(), tmp_path / "model")

    weights = model_dir / "model.safetensors"
    parameters = sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    assert weights.stat().st_size < parameters * 2 * 1.01
    assert all(t.dtype == torch.float32 for t in model.state_dict().values())  # not changed
    runtime = InternRuntime.load(model_dir)
    for name, tensor in runtime.model.state_dict().items():
        assert tensor.dtype == torch.float32
        assert torch.allclose(tensor, trained[name], rtol=1e-3, atol=1e-4), name


def test_no_examples_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no training examples"):
        train(TINY, [], TrainConfig(max_steps=1), tmp_path)


@pytest.mark.parametrize("spec", [TINY, TINY_LORA], ids=["full", "lora"])
def test_the_answer_only_loss_and_its_gradients_are_the_models_own(spec):
    """The training loss projects only the answer's positions onto the vocabulary; what it
    optimises must be exactly what the model's own loss over every position gives."""
    model, tokenizer = load_base(spec)
    model = _with_adapters(model, spec, TrainConfig())
    examples = [weather_example(0), weather_example(1)]
    # Prompts of different lengths: the batch is padded.
    examples[1].request["messages"].insert(0, {"role": "user", "content": "Hello there, agent."})
    features = [tokenize_example(tokenizer, e, TrainConfig(max_length=128)) for e in examples]
    batch = _collator(tokenizer.pad_token_id)(features)
    assert (batch["labels"] == IGNORED).any() and (batch["labels"] != IGNORED).any()

    ours = answer_loss(model, batch)
    ours.backward()
    our_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    theirs = model(**batch).loss
    theirs.backward()
    assert our_grads and torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            assert torch.allclose(our_grads[name], parameter.grad, rtol=1e-4, atol=1e-6), name


def test_grouping_by_length_pads_fewer_tokens(tmp_path, monkeypatch):
    import interns.trainer.training as training

    batches: list = []

    def recording(model, batch, answer_tokens=None):
        batches.append(batch["input_ids"].clone())
        return answer_loss(model, batch, answer_tokens)

    monkeypatch.setattr(training, "answer_loss", recording)
    examples = [weather_example(n) for n in range(64)]
    chatter = "Hello there, agent. I have a question about the weather for my trip. " * 4
    for example in examples[::2]:  # half of them long
        example.request["messages"].insert(0, {"role": "user", "content": chatter})

    def padded_tokens(group_by_length: bool) -> tuple[int, int, int]:
        batches.clear()
        config = TrainConfig(
            max_steps=16, batch_size=4, checkpoint_every=100, group_by_length=group_by_length
        )
        train(TINY, examples, config, tmp_path / str(group_by_length))
        longest = max(b.shape[1] for b in batches)
        long = sum(b.shape[1] == longest for b in batches)
        return sum(b.shape[0] for b in batches), long, sum(b.numel() for b in batches)

    # 16 steps of 4: one pass over the 64 examples either way. Random batches of 4 nearly
    # all hold a long example; grouped, about half of them do.
    random_examples, random_long, random_tokens = padded_tokens(False)
    grouped_examples, grouped_long, grouped_tokens = padded_tokens(True)
    assert random_examples == grouped_examples == 64
    assert grouped_long <= 10 < random_long
    assert grouped_tokens < 0.85 * random_tokens
