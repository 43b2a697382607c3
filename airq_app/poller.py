"""The leader-only OpenAQ poller (placeholder)."""
