"""Who is calling: an API key resolves to its tenant.

The gateway reads the `api_keys` table (written by the control plane) and keeps what it
found for a few seconds, so that a call costs no database read while a revoked key still
stops working within that time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from cachetools import TTLCache
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from interns.common.api_keys import KEY_MARK, find_by_hash, hash_key

# Keys remembered at most, valid and invalid each: bounds memory whatever clients send.
CACHE_SIZE = 10_000


class KeyStoreUnavailable(RuntimeError):
    """The key store cannot be read now; the call cannot be authenticated."""


class Authenticator(Protocol):
    """Resolves an API key to its tenant."""

    async def tenant_of(self, api_key: str) -> str | None:
        """The tenant of `api_key`, or None for an unknown or revoked key. Raises
        KeyStoreUnavailable when it cannot tell."""
        ...


class DatabaseAuthenticator:
    """Checks keys against the `api_keys` table and caches the answers for `cache_ttl_s`
    (0 disables the cache). Database reads run in a worker thread, off the event loop,
    and concurrent calls with the same uncached key share one read."""

    def __init__(
        self,
        engine: Engine,
        cache_ttl_s: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
    ):
        self._engine = engine
        # Valid and invalid keys are cached apart, so that a client trying many invalid
        # keys cannot evict the valid ones.
        self._valid: TTLCache[str, str] = TTLCache(CACHE_SIZE, cache_ttl_s, timer)
        self._invalid: TTLCache[str, bool] = TTLCache(CACHE_SIZE, cache_ttl_s, timer)
        self._pending: dict[str, asyncio.Future[str | None]] = {}

    async def tenant_of(self, api_key: str) -> str | None:
        if not api_key.startswith(KEY_MARK):
            return None
        digest = hash_key(api_key)
        if digest in self._valid:
            return self._valid[digest]
        if digest in self._invalid:
            return None
        pending = self._pending.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(self._lookup, digest))
            self._pending[digest] = pending
            pending.add_done_callback(lambda _: self._pending.pop(digest, None))
        # Shielded: one caller giving up (its deadline) must not cancel the others' read.
        tenant = await asyncio.shield(pending)
        if tenant is None:
            self._invalid[digest] = True
        else:
            self._valid[digest] = tenant
        return tenant

    def _lookup(self, digest: str) -> str | None:
        try:
            record = find_by_hash(self._engine, digest)
        except SQLAlchemyError as error:
            raise KeyStoreUnavailable(str(getattr(error, "orig", None) or error)) from None
        return record.tenant_id if record is not None else None
