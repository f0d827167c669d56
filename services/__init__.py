"""Interns: turns an agent's LLM traffic into small task-specific models served by Triton."""
