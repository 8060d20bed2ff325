"""What one experiment run leaves in its folder, and how the runner and the tables read it.

``result.json`` is written last (a run is done when it exists), ``error.json`` records a failed
attempt, ``timing.json`` adds up the training time over resumed attempts; ``split.csv`` is the
run's copy of the shared split (another one means the shared split was remade).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

RESULT = "result.json"  # written last: a run is done when it exists
ERROR = "error.json"
TIMING = "timing.json"


def is_stale(run_dir: Path, split_file: Path) -> bool:
    """The run's copy of the split is not the shared one (DIR/split.csv was remade)."""
    own = run_dir / "split.csv"
    return own.is_file() and own.read_bytes() != split_file.read_bytes()


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: _number(v) for k, v in row.items()})
    return rows


def _number(value: str | None) -> float | int | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() and "." not in value else number


def add_time(run_dir: Path, seconds: float) -> None:
    path = run_dir / TIMING
    previous = read_json(path) if path.is_file() else {"seconds": 0.0, "attempts": 0}
    write_json(
        path,
        {"seconds": previous["seconds"] + seconds, "attempts": previous["attempts"] + 1},
    )


def write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
