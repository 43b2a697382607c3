"""The stream: the agent that turns raw measurements into records, its tables and its per-partition state."""
