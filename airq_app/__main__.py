"""`python -m airq_app worker -l info` (same as `faust -A airq_app worker -l info`)."""

from __future__ import annotations


def main() -> None:
    from airq_app.application import app

    app.main()


if __name__ == "__main__":
    main()
