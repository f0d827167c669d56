"""Export of a trained intern into the Triton model repository.

Layout (Triton's): `<repository>/<model>/config.pbtxt` and one folder per version,
`<repository>/<model>/<version>/` holding `model.py` (the python-backend adapter,
`interns.trainer.triton_model`) and `model/` (the trained model files). A version folder
appears whole: it is assembled beside the model folder and renamed into place. Version
numbers only grow and are never reused: the next one is above every folder and every
registered (or rejected) version.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from interns.common.intern_contract import config_pbtxt
from interns.trainer import triton_model

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def model_name(task_id: str) -> str:
    """The Triton model name of a task's intern (Triton names allow [A-Za-z0-9_.-])."""
    cleaned = _UNSAFE.sub("-", task_id).strip("-.")
    if not cleaned:
        raise ValueError(f"task id {task_id!r} gives no usable model name")
    return f"intern-{cleaned}"


def existing_versions(repository: Path, model: str) -> list[int]:
    folder = repository / model
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(repository: Path, model: str, registered: Iterable[int] = ()) -> int:
    """One above every version in the repository and in `registered`."""
    return max([0, *existing_versions(repository, model), *registered]) + 1


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass(frozen=True)
class ExportedVersion:
    model: str
    version: int
    path: Path
    size_bytes: int


def export_version(
    trained_model: Path,
    repository: Path,
    model: str,
    version: int,
    *,
    max_batch_size: int = 8,
    instances: int = 1,
) -> ExportedVersion:
    """Writes `trained_model` (a folder `InternRuntime.load` reads) as `version` of `model`.
    Idempotent for a redelivered job: a complete version folder is kept as it is; one that
    exists with other contents is refused rather than overwritten."""
    if not trained_model.is_dir():
        raise FileNotFoundError(f"no trained model at {trained_model}")
    model_folder = repository / model
    target = model_folder / str(version)
    if target.exists():
        if (target / "model.py").is_file() and (target / "model").is_dir():
            return ExportedVersion(model, version, target, folder_size(target / "model"))
        raise FileExistsError(f"{target} exists and is not an exported version; not reused")
    model_folder.mkdir(parents=True, exist_ok=True)
    staging = model_folder / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(trained_model, staging / "model")
    shutil.copy2(triton_model.__file__, staging / "model.py")
    staging.rename(target)
    config = model_folder / "config.pbtxt"
    wanted = config_pbtxt(model, max_batch_size=max_batch_size, instances=instances)
    if not config.exists() or config.read_text() != wanted:
        partial = model_folder / ".config.pbtxt.partial"
        partial.write_text(wanted)
        partial.replace(config)
    return ExportedVersion(model, version, target, folder_size(target / "model"))
