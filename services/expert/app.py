"""HTTP transport of the replay expert: OpenAI's chat-completions API over a `ReplayIndex`.

Serves `POST /v1/chat/completions` (unary or Server-Sent Events), `GET /v1/models`,
`GET /healthz`, `GET /readyz` and `GET /metrics`. Errors have OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`) so that OpenAI clients read them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from interns.common.metrics import EXPERT_RECORDS, EXPERT_REQUESTS
from interns.expert.replay import (
    ChatCompletionRequest,
    ReplayIndex,
    completion_body,
    completion_chunks,
    new_completion_id,
)
from interns.expert.settings import ExpertSettings


def openai_error(
    status: int, message: str, code: str | None, param: str | None = None
) -> JSONResponse:
    """An error response in OpenAI's shape."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return JSONResponse({"error": error}, status_code=status)


def _bad_request(error: RequestValidationError) -> JSONResponse:
    problem = error.errors()[0] if error.errors() else {}
    loc = [str(part) for part in problem.get("loc", ())]
    if loc[:1] == ["body"]:
        loc = loc[1:]
    if problem.get("type") == "json_invalid":
        return openai_error(
            400,
            f"request body is not valid JSON: {problem.get('ctx', {}).get('error', '')}",
            "invalid_json",
        )
    if not loc:
        return openai_error(
            400, "request body must be a JSON object sent as application/json", "invalid_request"
        )
    param = ".".join(loc)
    return openai_error(
        400, f"invalid '{param}': {problem.get('msg', 'invalid value')}", "invalid_value", param
    )


def _sse(chunks: Iterable[dict]) -> Iterator[str]:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def build_app(index: ReplayIndex, settings: ExpertSettings) -> FastAPI:
    """The replay expert's ASGI app, answering from `index` as `settings` say."""
    app = FastAPI(title="Interns replay expert", docs_url=None, redoc_url=None)
    EXPERT_RECORDS.labels("expert").set(len(index))

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        EXPERT_REQUESTS.labels("expert", "invalid_request").inc()
        return _bad_request(error)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> dict | Response:
        if settings.latency_ms > 0:
            await asyncio.sleep(settings.latency_ms / 1000)
        entry = index.match(body)
        if entry is None:
            EXPERT_REQUESTS.labels("expert", "no_recorded_answer").inc()
            return openai_error(
                404,
                f"no recorded answer for this conversation ({len(body.messages)} messages) "
                f"in the workload {settings.workload.name}",
                "no_recorded_answer",
                "messages",
            )
        EXPERT_REQUESTS.labels("expert", "answered").inc()
        completion_id, created = new_completion_id(), int(time.time())
        if body.stream:
            chunks = completion_chunks(entry, body, settings.model_name, completion_id, created)
            return StreamingResponse(_sse(chunks), media_type="text/event-stream")
        return completion_body(entry, body, settings.model_name, completion_id, created)

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [
                {"id": settings.model_name, "object": "model", "created": 0, "owned_by": "interns"}
            ],
        }

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", response_model=None)
    async def readyz() -> dict | JSONResponse:
        # An empty index answers nothing: not ready, so that a wrong workload shows at once.
        if len(index) == 0:
            return JSONResponse(
                {"status": "no records", "records": 0, "workload": str(settings.workload)},
                status_code=503,
            )
        return {"status": "ready", "records": len(index), "workload": str(settings.workload)}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
