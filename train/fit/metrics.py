"""Detection metrics: threshold-free (AP, ROC-AUC), at a threshold, and per generator.

The calibrated threshold is the equal-error-rate point on the validation split: the score where
the false-positive rate on real images equals the miss rate on fakes. Unlike max-F1 it does not
depend on the real/fake ratio of the validation set, which rarely matches what a scanner sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from dfscan.scanner.labels import FAKE_LABEL, REAL, REAL_LABEL
from dfscan.scanner.scan.calibrate import fpr_threshold

THRESHOLD_RULE = "eer_on_val"  # stored next to the threshold in checkpoints and reports


def threshold_rule(
    target_fpr: float, with_train_reals: bool = False, out_of_source: bool = False
) -> str:
    """The rule's name: EER, or a false-positive rate on the validation reals (pooled with the
    training reals' out-of-fold scores, for an exactly fitted head; out of *source* when that
    CV held whole real sources out, so the rate is one for sources never seen)."""
    if target_fpr <= 0:
        return THRESHOLD_RULE
    held = "source" if out_of_source else "fold"
    reals = f"val_and_out_of_{held}_train_reals" if with_train_reals else "val_reals"
    return f"fpr{target_fpr:g}_on_{reals}"


def calibrated_threshold(y: np.ndarray, p: np.ndarray, target_fpr: float = 0.0) -> float:
    """EER threshold, or (``target_fpr`` > 0) the score that flags that share of real images.

    A fixed false-positive rate on real photos is what a scanner's user feels, and real photos
    vary less across generators than fakes do: the EER point moves with every unseen generator.
    """
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    if target_fpr <= 0 or not (y == REAL_LABEL).any():
        return eer_threshold(y, p)
    return fpr_threshold(p[y == REAL_LABEL].tolist(), target_fpr)  # the rule calibrate uses too


def eer_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Score at which FPR ≈ FNR; 0.5 when only one class is present."""
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, p)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fpr - fnr)))
    # roc_curve's first threshold is +inf; keep the result a usable probability
    return float(np.clip(thresholds[i], 0.0, 1.0))


def _safe(fn: Any, y: np.ndarray, p: np.ndarray) -> float | None:
    return float(fn(y, p)) if len(np.unique(y)) == 2 else None


def binary_metrics(
    y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, threshold: float
) -> dict[str, Any]:
    """Accuracy, weighted P/R/F1 (as the seed reported), AP, ROC-AUC, confusion at threshold."""
    y_arr, p_arr = np.asarray(y, dtype=int), np.asarray(p, dtype=np.float64)
    pred = (p_arr >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_arr, pred, average="weighted", zero_division=0
    )
    cm = confusion_matrix(y_arr, pred, labels=[REAL_LABEL, FAKE_LABEL])
    n_real, n_fake = int(cm[REAL_LABEL].sum()), int(cm[FAKE_LABEL].sum())
    return {
        "n": len(y_arr),
        "n_real": n_real,
        "n_fake": n_fake,
        "threshold": float(threshold),
        "accuracy": float((pred == y_arr).mean()) if len(y_arr) else None,
        "precision_weighted": float(precision),
        "recall_weighted": float(recall),
        "f1_weighted": float(f1),
        "ap": _safe(average_precision_score, y_arr, p_arr),
        "roc_auc": _safe(roc_auc_score, y_arr, p_arr),
        "fpr_real": float(cm[REAL_LABEL, FAKE_LABEL] / n_real) if n_real else None,
        "tpr_fake": float(cm[FAKE_LABEL, FAKE_LABEL] / n_fake) if n_fake else None,
        "confusion": cm.tolist(),  # rows: true real/fake; cols: predicted real/fake
    }


def per_generator(
    y: Sequence[int] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    generators: Sequence[str],
    threshold: float,
) -> dict[str, dict[str, Any]]:
    """Per source folder: count, flagged rate, mean p_fake; for fakes, AP/AUC against all reals.

    For ``real`` the flagged rate is the false-positive rate; for a generator it is its
    detection rate. AUC of each generator against the same real images tells which generators
    are separable at all, independently of the threshold.
    """
    y_arr, p_arr = np.asarray(y, dtype=int), np.asarray(p, dtype=np.float64)
    gens = np.asarray(generators)
    real_mask = y_arr == REAL_LABEL
    out: dict[str, dict[str, Any]] = {}
    for gen in sorted(set(generators), key=lambda g: (g != REAL, g)):
        mask = gens == gen
        flagged = float((p_arr[mask] >= threshold).mean())
        row: dict[str, Any] = {
            "count": int(mask.sum()),
            "flagged_rate": flagged,
            "mean_p_fake": float(p_arr[mask].mean()),
        }
        if gen == REAL:
            row["false_positive_rate"] = flagged
        else:
            row["detection_rate"] = flagged
            both = mask | real_mask
            row["ap_vs_real"] = _safe(average_precision_score, y_arr[both], p_arr[both])
            row["auc_vs_real"] = _safe(roc_auc_score, y_arr[both], p_arr[both])
            row["confusion_vs_real"] = confusion_matrix(
                y_arr[both], (p_arr[both] >= threshold).astype(int), labels=[0, 1]
            ).tolist()
        out[gen] = row
    return out
