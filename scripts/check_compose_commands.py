"""Checks of docker-compose.yml that its JSON schema cannot express.

- no top-level `version:` (obsolete in the Compose Specification);
- every service named in `depends_on` exists, and a service that always starts does not
  depend on one that only starts under a profile (Compose refuses that at `up`);
- every named volume a service mounts is declared under the top-level `volumes:`;
- every Interns module the stack runs exists under services/: the `command` of a service
  that keeps the image's `python -m` entrypoint, and the module of any
  `python -m MODULE ...` healthcheck. `interns.a.b` must be `services/a/b.py` or
  `services/a/b/__main__.py`, with an `__init__.py` in every package above it.

Usage: python scripts/check_compose_commands.py [COMPOSE_FILE] [--repo-root DIR]
Exits 1 and prints one line per problem when any check fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

PACKAGE = "interns"
PACKAGE_DIR = "services"  # pyproject.toml maps the package `interns` to services/


def module_problem(module: str, repo_root: Path) -> str | None:
    """Why `python -m module` cannot run from this repo's sources, or None if it can."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None  # not ours: nothing to check here
    base = repo_root / PACKAGE_DIR
    if not (base / "__init__.py").is_file():
        return f"{PACKAGE_DIR}/__init__.py is missing"
    for depth in range(1, len(parts) - 1):
        package = base.joinpath(*parts[1 : depth + 1])
        if not (package / "__init__.py").is_file():
            missing = package.relative_to(repo_root) / "__init__.py"
            return f"package {'.'.join(parts[: depth + 1])} has no {missing}"
    target = base.joinpath(*parts[1:])
    if len(parts) > 1 and target.with_suffix(".py").is_file():
        return None
    if (target / "__main__.py").is_file():
        if len(parts) > 1 and not (target / "__init__.py").is_file():
            return f"package {module} has no {target.relative_to(repo_root)}/__init__.py"
        return None
    candidates = [f"{target.relative_to(repo_root)}/__main__.py"]
    if len(parts) > 1:
        candidates.insert(0, str(target.with_suffix(".py").relative_to(repo_root)))
    return "no " + " or ".join(candidates)


def as_list(value) -> list[str]:
    """A Compose command or test, string or list form, as a list of words."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(word) for word in value]


def python_module(words: list[str]) -> str | None:
    """MODULE of `python -m MODULE ...` (python, python3 or a path to either)."""
    for index, word in enumerate(words[:-1]):
        if Path(word).name.startswith("python") and words[index + 1] == "-m":
            return words[index + 2] if index + 2 < len(words) else None
    return None


def uses_project_image(service: dict) -> bool:
    """Built from this repo's Dockerfile (its entrypoint is `python -m`)."""
    return "build" in service or str(service.get("image", "")).startswith(PACKAGE)


def check(compose: dict, repo_root: Path) -> tuple[list[str], list[str]]:
    """(problems, modules checked)."""
    problems: list[str] = []
    checked: list[str] = []
    if not isinstance(compose, dict) or not isinstance(compose.get("services"), dict):
        return ["no `services:` mapping at the top level"], checked
    if "version" in compose:
        problems.append("top-level `version:` is obsolete in the Compose Specification: remove it")

    services: dict[str, dict] = compose["services"]
    declared_volumes = set((compose.get("volumes") or {}).keys())

    for name, service in services.items():
        service = service or {}
        depends_on = service.get("depends_on") or []
        for dependency in depends_on if isinstance(depends_on, list) else depends_on.keys():
            if dependency not in services:
                problems.append(
                    f"service {name}: depends_on names an unknown service {dependency!r}"
                )
                continue
            spec = depends_on[dependency] if isinstance(depends_on, dict) else {}
            required = (spec or {}).get("required", True)
            if required and not service.get("profiles") and services[dependency].get("profiles"):
                problems.append(
                    f"service {name}: depends on {dependency!r}, which only starts under "
                    f"profiles {services[dependency]['profiles']}"
                )

        for volume in service.get("volumes") or []:
            if isinstance(volume, str):
                source = volume.split(":", 1)[0] if ":" in volume else None
                kind = (
                    "volume" if source and not source.startswith((".", "/", "~", "$")) else "bind"
                )
            else:
                source, kind = volume.get("source"), volume.get("type", "volume")
            if kind == "volume" and source and source not in declared_volumes:
                problems.append(f"service {name}: mounts undeclared named volume {source!r}")

        modules: list[tuple[str, str]] = []
        if uses_project_image(service) and "entrypoint" not in service:
            words = as_list(service.get("command"))
            if not words:
                problems.append(
                    f"service {name}: no command (the image's default is only for `docker run`)"
                )
            else:
                modules.append(("command", words[0]))
        test_words = as_list((service.get("healthcheck") or {}).get("test"))
        health_module = python_module(test_words)
        if health_module:
            modules.append(("healthcheck", health_module))
        for where, module in modules:
            if not module.startswith(f"{PACKAGE}."):
                problems.append(f"service {name}: {where} runs {module!r}, not an {PACKAGE} module")
                continue
            checked.append(module)
            problem = module_problem(module, repo_root)
            if problem:
                problems.append(
                    f"service {name}: {where} module {module} does not exist: {problem}"
                )
    return problems, checked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compose_file", nargs="?", default="docker-compose.yml")
    parser.add_argument(
        "--repo-root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="folder holding services/ (default: this script's repository)",
    )
    args = parser.parse_args()
    try:
        with open(args.compose_file, encoding="utf-8") as handle:
            compose = yaml.safe_load(handle)  # resolves anchors and `<<` merge keys
    except (OSError, yaml.YAMLError) as error:
        print(f"{args.compose_file}: cannot read: {error}", file=sys.stderr)
        return 1
    problems, checked = check(compose, args.repo_root)
    for problem in problems:
        print(f"{args.compose_file}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"{args.compose_file}: depends_on, volumes and {len(set(checked))} Interns modules "
        f"({', '.join(sorted(set(checked)))}) check out"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
