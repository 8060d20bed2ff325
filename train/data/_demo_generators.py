"""The demo dataset's simulated generators: fixed pipelines that leave the up-sampling traces
of real ones on a real crop. Their weights depend on the generator's name only, so the same
name always makes the same fakes (see :mod:`dfscan.train.data.demo`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
from scipy import ndimage

GENERATORS: tuple[str, ...] = ("upconv", "nn_upsample", "bilinear_x4", "vae_x8")
"""Simulated generators, each a folder of fakes. Their traces: ``upconv`` a stride-2 transposed
convolution (checkerboard, spectral peaks at N/2); ``nn_upsample`` nearest-neighbour up-sampling
then a 3×3 conv (no N/2 peak: an exact notch at N/2 between mirrored low frequencies);
``bilinear_x4`` a bilinear-initialised ×4 up-sampler whose weights drifted (peaks at N/4);
``vae_x8`` an 8× latent decoded by a pixel-shuffle-like kernel bank (peaks at multiples of N/8).
"""

_Float = np.ndarray  # (H, W, C) float64 image, 0..255 scale
_Pipeline = Callable[[_Float], _Float]  # one simulated generator


def seeded_rng(*names: object) -> np.random.Generator:
    """A generator seeded from names, independent of call order and of the global RNG."""
    digest = hashlib.sha256("\x1f".join(str(n) for n in names).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _area_down(x: _Float, f: int) -> _Float:
    h, w, c = x.shape
    return x.reshape(h // f, f, w // f, f, c).mean(axis=(1, 3))


def _conv_same(x: _Float, kernel: np.ndarray) -> _Float:
    """Same-size convolution, kernel (k, k, C_in, C_out), edges replicated."""
    k = kernel.shape[0]
    h, w = x.shape[:2]
    padded = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)), mode="edge")
    out = np.zeros((h, w, kernel.shape[3]))
    for ky in range(k):
        for kx in range(k):
            out += padded[ky : ky + h, kx : kx + w] @ kernel[ky, kx]
    return out


def _conv_transpose(x: _Float, kernel: np.ndarray, stride: int) -> _Float:
    """Stride-``stride`` transposed convolution, kernel (k, k, C_in, C_out), output ×stride.

    The input is edge-padded first so the border pixels get all their taps, like the interior.
    """
    k = kernel.shape[0]
    pad = -(-k // stride)
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    full = np.zeros(((h - 1) * stride + k, (w - 1) * stride + k, kernel.shape[3]))
    for ky in range(k):
        for kx in range(k):
            rows = slice(ky, ky + (h - 1) * stride + 1, stride)
            cols = slice(kx, kx + (w - 1) * stride + 1, stride)
            full[rows, cols] += x @ kernel[ky, kx]
    start = pad * stride + (k - stride) // 2
    out_h, out_w = (h - 2 * pad) * stride, (w - 2 * pad) * stride
    return full[start : start + out_h, start : start + out_w]


def _unit_dc_gain(kernel: np.ndarray, phases: int, encode: np.ndarray | None = None) -> np.ndarray:
    """Rescale so a flat RGB image keeps its colour on average (mean gain over phases = 1).

    ``encode`` (3, C_in) is the linear map in front of the kernel, if any (a latent encoder).
    """
    gain = kernel.sum(axis=(0, 1)) / phases  # (C_in, C_out)
    if encode is not None:
        gain = encode @ gain
    return kernel @ np.linalg.inv(gain)


def _learned_kernel(
    base: np.ndarray,
    stride: int,
    drift: float,
    rng: np.random.Generator,
    mix: np.ndarray,
    encode: np.ndarray | None = None,
) -> np.ndarray:
    """An up-sampling kernel that started as ``base`` and drifted during "training".

    Each output phase of a smooth base sums to one; the random drift makes the phase sums
    unequal, which is what prints a periodic pattern (spectral peaks at multiples of N/stride)
    into real generator output. ``drift`` is the spread of a phase sum.
    """
    k = base.shape[0]
    taps = (k // stride) ** 2
    noise = rng.normal(0.0, drift / np.sqrt(taps), size=(k, k, *mix.shape))
    noise *= np.where(np.eye(*mix.shape, dtype=np.bool_), 1.0, 0.3)  # mostly within a channel
    kernel = base[:, :, None, None] * mix + noise
    return _unit_dc_gain(kernel, stride * stride, encode)


def _small_conv(k: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """A fixed near-identity k×k RGB conv (a trained output layer), unit DC gain."""
    kernel = rng.normal(0.0, spread, size=(k, k, 3, 3))
    kernel *= np.where(np.eye(3, dtype=bool), 1.0, 0.2)
    kernel[k // 2, k // 2] += np.eye(3)
    return _unit_dc_gain(kernel, 1)


def _triangle(k: int) -> np.ndarray:
    """Linear-interpolation kernel of a ×k/2 up-sampler (half-pixel centres), as 2-D."""
    half = np.arange(1, k, 2, dtype=float)
    t = np.concatenate([half, half[::-1]]) / k
    return np.outer(t, t)


def make_generator(name: str) -> _Pipeline:
    """The fixed pipeline of a simulated generator; its weights depend on its name only."""
    rng = seeded_rng("generator-weights", name)
    eye = np.eye(3)
    if name == "upconv":
        kernel = _learned_kernel(_triangle(4), 2, 0.04, rng, eye)

        def upconv(x: _Float) -> _Float:
            return _conv_transpose(_area_down(x, 2), kernel, 2)

        return upconv
    if name == "nn_upsample":
        conv = _small_conv(3, 0.08, rng)

        def nn_upsample(x: _Float) -> _Float:
            low = _area_down(x, 2)
            return _conv_same(low.repeat(2, axis=0).repeat(2, axis=1), conv)

        return nn_upsample
    if name == "bilinear_x4":
        kernel = _learned_kernel(_triangle(8), 4, 0.03, rng, eye)
        conv = _small_conv(5, 0.03, rng)

        def bilinear_x4(x: _Float) -> _Float:
            return _conv_same(_conv_transpose(_area_down(x, 4), kernel, 4), conv)

        return bilinear_x4
    if name == "vae_x8":
        encode = eye[:, [0, 1, 2, 0]] + rng.normal(0.0, 0.2, size=(3, 4))  # RGB -> 4 latents
        decode = np.linalg.pinv(encode)  # (4, 3)
        kernel = _learned_kernel(_triangle(16), 8, 0.03, rng, decode, encode)

        def vae_x8(x: _Float) -> _Float:
            return _conv_transpose(_area_down(x, 8) @ encode, kernel, 8)

        return vae_x8
    raise ValueError(f"unknown generator {name!r}")


_FACTOR = {"upconv": 2, "nn_upsample": 2, "bilinear_x4": 4, "vae_x8": 8}


def make_fake(
    crop: np.ndarray, grey: bool, name: str, generate: _Pipeline, rng: np.random.Generator
) -> np.ndarray:
    """Generator output plus a random share of the crop's own detail above its band limit."""
    x = crop.astype(np.float64)
    sigma = _FACTOR[name] / 2
    detail = x - ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect")
    y = generate(x) + rng.uniform(0.5, 0.9) * detail
    if grey:  # grey in, grey out: colour must not tell the classes apart
        y = np.repeat(y.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)
