"""The training settings, each written once: :class:`TrainConfig`.

Every field carries its help text and how the command line and a grid see it (field metadata,
see :func:`setting`). ``dfscan train`` makes one option per field from it, the experiment grids
take their keys and defaults from it, and the recipes name the same keys; a new setting is one
new field here. Torch-free, so ``dfscan --help`` can build the options cheaply.

Two kinds of field: *settings* (what a recipe or a grid run sets; on the command line they
default to unset, so a recipe fills them and an explicit option overrides the recipe) and *run
options* (where the data is, workers, device, resuming: the command line gives them their
defaults, and only ``seed`` and ``max_steps`` vary in a grid).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from dfscan.scanner.errors import DataError

from ..data.augment_config import AUGMENT_PRESETS, AugmentConfig

Kind = Literal["setting", "run"]
KEEP = ("best", "last")
HEAD_FITS = ("sgd", "lbfgs")
CV_REALS = ("sources", "groups")
HEAD_BLOCKS = ("balanced", "joint")


@dataclass(frozen=True)
class SettingInfo:
    """What the command line and the grids need to know about one TrainConfig field."""

    help: str
    kind: Kind = "setting"
    flags: tuple[str, ...] = ()  # option names; default --field-name
    cli_type: Any = None  # the option's type when the field's own is not one typer reads
    parse: Callable[[Any], Any] | None = None  # command-line value -> setting value
    as_setting: Callable[[Any], Any] | None = None  # field value -> its recipe/grid form
    grid: bool = True  # a run option that a grid run may set (seed, max_steps)


def setting(default: Any = MISSING, *, factory: Any = MISSING, **info: Any) -> Any:
    """A TrainConfig field with its :class:`SettingInfo`."""
    return field(
        default=default, default_factory=factory, metadata={"setting": SettingInfo(**info)}
    )


def synth_list(text: str) -> tuple[str, ...]:
    """``--synth jpeg,esrgan`` (or ``none``) as a tuple of network names."""
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    return () if parts in ((), ("none",)) else parts


def augment_name(value: AugmentConfig | bool | str) -> str:
    """A preset's name for a config, a bool (true = on) or a name (grids accept all three)."""
    if isinstance(value, AugmentConfig):
        return next(name for name, preset in AUGMENT_PRESETS.items() if preset == value)
    return ("on" if value else "off") if isinstance(value, bool) else value


# Field order is the order of the grid keys (results columns, run descriptions): the study's
# axes first.
@dataclass
class TrainConfig:
    data: Path  # data, out and split may be given as str: they are Paths after construction
    out: Path
    arch: str = setting(
        "resnet50",
        help="Architecture: a name from dfscan models, timm:<name> or "
        "open_clip:<model>[:<tag>]; +stats reads every stage; fuse:<arch>,<arch> reads with "
        "several side by side.",
    )
    input: str = setting("spatial", help="spatial (pixels) or fft (spectrum).")
    train_layers: str | None = setting(
        None, help="head, all, or stages e.g. layer3,layer4 (default per arch)."
    )
    augment: AugmentConfig = setting(  # noqa: RUF009 (setting() is a dataclass field)
        factory=AugmentConfig,
        help="Augmentation preset: on, off, seed, robust; --no-augment = off.",
        cli_type=str,
        as_setting=augment_name,
    )
    weights: str = setting("imagenet", help="imagenet, none, or a weights file.")
    size: int = setting(224, help="Model input side in pixels.", flags=("--size", "--crop-size"))
    epochs: int = setting(20, help="Epochs.")
    batch_size: int = setting(16, help="Images per step.")
    lr: float = setting(1e-3, help="Adam learning rate.")
    max_steps: int | None = setting(
        None,
        help="Cap on steps per epoch (quick runs).",
        kind="run",
        as_setting=lambda v: v or 0,
    )
    preprocess: str = setting("crop", help="crop (native pixels) or resize.")
    seed: int = setting(0, help="Seed for the split, crops and augmentation.", kind="run")
    synth: tuple[str, ...] = setting(
        (),
        help="Content-matched fakes of the training reals: comma list of networks, or none.",
        cli_type=str,
        parse=synth_list,
        as_setting=list,
    )
    weight_decay: float = setting(0.0, help="> 0: AdamW with this decoupled weight decay.")
    keep: str = setting("best", help="model.ckpt: the best validation loss, or the last epoch.")
    head_fit: str = setting(
        "sgd",
        help="sgd (epochs of the optimizer) or lbfgs (frozen backbone, linear head: one exact "
        "logistic-regression fit on the features of `epochs` augmented passes).",
    )
    head_l2: float | None = setting(
        None,
        help="lbfgs: the L2 penalty; unset = chosen by held-out-generator CV on the train split.",
    )
    target_fpr: float = setting(
        0.0, help="Threshold: 0 = EER on val; > 0 = this false-positive rate on the val reals."
    )
    cv_reals: str = setting(
        "sources",
        help="lbfgs: the head's CV holds real photos out by whole source (sources, when the "
        "split names enough of them; else by photo) or by photo (groups); the out-of-fold "
        "reals also set the target_fpr threshold, so sources makes it one for unseen sources.",
    )
    head_blocks: str = setting(
        "balanced",
        help="lbfgs over a fused arch: balanced (each branch's penalty scaled by its width, so "
        "every branch has the same say) or joint (one penalty over all features).",
    )
    workers: int = setting(2, help="DataLoader worker processes.", kind="run", grid=False)
    split: Path | None = setting(  # noqa: RUF009
        None, help="Reuse a split.csv instead of making one.", kind="run", grid=False
    )
    resume: bool = setting(False, help="Continue from OUT/last.ckpt.", kind="run", grid=False)
    device: str = setting("auto", help="auto, cpu or cuda.", kind="run", grid=False)

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        if self.split is not None:
            self.split = Path(self.split)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        d["synth"] = list(self.synth)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


@dataclass(frozen=True)
class SettingField:
    """One TrainConfig field as the command line and the grids see it."""

    name: str
    type: Any  # the field's resolved type
    default: Any  # the field's default (the dataclass's, never written elsewhere)
    info: SettingInfo

    @property
    def kind(self) -> Kind:
        return self.info.kind

    @property
    def cli_type(self) -> Any:
        """The option's type: a setting's may be left unset (the recipe's value stays)."""
        base = self.info.cli_type or self.type
        return base | None if self.kind == "setting" else base

    @property
    def cli_default(self) -> Any:
        return None if self.kind == "setting" else self.default

    @property
    def as_setting(self) -> Any:
        """The default as a recipe or grid writes it (``augment = "on"``, ``synth = []``)."""
        return self.info.as_setting(self.default) if self.info.as_setting else self.default

    @property
    def shown_default(self) -> bool | str:
        """What ``--help`` shows as the default: a setting's (its option stays unset, so that a
        recipe can fill it), a run option's own, nothing where the default is per arch."""
        shown = self.as_setting
        if self.kind == "run" or shown is None:
            return self.kind == "run" and shown is not None
        if isinstance(shown, float):
            return f"{shown:g}"
        if isinstance(shown, list | tuple):
            return ",".join(shown) or "none"
        return str(shown)

    def parse(self, value: Any) -> Any:
        return self.info.parse(value) if self.info.parse else value


def _default(f: Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def setting_fields() -> list[SettingField]:
    """Every TrainConfig field except ``data`` and ``out`` (the command's own arguments)."""
    hints = typing.get_type_hints(TrainConfig)
    return [
        SettingField(f.name, hints[f.name], _default(f), f.metadata["setting"])
        for f in fields(TrainConfig)
        if "setting" in f.metadata
    ]


SETTINGS = tuple(f.name for f in setting_fields() if f.kind == "setting")  # a recipe's keys
GRID_FIELDS = tuple(f.name for f in setting_fields() if f.kind == "setting" or f.info.grid)


def config_from_settings(recipe: str | None, settings: dict[str, Any], **run: Any) -> TrainConfig:
    """TrainConfig's defaults, then the recipe's settings, then ``settings`` (a CLI or grid run).

    ``augment`` may be a preset name or a bool; ``run`` holds the per-run options (data, out,
    workers, seed, split, resume, device, max_steps).
    """
    from .recipes import get_recipe

    merged = (get_recipe(recipe).settings if recipe else {}) | settings
    unknown = sorted(set(merged) - set(SETTINGS))
    if unknown:
        raise DataError(f"unknown training setting {unknown[0]!r}", hint=", ".join(SETTINGS))
    values = dict(merged)
    if "augment" in values:
        try:
            values["augment"] = AugmentConfig.preset(values["augment"])
        except ValueError as exc:
            raise DataError(str(exc)) from None
    if "synth" in values:
        values["synth"] = tuple(values["synth"])
    if values.get("keep", "best") not in KEEP:
        raise DataError(f"keep = {values['keep']!r}: use one of {', '.join(KEEP)}")
    if values.get("head_fit", "sgd") not in HEAD_FITS:
        raise DataError(f"head_fit = {values['head_fit']!r}: use one of {', '.join(HEAD_FITS)}")
    if values.get("cv_reals", "sources") not in CV_REALS:
        raise DataError(f"cv_reals = {values['cv_reals']!r}: use one of {', '.join(CV_REALS)}")
    if values.get("head_blocks", "balanced") not in HEAD_BLOCKS:
        raise DataError(
            f"head_blocks = {values['head_blocks']!r}: use one of {', '.join(HEAD_BLOCKS)}"
        )
    return TrainConfig(**run, **values)
