"""One active controller at a time: a lease row in the database (`leases`).

Each replica tries to take or renew the lease every tick with one conditional UPDATE
(holder is me, or the lease lapsed), and an INSERT when the row does not exist; the
database makes both atomic, so two replicas never hold it together. Only the holder acts;
the others keep reading events and wait. A holder that dies is replaced once its lease
lapses (`lease_ttl_s`).
"""

from __future__ import annotations

import time

from sqlalchemy import insert, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from interns.common.db import Lease


class LeaseKeeper:
    def __init__(self, engine: Engine, name: str, holder: str, ttl_s: float, clock=time.time):
        self._engine = engine
        self.name = name
        self.holder = holder
        self._ttl_s = ttl_s
        self._clock = clock
        self.held = False

    def renew(self) -> bool:
        """Takes or renews the lease; whether this replica holds it now."""
        now = self._clock()
        table = Lease.__table__
        with self._engine.begin() as connection:
            taken = connection.execute(
                update(table)
                .where(table.c.name == self.name)
                .where(or_(table.c.holder == self.holder, table.c.expires_at < now))
                .values(holder=self.holder, expires_at=now + self._ttl_s, acquired_at=now)
            ).rowcount
        if not taken:
            try:
                with self._engine.begin() as connection:
                    connection.execute(
                        insert(table).values(
                            name=self.name,
                            holder=self.holder,
                            expires_at=now + self._ttl_s,
                            acquired_at=now,
                        )
                    )
                taken = 1
            except IntegrityError:
                taken = 0
        self.held = bool(taken)
        return self.held

    def release(self) -> None:
        """Gives the lease up at shutdown, so another replica takes over at once."""
        table = Lease.__table__
        with self._engine.begin() as connection:
            connection.execute(
                update(table)
                .where(table.c.name == self.name, table.c.holder == self.holder)
                .values(expires_at=0.0)
            )
        self.held = False
