"""Trainer settings (prefix TRAINER_; the policy and the gate nest as TRAINER_POLICY__<FIELD>
and TRAINER_GATE__<FIELD>)."""

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from interns.common.settings import ServiceSettings, shared
from interns.trainer.policy import EvaluationGate, TrainingPolicy


class TrainingOptions(BaseModel):
    """Hyper-parameters of a fine-tuning run (TRAINER_TRAINING__<FIELD>)."""

    # Empty: the base model's recipe (its catalog entry, else training.METHOD_RECIPES: LoRA
    # 4 epochs at 1e-3, full fine-tuning 3 at 1e-4). Measured on an SGD sub-task (149
    # examples, SmolLM2-135M, LoRA, CPU): 2 epochs gave exact match 0.26, 4 epochs 0.44.
    epochs: float | None = Field(
        None, gt=0, description="Passes over the training split (empty: the base model's)"
    )
    max_steps: int | None = Field(None, ge=1, description="Stop after this many steps")
    batch_size: int = Field(8, ge=1)
    learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate (empty: the base model's)"
    )
    # 512: 415 prompt tokens hold the values the next call needs (see prompting.encode).
    max_length: int = Field(512, ge=16, description="Tokens per example, prompt and answer")
    answer_tokens: int = Field(96, ge=1, description="Longest answer generated, in tokens")
    checkpoint_every: int = Field(20, ge=1, description="Steps between checkpoints")
    seed: int = 0
    lora_rank: int = Field(16, ge=1)
    # On a CPU the backward pass dominates; adapters in the top 8 of SmolLM2-135M's 30
    # layers halve a step's time. A GPU worker can set it to None (every layer).
    trainable_layers: int | None = Field(
        8, ge=1, description="LoRA on the top layers only (None: every layer)"
    )
    # Measured on the same SGD sub-task and split (4 epochs, 416 tokens, constrained
    # decoding): tools listed in the prompt 0.48 exact match, 0.67 argument accuracy; not
    # listed (their 169 tokens go to the conversation) 0.56 and 0.77.
    tool_lines: bool = Field(
        False, description="List the request's tools in the prompt (a task's are always the same)"
    )
    # Measured on the same SGD sub-task and split (constrained decoding): no copies 0.56
    # exact match, 0.77 argument accuracy (76 steps); one copy 0.70 and 0.86 at 4 epochs
    # (152 steps, 1017 s on a quiet 2-core machine), 0.63 and 0.80 at 2 epochs (76 steps).
    augment_copies: int = Field(
        1,
        ge=0,
        description="Extra copies of each training example with the argument values it"
        " copies from the conversation swapped for other values (see augment.py)",
    )
    # Measured on task-201e81267a49 (SGD, same split and seed, copied values on): exact
    # match 0.53 with none of the three prompt options below at 416 tokens; 0.55 with the
    # first two; 0.69 with all three at 512 tokens (without dates 0.59, 0.61, 0.71).
    normalize_values: bool = Field(
        True,
        description="Rewrite times (6:15 pm -> 18:15) and number words (two -> 2) in the"
        " conversation as arguments write them, in training and serving (see normalize.py)",
    )
    tool_results_first: bool = Field(
        True,
        description="When a prompt is over budget, drop the tool results (oldest first) before"
        " the oldest turns (see prompting.encode)",
    )
    keep_tool_calls: bool = Field(
        True,
        description="When a prompt is over budget, drop the agent's earlier tool calls last (they"
        " hold the values the conversation settled; see prompting.encode)",
    )
    # Measured on the three largest SGD tasks' interns of the last full bench-trainer run
    # (evaluated again, same weights): exact match 0.70 -> 0.70, 0.37 -> 0.37, 0.49 -> 0.53,
    # without dates 0.74 -> 0.74, 0.53 -> 0.55, 0.55 -> 0.59; coverage at the calibrated
    # threshold 0.52 -> 0.56, 0.05 -> 0.08, 0.10 -> 0.29.
    copy_min_share: float | None = Field(
        0.9,
        gt=0,
        le=1,
        description="Arguments whose value stands in the prompt in at least this share of the"
        " training examples take only the prompt's spans as values (see copying.py; null: off)",
    )
    # Measured in a whole bench-trainer run (README, Benchmarks): each pass in 0.79 of the
    # time on task-201e81267a49, but each of the three tasks one to three held-out calls
    # fewer right, within a run's noise; off until more runs tell.
    group_by_length: bool = Field(
        False,
        description="Batch examples of like length together, so less of each batch is padding",
    )
    # Measured (same split and seed, one run each): task-201e81267a49 0.80 exact against the
    # defaults' 0.82-0.84, task-23d7a37b9952 0.92 without dates against 0.95, both within a
    # run's spread (README, Benchmarks); off until runs tell.
    every_parameter: bool = Field(
        False,
        description="A tool call's answer writes every parameter of its tool, null where the"
        " expert gave none (see prompting.answer_text)",
    )


class TrainerSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRAINER_", extra="ignore", populate_by_name=True, env_nested_delimiter="__"
    )

    host: str = Field("127.0.0.1", description="Address the control gRPC server binds")
    port: int = Field(50053, description="gRPC port of the control API")
    ops_port: int = Field(19103, description="Port of /healthz, /readyz, /metrics")
    celery_broker_url: str = shared(
        "CELERY_BROKER_URL", "redis://127.0.0.1:16379/0", "Celery's broker (Redis)"
    )
    model_repository: str = Field(
        ".interns/model-repository", description="Triton model repository the trainer writes"
    )
    operator: str = Field("operator", description="Name recorded for changes made by hand")

    # Training jobs
    auto_train: bool = Field(True, description="Start jobs from task events (policy permitting)")
    catalog: str = Field("", description="YAML catalog of base models (empty: the default)")
    gpu_workers: bool = Field(
        False, description="GPU workers consume the gpu queue, so GPU base models may be chosen"
    )
    base_model: str = Field(
        "",
        description="Catalog entry every job the policy starts uses, when it fits (empty: the"
        " largest that fits)",
    )
    memory_budget_mb: int = Field(
        12000, ge=1, description="Training memory a base model may use (on a CPU worker)"
    )
    gpu_memory_budget_mb: int = Field(24000, ge=1, description="The same, on a GPU worker")
    allowed_licenses: str = Field(
        "", description="Comma-separated licenses a base model may have (empty: any)"
    )
    workdir: Path = Field(
        Path(".interns/training"), description="Per-job folders: data, checkpoints, model"
    )
    keep_workdirs: bool = Field(False, description="Keep a job's folder after it ended")
    eval_share: float = Field(0.2, gt=0, lt=1, description="Share of sessions held out")
    max_examples: int | None = Field(None, ge=1, description="At most this many examples")
    related_share: float = Field(
        0.0,
        ge=0,
        description="Tool-call tasks also train on other tasks' calls of the same tools, up to"
        " this multiple of their own training examples (examples.related_examples; 0: none)",
    )
    worker_queue: str = Field("cpu", description="Queue a worker consumes: cpu or gpu")
    celery_visibility_timeout_s: float = Field(
        600.0,
        gt=0,
        description="After this, the job of a worker that died is delivered again (a live"
        " worker's job delivered again waits: the job's lease guards it)",
    )
    job_lease_s: float = Field(
        120.0, gt=0, description="A running job whose row is quiet this long has lost its worker"
    )
    policy: TrainingPolicy = Field(default_factory=TrainingPolicy)
    gate: EvaluationGate = Field(default_factory=EvaluationGate)
    training: TrainingOptions = Field(default_factory=TrainingOptions)

    @property
    def licenses(self) -> list[str]:
        return [name.strip() for name in self.allowed_licenses.split(",") if name.strip()]
