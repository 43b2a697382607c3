"""Small files written whole: a reader sees the old content or the new, never a part."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes, suffix: str = ".tmp", fsync: bool = False) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + suffix)
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
