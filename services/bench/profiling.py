"""Where a service's time goes under load: py-spy samples the running processes (without
pausing them, and only while they hold the GIL, that is while they run Python), and the
collapsed stacks are summed by package and by project function."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

SAMPLES_PER_S = 200


def py_spy() -> str | None:
    """The py-spy command, from PATH or beside this interpreter."""
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def record(pids: dict[str, int], folder: Path, seconds: float, load: Callable[[], dict]) -> dict:
    """Samples every named process for `seconds` while `load()` runs; returns the load's
    figures and a summary per process (the raw stacks stay in `folder/<name>.txt`)."""
    command = py_spy()
    if command is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    folder.mkdir(parents=True, exist_ok=True)
    recorders = {
        name: subprocess.Popen(
            [command, "record", "--nonblocking", "--gil", "--format", "raw"]
            + ["-r", str(SAMPLES_PER_S), "-d", f"{seconds:g}", "-p", str(pid)]
            + ["-o", str(folder / f"{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    }
    time.sleep(0.5)
    result = {"under_load": load()}
    for name, recorder in recorders.items():
        try:
            recorder.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()
        result[name] = summarize(folder / f"{name}.txt")
    return result


def package_of(frame: str) -> str:
    """The package a frame `function (path/file.py:line)` runs in: `interns.router` for
    the project's code, the top folder for libraries, the module for single files."""
    where = frame.rpartition(" (")[2].rstrip(")").split(":")[0]
    parts = where.split("/")
    if parts[0] == "services" and len(parts) > 2:
        return f"interns.{parts[1]}"
    return parts[0].removesuffix(".py") if len(parts) == 1 else parts[0]


def function_of(frame: str) -> str:
    """`function (path/to/file.py:line)` as `function (path/to/file.py)`."""
    function, _, where = frame.partition(" (")
    return f"{function} ({where.split(':')[0]})"


def summarize(path: Path, top: int = 12) -> dict:
    """From collapsed stacks: the share of samples spent in each package's own code
    (`self_by_package`), under each package (`inclusive_by_package`: a library with what
    it calls), and under each of the project's functions (`project_functions`)."""
    if not path.exists():
        return {"error": f"no profile at {path}"}
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    project: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame for frame in stack.split(";") if frame]
        if not count.isdigit() or not frames:
            continue
        samples = int(count)
        total += samples
        own[package_of(frames[-1])] += samples
        for package in {package_of(frame) for frame in frames}:
            under[package] += samples
        for function in {
            function_of(f) for f in frames if f.rpartition(" (")[2].startswith("services/")
        }:
            project[function] += samples

    def shares(counter: Counter[str]) -> dict[str, float]:
        return {name: round(n / total, 3) for name, n in counter.most_common(top)}

    return {
        "samples": total,
        "self_by_package": shares(own),
        "inclusive_by_package": shares(under),
        "project_functions": shares(project),
        "raw": str(path),
    }
