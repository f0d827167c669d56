"""Database tables (SQLModel) and engine helpers.

The schema is owned by Alembic (`services/common/migrations`): `upgrade_database` runs
every migration, on SQLite (the embedded default) and on PostgreSQL alike. The
trace-collector alone writes the `traces` table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, Index, event, false, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Field, SQLModel, create_engine


def _now() -> datetime:
    return datetime.now(UTC)


CURATION_PENDING = "pending"


class Trace(SQLModel, table=True):
    """One recorded LLM call, PII removed."""

    __tablename__ = "traces"
    __table_args__ = (
        Index("ix_traces_tenant_session", "tenant_id", "session_id"),
        Index("ix_traces_created_at", "created_at"),
    )

    trace_id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=128)
    agent_id: str = Field(default="", max_length=128)
    session_id: str = Field(default="", max_length=256)
    source: str = Field(default="gateway", max_length=512)
    created_at: datetime = Field(default_factory=_now)
    request: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    route_target: str = Field(default="expert", max_length=16)
    route_model: str = Field(default="", max_length=256)
    route_model_version: int = 0
    route_reason: str = Field(default="", max_length=512)
    task_id: str | None = Field(default=None, max_length=64, index=True)
    status: str = Field(default="ok", max_length=16)
    error: str = ""
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    stored_at: datetime = Field(default_factory=_now)
    # Curation (`interns.trace_collector.curation`): which traces a model may be trained on.
    # Server defaults, so that rows written before curation existed read as not curated.
    flagged: bool = Field(
        default=False,
        sa_column_kwargs={"server_default": false()},
        description="Kept out of training by a reviewer or a check",
    )
    curation_status: str = Field(
        default=CURATION_PENDING,
        max_length=16,
        sa_column_kwargs={"server_default": CURATION_PENDING},
        description="pending, eligible, duplicate, near_duplicate, failed or flagged",
    )
    duplicate_of: str | None = Field(
        default=None,
        max_length=64,
        index=True,
        description="The eligible trace this one repeats (exactly or nearly)",
    )
    training_eligible: bool = Field(
        default=False,
        index=True,
        sa_column_kwargs={"server_default": false()},
        description="Curated: ok, not flagged, and not a duplicate",
    )
    curated_at: datetime | None = None


class Task(SQLModel, table=True):
    """A recurring task mined from the traces."""

    __tablename__ = "tasks"

    task_id: str = Field(primary_key=True, max_length=64)
    label: str = ""
    signature: str = Field(default="", max_length=128, index=True)
    size: int = 0
    traffic_share: float = 0.0
    output_kind: str = Field(default="text", max_length=16)
    consistency: float = 0.0
    replaceability: float = 0.0
    expert_cost_usd: float = 0.0
    first_seen: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    # Splits and merges (`interns.miner.mining`): a sub-task names the signature's task
    # it came from; that task keeps the matcher the router uses to tell its sub-tasks apart.
    parent_task_id: str | None = Field(default=None, max_length=64, index=True)
    status: str = Field(
        default="active",
        max_length=16,
        sa_column_kwargs={"server_default": "active"},
        description="active, split (into related_task_ids) or merged (into them)",
    )
    related_task_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    matcher: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    matcher_agreement: float | None = None


class ModelVersion(SQLModel, table=True):
    """One exported (or rejected) intern model version."""

    __tablename__ = "model_versions"

    model: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    task_id: str = Field(max_length=64, index=True)
    base_model: str = ""
    status: str = Field(default="registered", max_length=16)
    scores: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    latency_ms: float = 0.0
    size_bytes: int = 0
    created_at: datetime = Field(default_factory=_now)


class Rollout(SQLModel, table=True):
    """The current route of a task."""

    __tablename__ = "rollouts"

    task_id: str = Field(primary_key=True, max_length=64)
    signature: str = Field(default="", max_length=128)
    target: str = Field(default="expert", max_length=128)
    model_version: int = 0
    mode: str = Field(default="off", max_length=16)
    canary_share: float = 0.0
    pinned: bool = False
    changed_by: str = ""
    reason: str = ""
    updated_at: datetime = Field(default_factory=_now)


class RouteChange(SQLModel, table=True):
    """Audit trail: every change of a route, who or what made it, and why."""

    __tablename__ = "route_changes"

    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(max_length=64, index=True)
    target: str = Field(max_length=128)
    model_version: int = 0
    mode: str = Field(max_length=16)
    canary_share: float = 0.0
    pinned: bool = False
    changed_by: str = ""
    reason: str = ""
    changed_at: datetime = Field(default_factory=_now)


class TrainingJob(SQLModel, table=True):
    """A fine-tuning job and its last known progress."""

    __tablename__ = "training_jobs"

    job_id: str = Field(primary_key=True, max_length=64)
    task_id: str = Field(max_length=64, index=True)
    base_model: str = ""
    status: str = Field(default="queued", max_length=16)
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    eta_seconds: float | None = None
    error: str = ""
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    # The trainer's bookkeeping (`interns.trainer.pipeline`). Server defaults, so that rows
    # written before these columns existed read as plain queued jobs.
    device: str = Field(
        default="cpu",
        max_length=8,
        sa_column_kwargs={"server_default": "cpu"},
        description="Queue the job was sent to: cpu or gpu",
    )
    task_size: int = Field(
        default=0,
        sa_column_kwargs={"server_default": "0"},
        description="The task's size when the job was created",
    )
    selection: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False, server_default="[]"),
        description="Why this base model was chosen",
    )
    cancel_requested: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    attempts: int = Field(
        default=0,
        sa_column_kwargs={"server_default": "0"},
        description="Times a worker started the job (more than 1 after a redelivery)",
    )
    resumed_at_step: int = Field(
        default=0,
        sa_column_kwargs={"server_default": "0"},
        description="First step of the last attempt that resumed from a checkpoint (0: none)",
    )
    model: str = Field(default="", max_length=128, sa_column_kwargs={"server_default": ""})
    model_version: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class ApiKey(SQLModel, table=True):
    """An API key of a tenant. Only the key's SHA-256 is stored, never the key; `prefix`
    (its first characters) tells keys apart in listings. A revoked key stays, for audit."""

    __tablename__ = "api_keys"

    key_id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=128, index=True)
    name: str = Field(default="", max_length=128)
    hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=_now)
    revoked_at: datetime | None = None
    created_by: str = Field(default="", max_length=128)


class Lease(SQLModel, table=True):
    """A lease held by one replica of a service that must act alone (the deploy
    controller): the holder renews it before `expires_at` (epoch seconds, UTC); once it
    lapses, another replica may take it."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    expires_at: float = 0.0
    acquired_at: float = 0.0


def make_engine(database_url: str) -> Engine:
    """An engine for `database_url`; SQLite gets WAL and a busy timeout so that several
    processes can share the file, and its folder is created."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            # Takes effect only on a new, empty file (before WAL): a trace is about 6 KB,
            # which 4 KB pages spread over overflow pages; 16 KB pages halve the
            # collector's insert and commit time.
            cursor.execute("PRAGMA page_size=16384")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # 32 MiB of page cache (the default is 2 MiB): the traces' indexes stay in
            # memory while batches are written.
            cursor.execute("PRAGMA cache_size=-32768")
            cursor.close()

        return engine
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("", "psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def database_reachable(engine: Engine) -> bool:
    """A readiness check: the database answers a trivial query."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return True


MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def upgrade_database(database_url: str) -> None:
    """Runs every Alembic migration against `database_url` (creating the schema)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """The database's migration revision (None before any) and the latest one."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def redact_url(database_url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    return make_url(database_url).render_as_string(hide_password=True)
