"""A trained intern answering chat requests: plain code the Triton `model.py` adapter calls.

Loads what `interns.trainer.training` saved (a LoRA adapter is merged into its base model
once, at load), renders each request with the same compact prompt used in training,
generates greedily, and turns the text back into an assistant message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interns.trainer.models import BaseModelSpec, load_base
from interns.trainer.prompting import encode, parse_answer, prompt_budget
from interns.trainer.training import INTERN_FILE


class InternRuntime:
    def __init__(self, model: Any, tokenizer: Any, max_length: int, answer_tokens: int):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.answer_tokens = answer_tokens

    @classmethod
    def load(cls, model_dir: Path) -> InternRuntime:
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
        return cls(model, tokenizer, description["max_length"], description["answer_tokens"])

    def generate(self, requests: list[dict[str, Any]]) -> list[str]:
        """The raw answer text for each request (greedy decoding, batched)."""
        import torch

        budget = prompt_budget(self.max_length, self.answer_tokens)
        prompts = [encode(self.tokenizer, request, budget) for request in requests]
        width = max(len(ids) for ids in prompts)
        pad = self.tokenizer.pad_token_id
        # Left padding: every prompt ends where generation starts.
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts])
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=self.answer_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        return [self.tokenizer.decode(row[width:], skip_special_tokens=True) for row in output]

    def answer(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The assistant message for each request."""
        if not requests:
            return []
        texts = self.generate(requests)
        return [parse_answer(text, request) for text, request in zip(texts, requests, strict=True)]
