"""One grid run's settings: every key a grid may set, its default, and the canonical form.

The keys are :class:`dfscan.train.fit.config.TrainConfig`'s (its settings, ``seed`` and
``max_steps``) plus ``recipe``; their defaults are the dataclass's, as a grid writes them. A run
is identified by the hash of its canonical settings, so canonical form is part of the on-disk
format: two spellings of one configuration (``augment = true`` and ``"on"``) are one run.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dfscan.scanner.errors import DataError, DfscanError
from dfscan.scanner.model.preprocess import MODES

from ..data.augment_config import AUGMENT_PRESETS
from ..data.synth import check_nets
from ..models.arch_table import ArchSpec
from ..models.detector import STAGES, parse_train_layers
from ..models.registry import INPUTS, get_spec
from .config import (
    CV_REALS,
    GRID_FIELDS,
    HEAD_BLOCKS,
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
    """Check one run's settings and put them in canonical form (the hash depends on it): one
    value per key of :data:`KEYS`, so a new TrainConfig setting is in it without a line here."""
    c = _Checker(dict(settings), grid)
    spec = c.arch()
    own_rule: dict[str, Callable[[], Any]] = {
        "arch": lambda: spec.name,
        "train_layers": lambda: c.train_layers(spec.default_train_layers),
        "augment": c.augment,
        "weights": c.weights,
        "synth": c.synth,
        "recipe": lambda: c.s["recipe"],
    }
    return {key: own_rule[key]() if key in own_rule else c.by_type(key) for key in KEYS}


# the value rules of the settings that need more than their type
CHOICES: dict[str, tuple[str, ...]] = {
    "input": INPUTS,
    "preprocess": MODES,
    "keep": KEEP,
    "head_fit": HEAD_FITS,
    "cv_reals": CV_REALS,
    "head_blocks": HEAD_BLOCKS,
}
MINIMUM = {"size": 8, "epochs": 1, "batch_size": 1}  # integer settings; the others are ≥ 0
NUMBER_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda v: v > 0, "must be a positive number"),
    "weight_decay": (lambda v: v >= 0, "must be a number ≥ 0"),
    "target_fpr": (lambda v: 0 <= v < 1, "must be a number in [0, 1): 0 is the EER threshold"),
    "head_l2": (lambda v: v > 0, "must be a positive number (unset: CV)"),
}
FIELD_TYPES = {f.name: f.type for f in setting_fields()}


def _without_none(hint: Any) -> Any:
    """``int | None`` → ``int``: whether None is allowed is the default's business."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


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

    def number(self, key: str, ok: Callable[[float], bool], why: str) -> float:
        value = self.s[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
            raise self.fail(key, why)
        return float(value)

    def by_type(self, key: str) -> Any:
        """A setting whose canonical form follows from its TrainConfig type and the rules above;
        None only where it is the default (``head_l2``: unset)."""
        value, kind = self.s[key], _without_none(FIELD_TYPES[key])
        if value is None and DEFAULTS[key] is None:
            return None
        if key in CHOICES and value not in CHOICES[key]:
            raise self.fail(key, f"use one of {', '.join(CHOICES[key])}")
        if kind is int:
            return self.integer(key, MINIMUM.get(key, 0))
        if kind is float:
            return self.number(key, *NUMBER_RULES.get(key, (lambda v: True, "must be a number")))
        if isinstance(kind, type) and not isinstance(value, kind):
            raise self.fail(key, f"must be a {kind.__name__}")
        return value

    def arch(self) -> ArchSpec:
        try:
            return get_spec(str(self.s["arch"]))
        except DfscanError as exc:
            raise self.fail("arch", exc.hint or exc.message) from None

    def augment(self) -> str:
        value = self.s["augment"]
        if not isinstance(value, bool) and value not in AUGMENT_PRESETS:
            raise self.fail("augment", f"use true, false or one of {', '.join(AUGMENT_PRESETS)}")
        return augment_name(value)

    def weights(self) -> str:
        if not isinstance(self.s["weights"], str) or not self.s["weights"]:
            raise self.fail("weights", "use imagenet, none or a file path")
        return self.s["weights"]

    def synth(self) -> list[str]:
        s = self.s
        if isinstance(s["synth"], str):
            s["synth"] = [p.strip() for p in s["synth"].split(",") if p.strip()]
        try:
            return list(check_nets(s["synth"]))
        except DfscanError as exc:
            raise self.fail("synth", exc.hint or exc.message) from None

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


# The keys the first grids hashed, frozen with the on-disk format: never add to it. A key added
# since (any other key of KEYS) counts in the hash only where a run changes it (see hashed).
FIRST_KEYS = (
    *("arch", "input", "train_layers", "augment", "weights", "size", "epochs", "batch_size"),
    *("lr", "max_steps", "preprocess", "seed", "synth", "weight_decay", "keep", "target_fpr"),
    "recipe",
)
LATER_KEYS = tuple(k for k in KEYS if k not in FIRST_KEYS)


def hashed(settings: dict[str, Any]) -> dict[str, Any]:
    """What a run's hash covers: a setting added later counts only where the run changes it,
    so every run made before it existed keeps its hash (and its folder, and --resume)."""
    return {k: v for k, v in settings.items() if k not in LATER_KEYS or v != DEFAULTS[k]}
