"""Structured logging, configured once per process by its `__main__`.

Secrets never reach the log: `load_settings` hands every secret value it read (SecretStr
fields, the database URL's password) to `settings_loaded`, and the last step of every
record's rendering replaces each of them with `***` wherever it appears (a message, a
field, a traceback). With no secrets registered the step costs one truth test.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

MASK = "***"
_secrets: list[str] = []
_loaded_settings: dict[str, Any] | None = None


def mask_secrets(values: list[str]) -> None:
    """Adds `values` to the strings masked in every log record (longest first, so that a
    secret containing another is masked whole)."""
    known = set(_secrets) | {value for value in values if value}
    _secrets[:] = sorted(known, key=len, reverse=True)


def settings_loaded(settings: dict[str, Any], secrets: list[str]) -> None:
    """Called by `load_settings`: registers `secrets` and keeps the settings so that
    `configure_logging` logs them at DEBUG."""
    global _loaded_settings
    mask_secrets(secrets)
    _loaded_settings = settings


def masked(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _mask_rendered(_, __, rendered: str) -> str:
    return masked(rendered) if _secrets else rendered


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Routes stdlib and structlog records through one renderer (JSON lines or console),
    each record carrying the service's name, secrets masked."""
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
                _mask_rendered,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)
    if _loaded_settings is not None:
        get_logger(__name__).debug("configuration", settings=_loaded_settings)


def get_logger(name: str):
    """A structlog logger for module `name`."""
    return structlog.get_logger(name)
