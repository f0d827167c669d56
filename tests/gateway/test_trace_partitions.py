"""Traces go to the partition Kafka's default partitioner picks for their session, as
before the gateway remembered the hashes: a session's traces stay in one partition, in
order, whoever else produces to the topic."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from interns.gateway.traces import SessionPartitioner


@given(
    keys=st.lists(st.binary(max_size=64), min_size=1, max_size=50),
    partitions=st.integers(min_value=1, max_value=64),
)
def test_the_partition_of_a_key_is_kafkas_default(keys, partitions):
    remembered = SessionPartitioner(capacity=8)
    all_partitions = list(range(partitions))
    for key in keys + keys:  # the second time from memory (or after a clear)
        expected = DefaultPartitioner()(key, all_partitions, all_partitions)
        assert remembered(key, all_partitions, all_partitions) == expected


def test_a_trace_without_key_goes_to_an_available_partition():
    assert SessionPartitioner()(None, [0, 1, 2, 3], [2]) == 2
