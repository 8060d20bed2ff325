"""Experiment grids: which training runs ``dfscan experiments`` makes, and their names.

A *grid* (a TOML or JSON file, or a built-in name: ``seed``, ``demo30``, ``quick``) lists
training configurations; each run goes through the normal :func:`dfscan.train.fit.loop.train` and
:func:`dfscan.train.fit.evaluate.evaluate` on one split made up front (``DIR/split.csv``), so every
run sees the same train/val/test images. Results go to ``DIR/results.csv``,
``DIR/results.md`` and a self-contained ``DIR/report.html``, rewritten after every run.

Grid file (``dfscan experiments --grid demo30 --show-grid`` prints a built-in one)::

    mode = "product"            # or "one-at-a-time": the baseline (first value of every axis),
                                # then each other value of each axis on its own
    [base]                      # settings shared by every run
    arch = "efficientnet_lite0"
    size = 96
    [axes]                      # lists of values to combine
    input = ["spatial", "fft"]
    train_layers = ["all", "layer3,layer4", "layer4"]
    augment = [true, false]
    weights = ["imagenet", "none"]
    [[runs]]                    # extra runs: the baseline with these changes
    arch = "resnet50"
    weights = "none"

Keys: ``recipe arch input train_layers augment weights size epochs batch_size lr max_steps
preprocess seed synth`` (``recipe`` fills the others it sets; ``augment`` is true/false or a
preset name such as ``"robust"``; ``max_steps = 0`` means no cap). The split is made once
(``--seed``) and kept in ``DIR/split.csv``; delete it to split again, and runs made on the old
split train anew. Each run lives in ``DIR/runs/<name>-<hash>``, the hash covering its whole
configuration: re-running skips runs whose ``result.json`` exists, continues an interrupted
training from its ``last.ckpt`` (deleted once the run is done), retries failed runs, and never
mixes results of a changed configuration with old ones. A run that raises is recorded (status
``failed`` and the error) and the next one starts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfscan.scanner.errors import DataError

from ..fit.config import (
    SETTINGS,
    TrainConfig,
    config_from_settings,
)
from ..fit.run_settings import KEYS, STUDY_KEYS, canonical, hashed, resolve
from ..models.registry import get_spec
from ._builtin_grids import BUILTIN_GRIDS, QUICK_OVERRIDES

__all__ = [
    "MODES_GRID",
    "Grid",
    "RunSpec",
    "grid_toml",
    "load_grid",
    "parse_grid",
    "read_grid_file",
]


MODES_GRID = ("product", "one-at-a-time")


@dataclass(frozen=True)
class RunSpec:
    """One training configuration of a grid: canonical settings for every key of ``KEYS``."""

    settings: dict[str, Any]

    @property
    def key(self) -> str:
        text = json.dumps(hashed(self.settings), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def name(self) -> str:
        tokens = [_token(k, self.settings[k]) for k in STUDY_KEYS]
        if self.settings.get("synth"):
            tokens.append("synth")
        if self.settings.get("recipe"):
            tokens.insert(0, str(self.settings["recipe"]))
        return "-".join(tokens)

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.key}"

    def train_config(
        self, data: Path, out: Path, split: Path, workers: int, device: str, resume: bool
    ) -> TrainConfig:
        s = self.settings
        return config_from_settings(
            None,
            {k: s[k] for k in SETTINGS},
            data=data,
            out=out,
            workers=workers,
            seed=s["seed"],
            split=split,
            resume=resume,
            device=device,
            max_steps=s["max_steps"] or None,
        )


def _token(key: str, value: Any) -> str:
    if key == "arch":
        return get_spec(value).short_name
    if key == "input":
        return value
    if key == "train_layers":
        return value.replace("layer", "l").replace(",", "+")
    if key == "augment":
        return {"on": "aug", "off": "noaug"}.get(value, f"aug-{value}")
    if key == "weights":
        return {"imagenet": "pre", "none": "scratch"}.get(value, "w-" + Path(value).stem[:16])
    return f"{key}{value}"


@dataclass
class Grid:
    name: str
    mode: str = "product"
    base: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    about: str = ""

    def baseline(self) -> dict[str, Any]:
        return self.base | {k: v[0] for k, v in self.axes.items()}

    def expand(self) -> list[RunSpec]:
        """The runs, in order, without duplicates; every one validated."""
        baseline = self.baseline()
        if self.mode == "product":
            keys = list(self.axes)
            combos = [
                self.base | dict(zip(keys, values, strict=True))
                for values in itertools.product(*self.axes.values())
            ]
        else:
            combos = [baseline]
            for key, values in self.axes.items():
                combos += [baseline | {key: v} for v in values[1:]]
        combos += [baseline | extra for extra in self.runs]
        specs: dict[str, RunSpec] = {}
        for combo in combos:
            spec = RunSpec(canonical(resolve(combo), self.name))
            specs.setdefault(spec.key, spec)
        return list(specs.values())

    def with_overrides(self, overrides: dict[str, Any]) -> Grid:
        """The same runs with ``overrides`` forced on every one (``--quick`` on any grid)."""
        axes = {k: v for k, v in self.axes.items() if k not in overrides}
        runs = [{k: v for k, v in r.items() if k not in overrides} for r in self.runs]
        return Grid(self.name, self.mode, self.base | overrides, axes, runs, self.about)


def parse_grid(raw: dict[str, Any], name: str) -> Grid:
    """Check a grid's structure and every run it expands to."""
    unknown = sorted(set(raw) - {"about", "mode", "base", "axes", "runs"})
    if unknown:
        raise DataError(
            f"grid {name}: unknown section {unknown[0]!r}",
            hint="use about, mode, [base], [axes], [[runs]]",
        )
    mode = raw.get("mode", "product")
    if mode not in MODES_GRID:
        raise DataError(f"grid {name}: mode {mode!r}; use one of {', '.join(MODES_GRID)}")
    base, axes, runs = raw.get("base", {}), raw.get("axes", {}), raw.get("runs", [])
    if not isinstance(base, dict) or not isinstance(axes, dict) or not isinstance(runs, list):
        raise DataError(f"grid {name}: [base] and [axes] are tables, [[runs]] a list of tables")
    for where, table in (("base", base), ("axes", axes), *(("runs", r) for r in runs)):
        if not isinstance(table, dict):
            raise DataError(f"grid {name}: every [[runs]] entry must be a table")
        bad = sorted(set(table) - set(KEYS))
        if bad:
            raise DataError(
                f"grid {name}: unknown key {bad[0]!r} in [{where}]", hint=f"keys: {', '.join(KEYS)}"
            )
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise DataError(f"grid {name}: axis {key!r} must be a non-empty list of values")
    grid = Grid(
        name,
        mode,
        dict(base),
        {k: list(v) for k, v in axes.items()},
        [dict(r) for r in runs],
        str(raw.get("about", "")),
    )
    grid.expand()  # validate every run now, not hours into the study
    return grid


def read_grid_file(path: Path) -> dict[str, Any]:
    """A ``.toml`` grid (or the same structure as ``.json``)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"grid {path}: not valid JSON: {exc}") from None
    elif sys.version_info < (3, 11):  # no tomllib; a check mypy reads (its target is 3.10)
        raise DataError(
            f"grid {path}: reading TOML needs Python 3.11+", hint="write the grid as .json"
        )
    else:
        import tomllib

        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise DataError(f"grid {path}: not valid TOML: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(f"grid {path}: expected a table of mode, base, axes, runs")
    return raw


def load_grid(source: str | Path | None = None, quick: bool = False) -> Grid:
    """A built-in grid by name (``seed``, ``demo30``, ``quick``) or a TOML/JSON file.

    ``None`` is the ``seed`` grid, or ``quick`` with ``quick=True``; ``quick`` with another
    grid keeps its runs but makes them tiny (32² crops, one epoch of two steps).
    """
    if source is None:
        name = "quick" if quick else "seed"
        return parse_grid(BUILTIN_GRIDS[name], name)
    if str(source) in BUILTIN_GRIDS:
        grid = parse_grid(BUILTIN_GRIDS[str(source)], str(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(
                f"grid file not found: {path}",
                hint=f"give a TOML file or a built-in grid: {', '.join(BUILTIN_GRIDS)}",
            )
        grid = parse_grid(read_grid_file(path), str(path))
    return grid.with_overrides(QUICK_OVERRIDES) if quick else grid


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def grid_toml(grid: Grid) -> str:
    """The grid as a TOML file (what ``--show-grid`` prints: a start for your own)."""
    lines = [f"# {line}" for line in textwrap.wrap(grid.about, 96)]
    lines.append(f"mode = {_toml_value(grid.mode)}")
    for title, table in (("[base]", grid.base), ("[axes]", grid.axes)):
        if table:
            lines += ["", title, *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    for run in grid.runs:
        lines += ["", "[[runs]]", *(f"{k} = {_toml_value(v)}" for k, v in run.items())]
    return "\n".join(lines) + "\n"
