"""The trace-collector: Kafka traces into the database, validated and idempotent."""
