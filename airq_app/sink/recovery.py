"""What a new owner of a partition finds in the output directory: its finished offset, and what to drop.

Anything the sink did not write, or cannot have written, is left alone with a warning, never a crash: a
checkpoint that is not valid JSON or has no integer `last_offset` (the finished files are counted instead), a
`date=` entry that is not a directory of a real date, a name in a day directory that matches none of the
sink's patterns, or a directory where the sink writes files. The finished files decide: the checkpoint is only
a shortcut that can lag behind them.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

FINISHED = re.compile(r"^part-(\d{5})-(\d{12})-(\d{12})\.jsonl$")
DAY = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def checkpoint_path(state_dir: Path, partition: int) -> Path:
    return state_dir / f"partition-{partition:05d}.json"


def read_checkpoint(path: Path, warnings: list[str]) -> int:
    """The checkpoint's last finished offset; -1 (with a warning) when it is missing or cannot be used."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return -1
    except OSError as exc:
        warnings.append(f"airq: ignoring the checkpoint {path}: {exc.strerror or exc}; counting the finished files")
        return -1
    try:
        last = json.loads(raw)["last_offset"]
        if isinstance(last, bool) or not isinstance(last, int) or last < -1:
            raise ValueError(f"last_offset is {last!r}")
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        warnings.append(f"airq: ignoring the checkpoint {path}: not valid ({exc}); counting the finished files")
        return -1
    return last


def _is_day(name: str) -> bool:
    m = DAY.match(name)
    if m is None:
        return False
    try:
        datetime.strptime(m.group(1), "%Y-%m-%d")
    except ValueError:
        return False
    return True


def recover_partition(
    output_dir: Path, state_dir: Path, partition: int, delete_unfinished: bool = True
) -> tuple[int, list[str]]:
    """Finished offset of `partition`, after deleting the in-progress files a dead writer left.

    `delete_unfinished=False`: only read (the caller does not own the partition).

    Returns the offset (-1 when nothing is finished) and the warnings to log. Raises OSError only when a day
    directory cannot be read: its finished files might be missed, and the partition written twice.
    """
    warnings: list[str] = []
    finished = read_checkpoint(checkpoint_path(state_dir, partition), warnings)
    prefix = f"part-{partition:05d}-"
    for day in sorted(output_dir.glob("date=*")):
        if not _is_day(day.name):
            warnings.append(f"airq: ignoring {day}: not a date=YYYY-MM-DD directory of the output")
            continue
        try:
            entries = list(os.scandir(day))
        except NotADirectoryError:
            warnings.append(f"airq: ignoring {day}: not a directory")
            continue
        for entry in entries:
            if not entry.name.startswith(prefix):
                continue  # another partition's, or not the sink's at all
            try:
                regular = entry.is_file(follow_symlinks=False)
            except OSError:
                regular = False
            m = FINISHED.match(entry.name)
            if m is not None or entry.name.endswith(".inprogress"):
                if not regular:
                    warnings.append(f"airq: ignoring {entry.path}: named like an output file but not a regular file")
                elif m is not None:
                    finished = max(finished, int(m.group(3)))
                elif delete_unfinished:
                    # Never finished, never acknowledged: its messages are replayed from Kafka.
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        warnings.append(f"airq: cannot delete the unfinished {entry.path}: {exc.strerror}")
            else:
                warnings.append(f"airq: ignoring {entry.path}: not a file name the sink writes")
    return finished, warnings
