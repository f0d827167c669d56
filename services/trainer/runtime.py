"""A trained intern answering chat requests: plain code the Triton `model.py` adapter calls.

Loads what `interns.trainer.training` saved (a LoRA adapter is merged into its base model
once, at load), renders each request with the same compact prompt used in training,
generates greedily, and turns the text back into an assistant message.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from interns.trainer.constrained import AnswerGrammars
from interns.trainer.copying import allowed_values
from interns.trainer.models import BaseModelSpec, load_base
from interns.trainer.prompting import PromptOptions, encode, parse_answer, prompt_budget
from interns.trainer.training import COPIED_KEY, DEFER_KEY, INTERN_FILE


class InternRuntime:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int,
        answer_tokens: int,
        constrained: bool = True,
        defer_below: float | None = None,
        prompt: PromptOptions = PromptOptions(),
        copied_arguments: dict[str, dict[str, str] | list[str]] | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.answer_tokens = answer_tokens
        self.defer_below = defer_below
        self.prompt = prompt
        self.copied_arguments = copied_arguments or {}
        self.grammars = AnswerGrammars(tokenizer, model.config.vocab_size) if constrained else None

    @classmethod
    def load(cls, model_dir: Path, constrained: bool = True) -> InternRuntime:
        """The intern saved in `model_dir` (raises FileNotFoundError when none is there)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        description = json.loads((model_dir / INTERN_FILE).read_text())
        base = description["base"]
        spec = BaseModelSpec(**{**base, "output_kinds": tuple(base["output_kinds"])})
        if spec.method == "lora":
            from peft import PeftModel

            model, _ = load_base(spec)
            model = PeftModel.from_pretrained(model, model_dir).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return cls(
            model,
            tokenizer,
            description["max_length"],
            description["answer_tokens"],
            constrained,
            description.get(DEFER_KEY),
            PromptOptions.from_description(description),
            description.get(COPIED_KEY),
        )

    def generate(self, requests: list[dict[str, Any]]) -> list[tuple[str, float]]:
        """The raw answer text for each request and its confidence: the probability of the
        whole answer under the intern (greedy decoding, batched, constrained to what the
        request allows)."""
        import torch
        from transformers import LogitsProcessorList

        budget = prompt_budget(self.max_length, self.answer_tokens)
        prompts = [encode(self.tokenizer, request, budget, self.prompt) for request in requests]
        width = max(len(ids) for ids in prompts)
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        # Left padding: every prompt ends where generation starts.
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts])
        grammar = None
        if self.grammars:
            allowed = None
            if self.copied_arguments:
                allowed = [
                    allowed_values(
                        self.copied_arguments,
                        self.tokenizer.decode(ids, skip_special_tokens=True),
                    )
                    for ids in prompts
                ]
            grammar = self.grammars.processor(
                requests, width, allowed, every_parameter=self.prompt.every_parameter
            )
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                logits_processor=LogitsProcessorList([grammar] if grammar else []),
                max_new_tokens=self.answer_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=eos,
                output_scores=True,
                return_dict_in_generate=True,
            )
            answers = output.sequences[:, width:]
            # Log-probability of each chosen token among the tokens the grammar allowed.
            chosen = torch.stack(
                [
                    torch.log_softmax(step.float(), dim=-1).gather(1, answers[:, i : i + 1])
                    for i, step in enumerate(output.scores)
                ],
                dim=1,
            ).squeeze(-1)
        results = []
        for row in range(len(requests)):
            tokens = answers[row].tolist()
            # The answer ends at its first end token (included: stopping is a choice too).
            end = tokens.index(eos) + 1 if eos in tokens else len(tokens)
            log_p = float(chosen[row, :end].sum())
            text = self.tokenizer.decode(answers[row, :end], skip_special_tokens=True)
            results.append((text, math.exp(log_p)))
        return results

    def answer(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The assistant message for each request, with its `confidence` (0..1); marked
        `defer` when the confidence is below the threshold calibrated at evaluation (the
        router then lets the expert answer: the intern keeps only what it does well)."""
        if not requests:
            return []
        messages = []
        for (text, confidence), request in zip(self.generate(requests), requests, strict=True):
            message = parse_answer(text, request, self.prompt.every_parameter)
            message["confidence"] = round(confidence, 6)
            if self.defer_below is not None and confidence < self.defer_below:
                message["defer"] = True
            messages.append(message)
        return messages
