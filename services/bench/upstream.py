"""The benchmark's upstream: the replay expert's app, built by a factory so that uvicorn
can run it in several worker processes (`uvicorn --factory --workers N`); the expert's own
entry point runs one."""

from __future__ import annotations

from fastapi import FastAPI

from interns.common.logging import configure_logging
from interns.common.settings import load_settings
from interns.expert.app import build_app
from interns.expert.replay import ReplayIndex, load_workload
from interns.expert.settings import ExpertSettings


def replay_app() -> FastAPI:
    """The replay expert's app over EXPERT_WORKLOAD, configured by its EXPERT_ settings."""
    settings = load_settings(ExpertSettings)
    configure_logging("expert", settings.log_level, settings.log_format)
    workload = load_workload(settings.workload, model=settings.model_name)
    return build_app(ReplayIndex.from_records(workload), settings)
