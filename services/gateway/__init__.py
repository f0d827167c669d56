"""The gateway: the agents' front door."""
