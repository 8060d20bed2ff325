"""``dfscan calibrate``: re-set a detector's threshold on the user's own real photos.

A detector's threshold was chosen on the reals of its validation set; photos from another
camera, phone or editing chain score differently, and the false-positive rate a user sees can
be several times the one the model card promises. This scores the user's own real photos with
the model (the same discovery, decoding, preprocessing and runtime as ``dfscan scan``), sets
the threshold that flags at most ``target_fpr`` of them, and writes a copy of the .onnx file
whose detector spec carries it. Torch-free and onnx-free: the metadata is rewritten at the
protobuf level (:mod:`dfscan.scanner.model.onnx_props`), the graph copied byte for byte.

The threshold rule (the same as training's ``fpr…_on_val_reals``): with ``n`` real scores,
``k = floor(target_fpr · n)`` of them may be flagged. The threshold is the smallest float above
the (k+1)-th highest score, i.e. the empirical (1 − target) quantile taken at the order
statistic ``n − k`` (1-based, ascending: numpy's ``method="higher"`` quantile at
``(n − k − 1)/(n − 1)``), then raised by one ulp. The scanner flags ``p_fake ≥ threshold``, so
exactly the reals scored strictly above that order statistic are flagged: never more than
``k``, fewer when scores tie there (ties are resolved towards fewer false positives).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError, ModelError
from ..model.builtin import resolve_model
from ..model.meta import ONNX_FORMAT_VERSION, PREFIX, ModelMeta
from .options import CALIBRATE

if TYPE_CHECKING:
    from ..model.detector import Detector
    from ..model.runtime import Device
    from .run import ScanProgress

CALIBRATION_KEY = PREFIX + "calibration"  # the metadata entry that says how, on what, from what
Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
MIN_EXPECTED_FLAGGED = 10  # warn below this many reals expected above the threshold
MAX_TARGET = 0.5


def allowed_flagged(n: int, target_fpr: float) -> int:
    """How many of ``n`` reals a ``target_fpr`` threshold may flag: ``floor(target · n)``
    (with a tolerance of 1e-9, so 0.29 · 100 allows 29, not the 28 that float rounding says)."""
    return math.floor(target_fpr * n + 1e-9)


def fpr_threshold(scores: Sequence[float], target_fpr: float) -> float:
    """The threshold that flags at most ``target_fpr`` of these real scores (rule: module doc).

    Flagging is ``p ≥ threshold``. The result is clipped to 1.0: when the reals at the
    cut-off score 1.0, no threshold in [0, 1] leaves them unflagged, and the achieved rate is
    above the target (the caller reports it).
    """
    ordered = sorted(float(s) for s in scores)
    if not ordered:
        raise ValueError("fpr_threshold needs at least one score")
    if any(math.isnan(s) for s in ordered):
        raise ValueError("fpr_threshold got NaN scores")
    k = allowed_flagged(len(ordered), target_fpr)
    cut = ordered[len(ordered) - k - 1]  # the (k+1)-th highest: must not be flagged
    return min(math.nextafter(cut, math.inf), 1.0)


def wilson_interval(flagged: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``flagged / n`` (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n, which
    is where a false-positive rate on a few dozen photos lives.
    """
    if n <= 0 or not 0 <= flagged <= n:
        raise ValueError(f"wilson_interval needs 0 ≤ flagged ≤ n, n > 0 (got {flagged}, {n})")
    p = flagged / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if flagged == 0 else max(0.0, centre - half)
    high = 1.0 if flagged == n else min(1.0, centre + half)
    return low, high


def min_reals(target_fpr: float) -> int:
    """The fewest reals for which the threshold rests on at least ``MIN_EXPECTED_FLAGGED``
    flagged photos (200 at 5 %, 1000 at 1 %): below it the warning is shown."""
    return math.ceil(MIN_EXPECTED_FLAGGED / target_fpr - 1e-9)


def check_target(target_fpr: float) -> None:
    if not (0.0 < target_fpr <= MAX_TARGET) or math.isnan(target_fpr):
        raise DataError(
            f"--target-fpr must be in (0, {MAX_TARGET:g}], got {target_fpr:g}",
            hint="e.g. 0.05 flags at most 5 % of your real photos",
        )


def rule_name(target_fpr: float) -> str:
    """The rule's identifier, like training's ``fpr0.05_on_val_reals``."""
    return f"fpr{target_fpr:g}_on_user_reals"


@dataclass
class Calibration:
    """What ``calibrate`` did: the figures the CLI prints and the file it wrote."""

    model: Path
    out: Path
    folder: str  # the reals folder's name (not its path: the file travels)
    target_fpr: float
    precision: str
    n: int  # reals scored
    threshold_before: float
    rule_before: str
    threshold: float
    rule: str
    flagged_before: int  # reals at or above the old threshold
    flagged: int  # reals at or above the new one
    interval: tuple[float, float]  # Wilson 95 % of flagged / n
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) unreadable
    warnings: list[str] = field(default_factory=list)
    provider: str = ""

    @property
    def fpr(self) -> float:
        return self.flagged / self.n

    @property
    def fpr_before(self) -> float:
        return self.flagged_before / self.n

    def record(self) -> dict[str, Any]:
        """The ``dfscan.calibration`` metadata entry."""
        return {
            "rule": self.rule,
            "target_fpr": self.target_fpr,
            "precision": self.precision,
            "reals": self.n,
            "reals_folder": self.folder,
            "skipped_unreadable": len(self.skipped),
            "threshold": self.threshold,
            "threshold_before": self.threshold_before,
            "rule_before": self.rule_before,
            "fpr": self.fpr,
            "fpr_95ci": list(self.interval),
            "fpr_before": self.fpr_before,
            "provider": self.provider,
        }


def _check_paths(model: Path, reals: Path, out: Path, overwrite: bool) -> None:
    if not reals.exists():
        raise DataError(f"folder not found: {reals}")
    if not reals.is_dir():
        raise DataError(f"--reals must be a folder of real photos: {reals}")
    if out.is_dir():
        raise DataError(f"--out is a folder: {out}", hint="give the .onnx file to write")
    if out.exists() and not overwrite:
        same = model.exists() and os.path.samefile(model, out)
        what = "is the model itself" if same else "exists"
        raise DataError(f"--out {what}: {out}", hint="pass --overwrite to replace it")


def _score_reals(
    detector: Detector,
    reals: Path,
    batch_size: int,
    workers: int | None,
    progress: ScanProgress | None,
) -> tuple[list[float], list[tuple[str, str]]]:
    """p_fake of every readable image under ``reals`` (recursively, as ``dfscan scan`` finds
    them), and the (path, reason) of those that could not be scored."""
    from ..model.preprocess import IMAGE_EXTENSIONS
    from .discovery import DiscoveryStats, discover
    from .pipeline import score

    stats = DiscoveryStats()
    files = list(discover([reals], stats))
    if not files:
        seen = f"; ignored {stats.ignored} files of other types" if stats.ignored else ""
        raise DataError(
            f"no images found in {reals}{seen}",
            hint="looked for " + " ".join(sorted(IMAGE_EXTENSIONS)) + " (any case), recursively",
        )
    if progress is not None:
        progress.start()
        progress.set_total(len(files))
    scores: list[float] = []
    skipped: list[tuple[str, str]] = []
    for scored in score(files, detector, batch_size, workers):
        if scored.p_fake is None:
            skipped.append((scored.path, scored.error or "no score"))
        else:
            scores.append(scored.p_fake)
        if progress is not None:
            progress.advance()
    if not scores:
        raise DataError(
            f"none of the {len(files)} image files in {reals} could be read",
            hint=f"e.g. {skipped[0][0]}: {skipped[0][1]}",
        )
    return scores, skipped


def _warnings(n: int, target_fpr: float, flagged: int, interval: tuple[float, float]) -> list[str]:
    out = []
    k = allowed_flagged(n, target_fpr)
    if n < min_reals(target_fpr):
        rests = "just above the highest score" if k == 0 else f"on the {k + 1} highest scores"
        out.append(
            f"only {n} real photos for a {100 * target_fpr:g} % target: the threshold rests "
            f"{rests}, and the false-positive rate on new photos may be up to "
            f"{100 * interval[1]:.1f} % (95 % upper bound); {min_reals(target_fpr)} or more "
            f"give about {MIN_EXPECTED_FLAGGED} photos above it"
        )
    if flagged > k:
        out.append(
            f"{flagged} of the {n} real photos score 1.0: no threshold leaves them unflagged, "
            f"so the rate is {100 * flagged / n:.1f} %, above the target"
        )
    return out


def calibrate(
    model: Path | str | None,
    reals: Path | str,
    out: Path | str,
    target_fpr: float = CALIBRATE.target_fpr,
    *,
    overwrite: bool = False,
    device: Device | str = "auto",
    batch_size: int = CALIBRATE.batch_size,
    workers: int | None = None,
    progress: ScanProgress | None = None,
    notify: Callable[[str], None] = lambda message: None,
    detector: Detector | None = None,
) -> Calibration:
    """Score the real photos under ``reals`` with ``model`` (None: the built-in detector),
    write ``out``: a copy of the model whose spec's threshold (for the file's precision) flags
    at most ``target_fpr`` of them, with its rule, and a ``dfscan.calibration`` entry saying
    how many reals, from which folder (its name), and the rates before and after.

    Raises ``DataError`` (bad target, missing folder, no images, ``out`` exists without
    ``overwrite``) and ``ModelError`` (not a dfscan model); unreadable images are skipped and
    listed in the result. ``detector`` may be given already loaded (it must be ``model``'s).
    """
    from ..model.detector import Detector

    check_target(target_fpr)
    model, reals, out = resolve_model(model, notify), Path(reals), Path(out)
    _check_paths(model, reals, out, overwrite)
    detector = detector or Detector.from_onnx(model, device, notify=notify)
    if detector.warning:
        notify(detector.warning)
    meta = detector.meta
    scores, skipped = _score_reals(detector, reals, batch_size, workers, progress)

    n = len(scores)
    threshold = fpr_threshold(scores, target_fpr)
    flagged = sum(s >= threshold for s in scores)
    interval = wilson_interval(flagged, n)
    before = meta.spec.threshold(meta.precision)
    folder = reals.resolve().name or str(reals.resolve())
    result = Calibration(
        model=model,
        out=out,
        folder=folder,
        target_fpr=target_fpr,
        precision=meta.precision,
        n=n,
        threshold_before=before.value,
        rule_before=before.rule,
        threshold=threshold,
        rule=f"{rule_name(target_fpr)} ({n} photos in {folder}/)",
        flagged_before=sum(s >= before.value for s in scores),
        flagged=flagged,
        interval=interval,
        skipped=skipped,
        warnings=_warnings(n, target_fpr, flagged, interval),
        provider=detector.provider,
    )
    write_calibrated(model, out, meta, result)
    return result


def calibrated_props(
    props: dict[str, str], meta: ModelMeta, result: Calibration
) -> dict[str, str | None]:
    """The ``metadata_props`` updates: the spec with the new threshold (hash recomputed by the
    spec itself), the calibration record; a format-1 file's flat keys are replaced by format 2."""
    spec = meta.spec.with_threshold(result.precision, result.threshold, result.rule)
    updated = replace(meta, spec=spec, format_version=ONNX_FORMAT_VERSION)
    updates: dict[str, str | None] = {k: None for k in props if k.startswith(PREFIX)}
    updates.update(updated.to_props())
    updates[CALIBRATION_KEY] = json.dumps(result.record(), sort_keys=True)
    return updates


def write_calibrated(model: Path, out: Path, meta: ModelMeta, result: Calibration) -> None:
    """Write ``out`` through a temporary file next to it, read it back (ONNX Runtime loads it
    and its spec must say the new threshold), then move it into place."""
    from ..model.meta import read_model_meta
    from ..model.onnx_props import read_props, replace_props

    data = model.read_bytes()
    updates = calibrated_props(read_props(data, str(model)), meta, result)
    new = replace_props(data, updates, str(model))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(new)
        try:
            check = read_model_meta(tmp)
        except ModelError as exc:
            raise ModelError(
                f"could not write a loadable copy of {model} to {out}: {exc.message}",
                hint="a model with external data files must be written next to them",
            ) from None
        if check.threshold != result.threshold or check.precision != result.precision:
            raise ModelError(f"{out}: the written model does not read back the new threshold")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
