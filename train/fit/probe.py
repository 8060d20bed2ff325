"""Fitting a frozen backbone's linear head exactly: L2-regularised logistic regression by L-BFGS.

With every stage frozen the head sees fixed features, and training it is a convex problem.
A few epochs of mini-batch SGD stop somewhere short of its optimum, at a point that depends on
the learning rate, the weight decay schedule and the batch order; over a few hundred images
that noise is as large as the differences between recipes. Here the features of every
augmented view (``passes`` passes over the training split, each with its own augmentation
draw) are collected once, and the optimum of

    mean over views of balanced BCE(w·z + b) + l2 / 2 · ‖w‖²,   z = standardised features

is found by L-BFGS. The standardisation, and a Platt scaling of the logits fitted on
out-of-fold scores (so p_fake reads as a probability), are folded into the head's weights
afterwards: the exported graph computes exactly the fitted function. Classes are weighted
equally (a folder with three times more reals must not move the boundary towards them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dfscan.scanner.errors import ModelError
from dfscan.scanner.labels import REAL_LABEL, is_fake_generator

from ..data.folder import Sample
from ..models.detector import Detector, RunningStandardize
from .robustness import roc_auc


def check_probe(model: Detector) -> nn.Linear:
    """The head's one Linear layer; only a frozen backbone with a linear head can be fitted."""
    if model.trainable != ("head",):
        raise ModelError(
            f"head_fit lbfgs fits a linear head on frozen features; this run trains "
            f"{'+'.join(model.trainable)}",
            hint="use --train-layers head, or head_fit sgd",
        )
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    if len(linears) != 1 or len(model.head) != 1:
        raise ModelError("head_fit lbfgs needs a linear head (an arch registered with hidden 0)")
    return linears[0]


@torch.no_grad()
def collect_features(
    model: Detector,
    passes: Iterable[Iterable[dict[str, Tensor]]],
    device: torch.device,
) -> tuple[Tensor, Tensor, Tensor]:
    """(features as the eval-mode backbone outputs them, labels, dataset indices) of every
    view of every pass.

    The backbone runs in training mode so a :class:`RunningStandardize` sees every view (as SGD
    training would); its input is captured, and standardised at the end with the final
    statistics, which is what the model computes at inference.
    """
    model.train()
    norm = model.backbone.norm
    raw: list[Tensor] = []
    labels: list[Tensor] = []
    indices: list[Tensor] = []
    captured: list[Tensor] = []
    hook = None
    if isinstance(norm, RunningStandardize):
        hook = norm.register_forward_pre_hook(lambda _m, args: captured.append(args[0].double()))
    try:
        for batches in passes:
            for batch in batches:
                if not len(batch["y"]):
                    continue
                out = model.backbone(model.frontend(batch["x"].to(device)))
                raw.append(captured.pop() if hook is not None else out.double())
                labels.append(batch["y"])
                indices.append(batch["index"])
    finally:
        if hook is not None:
            hook.remove()
        model.eval()
    if not raw:
        raise ModelError("no training image could be read: nothing to fit the head on")
    feats = torch.cat(raw).cpu()
    if isinstance(norm, RunningStandardize):
        feats = (feats - norm.scale_mean.double().cpu()) / norm.scale_std.double().cpu()
    return feats, torch.cat(labels).cpu(), torch.cat(indices).cpu()


def balanced_weights(y: Tensor) -> Tensor:
    """Per-view BCE weights that give both classes half the loss, whatever their counts."""
    return torch.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y.mean()))


def fit_logistic(
    feats: Tensor,
    labels: Tensor,
    l2: float,
    max_iter: int = 500,
    penalty: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """(w, b, stats) minimising balanced mean BCE + l2/2 Σ penalty·w² on standardised
    ``feats`` (``penalty``: a per-feature factor, 1 when None; see :func:`block_penalty`)."""
    if labels.unique().numel() < 2:
        raise ModelError("the training split needs both real and fake images to fit a head")
    mean = feats.mean(0)
    std = feats.std(0).clamp_min(1e-6)
    z = (feats - mean) / std
    y = labels.double()
    weight = balanced_weights(y)
    scale = torch.ones(z.shape[1], dtype=torch.float64) if penalty is None else penalty.double()
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )
    bce = nn.BCEWithLogitsLoss(weight=weight)

    def objective() -> Tensor:
        opt.zero_grad()
        loss = bce(z @ w + b, y) + 0.5 * l2 * (scale * w.pow(2)).sum()
        loss.backward()
        return loss

    opt.step(objective)
    with torch.no_grad():
        final = float(bce(z @ w + b, y) + 0.5 * l2 * (scale * w.pow(2)).sum())
    w_raw = (w.detach() / std).float()  # fold the standardisation into the head
    b_raw = (b.detach() - (w.detach() * mean / std).sum()).float()
    stats = {"objective": final, "iterations": float(opt.state[w]["n_iter"])}
    return w_raw, b_raw, stats


def block_penalty(blocks: Sequence[int]) -> Tensor | None:
    """Per-feature penalty factors that give each block of features (a fused backbone's
    branches) the same say: a block's factor is its width over the narrowest block's.

    Why: with one penalty on standardised features, a block of d features carries d times the
    prior variance of a one-feature block, so Lite0's 2944 statistics drown CLIP's 512-wide
    embedding whatever either is worth. Scaling the penalty by width gives every block the same
    total prior variance; the CV still picks the overall strength. One block: None (uniform).
    On the dev kit (one centre crop per image, families and real sources held out) it moved the
    fused probe's AUC per fold from 0.768 / 0.953 / 0.921 to 0.761 / 0.972 / 0.966.
    """
    if len(blocks) < 2:
        return None
    narrowest = min(blocks)
    return torch.cat([torch.full((d,), d / narrowest, dtype=torch.float64) for d in blocks])


def set_binary_head(linear: nn.Linear, w: Tensor, b: Tensor) -> None:
    """logits (−s/2, s/2) with s = w·f + b: softmax's p_fake is then exactly sigmoid(s)."""
    with torch.no_grad():
        linear.weight.copy_(torch.stack([-w / 2, w / 2]))
        linear.bias.copy_(torch.stack([-b / 2, b / 2]))


PLATT_MIN_AUC = 0.6  # below this, out-of-fold scores hold too little signal to set a scale
L2_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
CV_FOLDS = 4


def cv_folds(
    generators: Sequence[str],
    groups: Sequence[str],
    k: int = CV_FOLDS,
    sources: Sequence[str] | None = None,
) -> list[int]:
    """A fold per view: fakes by generator (whole generators held out, as unseen ones will
    be), reals by group (crops and passes of one photo stay together); with one generator,
    fakes by group too. Reals and fakes are dealt round the folds separately. Deterministic.

    With ``sources`` (see :func:`cv_sources`), reals go by whole source instead, largest first
    to the fold with the fewest real views: their out-of-fold scores are then scores of real
    sources the fitting head never saw, as a user's photos will be.
    """
    fake = [is_fake_generator(g) for g in generators]
    per_generator = len({g for g, f in zip(generators, fake, strict=True) if f}) >= 2
    keys = [
        (f, g if f and per_generator else grp)
        for g, grp, f in zip(generators, groups, fake, strict=True)
    ]
    fold: dict[tuple[bool, str], int] = {}
    for cls in (False, True):
        for i, key in enumerate(sorted({key for key in keys if key[0] == cls})):
            fold[key] = i % k
    if sources is None:
        return [fold[key] for key in keys]
    size = Counter(src for src, f in zip(sources, fake, strict=True) if not f)
    load = [0] * k
    fold_of_source: dict[str, int] = {}
    for src, count in sorted(size.items(), key=lambda kv: (-kv[1], kv[0])):
        fold_of_source[src] = min(range(k), key=lambda i: (load[i], i))
        load[fold_of_source[src]] += count
    return [
        fold[key] if f else fold_of_source[src]
        for key, src, f in zip(keys, sources, fake, strict=True)
    ]


def cv_sources(views: Sequence[Sample], mode: str, k: int = CV_FOLDS) -> list[str] | None:
    """The views' real sources for :func:`cv_folds`, or None (reals by group): ``mode``
    ``sources`` and every real view with a source, at least ``k`` of them (fewer would leave
    folds without reals, whose fakes then get no out-of-fold score)."""
    if mode != "sources":
        return None
    reals = [s.source for s in views if s.label == REAL_LABEL]
    if not reals or not all(reals) or len(set(reals)) < k:
        return None
    return [s.source for s in views]


def choose_l2(
    feats: Tensor,
    labels: Tensor,
    folds: Sequence[int],
    grid: Sequence[float] = L2_GRID,
    penalty: Tensor | None = None,
) -> tuple[float, dict[float, float], Tensor | None]:
    """The strongest penalty within one standard error of the best held-out-generator AUC.

    Cross-validation on the training split holds out whole generators, as unseen ones will be;
    but the training generators are each other's siblings (one family's versions sit on both
    sides), so the CV curve is flat where unseen families are not: on the dev kit the CV AUC
    moved by 0.005 between l2 0.01 and 10 while the held-out-family AUC moved by 0.06, towards
    the stronger penalty. Hence the one-standard-error rule (the simplest model the CV cannot
    tell from the best), not the argmax. Also returns the chosen penalty's out-of-fold
    scores (None when no fold was usable), so they are not fitted twice.
    """
    fold_of, usable = _usable_folds(labels, folds)
    if not usable:
        return max(grid), {}, None
    per_fold: dict[float, list[float]] = {}
    oof: dict[float, Tensor] = {}
    for l2 in grid:
        oof[l2] = out_of_fold_scores(feats, labels, folds, l2, penalty)
        per_fold[l2] = [
            roc_auc(labels[fold_of == f].numpy(), oof[l2][fold_of == f].numpy()) for f in usable
        ]
    means = {l2: sum(a) / len(a) for l2, a in per_fold.items()}
    best = max(means, key=lambda l2: (means[l2], l2))
    aucs = torch.tensor(per_fold[best], dtype=torch.float64)
    se = float(aucs.std() / len(aucs) ** 0.5) if len(aucs) > 1 else 0.0
    chosen = max(l2 for l2, m in means.items() if m >= means[best] - se - 1e-12)
    return chosen, means, oof[chosen]


def _usable_folds(labels: Tensor, folds: Sequence[int]) -> tuple[Tensor, list[int]]:
    """The folds that hold both classes and leave both to train on."""
    fold_of = torch.tensor(list(folds))
    usable = [
        f
        for f in sorted(set(folds))
        if labels[fold_of == f].unique().numel() == 2 and labels[fold_of != f].unique().numel() == 2
    ]
    return fold_of, usable


def out_of_fold_scores(
    feats: Tensor,
    labels: Tensor,
    folds: Sequence[int],
    l2: float,
    penalty: Tensor | None = None,
) -> Tensor:
    """Each view's score w·f + b from the fit that did not see its fold (NaN: fold unusable)."""
    fold_of, usable = _usable_folds(labels, folds)
    scores = torch.full((len(labels),), float("nan"))
    for f in usable:
        held = fold_of == f
        w, b, _ = fit_logistic(feats[~held], labels[~held], l2, max_iter=200, penalty=penalty)
        scores[held] = feats[held].float() @ w + b
    return scores


def platt(scores: Tensor, labels: Tensor) -> tuple[float, float]:
    """(a, c) so that sigmoid(a·s + c) is a probability on held-out views (balanced classes).

    A strong penalty shrinks the logits (l2 100 puts most p_fake within 0.45-0.55): ranking and
    the threshold do not care, but a report reader does. Fitted on out-of-fold scores, so the
    scale is that of images the head did not see, not the overconfident one of its own; left
    at (1, 0) when those scores rank worse than ``PLATT_MIN_AUC`` or would shrink the logits
    further (unseen generators the CV could not predict: no scale is honest then).
    """
    keep = ~torch.isnan(scores)
    s, y = scores[keep].double(), labels[keep].double()
    if len(y) < 4 or y.unique().numel() < 2 or roc_auc(y.numpy(), s.numpy()) < PLATT_MIN_AUC:
        return 1.0, 0.0  # no held-out signal to scale to: leave the logits as fitted
    weight = balanced_weights(y)
    a = torch.ones((), dtype=torch.float64, requires_grad=True)
    c = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, c], max_iter=100, line_search_fn="strong_wolfe")
    bce = nn.BCEWithLogitsLoss(weight=weight)

    def objective() -> Tensor:
        opt.zero_grad()
        loss = bce(a * s + c, y)
        loss.backward()
        return loss

    opt.step(objective)
    if float(a.detach()) < 1.0:  # only undo the penalty's shrinkage, never shrink further
        return 1.0, 0.0
    return float(a.detach()), float(c.detach())


def fit_head(
    model: Detector,
    passes: Iterable[Iterable[dict[str, Tensor]]],
    device: torch.device,
    samples: Sequence[Sample],
    l2: float | None = None,
    log: Callable[[str], None] = lambda _: None,
    cv_reals: str = "sources",
    head_blocks: str = "balanced",
) -> HeadFit:
    """Collect the features of every pass, pick l2 (unless given), fit the head into ``model``.

    ``cv_reals`` (``sources`` or ``groups``) is how the CV holds real photos out; see
    :func:`cv_sources`. What was used is ``stats["cv_reals"]``. ``head_blocks`` ``balanced``
    gives each of a fused backbone's branches the same say (:func:`block_penalty`), ``joint``
    one penalty over all features."""
    linear = check_probe(model)
    feats, labels, indices = collect_features(model, passes, device)
    cv: dict[float, float] = {}
    views = [samples[i] for i in indices.tolist()]
    sources = cv_sources(views, cv_reals)
    folds = cv_folds([s.generator for s in views], [s.group for s in views], sources=sources)
    held_by = "sources" if sources is not None else "groups"
    oof = None
    blocks = model.backbone.feature_blocks
    penalty = block_penalty(blocks) if head_blocks == "balanced" else None
    if l2 is None:
        l2, cv, oof = choose_l2(feats, labels, folds, penalty=penalty)
    if oof is None:
        oof = out_of_fold_scores(feats, labels, folds, l2, penalty)
    w, b, stats = fit_logistic(feats, labels, l2, penalty=penalty)
    scale, shift = platt(oof, labels)
    w, b = w * scale, b * scale + shift
    seen = ~torch.isnan(oof)
    stats["train_acc"] = float(((feats.float() @ w + b > 0).long() == labels).float().mean())
    set_binary_head(linear, w.to(linear.weight.device), b.to(linear.weight.device))
    reals = f"reals by {'source' if sources is not None else 'photo'}"
    balanced = "" if penalty is None else f" (blocks {'+'.join(map(str, blocks))}, balanced)"
    chosen = (
        ""
        if not cv
        else f", chosen by held-out-generator CV ({reals}; 1-SE rule; CV AUC {cv[l2]:.3f})"
    )
    log(
        f"head fitted by L-BFGS on {len(labels)} views × {feats.shape[1]} features, "
        f"l2 {l2:g}{balanced}{chosen}: objective {stats['objective']:.4f}, "
        f"{stats['iterations']:.0f} iterations; logits ×{scale:.2f} {shift:+.2f} (Platt, "
        "out of fold)"
    )
    return HeadFit(
        {
            **stats,
            "l2": l2,
            "platt": [scale, shift],
            "cv_auc": {f"{k:g}": v for k, v in cv.items()},
            "views": len(labels),
            "features": int(feats.shape[1]),
            "cv_reals": held_by,
            "feature_blocks": list(blocks),
            "head_blocks": head_blocks if len(blocks) > 1 else "joint",
        },
        torch.sigmoid(oof[seen].double() * scale + shift).numpy(),
        labels[seen].numpy(),
    )


@dataclass
class HeadFit:
    """The fit's numbers (kept in the checkpoint; ``cv_reals``: whether the CV held reals out
    by ``sources`` or ``groups``) and the out-of-fold p_fake of the training views, on the
    final head's scale (for a threshold set on more reals than val holds)."""

    stats: dict[str, Any]
    oof_p_fake: np.ndarray
    oof_labels: np.ndarray
