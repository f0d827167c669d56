"""What an expert call costs, from a configurable price table (USD per million tokens)."""

from __future__ import annotations

from pydantic import BaseModel


class Price(BaseModel):
    prompt_per_million: float = 0.0
    completion_per_million: float = 0.0


def call_cost(prices: dict[str, Price], model: str, prompt: int, completion: int) -> float:
    """USD for one call; a model missing from the table costs what `default` costs, or 0."""
    price = prices.get(model) or prices.get("default") or Price()
    return (prompt * price.prompt_per_million + completion * price.completion_per_million) / 1e6
