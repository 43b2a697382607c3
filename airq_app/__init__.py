"""airq: OpenAQ air-quality measurements on Kafka, turned into clean, scored, de-duplicated JSON Lines.

`faust -A airq_app worker` finds the Faust app as `airq_app.app`: it is built on first access, from the settings
of this process (`airq_app.worker`), so that the pure modules (`airq_app.domain`) can be used
without loading any settings.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from airq_app.worker import default_runtime

        return default_runtime().app
    raise AttributeError(f"module 'airq_app' has no attribute {name!r}")
