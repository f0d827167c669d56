"""Replay expert entry point.

Serves: an OpenAI-compatible `POST /v1/chat/completions` (plus `/v1/models`, `/healthz`,
`/readyz`, `/metrics`) on EXPERT_HOST:EXPERT_PORT, answering each conversation with its
reference answer from the recorded workload EXPERT_WORKLOAD (by default the SGD dev file
under INTERNS_WORKLOADS_DIR), after EXPERT_LATENCY_MS. Stands in for a real LLM in offline
demos and tests. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import sys

import uvicorn

from interns.common.logging import configure_logging, get_logger
from interns.common.settings import load_settings
from interns.expert.app import build_app
from interns.expert.replay import ReplayIndex, WorkloadError, load_workload
from interns.expert.settings import ExpertSettings

log = get_logger(__name__)


def main() -> None:
    """Loads the workload, then serves it until stopped."""
    settings = load_settings(ExpertSettings)
    configure_logging("expert", settings.log_level, settings.log_format)
    if not settings.workload.is_file():
        sys.exit(
            f"invalid configuration:\n  setting EXPERT_WORKLOAD: no workload file at "
            f"{settings.workload} (or set INTERNS_WORKLOADS_DIR to the workloads folder)"
        )
    try:
        workload = load_workload(settings.workload, model=settings.model_name)
    except (WorkloadError, OSError, ValueError) as error:
        sys.exit(f"cannot load workload {settings.workload}: {error}")
    index = ReplayIndex.from_records(workload)
    log.info(
        "replay expert ready",
        workload=str(workload.path),
        format=workload.format,
        conversations=len(index),
        malformed_lines=workload.malformed_count,
        duplicates=index.duplicates,
        conflicts=index.conflicts,
        latency_ms=settings.latency_ms,
    )
    # log_config=None keeps the structured logging configured above.
    uvicorn.run(build_app(index, settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
