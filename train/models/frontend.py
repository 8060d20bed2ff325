"""The model's first stage: the maths between raw RGB and the backbone.

Kept inside the network (not in the data pipeline) so eager PyTorch, TorchScript and ONNX all
run the same arithmetic and the scanner only has to feed uint8 RGB.

FFT input: the real part of each channel's 2-D DFT, centred (fftshift), scaled and compressed.
The raw spectrum of pixels in [0, 1] spans ~5 orders of magnitude (DC ≈ 0.5·H·W ≈ 25,000 at
224², high frequencies ≈ 0.1-1), so a linear rescale such as /HW squashes the high-frequency
band, where generator traces live, to ~1e-5 of the DC term. Instead we take the unitary DFT of
pixels in 0-255 (× 255/√(HW), which makes the statistics independent of the input size) and
compress it with ``sign(v)·log1p(|v|)``: DC ≈ 10, the high-frequency band O(1). Measured over
crops of the demo photos at 64², 128², 224² and 256²: mean −0.01…0.0, std 1.88-1.92, so a fixed
division by ``FFT_LOG_STD`` = 1.9 gives roughly unit variance at every size.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from dfscan.scanner.errors import ModelError
from dfscan.scanner.model.spec import FRONTEND_VERSIONS, FrontendSpec

FFTImpl = Literal["torch", "matmul"]

FFT_LOG_STD = 1.9  # std of the compressed spectrum of natural photos (see module docstring)


def spectrum_scale(h: int, w: int) -> float:
    """Unitary DFT of 0-255 pixels: the factor applied to the DFT of [0, 1] pixels."""
    return 255.0 / math.sqrt(h * w)


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 [0, 255] or float [0, 1] → float32 [0, 1]."""
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return x.float()


def dft_bases(
    n: int, shift: bool = True, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """cos and sin DFT matrices C[k, m] = cos(2πkm/n), S[k, m] = sin(2πkm/n).

    With ``shift`` the output rows are permuted as ``fftshift`` would, so the centring costs
    nothing at run time. Built in float64 (the angle 2πkm/n loses precision in float32 for
    large km) and then cast.
    """
    k = torch.arange(n, dtype=torch.float64)
    km = torch.remainder(torch.outer(k, k), n)  # exact integer phase index, small angles
    angle = km * (2.0 * math.pi / n)
    cos, sin = torch.cos(angle), torch.sin(angle)
    if shift:
        order = torch.remainder(torch.arange(n) - n // 2, n)
        cos, sin = cos[order], sin[order]
    return cos.to(dtype), sin.to(dtype)


def real_dft2_matmul(x: Tensor, ch: Tensor, sh: Tensor, cw: Tensor, sw: Tensor) -> Tensor:
    """Re DFT2 over the last two dims as matrix products: Re F = C_H·X·C_Wᵀ − S_H·X·S_Wᵀ."""
    return ch @ x @ cw.transpose(0, 1) - sh @ x @ sw.transpose(0, 1)


def real_dft2_torch(x: Tensor, shift: bool = True) -> Tensor:
    spec = torch.fft.fft2(x.float()).real
    return torch.fft.fftshift(spec, dim=(-2, -1)) if shift else spec


def signed_log1p(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


class SpatialFrontend(nn.Module):
    """Pixels: (x − mean) / std with the backbone's pretraining statistics."""

    mean: Tensor  # buffers (register_buffer), declared for the type checker
    std: Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.constants = {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (to_unit_float(x) - self.mean) / self.std

    def recipe(self) -> FrontendSpec:
        return FrontendSpec("spatial", FRONTEND_VERSIONS["spatial"], dict(self.constants))


class FFTFrontend(nn.Module):
    """Spectrum: standardised signed-log1p of the centred real part of each channel's DFT.

    ``impl="torch"`` uses torch.fft (fast, for training); ``impl="matmul"`` uses constant
    cos/sin bases, the form that exports to ONNX without the DFT op (which ONNX Runtime runs
    slowly and only on CPU). Both compute the same function; switch with :meth:`use_impl`.
    """

    cos_left: Tensor  # buffers (register_buffer), declared for the type checker
    sin_left: Tensor
    cos: Tensor
    sin: Tensor

    def __init__(self, size: int, impl: FFTImpl = "torch", log_std: float = FFT_LOG_STD) -> None:
        super().__init__()
        self.size = size
        self.impl: FFTImpl = impl
        self.log_std = float(log_std)
        cos, sin = dft_bases(size)
        scale = spectrum_scale(size, size)
        # the scale is folded into the left bases: the exported graph has no extra Mul
        self.register_buffer("cos_left", cos * scale, persistent=False)
        self.register_buffer("sin_left", sin * scale, persistent=False)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def use_impl(self, impl: FFTImpl) -> FFTFrontend:
        self.impl = impl
        return self

    def spectrum(self, x: Tensor) -> Tensor:
        x = to_unit_float(x)
        h, w = x.shape[-2], x.shape[-1]
        if self.impl == "torch":
            return real_dft2_torch(x) * spectrum_scale(h, w)
        if h != self.size or w != self.size:
            raise ValueError(f"matmul DFT bases are {self.size}², input is {h}×{w}")
        return real_dft2_matmul(x, self.cos_left, self.sin_left, self.cos, self.sin)

    def forward(self, x: Tensor) -> Tensor:
        return signed_log1p(self.spectrum(x)) / self.log_std

    def recipe(self) -> FrontendSpec:
        return FrontendSpec("fft", FRONTEND_VERSIONS["fft"], {"log_std": self.log_std})


def frontend_from_spec(spec: FrontendSpec, size: int) -> SpatialFrontend | FFTFrontend:
    """The frontend an artifact describes, from its own constants (never the registry's).

    Recipe 1 of both variants is the maths of this module; a spec that names another version
    or lacks a constant is refused rather than run with today's defaults.
    """
    known = FRONTEND_VERSIONS.get(spec.variant)
    if known is None or spec.version != known:
        raise ModelError(
            f"frontend {spec.variant!r} recipe {spec.version} is not one this dfscan can build"
        )
    try:
        if spec.variant == "fft":
            return FFTFrontend(size, log_std=float(spec.constants["log_std"]))
        mean, std = spec.constants["mean"], spec.constants["std"]
        return SpatialFrontend(tuple(map(float, mean)), tuple(map(float, std)))
    except KeyError as exc:
        raise ModelError(f"the {spec.variant} frontend spec lacks {exc.args[0]!r}") from None
