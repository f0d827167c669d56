"""Traces Kafka acknowledged, held by the gateway until the trace-collector has stored them.

Kafka's acknowledgement (acks=all) means the trace is on every in-sync replica; a cluster
that keeps its logs never loses it after that. A broker that keeps its log in memory (the
local stack's Tansu), or a single-replica topic whose disk is lost, can: what it had
acknowledged but the collector had not yet read is gone when it restarts. So the gateway
keeps each acknowledged record batch, with its partition and offsets, until the
collector's consumer group has committed past it (the collector commits only after its
database commit), and sends it again when the broker may have lost it:

- a partition's offsets went backwards (an acknowledgement at an offset below one already
  acknowledged): the broker's log was reset, so every held batch, on every partition, is
  sent again;
- the gateway lost Kafka (a send failed): held batches go back with the failed ones.

Sending again is safe: the collector is idempotent on trace id, so the database holds each
trace once; Kafka consumers see at-least-once delivery, as they do of any producer retry.

Memory is bounded: past `max_bytes`, the oldest held batches are released unconfirmed (they
are in Kafka; only a broker that also forgets them would lose them) and counted.

`HeldTraces` is plain bookkeeping, no I/O: the publisher feeds it acknowledgements and the
consumer group's committed offsets and sends again what it returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Record = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class HeldBatch:
    """Records acknowledged together on one partition (the key it is held under), at
    offsets base .. base+len-1."""

    base_offset: int
    records: Sequence[Record]
    size: int
    sequence: int  # order of acknowledgement across partitions

    @property
    def end_offset(self) -> int:
        """The offset after the batch's last record."""
        return self.base_offset + len(self.records)


class HeldTraces:
    """Acknowledged record batches not yet known to be stored, by partition, in offset order."""

    def __init__(self, max_bytes: int):
        self._max_bytes = max_bytes
        self._held: dict[int, deque[HeldBatch]] = {}
        self._next_offset: dict[int, int] = {}
        self._bytes = 0
        self._count = 0
        self._sequence = 0
        self.epoch = 0  # advances whenever the held batches are given back to be resent

    @property
    def count(self) -> int:
        """Records held."""
        return self._count

    @property
    def size(self) -> int:
        """Bytes held (keys and values)."""
        return self._bytes

    def partitions(self) -> list[int]:
        return sorted(partition for partition, held in self._held.items() if held)

    def acknowledged(
        self, partition: int, base_offset: int, records: Sequence[Record]
    ) -> tuple[list[Record], int]:
        """Holds `records`, acknowledged at `base_offset` on `partition`. Returns the
        records to send again (all held before, when the partition's offsets went
        backwards: the broker lost its log) and how many held records were released
        unconfirmed to stay within the bound."""
        resend: list[Record] = []
        if base_offset < self._next_offset.get(partition, 0):
            resend = self.take_all()
        self._next_offset[partition] = base_offset + len(records)
        size = sum(len(key) + len(value) for key, value in records)
        self._sequence += 1
        self._held.setdefault(partition, deque()).append(
            HeldBatch(base_offset, records, size, self._sequence)
        )
        self._bytes += size
        self._count += len(records)
        return resend, self._release_oldest()

    def committed(self, offsets: Mapping[int, int], epoch: int) -> int:
        """Forgets the batches the consumer group has committed past (`offsets`: partition
        -> next offset to read, as asked at `epoch`); returns how many records that
        confirmed. Offsets asked before the last `take_all` are ignored: they may be the
        forgotten log's."""
        if epoch != self.epoch:
            return 0
        confirmed = 0
        for partition, offset in offsets.items():
            held = self._held.get(partition)
            while held and held[0].end_offset <= offset:
                confirmed += self._forget(held.popleft())
        return confirmed

    def take_all(self) -> list[Record]:
        """Every held record, oldest first per partition, to be sent again; holds nothing
        after, and forgets the offsets seen (the next log starts anew)."""
        records = [
            record
            for partition in sorted(self._held)
            for batch in self._held[partition]
            for record in batch.records
        ]
        self._held.clear()
        self._next_offset.clear()
        self._bytes = 0
        self._count = 0
        self.epoch += 1
        return records

    def _release_oldest(self) -> int:
        released = 0
        while self._bytes > self._max_bytes:
            oldest = min(
                (held for held in self._held.values() if held),
                key=lambda held: held[0].sequence,
            )
            released += self._forget(oldest.popleft())
        return released

    def _forget(self, batch: HeldBatch) -> int:
        self._bytes -= batch.size
        self._count -= len(batch.records)
        return len(batch.records)
