"""The detector spec: everything that decides what a model's score means, in one versioned record.

timm's ``pretrained_cfg`` and open_clip's ``PreprocessCfg`` are the model: the checkpoint and
the ONNX metadata both carry one :class:`DetectorSpec`, ``build_model`` rebuilds the frontend
from it and the scanner prepares pixels from it; nothing else (no registry default, no module
constant) is consulted once an artifact exists. It holds

- ``arch`` and ``classes`` (index = label);
- ``frontend``: the maths inside the network, by variant and recipe version, with its
  constants (mean/std for pixels, the log-spectrum's std for the FFT);
- ``preprocess``: the whole host geometry (:class:`PreprocessConfig`);
- ``thresholds``: one per precision the model has been exported at, each with its rule;
- ``sha256``: a hash of all of the above, checked on every read, so an edited spec is refused
  and two artifacts with the same hash are fed and read alike.

Torch-free: the scanner reads it from ``.onnx`` files alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import DataError, ModelError
from ..labels import CLASSES
from .preprocess import PREPROCESS_VERSION, PreprocessConfig

SPEC_VERSION = 1  # the schema of this record
FRONTEND_VERSIONS = {"spatial": 1, "fft": 1}  # the maths of each variant (train/models/frontend.py)
UNCALIBRATED = "uncalibrated_default"  # the rule of a 0.5 that no data chose


@dataclass(frozen=True)
class Threshold:
    """A decision threshold on p_fake and how it was chosen (e.g. ``fpr@0.05_on_val_reals``)."""

    value: float
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": float(self.value), "rule": self.rule}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Threshold:
        return cls(float(d["value"]), str(d["rule"]))


@dataclass(frozen=True)
class FrontendSpec:
    """The first stage of the network: ``variant`` at ``version`` with its ``constants``."""

    variant: str  # "spatial" | "fft"
    version: int
    constants: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "version": self.version, "constants": self.constants}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontendSpec:
        return cls(str(d["variant"]), int(d["version"]), dict(d.get("constants") or {}))


@dataclass(frozen=True)
class DetectorSpec:
    arch: str
    frontend: FrontendSpec
    preprocess: PreprocessConfig
    classes: tuple[str, ...] = CLASSES
    thresholds: dict[str, Threshold] = field(default_factory=dict)  # precision → threshold
    version: int = SPEC_VERSION

    @property
    def input(self) -> str:
        return self.frontend.variant

    def threshold(self, precision: str = "fp32") -> Threshold:
        try:
            return self.thresholds[precision]
        except KeyError:
            have = ", ".join(sorted(self.thresholds)) or "none"
            raise ModelError(
                f"the detector spec has no {precision} threshold (it has: {have})",
                hint="re-export the model with this dfscan",
            ) from None

    def with_threshold(self, precision: str, value: float, rule: str) -> DetectorSpec:
        return replace(self, thresholds={**self.thresholds, precision: Threshold(value, rule)})

    def content(self) -> dict[str, Any]:
        """The hashed part: everything but the hash itself."""
        return {
            "version": self.version,
            "arch": self.arch,
            "classes": list(self.classes),
            "frontend": self.frontend.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "thresholds": {k: t.to_dict() for k, t in sorted(self.thresholds.items())},
        }

    @property
    def sha256(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**self.content(), "sha256": self.sha256}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "model") -> DetectorSpec:
        """Parse and verify; a newer schema, an unknown recipe or an edited spec is refused."""
        try:
            version = int(d["version"])
            if version > SPEC_VERSION:
                raise ModelError(
                    f"{source}: detector spec version {version}; this dfscan reads up to "
                    f"{SPEC_VERSION}",
                    hint="upgrade dfscan",
                )
            spec = cls(
                arch=str(d["arch"]),
                frontend=FrontendSpec.from_dict(d["frontend"]),
                preprocess=PreprocessConfig.from_dict(d["preprocess"]),
                classes=tuple(d["classes"]),
                thresholds={k: Threshold.from_dict(v) for k, v in d["thresholds"].items()},
                version=version,
            )
        except KeyError as exc:
            raise ModelError(f"{source}: the detector spec lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError, DataError) as exc:
            raise ModelError(f"{source}: unreadable detector spec ({exc})") from None
        stored = d.get("sha256")
        if stored != spec.sha256:
            raise ModelError(
                f"{source}: the detector spec does not match its hash (edited after it was "
                f"written?): stored {stored}, content {spec.sha256}",
                hint="re-export the model; never edit the spec by hand",
            )
        spec.check_supported(source)
        return spec

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> DetectorSpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ModelError(f"{source}: the detector spec is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ModelError(f"{source}: the detector spec is not a JSON object")
        return cls.from_dict(data, source)

    def check_supported(self, source: str = "model") -> None:
        """Refuse recipes this dfscan cannot reproduce, rather than run them differently."""
        known = FRONTEND_VERSIONS.get(self.frontend.variant)
        if known is None:
            raise ModelError(f"{source}: unknown frontend variant {self.frontend.variant!r}")
        if self.frontend.version > known:
            raise ModelError(
                f"{source}: {self.frontend.variant} frontend recipe {self.frontend.version}; "
                f"this dfscan knows up to {known}",
                hint="upgrade dfscan",
            )
        if self.preprocess.version > PREPROCESS_VERSION:
            raise ModelError(
                f"{source}: preprocessing recipe {self.preprocess.version}; this dfscan knows "
                f"up to {PREPROCESS_VERSION}",
                hint="upgrade dfscan",
            )
        if len(self.classes) != 2:
            raise ModelError(f"{source}: a detector has two classes, this spec has {self.classes}")


class SpecView:
    """What a record with a ``spec`` (a checkpoint's config, an ONNX file's metadata) reads
    through to it: one definition of each, so neither side keeps a copy."""

    spec: DetectorSpec

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def input(self) -> str:
        return self.spec.input

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.spec.preprocess

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    @property
    def size(self) -> int:
        return self.spec.preprocess.size


def legacy_spec(
    arch: str,
    variant: str,
    preprocess: PreprocessConfig,
    classes: tuple[str, ...],
    constants: dict[str, Any],
    thresholds: dict[str, Threshold],
    source: str,
) -> DetectorSpec:
    """The spec of an artifact written before specs existed (checkpoint/ONNX format 1).

    Crop mode is unambiguous (native pixels, never reduced on decode). Resize mode is not: JPEG
    reduce-on-decode changed its pixels within format 1, so which decoding a format-1 resize
    model was trained with cannot be told, and it is refused rather than guessed.
    """
    if preprocess.mode != "crop":
        raise ModelError(
            f"{source} is a format-1 {preprocess.mode}-mode model: whether it was trained with "
            "JPEG reduce-on-decode cannot be told, so its pixels would be guessed",
            hint="retrain it with this dfscan (crop-mode format-1 models still load)",
        )
    return DetectorSpec(
        arch=arch,
        frontend=FrontendSpec(variant, 1, constants),
        preprocess=replace(preprocess, version=1),
        classes=classes,
        thresholds=thresholds,
    )
