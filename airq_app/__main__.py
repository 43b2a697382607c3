"""`python -m airq_app worker -l info` (same as `faust -A airq_app worker -l info`)."""

from __future__ import annotations


def main() -> None:
    from airq_app.worker import default_runtime

    default_runtime().app.main()


if __name__ == "__main__":
    main()
