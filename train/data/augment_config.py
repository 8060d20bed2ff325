"""Augmentation settings and their named presets (see :mod:`dfscan.train.data.augment`).

Apart from the augmentation code, which needs numpy and Pillow, so that the training settings
(:mod:`dfscan.train.fit.config`) and the command line that lists them load without either.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class AugmentConfig:
    hflip: bool = True
    vflip: bool = True
    affine: bool = False
    four_patch: bool = False
    blur_prob: float = 0.1
    jpeg_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.0, 3.0)
    jpeg_quality: tuple[int, int] = (30, 100)
    shear: float = 10.0
    scale: tuple[float, float] = (0.8, 1.2)
    webp_prob: float = 0.0
    webp_quality: tuple[int, int] = (60, 100)
    rescale_prob: float = 0.0  # resize the whole source by a factor in rescale_range
    rescale_range: tuple[float, float] = (0.5, 1.5)

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(
            hflip=False, vflip=False, affine=False, four_patch=False, blur_prob=0.0, jpeg_prob=0.0
        )

    @classmethod
    def preset(cls, name: str | bool) -> AugmentConfig:
        """``on``/``off``/``seed``/``robust`` (``True``/``False`` mean on/off)."""
        key = {True: "on", False: "off"}.get(name, name) if isinstance(name, bool) else name
        if key not in AUGMENT_PRESETS:
            raise ValueError(f"unknown augmentation {name!r}; use {', '.join(AUGMENT_PRESETS)}")
        return AUGMENT_PRESETS[key]

    def with_changes(self, **changes: Any) -> AugmentConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**fields)


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "on": AugmentConfig(),
    "off": AugmentConfig.off(),
    "seed": AugmentConfig(blur_prob=0.0, jpeg_prob=0.0, affine=True),
    "robust": AugmentConfig(
        blur_prob=0.1,
        blur_sigma=(0.0, 1.5),
        jpeg_prob=0.5,
        jpeg_quality=(60, 100),
        webp_prob=0.3,
        rescale_prob=0.3,
        rescale_range=(0.5, 1.5),
    ),
}
