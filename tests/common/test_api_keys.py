"""API keys: stored as a hash only, verified, revoked, listed without the key."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from interns.common.api_keys import (
    ApiKeyError,
    create_key,
    list_keys,
    revoke_key,
    verify_key,
)


def test_the_key_is_never_stored_only_its_sha256(engine, tmp_path):
    created = create_key(engine, "acme", "agent-prod", "operator:ann")
    assert created.key.startswith("ik_") and len(created.key) > 40
    with engine.connect() as connection:
        (row,) = connection.execute(text("SELECT * FROM api_keys")).mappings().all()
    assert row["hash"] == hashlib.sha256(created.key.encode()).hexdigest()
    assert created.key not in str(dict(row))
    assert created.key.encode() not in (tmp_path / "interns.db").read_bytes()
    assert row["prefix"] == created.key[:12]
    assert (row["tenant_id"], row["name"], row["created_by"]) == (
        "acme",
        "agent-prod",
        "operator:ann",
    )


def test_a_key_verifies_to_its_tenant_and_nothing_else_does(engine):
    created = create_key(engine, "acme")
    other = create_key(engine, "globex")
    assert verify_key(engine, created.key).tenant_id == "acme"
    assert verify_key(engine, other.key).tenant_id == "globex"
    assert verify_key(engine, created.key + "x") is None
    assert verify_key(engine, "ik_" + "A" * 43) is None
    assert verify_key(engine, "") is None


def test_a_revoked_key_no_longer_verifies_and_stays_listed(engine):
    created = create_key(engine, "acme", "ci")
    revoked = revoke_key(engine, created.record.key_id)
    assert revoked.revoked_at is not None
    assert verify_key(engine, created.key) is None
    again = revoke_key(engine, created.record.key_id)
    assert again.revoked_at == revoked.revoked_at  # the first revocation time is kept
    (listed,) = list_keys(engine, "acme")
    assert listed.key_id == created.record.key_id and listed.revoked_at is not None


def test_listing_filters_by_tenant_newest_first(engine):
    first = create_key(engine, "acme", "one")
    create_key(engine, "globex", "two")
    third = create_key(engine, "acme", "three")
    assert [k.key_id for k in list_keys(engine, "acme")] == [
        third.record.key_id,
        first.record.key_id,
    ]
    assert len(list_keys(engine)) == 3


@pytest.mark.parametrize(
    ("tenant", "name", "message"),
    [
        ("", "", "tenant_id: is required"),
        ("acme corp", "", "tenant_id: must be"),
        ("a" * 129, "", "tenant_id: must be"),
        ("acme", "n" * 129, "name: at most 128"),
    ],
)
def test_a_bad_request_names_the_field_and_creates_nothing(engine, tenant, name, message):
    with pytest.raises(ApiKeyError, match=message) as refused:
        create_key(engine, tenant, name)
    assert refused.value.kind == "invalid"
    assert list_keys(engine) == []


def test_revoking_an_unknown_key_is_not_found(engine):
    with pytest.raises(ApiKeyError, match="no API key 'key_nope'") as refused:
        revoke_key(engine, "key_nope")
    assert refused.value.kind == "not_found"
