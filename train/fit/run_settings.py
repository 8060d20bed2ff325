"""One grid run's settings: every key a grid may set, its default, and the canonical form.

The keys are :class:`dfscan.train.fit.config.TrainConfig`'s (its settings, ``seed`` and
``max_steps``) plus ``recipe``; their defaults are the dataclass's, as a grid writes them. A run
is identified by the hash of its canonical settings, so canonical form is part of the on-disk
format: two spellings of one configuration (``augment = true`` and ``"on"``) are one run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dfscan.scanner.errors import DataError, DfscanError
from dfscan.scanner.model.preprocess import MODES

from ..data.augment_config import AUGMENT_PRESETS
from ..data.synth import check_nets
from ..models.detector import STAGES, parse_train_layers
from ..models.registry import INPUTS, ArchSpec, get_spec
from .config import (
    CV_REALS,
    GRID_FIELDS,
    HEAD_FITS,
    KEEP,
    augment_name,
    setting_fields,
)

# TrainConfig's defaults as a grid writes them, and "recipe": the keys a grid run may set
DEFAULTS: dict[str, Any] = {
    f.name: f.as_setting for f in setting_fields() if f.name in GRID_FIELDS
} | {"recipe": None}
KEYS = tuple(DEFAULTS)
STUDY_KEYS = ("arch", "input", "train_layers", "augment", "weights")  # always in a run's name


def resolve(explicit: dict[str, Any]) -> dict[str, Any]:
    """Grid defaults, then the named recipe's settings, then the run's own settings."""
    from .recipes import get_recipe

    name = explicit.get("recipe")
    recipe = get_recipe(name).settings if isinstance(name, str) else {}
    return (
        DEFAULTS | {k: list(v) if isinstance(v, tuple) else v for k, v in recipe.items()} | explicit
    )


def canonical(settings: dict[str, Any], grid: str = "grid") -> dict[str, Any]:
    """Check one run's settings and put them in canonical form (the hash depends on it)."""
    c = _Checker(dict(settings), grid)
    spec = c.arch()
    c.choices()
    c.numbers()
    synth = c.synth()
    s = c.s
    return {
        "arch": spec.name,
        "input": s["input"],
        "train_layers": c.train_layers(spec.default_train_layers),
        "augment": augment_name(s["augment"]),
        "weights": s["weights"],
        "size": c.integer("size", 8),
        "epochs": c.integer("epochs", 1),
        "batch_size": c.integer("batch_size", 1),
        "lr": float(s["lr"]),
        "max_steps": c.integer("max_steps", 0),
        "preprocess": s["preprocess"],
        "seed": c.integer("seed", 0),
        "synth": synth,
        "weight_decay": float(s["weight_decay"]),
        "keep": s["keep"],
        "target_fpr": float(s["target_fpr"]),
        "recipe": s["recipe"],
    } | c.later_settings()


@dataclass
class _Checker:
    """The checks of :func:`canonical`, each failing with the grid, the key and the value."""

    s: dict[str, Any]
    grid: str

    def fail(self, key: str, why: str) -> DataError:
        return DataError(f"grid {self.grid}: {key} = {self.s[key]!r}: {why}")

    def integer(self, key: str, minimum: int) -> int:
        value = self.s[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"must be an integer ≥ {minimum}")
        return value

    def number(self, key: str, ok: Callable[[float], bool], why: str) -> None:
        value = self.s[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
            raise self.fail(key, why)

    def arch(self) -> ArchSpec:
        try:
            return get_spec(str(self.s["arch"]))
        except DfscanError as exc:
            raise self.fail("arch", exc.hint or exc.message) from None

    def choices(self) -> None:
        s = self.s
        if s["input"] not in INPUTS:
            raise self.fail("input", f"use one of {', '.join(INPUTS)}")
        if s["preprocess"] not in MODES:
            raise self.fail("preprocess", f"use one of {', '.join(MODES)}")
        if not isinstance(s["augment"], bool) and s["augment"] not in AUGMENT_PRESETS:
            raise self.fail("augment", f"use true, false or one of {', '.join(AUGMENT_PRESETS)}")

    def numbers(self) -> None:
        self.number("weight_decay", lambda v: v >= 0, "must be a number ≥ 0")
        self.number(
            "target_fpr",
            lambda v: 0 <= v < 1,
            "must be a number in [0, 1): 0 is the EER threshold",
        )
        if self.s["keep"] not in KEEP:
            raise self.fail("keep", "use best or last")

    def later_settings(self) -> dict[str, Any]:
        """Settings added after the first grids ran (see :func:`hashed`)."""
        s = self.s
        if s["head_fit"] not in HEAD_FITS:
            raise self.fail("head_fit", f"use one of {', '.join(HEAD_FITS)}")
        if s["head_l2"] is not None:
            self.number("head_l2", lambda v: v > 0, "must be a positive number (unset: CV)")
        if s["cv_reals"] not in CV_REALS:
            raise self.fail("cv_reals", f"use one of {', '.join(CV_REALS)}")
        values = {
            "head_fit": s["head_fit"],
            "head_l2": None if s["head_l2"] is None else float(s["head_l2"]),
            "cv_reals": s["cv_reals"],
        }
        return values

    def synth(self) -> list[str]:
        s = self.s
        if isinstance(s["synth"], str):
            s["synth"] = [p.strip() for p in s["synth"].split(",") if p.strip()]
        try:
            synth = list(check_nets(s["synth"]))
        except DfscanError as exc:
            raise self.fail("synth", exc.hint or exc.message) from None
        if not isinstance(s["weights"], str) or not s["weights"]:
            raise self.fail("weights", "use imagenet, none or a file path")
        self.number("lr", lambda v: v > 0, "must be a positive number")
        return synth

    def train_layers(self, default: tuple[str, ...]) -> str:
        spec = self.s["train_layers"]
        if spec is not None and not isinstance(spec, str | list):
            raise self.fail("train_layers", "use a string such as 'layer3,layer4' or 'all'")
        try:
            layers = parse_train_layers(spec, default)
        except DfscanError as exc:
            raise self.fail("train_layers", exc.hint or exc.message) from None
        stages = [p for p in layers if p != "head"]
        return "all" if tuple(stages) == STAGES else ",".join(stages) or "head"


LATER_KEYS = ("head_fit", "head_l2", "cv_reals")


def hashed(settings: dict[str, Any]) -> dict[str, Any]:
    """What a run's hash covers: a setting added later counts only where the run changes it,
    so every run made before it existed keeps its hash (and its folder, and --resume)."""
    return {k: v for k, v in settings.items() if k not in LATER_KEYS or v != DEFAULTS[k]}
