"""The AsyncAPI document of every Kafka event, generated from the pydantic models by
FastStream's specification builder, for downstream consumers."""

from __future__ import annotations

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from interns.common.events import ALL_EVENTS


def asyncapi_yaml(version: str) -> str:
    broker = KafkaBroker("kafka:9092", description="The Kafka cluster Interns publishes to")
    for event in ALL_EVENTS:
        broker.publisher(
            event.topic,
            schema=event,
            title=event.topic,
            description=f"{(event.__doc__ or '').strip()} Key: `{event.key_field}`.",
        )
    spec = AsyncAPI(
        broker,
        title="Interns events",
        version=version,
        description=(
            "Events Interns publishes. Payloads are JSON; topic names carry a version and a"
            " breaking change gets a new topic."
        ),
        schema_version="3.0.0",
    )
    # Sorted keys: FastStream's channel order follows set iteration, which changes from
    # run to run, and `make asyncapi-check` compares the text.
    return yaml.safe_dump(spec.to_specification().to_jsonable(), sort_keys=True, allow_unicode=True)
