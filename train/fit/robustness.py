"""Held-out metrics that a small test set can support: AUC, AP, detection at a fixed false-positive
rate on real, with group-bootstrap confidence intervals, on clean and degraded copies.

Intervals resample *groups* (crops of one photo move together) within each class, so they are
not narrowed by near-duplicate crops. The mean over folds gets its interval from the same
resamples, averaged fold by fold.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
from PIL import Image
from scipy.stats import rankdata

from dfscan.scanner.labels import FAKE_LABEL, REAL_LABEL

FPR_TARGET = 0.05  # detection rate is reported at this false-positive rate on real images
BOOTSTRAP = 1000
CI = 0.95


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def rescale(img: Image.Image, factor: float) -> Image.Image:
    w, h = img.size
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return img.resize(size, Image.Resampling.BICUBIC)


DEGRADATIONS: dict[str, Callable[[Image.Image], Image.Image] | None] = {
    "clean": None,
    "jpeg75": partial(jpeg, quality=75),
    "half": partial(rescale, factor=0.5),
}


def tpr_at_fpr(y: np.ndarray, p: np.ndarray, fpr: float = FPR_TARGET) -> float | None:
    """Share of fakes scored above the (1 − fpr) quantile of the real scores."""
    real, fake = p[y == REAL_LABEL], p[y == FAKE_LABEL]
    if not len(real) or not len(fake):
        return None
    cut = np.quantile(real, 1.0 - fpr, method="higher")
    return float((fake > cut).mean())


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney form of ROC-AUC (ties count half): sklearn's value, fast enough to
    bootstrap a thousand times."""
    ranks = rankdata(p)
    n_fake = int((y == FAKE_LABEL).sum())
    n_real = len(y) - n_fake
    return float((ranks[y == FAKE_LABEL].sum() - n_fake * (n_fake + 1) / 2) / (n_real * n_fake))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Σ (Rₙ − Rₙ₋₁)·Pₙ over distinct thresholds, as sklearn's average_precision_score."""
    order = np.argsort(-p, kind="mergesort")
    y_sorted, p_sorted = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]
    tps = np.cumsum(y_sorted)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    two = len(np.unique(y)) == 2
    return {
        "auc": roc_auc(y, p) if two else None,
        "ap": average_precision(y, p) if two else None,
        "tpr5": tpr_at_fpr(y, p),
    }


def bootstrap_indices(
    y: np.ndarray, groups: Sequence[str], rng: np.random.Generator, n: int = BOOTSTRAP
) -> list[np.ndarray]:
    """``n`` resamples of the image indices: groups drawn with replacement within each class."""
    by_class: list[list[np.ndarray]] = []
    for label in (REAL_LABEL, FAKE_LABEL):
        members: dict[str, list[int]] = {}
        for i in np.flatnonzero(y == label).tolist():  # Python ints
            members.setdefault(groups[i], []).append(i)
        by_class.append([np.asarray(v) for v in members.values()])
    draws = []
    for _ in range(n):
        parts = []
        for groups_of_class in by_class:
            if groups_of_class:
                pick = rng.integers(0, len(groups_of_class), len(groups_of_class))
                parts += [groups_of_class[k] for k in pick]
        draws.append(np.concatenate(parts) if parts else np.empty(0, dtype=int))
    return draws


def interval(values: Sequence[float]) -> tuple[float | None, float | None]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return None, None
    lo, hi = np.quantile(v, [(1 - CI) / 2, 1 - (1 - CI) / 2])
    return float(lo), float(hi)


def scores_with_ci(
    y: np.ndarray, p: np.ndarray, draws: Sequence[np.ndarray]
) -> tuple[dict[str, Any], dict[str, list[float | None]]]:
    """Point scores, their intervals, and the per-resample values (to average over folds)."""
    point = scores(y, p)
    samples: dict[str, list[float | None]] = {k: [] for k in point}
    for idx in draws:
        for k, v in scores(y[idx], p[idx]).items():
            samples[k].append(v)
    out: dict[str, Any] = dict(point)
    for k, vals in samples.items():
        out[f"{k}_ci"] = interval([v for v in vals if v is not None])
    return out, samples


def mean_interval(per_fold: Sequence[Sequence[float | None]]) -> tuple[float | None, float | None]:
    """Interval of the mean over folds: resample r of every fold, averaged, for each r."""
    if not per_fold or any(not len(f) for f in per_fold):
        return None, None
    stacked = np.asarray([[np.nan if v is None else v for v in f] for f in per_fold], float)
    ok = ~np.isnan(stacked).any(axis=0)
    return interval(list(stacked[:, ok].mean(axis=0)))
