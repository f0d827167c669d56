"""The fuzz tier: hypothesis feeds malformed events to every Kafka consumer and malformed
or oversized requests to the gateway. Example counts stay modest so the tier runs in well
under two minutes; FUZZ_EXAMPLES raises them for a longer hunt, e.g.
`FUZZ_EXAMPLES=2000 .venv/bin/pytest tests/fuzz -m "not integration"`."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    # A shared 2-core machine: time per example says nothing about a bug here.
    deadline=None,
    # No example database in the working tree; a failure prints its reproduction blob.
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("fuzz")
