"""When a version the route left may be unloaded.

The routers apply a route change within about a second, and a call already sent to the
old version finishes within the router's intern timeout. So a version is drained when
(1) `grace_s` has passed since the route moved away from it, and (2) Triton's own count of
the version's calls (inference statistics: successes plus failures, queued calls included
once done) did not move over the last `grace_s`: no call arrived or was in flight. A
version that a route still names is never drained.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Retiring:
    """A version the route left at `since` (monotonic seconds)."""

    model: str
    version: int
    since: float
    count: int | None = None
    counted_at: float = 0.0


def drained(retiring: Retiring, now: float, count: int, grace_s: float) -> bool:
    """Whether `retiring` may be unloaded, given Triton's call count of it now; records the
    count to compare with on the next look."""
    if now - retiring.since < grace_s:
        return False
    if retiring.count is None or retiring.count != count:
        retiring.count, retiring.counted_at = count, now
        return False
    return now - retiring.counted_at >= grace_s
