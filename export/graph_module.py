"""The module that becomes the shipped graph: an RGB batch in, ``(p_fake, logits)`` out."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from dfscan.scanner.labels import CLASSES, FAKE
from dfscan.train.models.detector import Detector
from dfscan.train.models.frontend import FFTFrontend

from .settings import InputDType


class ExportedDetector(nn.Module):
    """Detector + softmax, so every runtime returns the probability the scanner thresholds.

    With ``half`` the backbone and head run in float16 while the frontend (normalisation, FFT)
    and the softmax stay float32: casts at the two boundaries, written here rather than by a
    graph converter after the fact. Only the backbone and head are converted: the frontend's
    constants (DFT bases, mean/std) are never cast, so they keep every float32 bit (casting
    the whole model and the frontend back rounds them through float16, an error of up to
    2⁻¹¹ on every basis entry).
    """

    def __init__(self, detector: Detector, fake_index: int = 1, half: bool = False) -> None:
        super().__init__()
        if half:
            detector.backbone.half()
            detector.head.half()
        self.detector = detector
        self.fake_index = fake_index
        self.half_precision = half  # not `half`: that name is nn.Module's half() method

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        features = self.detector.frontend(image)
        if self.half_precision:
            features = features.half()
        logits = self.detector.head(self.detector.backbone(features)).float()
        return torch.softmax(logits, dim=1)[:, self.fake_index], logits


def exportable(
    model: Detector, classes: tuple[str, ...] = CLASSES, half: bool = False
) -> ExportedDetector:
    """A copy in eval mode whose FFT (if any) is the matmul form with constant bases.

    The weights are shared in value, not in identity: the caller's model keeps its training
    FFT implementation.
    """
    model = copy.deepcopy(model).cpu().eval()
    if isinstance(model.frontend, FFTFrontend):
        model.frontend.use_impl("matmul")
    return ExportedDetector(model, classes.index(FAKE), half).eval()


def example_batch(size: int, dtype: InputDType, batch: int = 2, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen)
    return x if dtype == "uint8" else x.float() / 255.0
