"""`make bench`'s summary: one table from every benchmark's result file."""

from __future__ import annotations

import json

from interns.bench.summary import collect, main


def write(folder, name: str, data) -> None:
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_goals_and_headlines_of_every_benchmark_make_one_table(tmp_path):
    results = tmp_path / "bench-results"
    results.mkdir()
    write(
        results,
        "collector",
        {
            "goals": [{"name": "SQLite traces/s", "figure": 5209.9, "target": ">= 10,000",
                       "passed": False}],
            "sqlite_traces_per_s": 5209.9,
            "lost": 0,
        },
    )  # fmt: skip
    write(results, "miner", {"goals": {"100k_in_60s": True}, "seconds_100k": 53.97})
    write(results, "rollout", {"requests_per_s": 639.9, "swap_seconds": 2.8, "rounds": []})
    write(results, "trainer", {"tasks": [{"task": "t1", "exact_match": 0.44}]})
    write(results, "newbench", {"speed": 12, "name": "x", "nested": {"a": 1}})
    write(results, "gateway-quick", {"max_rps": 1})
    (results / "broken.json").write_text("{")

    rows, sources = collect(results)

    assert ("collector", "SQLite traces/s", "5,210", ">= 10,000", "FAIL") in rows
    assert ("collector", "lost", "0", "", "") in rows
    assert ("miner", "100k_in_60s", "-", "goal", "PASS") in rows
    assert ("rollout", "requests_per_s", "639.9", "", "") in rows
    assert ("trainer", "t1 exact match", "0.44", "", "") in rows
    assert ("newbench", "speed", "12", "", "") in rows
    assert ("broken", "(unreadable)", "JSONDecodeError", "", "") in rows
    assert not any(row[0] == "gateway-quick" for row in rows)  # smoke runs are left out
    assert len(sources) == 5


def test_the_summary_is_written_as_markdown(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    write(results, "soak", {"requests": 13619, "failed_calls": 0})
    out = tmp_path / "summary.md"
    main(["--results", str(results), "--out", str(out)])
    text = out.read_text()
    assert "| soak | requests | 13,619 |  |  |" in text
    assert "soak.json" in text
    assert "13,619" in capsys.readouterr().out
