"""`interns up` leaves a working API key of tenant `local` in the state folder."""

from __future__ import annotations

import stat

from interns.common import api_keys
from interns.common.db import make_engine, upgrade_database
from interns.stack.supervisor import ensure_local_api_key


def test_the_local_key_is_written_for_its_owner_only_and_kept_while_valid(tmp_path):
    url = f"sqlite:///{tmp_path / 'interns.db'}"
    upgrade_database(url)
    path = tmp_path / "state" / "api-key"

    assert ensure_local_api_key(url, path) is True
    key = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    engine = make_engine(url)
    assert api_keys.verify_key(engine, key).tenant_id == "local"

    assert ensure_local_api_key(url, path) is False
    assert path.read_text().strip() == key
    assert len(api_keys.list_keys(engine, "local")) == 1

    (record,) = api_keys.list_keys(engine, "local")
    api_keys.revoke_key(engine, record.key_id)
    assert ensure_local_api_key(url, path) is True
    replacement = path.read_text().strip()
    assert replacement != key
    assert api_keys.verify_key(engine, replacement).tenant_id == "local"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    engine.dispose()


def test_a_key_file_of_another_tenant_is_replaced(tmp_path):
    url = f"sqlite:///{tmp_path / 'interns.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    path = tmp_path / "api-key"
    path.write_text(api_keys.create_key(engine, "acme").key)
    assert ensure_local_api_key(url, path) is True
    assert api_keys.verify_key(engine, path.read_text().strip()).tenant_id == "local"
    engine.dispose()
