"""The gateway's key check against the database: tenants, revocation within the cache
time, and a refusal (not a pass) when the key store is down."""

from __future__ import annotations

import asyncio
import time

import pytest

from interns.common import api_keys
from interns.gateway import auth
from interns.gateway.auth import DatabaseAuthenticator, KeyStoreUnavailable


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_gives_its_tenant_and_an_unknown_key_none(engine):
    acme = api_keys.create_key(engine, "acme")
    authenticator = DatabaseAuthenticator(engine, cache_ttl_s=5)
    assert await authenticator.tenant_of(acme.key) == "acme"
    assert await authenticator.tenant_of("ik_unknown") is None
    assert await authenticator.tenant_of("not-even-a-key") is None


async def test_a_revoked_key_stops_working_once_the_cache_time_has_passed(engine):
    clock = FakeClock()
    created = api_keys.create_key(engine, "acme")
    authenticator = DatabaseAuthenticator(engine, cache_ttl_s=5, timer=clock)
    assert await authenticator.tenant_of(created.key) == "acme"

    api_keys.revoke_key(engine, created.record.key_id)
    clock.now += 4  # still cached: no database read on this call
    assert await authenticator.tenant_of(created.key) == "acme"
    clock.now += 2
    assert await authenticator.tenant_of(created.key) is None


async def test_concurrent_calls_with_one_new_key_make_one_database_read(engine, monkeypatch):
    created = api_keys.create_key(engine, "acme")
    reads = []

    def slow_find(engine, digest):
        reads.append(digest)
        time.sleep(0.05)
        return api_keys.find_by_hash(engine, digest)

    monkeypatch.setattr(auth, "find_by_hash", slow_find)
    authenticator = DatabaseAuthenticator(engine, cache_ttl_s=5)
    results = await asyncio.gather(*(authenticator.tenant_of(created.key) for _ in range(20)))
    assert set(results) == {"acme"}
    assert len(reads) == 1


async def test_cached_keys_are_checked_without_the_database(engine):
    created = api_keys.create_key(engine, "acme")
    authenticator = DatabaseAuthenticator(engine, cache_ttl_s=60)
    assert await authenticator.tenant_of(created.key) == "acme"
    engine.dispose()
    with engine.connect() as connection:
        connection.exec_driver_sql("DROP TABLE api_keys")
        connection.commit()
    results = await asyncio.gather(*(authenticator.tenant_of(created.key) for _ in range(50)))
    assert set(results) == {"acme"}


async def test_when_the_key_store_is_down_the_call_is_not_let_through(engine):
    created = api_keys.create_key(engine, "acme")
    with engine.connect() as connection:
        connection.exec_driver_sql("DROP TABLE api_keys")
        connection.commit()
    authenticator = DatabaseAuthenticator(engine, cache_ttl_s=5)
    with pytest.raises(KeyStoreUnavailable):
        await authenticator.tenant_of(created.key)
