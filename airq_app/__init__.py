"""airq: OpenAQ air-quality measurements on Kafka, turned into clean, scored, de-duplicated JSON Lines.

`faust -A airq_app worker` finds the Faust app as `airq_app.app`; it is imported lazily so that the pure
modules (`airq_app.aqi`, `airq_app.units`, ...) can be used without loading the settings.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from airq_app.application import app

        return app
    raise AttributeError(f"module 'airq_app' has no attribute {name!r}")
