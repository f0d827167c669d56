"""The miner: finds recurring tasks in the stored traces (step S3)."""
