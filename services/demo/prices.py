"""What a call costs and how long a hosted expert takes: the demo's price table.

The replay expert answers from a file in a millisecond, so the expert's price and latency
come from this table (a JSON or YAML file given to `interns demo --prices`); an intern's
cost is its measured serving time on the CPU it runs on.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import BaseModel, Field


class PriceTable(BaseModel):
    expert_model: str = Field("a hosted frontier model", description="What the figures price")
    expert_prompt_per_million: float = Field(2.5, ge=0, description="USD per million prompt tokens")
    expert_completion_per_million: float = Field(
        10.0, ge=0, description="USD per million completion tokens"
    )
    expert_first_token_ms: float = Field(
        600.0, ge=0, description="A hosted expert's time to its first token"
    )
    expert_ms_per_token: float = Field(
        15.0, ge=0, description="A hosted expert's time per completion token"
    )
    intern_usd_per_cpu_hour: float = Field(
        0.05, ge=0, description="What a CPU core serving interns costs an hour"
    )
    intern_cpus: float = Field(1.0, gt=0, description="Cores an intern call keeps busy")

    def expert_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.expert_prompt_per_million
            + completion_tokens * self.expert_completion_per_million
        ) / 1e6

    def expert_latency_ms(self, completion_tokens: int) -> float:
        return self.expert_first_token_ms + completion_tokens * self.expert_ms_per_token

    def intern_cost(self, latency_ms: float) -> float:
        return latency_ms / 3.6e6 * self.intern_cpus * self.intern_usd_per_cpu_hour


def load_prices(path: Path | None) -> PriceTable:
    """The table in `path` (JSON or YAML; missing fields keep their defaults), or the
    defaults."""
    if path is None:
        return PriceTable()
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    return PriceTable.model_validate(data or {})
