"""From measured runs to the benchmark's figures: medians over rounds, latency added over
the direct path, the highest rate held, the goals, and the tables that show them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from interns.bench.load import Measured

DIRECT = "direct"
LITELLM = "litellm"
VERDICTS = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "[yellow]n/a[/]"}
PROCESS_ORDER = ("gateway", "gateway-nopub", "router", "litellm", "upstream", "collector", "kafka")


@dataclass(frozen=True)
class Goal:
    name: str
    figure: float | None
    target: str
    passed: bool | None


def median_point(rounds: list[Measured]) -> dict:
    """One concurrency of one path: the median over rounds of each figure (a shared, noisy
    machine: medians resist the round that another process disturbed), errors summed."""
    first = rounds[0]

    def med(name: str) -> float:
        return round(statistics.median(getattr(r, name) for r in rounds), 3)

    cpu_names = sorted({name for r in rounds for name in r.cpu_ms_per_call})
    return {
        "concurrency": first.concurrency,
        "rounds": len(rounds),
        "requests": sum(r.requests for r in rounds),
        "errors": sum(r.errors for r in rounds),
        "rps": round(statistics.median(r.rps for r in rounds), 1),
        "p50_ms": med("p50_ms"),
        "p90_ms": med("p90_ms"),
        "p99_ms": med("p99_ms"),
        "mean_ms": med("mean_ms"),
        "max_ms": round(max(r.max_ms for r in rounds), 3),
        "cpu_ms_per_call": {
            name: round(statistics.median(r.cpu_ms_per_call.get(name, 0.0) for r in rounds), 3)
            for name in cpu_names
        },
        "loadgen_cpu_ms_per_call": round(
            statistics.median(r.loadgen_cpu_s * 1000 / r.requests for r in rounds if r.requests)
            if any(r.requests for r in rounds)
            else 0.0,
            3,
        ),
        "other_cpu_cores": round(statistics.median(r.other_cpu_cores for r in rounds), 2),
        "quiet_wait_s": round(statistics.median(r.quiet_wait_s for r in rounds), 2),
        "raw_rounds": [r.as_dict() for r in rounds],
    }


def add_overheads(points: dict[str, dict[int, dict]]) -> None:
    """Adds `added_p50_ms` and `added_p99_ms` to every point: its latency minus the direct
    path's at the same concurrency, both measured in the same run."""
    direct = points[DIRECT]
    for by_concurrency in points.values():
        for concurrency, point in by_concurrency.items():
            base = direct.get(concurrency)
            if base is None:
                continue
            point["added_p50_ms"] = round(point["p50_ms"] - base["p50_ms"], 3)
            point["added_p99_ms"] = round(point["p99_ms"] - base["p99_ms"], 3)


def max_rate(points: dict[int, dict], p99_bound_ms: float) -> dict:
    """The highest rate held by a path: the best median rate among its steps with no error
    and a median p99 within `p99_bound_ms`."""
    held = [p for p in points.values() if p["errors"] == 0 and p["p99_ms"] <= p99_bound_ms]
    if not held:
        return {"max_rps": 0.0, "at_concurrency": None, "p99_ms": None}
    best = max(held, key=lambda p: p["rps"])
    return {"max_rps": best["rps"], "at_concurrency": best["concurrency"], "p99_ms": best["p99_ms"]}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def paired_shares(on: list[Measured], off: list[Measured], direct: list[Measured]) -> list[float]:
    """Publishing's share of the added p50 in each round: (on - off) / (on - direct), the
    three paths of a round measured within the same minute. A disturbance of the shared
    machine that lasts minutes moves all three together and cancels in the round's share;
    across rounds it would not. Rounds where the path with publishing was no slower than
    the direct one (on <= direct) are left out: their share has no denominator."""
    shares = []
    for with_, without, base in zip(on, off, direct, strict=False):
        added = with_.p50_ms - base.p50_ms
        if added > 0:
            shares.append(round((with_.p50_ms - without.p50_ms) / added, 3))
    return shares


def quartiles(values: list[float]) -> list[float] | None:
    """First and third quartile (None for fewer than two values)."""
    if len(values) < 2:
        return None
    first, _, third = statistics.quantiles(values, n=4, method="inclusive")
    return [round(first, 3), round(third, 3)]


def publishing_overhead(
    on: dict[int, dict],
    off: dict[int, dict],
    rate_on: float,
    rate_off: float,
    rate_direct: float,
    concurrency: int,
    rounds: list[float] | None = None,
) -> dict:
    """Share of the gateway's overhead that trace publishing costs, three ways:
    - latency: (added p50 with publishing - without) / added p50 with, at `concurrency`
      and at concurrency 1 (publishing runs off the call's path, so it shows under load),
      from the medians over rounds; and `rounds`, the same share round by round at
      `concurrency` (`paired_shares`), whose median is the headline when given;
    - capacity: the time per call at the highest rate held, (1/rate_on - 1/rate_off) /
      (1/rate_on - 1/rate_direct).
    The caller adds CPU shares."""

    def latency_share(c: int) -> float | None:
        if c not in on or c not in off:
            return None
        added_on = on[c].get("added_p50_ms")
        added_off = off[c].get("added_p50_ms")
        if added_on is None or added_off is None or added_on <= 0:
            return None
        return round((added_on - added_off) / added_on, 3)

    capacity = None
    if rate_on and rate_off and rate_direct and rate_on < rate_direct:
        capacity = round((1 / rate_on - 1 / rate_off) / (1 / rate_on - 1 / rate_direct), 3)
    paired = round(statistics.median(rounds), 3) if rounds else None
    return {
        "headline": paired if paired is not None else latency_share(concurrency),
        f"latency_share_c{concurrency}": latency_share(concurrency),
        f"latency_share_c{concurrency}_paired": paired,
        f"latency_share_c{concurrency}_rounds": rounds or [],
        f"latency_share_c{concurrency}_quartiles": quartiles(rounds or []),
        "latency_share_c1": latency_share(1),
        "capacity_share": capacity,
    }


def goals(summary: dict) -> list[Goal]:
    """The issue's goals, each with its measured figure and whether it is met (None when
    the figure could not be measured)."""

    def at_least(name: str, figure: float | None, bound: float) -> Goal:
        return Goal(name, figure, f">= {bound:g}", None if figure is None else figure >= bound)

    def at_most(name: str, figure: float | None, bound: float) -> Goal:
        return Goal(name, figure, f"<= {bound:g}", None if figure is None else figure <= bound)

    c = summary["goal_concurrency"]
    return [
        at_least("highest rate held, x LiteLLM's", summary["throughput_ratio_vs_litellm"], 10),
        at_most(f"added p99 at c={c}, x LiteLLM's", summary["added_p99_ratio_vs_litellm"], 0.1),
        at_most("trace publishing, share of overhead", summary["publishing_overhead_ratio"], 0.2),
    ]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cpu_table(result: dict, concurrency: int) -> Table:
    points = result["paths"]
    seen = {
        name
        for by_c in points.values()
        for name in by_c.get(concurrency, {}).get("cpu_ms_per_call", {})
    }
    names = [name for name in PROCESS_ORDER if name in seen] + sorted(seen - set(PROCESS_ORDER))
    table = Table(title=f"CPU ms per call at c={concurrency}, by process (where the time goes)")
    table.add_column("path")
    for name in [*names, "load generator"]:
        table.add_column(name, justify="right")
    for path, by_c in points.items():
        point = by_c.get(concurrency)
        if point is None:
            continue
        cpu = point["cpu_ms_per_call"]
        table.add_row(
            path,
            *[_fmt(cpu.get(name)) if name in cpu else "" for name in names],
            _fmt(point["loadgen_cpu_ms_per_call"]),
        )
    return table


def print_tables(result: dict, console: Console | None = None) -> None:
    """The per-path, per-concurrency figures, the CPU per call, the highest rates and the
    goals."""
    console = console or Console()
    points = result["paths"]
    table = Table(title="Latency and rate by path and concurrency (medians over rounds)")
    for column in (
        "path",
        "c",
        "rate/s",
        "p50 ms",
        "p99 ms",
        "added p50",
        "added p99",
        "errors",
        "other cores",
    ):
        table.add_column(column, justify="left" if column == "path" else "right")
    for path, by_concurrency in points.items():
        for concurrency in sorted(by_concurrency, key=int):
            p = by_concurrency[concurrency]
            table.add_row(
                path,
                str(concurrency),
                f"{p['rps']:.0f}",
                _fmt(p["p50_ms"]),
                _fmt(p["p99_ms"]),
                _fmt(p.get("added_p50_ms")),
                _fmt(p.get("added_p99_ms")),
                str(p["errors"]),
                _fmt(p["other_cpu_cores"]),
            )
        table.add_section()
    console.print(table)
    console.print(_cpu_table(result, result["goal_concurrency"]))

    rates = Table(title=f"Highest rate held (no error, p99 <= {result['p99_bound_ms']:.0f} ms)")
    for column in ("path", "max rate/s", "at c", "p99 ms"):
        rates.add_column(column, justify="left" if column == "path" else "right")
    for path, rate in result["max_rate"].items():
        rates.add_row(
            path, f"{rate['max_rps']:.0f}", str(rate["at_concurrency"]), _fmt(rate["p99_ms"])
        )
    console.print(rates)

    goal_table = Table(title=f"Goals (primary path: {result['primary_path']})")
    for column in ("goal", "measured", "target", "result"):
        goal_table.add_column(column)
    for goal in result["goals"]:
        verdict = VERDICTS[goal["passed"]]
        goal_table.add_row(goal["name"], _fmt(goal["figure"], 3), goal["target"], verdict)
    console.print(goal_table)
    shares = result["publishing_overhead"]
    c = result["goal_concurrency"]
    if shares.get(f"latency_share_c{c}_rounds"):
        spread = shares[f"latency_share_c{c}_quartiles"]
        console.print(
            f"trace publishing's share of the added p50 at c={c}, round by round: "
            + ", ".join(_fmt(share, 2) for share in shares[f"latency_share_c{c}_rounds"])
            + (f" (quartiles {_fmt(spread[0])} to {_fmt(spread[1])})" if spread else "")
            + f"; from the medians over rounds {_fmt(shares.get(f'latency_share_c{c}'), 3)}"
        )
    console.print(
        "trace publishing, other estimates: "
        + ", ".join(
            f"{name} {_fmt(shares.get(name), 3)}"
            for name in ("latency_share_c1", "capacity_share", "cpu_share", "machine_cpu_share")
        )
    )
    for note in result["notes"]:
        console.print(f"- {note}")
