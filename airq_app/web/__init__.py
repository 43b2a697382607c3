"""The worker's web endpoints: health, readiness, status, metrics, location lookups and the dashboard."""
