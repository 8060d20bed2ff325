"""``dfscan experiments --holdout``: every run of a grid trained once per fold, scored on the
held-out fold clean, after JPEG-75 and after a 0.5× rescale; per fold and mean ± 95 % CI.

Each fold is an ordinary training run in ``DIR/runs/<run>/fold-<k>/`` on ``DIR/folds/<k>.csv``
(made once; delete ``DIR/folds`` to plan again; ``DIR/folds/plan.json`` says how reals were
placed, and asking for another placement of reals is an error). A fold is done when its
``holdout.json`` exists, so re-running resumes; a failed fold is recorded and the next one
starts. Besides the AUCs, each fold reports the false-positive rate on its held-out reals at the
calibrated threshold with an exact (Clopper–Pearson) 95 % interval, and which real sources it
held out.
"""

from __future__ import annotations

import csv
import json
import os
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from dfscan.scanner.errors import DataError, DfscanError
from dfscan.scanner.formatting import num, pct
from dfscan.scanner.labels import FAKE_LABEL, REAL_LABEL

from ..data.folder import scan_dataset
from ..data.split import read_split, write_split
from ..experiments.grid import Grid, RunSpec, grid_toml
from ..experiments.run import ExperimentsResult
from ..fit.robustness import (
    BOOTSTRAP,
    DEGRADATIONS,
    bootstrap_indices,
    mean_interval,
    scores_with_ci,
)
from .binomial import clopper_pearson
from .split import plan_folds
from .table import families_of, interval, markdown

RESULT = "holdout.json"
PLAN = "plan.json"
METRICS = ("auc", "ap", "tpr5")


class HoldoutResult(ExperimentsResult):
    """Rows per run and fold, then each run's mean row (which is never "failed" itself)."""

    @property
    def all_failed(self) -> bool:
        folds = [r for r in self.rows if r["fold"] != "mean"]
        return bool(folds) and all(r["status"] == "failed" for r in folds)


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def fold_files(
    data: Path,
    out: Path,
    holdout: str,
    folds_file: Path | None,
    n_folds: int,
    seed: int,
    console: Console,
    reals: str = "sources",
) -> dict[str, Path]:
    """``DIR/folds/<k>.csv`` for every fold (made once, then reused)."""
    folder = out / "folds"
    existing = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if existing:
        _check_plan(folder, reals, console)
        return {p.stem: p for p in existing}
    scan = scan_dataset(data)
    plan = plan_folds(scan.samples, holdout, folds_file, data, n_folds, seed, reals)
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "families.json", plan.family)
    summary = plan.summary()
    _write_json(folder / PLAN, {"reals": reals, "placed": plan.reals, "folds": summary})
    if plan.reals != reals:
        console.print("[yellow]no real image has a source[/]: real groups spread over the folds")
    for row in summary:
        console.print(
            f"fold {row['fold']}: {row['real']} real, {row['fake']} fake "
            f"({', '.join(row['families'])})",
            markup=False,
        )
        if row["sources"]:
            sources = ", ".join(f"{k} ({v})" for k, v in row["sources"].items())
            console.print(f"  real sources: {sources}", markup=False)
    files = {}
    for name in plan.names:
        path = folder / f"{name}.csv"
        write_split(path, plan.samples, plan.assignment(name, seed))
        files[name] = path
    return files


def _check_plan(folder: Path, reals: str, console: Console) -> None:
    """Refuse to reuse folds planned with another placement of reals (results would be read
    as the other protocol); folds from before plan.json placed real groups."""
    path = folder / PLAN
    if not path.is_file():
        if reals != "groups":
            console.print(
                f"[yellow]{folder} was planned before real sources could be held out[/]: its "
                "reals are spread by group; delete it to plan again"
            )
        return
    asked = json.loads(path.read_text(encoding="utf-8"))["reals"]
    if asked != reals:
        raise DataError(
            f"{folder} was planned with --holdout-reals {asked}, not {reals}",
            hint=f"delete {folder} to plan again, or pass --holdout-reals {asked}",
        )


def false_positives(p_real: np.ndarray, threshold: float) -> dict[str, Any]:
    """Reals flagged at the threshold: the rate, the counts and its exact 95 % interval."""
    flagged, n = int((p_real >= threshold).sum()), len(p_real)
    ci = list(clopper_pearson(flagged, n)) if n else [None, None]
    return {
        "fpr_at_threshold": flagged / n if n else None,
        "fpr_at_threshold_ci": ci,
        "flagged_real": flagged,
    }


def score_fold(
    checkpoint: Path,
    data: Path,
    split_file: Path,
    families: dict[str, str],
    workers: int,
    device: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Held-out metrics of one fold's model, clean and degraded, with group-bootstrap CIs."""
    from ..data.loaders import ImageDataset
    from ..fit.predict import resolve_device
    from ..fit.scoring import predict_images
    from ..models.checkpoint import load_checkpoint

    dev = resolve_device(device)
    loaded = load_checkpoint(checkpoint, dev)
    samples, assignment = read_split(split_file)
    test = [s for s in samples if assignment[s.path] == "test"]
    y = np.asarray([s.label for s in test])
    groups = [s.group for s in test]
    draws = bootstrap_indices(y, groups, np.random.default_rng(seed), BOOTSTRAP)
    result: dict[str, Any] = {
        "n_real": int((y == REAL_LABEL).sum()),
        "n_fake": int((y == FAKE_LABEL).sum()),
    }
    resamples: dict[str, list[float | None]] = {}
    for name, degrade in DEGRADATIONS.items():
        ds = ImageDataset(data, test, loaded.config.preprocess, None, degrade=degrade)
        p = predict_images(loaded.model, ds, workers, dev)
        point, boot = scores_with_ci(y, p, draws)
        for metric in METRICS:
            key = metric if name == "clean" else f"{metric}_{name}"
            result[key], result[f"{key}_ci"] = point[metric], point[f"{metric}_ci"]
            resamples[key] = boot[metric]
        if name == "clean":
            clean = p
    threshold = loaded.threshold
    result["threshold"] = threshold
    result |= false_positives(clean[y == REAL_LABEL], threshold)
    result["tpr_at_threshold"] = float((clean[y == FAKE_LABEL] >= threshold).mean())
    result["real_sources"] = sorted({s.source for s in test if s.label == REAL_LABEL and s.source})
    fam = np.asarray([families.get(s.path, s.generator) for s in test])
    per_family = {}
    for family in sorted(set(fam[y == FAKE_LABEL])):
        mask = (fam == family) | (y == REAL_LABEL)
        point, _ = scores_with_ci(y[mask], clean[mask], [])
        per_family[family] = {
            "n": int((fam == family).sum()),
            "auc": point["auc"],
            "detected_at_threshold": float((clean[fam == family] >= threshold).mean()),
        }
    result["families"] = per_family
    result["resamples"] = resamples
    return result


def run_holdout(
    data: str | Path,
    out: str | Path,
    grid: Grid,
    holdout: str,
    folds_file: str | Path | None = None,
    n_folds: int = 3,
    workers: int = 2,
    device: str = "auto",
    seed: int = 0,
    console: Console | None = None,
    reals: str = "sources",
) -> HoldoutResult:
    from ..fit.predict import resolve_device

    console = console or Console(stderr=True)
    resolve_device(device)  # --device cuda without CUDA: exit 5 now, not a failed fold each
    data, out = Path(data), Path(out)
    folds_file = None if folds_file is None else Path(folds_file)
    out.mkdir(parents=True, exist_ok=True)
    folds = fold_files(data, out, holdout, folds_file, n_folds, seed, console, reals)
    families = json.loads((out / "folds" / "families.json").read_text(encoding="utf-8"))
    specs = grid.expand()
    _write_json(
        out / "experiments.json",
        {
            "data": str(data),
            "grid": grid.name,
            "grid_toml": grid_toml(grid),
            "holdout": holdout,
            "holdout_reals": reals,
        },
    )
    try:
        for i, spec in enumerate(specs, 1):
            for name, split_file in folds.items():
                run_dir = out / "runs" / spec.folder / f"fold-{name}"
                if (run_dir / RESULT).is_file():
                    continue
                console.rule(f"[{i}/{len(specs)}] {spec.folder} fold {name}")
                _run_fold(spec, data, run_dir, split_file, families, workers, device, console)
                write_tables(out, specs)
    except BaseException:
        write_tables(out, specs)
        raise
    rows = write_tables(out, specs)
    return HoldoutResult(out, rows, out / "results.csv", out / "results.md", out / "report.html")


def _run_fold(
    spec: RunSpec,
    data: Path,
    run_dir: Path,
    split_file: Path,
    families: dict[str, str],
    workers: int,
    device: str,
    console: Console,
) -> None:
    from ..fit.loop import train

    run_dir.mkdir(parents=True, exist_ok=True)
    error = run_dir / "error.json"
    try:
        if not (run_dir / "metrics.json").is_file():
            resume = (run_dir / "last.ckpt").is_file()
            train(spec.train_config(data, run_dir, split_file, workers, device, resume), console)
        result = score_fold(run_dir / "model.ckpt", data, split_file, families, workers, device)
        _write_json(run_dir / RESULT, result)
        error.unlink(missing_ok=True)
        (run_dir / "last.ckpt").unlink(missing_ok=True)
        console.print(
            f"[green]held-out[/] AUC {num(result['auc'])} {interval(result['auc_ci'])}, "
            f"JPEG-75 {num(result['auc_jpeg75'])}, 0.5× {num(result['auc_half'])}, "
            f"FPR at threshold {pct(result['fpr_at_threshold'])} "
            f"{interval(result['fpr_at_threshold_ci'])} on {result['n_real']} held-out reals"
        )
    except Exception as exc:
        message = exc.message if isinstance(exc, DfscanError) else str(exc)
        _write_json(
            error,
            {"error": f"{type(exc).__name__}: {message}", "traceback": traceback.format_exc()},
        )
        console.print(f"[red]failed[/] {spec.folder}: {message}", markup=False, highlight=False)


# --- tables ----------------------------------------------------------------------------------

COLUMNS = (
    "run",
    "fold",
    "status",
    "n_real",
    "n_fake",
    "auc",
    "auc_lo",
    "auc_hi",
    "ap",
    "tpr5",
    "fpr_at_threshold",
    "fpr_lo",
    "fpr_hi",
    "flagged_real",
    "auc_jpeg75",
    "auc_half",
    "drop_jpeg75",
    "drop_half",
    "error",
)


def _fold_row(spec: RunSpec, fold_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"run": spec.folder, "fold": fold_dir.name.removeprefix("fold-")}
    if (fold_dir / RESULT).is_file():
        r = json.loads((fold_dir / RESULT).read_text(encoding="utf-8"))
        row |= {"status": "done", **r}
    elif (fold_dir / "error.json").is_file():
        err = json.loads((fold_dir / "error.json").read_text(encoding="utf-8"))
        row |= {"status": "failed", "error": err["error"]}
    else:
        row["status"] = "pending"
    return _with_drops(row)


def _with_drops(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("jpeg75", "half"):
        a, b = row.get("auc"), row.get(f"auc_{name}")
        row[f"drop_{name}"] = None if a is None or b is None else a - b
    lo, hi = row.get("auc_ci") or (None, None)
    row["auc_lo"], row["auc_hi"] = lo, hi
    row["fpr_lo"], row["fpr_hi"] = row.get("fpr_at_threshold_ci") or (None, None)
    return row


def _mean_row(spec: RunSpec, folds: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in folds if r["status"] == "done"]
    row: dict[str, Any] = {"run": spec.folder, "fold": "mean"}
    if not done or len(done) < len(folds):
        return row | {"status": "incomplete" if done else folds[0]["status"]}
    row["status"] = "done"
    row["n_real"] = sum(r["n_real"] for r in done)
    row["n_fake"] = sum(r["n_fake"] for r in done)
    for key in done[0]["resamples"]:
        vals = [r[key] for r in done if r.get(key) is not None]
        row[key] = None if len(vals) < len(done) else float(np.mean(vals))
        row[f"{key}_ci"] = mean_interval([r["resamples"][key] for r in done])
    if all("flagged_real" in r for r in done):  # every real is held out once: pool them
        flagged = sum(r["flagged_real"] for r in done)
        row |= {
            "fpr_at_threshold": flagged / row["n_real"],
            "fpr_at_threshold_ci": list(clopper_pearson(flagged, row["n_real"])),
            "flagged_real": flagged,
        }
    else:  # folds scored before the counts were recorded
        row["fpr_at_threshold"] = float(np.mean([r["fpr_at_threshold"] for r in done]))
    fams: dict[str, dict[str, Any]] = {}
    for r in done:
        fams |= r.get("families", {})
    row["families"] = fams
    row["real_sources"] = sorted({src for r in done for src in r.get("real_sources", [])})
    return _with_drops(row)


def collect(out: Path, specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
    folds = sorted((out / "folds").glob("*.csv")) if (out / "folds").is_dir() else []
    rows: list[dict[str, Any]] = []
    for spec in specs:
        per_fold = [_fold_row(spec, out / "runs" / spec.folder / f"fold-{f.stem}") for f in folds]
        rows += [*per_fold, _mean_row(spec, per_fold)] if per_fold else []
    return rows


def write_tables(out: Path, specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
    from .report import write_html

    rows = collect(out, specs)
    families = families_of(rows)
    columns = [*COLUMNS[:-1], *(f"auc_{f}" for f in families), "error"]
    tmp = out / "results.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_csv(_value(r, c)) for c in columns])
    os.replace(tmp, out / "results.csv")
    (out / "results.md").write_text(markdown(rows) + "\n", encoding="utf-8")
    write_html(out, rows, families)
    return rows


def _value(row: dict[str, Any], column: str) -> Any:
    if column.startswith("auc_") and column[4:] in row.get("families", {}):
        return row["families"][column[4:]]["auc"]
    return row.get(column)


def _csv(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else value
