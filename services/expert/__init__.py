"""Replay expert: an OpenAI-compatible chat-completions server that answers from a recorded
workload (SGD tool calls, OpenAI-format logs or BFCL), standing in for a real LLM in offline
demos and tests.

`replay` holds the logic (loading workloads, matching conversations, shaping answers);
`app` is the HTTP transport; `__main__` wires them to settings and uvicorn.
"""
