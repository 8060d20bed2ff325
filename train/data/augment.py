"""Training-time augmentation: on the decoded source (rescale, re-encoding) and on HWC uint8
crops (blur, flips, affine), around the shared geometry.

Defaults keep what is harmless to generator traces and add robustness:

- flips (on): mirror the spectrum, invent no pixels.
- blur σ∈[0, 3] and JPEG quality∈[30, 100], each with probability 0.1 (CNNDetection's
  robustness recipe): scanned images are often re-compressed or resized.
- RandomAffine(shear=10, scale 0.8-1.2) and the 4-patch split are the seed's, off by default:
  affine resampling low-passes the very high-frequency traces the FFT model looks for, and
  4-patch in crop mode needs 2× larger images. Both are one flag away.

Presets (``AUGMENT_PRESETS``): ``on`` (the defaults), ``off``, ``seed`` (the write-up's flips +
RandomAffine) and ``robust``: re-encoding and rescaling on *both* classes, often, so that a
detector cannot tell real from fake by how a file was last saved or resized — photos online are
re-encoded and resized, and generated images are too.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from .augment_config import AugmentConfig


def _reencode(img: Image.Image, fmt: str, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def augment_source(img: Image.Image, cfg: AugmentConfig, rng: np.random.Generator) -> Image.Image:
    """Whole-image changes before the crop: a rescale, then a JPEG or WEBP re-encoding.

    Done on the source, not the crop, because that is where they happen to real files: the
    8×8 JPEG grid and the resampling kernel are then anywhere relative to the crop.
    """
    if cfg.rescale_prob and rng.random() < cfg.rescale_prob:
        factor = float(rng.uniform(*cfg.rescale_range))
        w, h = img.size
        size = (max(8, round(w * factor)), max(8, round(h * factor)))
        kernel = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
        img = img.resize(size, kernel[int(rng.integers(0, len(kernel)))])
    if cfg.jpeg_prob and rng.random() < cfg.jpeg_prob:
        img = _reencode(
            img, "JPEG", int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        )
    elif cfg.webp_prob and rng.random() < cfg.webp_prob:
        img = _reencode(
            img, "WEBP", int(rng.integers(cfg.webp_quality[0], cfg.webp_quality[1] + 1))
        )
    return img


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=sigma)))


def random_affine(
    img: np.ndarray, rng: np.random.Generator, shear: float, scale: tuple[float, float]
) -> np.ndarray:
    """torchvision's RandomAffine(degrees=0, shear=shear, scale=scale) on one HWC image."""
    import torch
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    s = float(rng.uniform(*scale))
    sx = float(rng.uniform(-shear, shear))
    chw = torch.from_numpy(np.array(img)).permute(2, 0, 1)  # a writable copy
    out = tvf.affine(
        chw,
        angle=0.0,
        translate=[0, 0],
        scale=s,
        shear=[sx, 0.0],
        interpolation=InterpolationMode.BILINEAR,
    )
    return out.permute(1, 2, 0).numpy()


def augment(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One random augmentation of an HWC uint8 crop; shape and dtype are kept."""
    if cfg.blur_prob and rng.random() < cfg.blur_prob:
        img = gaussian_blur(img, float(rng.uniform(*cfg.blur_sigma)))
    if cfg.hflip and rng.random() < 0.5:
        img = img[:, ::-1]
    if cfg.vflip and rng.random() < 0.5:
        img = img[::-1]
    if cfg.affine:
        img = random_affine(img, rng, cfg.shear, cfg.scale)
    return np.ascontiguousarray(img)
