"""API keys of tenants: create, list, revoke, verify.

A key is `ik_` followed by 43 URL-safe characters (32 random bytes). Only its SHA-256 is
stored, with its first characters (`prefix`) to tell keys apart in listings: the plain
key is shown once, when it is created. The control plane manages keys; the gateway
verifies them; both through this module.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from interns.common.db import ApiKey

KEY_MARK = "ik_"
# "ik_" and 9 random characters: enough to tell keys apart at a glance, while the 34
# characters kept secret still carry about 200 bits.
PREFIX_LENGTH = 12
TENANT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
MAX_NAME_LENGTH = 128


class ApiKeyError(ValueError):
    """A key request that cannot be carried out; `kind` is "invalid" or "not_found" and
    the message names the field, for example `tenant_id: is required`."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class CreatedKey:
    """A new key: its record, and the plain key, which is never available again."""

    record: ApiKey
    key: str


def hash_key(key: str) -> str:
    """The stored form of a key: its SHA-256 in hex.

    A fast hash is the right choice here, unlike for passwords: a key is 256 random bits,
    so guessing one from its hash is hopeless however fast the hash is, and a slow hash
    (bcrypt, argon2) would only add its cost to every call the gateway checks. A plain
    digest is also what lets the gateway find a key by an indexed lookup.
    """
    return hashlib.sha256(key.encode()).hexdigest()


def _validate(tenant_id: str, name: str) -> None:
    if not tenant_id:
        raise ApiKeyError("invalid", "tenant_id: is required")
    if not TENANT_ID.fullmatch(tenant_id):
        raise ApiKeyError("invalid", "tenant_id: must be 1 to 128 letters, digits, '.', '_' or '-'")
    if len(name) > MAX_NAME_LENGTH:
        raise ApiKeyError("invalid", f"name: at most {MAX_NAME_LENGTH} characters")


def create_key(engine: Engine, tenant_id: str, name: str = "", created_by: str = "") -> CreatedKey:
    """Creates a key for `tenant_id` and returns it with its record; only the hash is
    stored. Raises ApiKeyError naming a bad field."""
    _validate(tenant_id, name)
    key = KEY_MARK + secrets.token_urlsafe(32)
    record = ApiKey(
        key_id=f"key_{secrets.token_hex(8)}",
        tenant_id=tenant_id,
        name=name,
        hash=hash_key(key),
        prefix=key[:PREFIX_LENGTH],
        created_by=created_by[:128],
    )
    with Session(engine) as session:
        session.add(record)
        session.commit()
        session.refresh(record)
    return CreatedKey(record, key)


def list_keys(engine: Engine, tenant_id: str = "") -> list[ApiKey]:
    """Every key (of `tenant_id` when set), revoked ones too, newest first."""
    with Session(engine) as session:
        query = select(ApiKey).order_by(col(ApiKey.created_at).desc())
        if tenant_id:
            query = query.where(ApiKey.tenant_id == tenant_id)
        return list(session.exec(query))


def revoke_key(engine: Engine, key_id: str) -> ApiKey:
    """Revokes a key (again is a no-op that keeps the first revocation time). Gateways
    refuse it once their cache of verified keys expires, within seconds."""
    if not key_id:
        raise ApiKeyError("invalid", "key_id: is required")
    with Session(engine) as session:
        record = session.get(ApiKey, key_id)
        if record is None:
            raise ApiKeyError("not_found", f"key_id: no API key {key_id!r}")
        if record.revoked_at is None:
            record.revoked_at = datetime.now(UTC)
            session.add(record)
            session.commit()
            session.refresh(record)
        return record


def find_by_hash(engine: Engine, key_hash: str) -> ApiKey | None:
    """The key whose hash is `key_hash`, if it exists and is not revoked."""
    with Session(engine) as session:
        return session.exec(
            select(ApiKey).where(ApiKey.hash == key_hash, col(ApiKey.revoked_at).is_(None))
        ).first()


def verify_key(engine: Engine, key: str) -> ApiKey | None:
    """The record of `key` if it is a valid (known, unrevoked) key, else None."""
    if not key.startswith(KEY_MARK):
        return None
    return find_by_hash(engine, hash_key(key))
