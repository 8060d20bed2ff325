"""The module that becomes the shipped graph: an RGB batch in, ``(p_fake, logits)`` out."""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import Tensor, nn

from dfscan.train.detector import Detector
from dfscan.train.frontend import FFTFrontend

InputDType = Literal["uint8", "float32"]
INPUT_DTYPES: tuple[InputDType, ...] = ("uint8", "float32")
TORCH_DTYPES = {"uint8": torch.uint8, "float32": torch.float32}


class ExportedDetector(nn.Module):
    """Detector + softmax, so every runtime returns the probability the scanner thresholds."""

    def __init__(self, detector: Detector, fake_index: int = 1) -> None:
        super().__init__()
        self.detector = detector
        self.fake_index = fake_index

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.detector(image)
        return torch.softmax(logits, dim=1)[:, self.fake_index], logits


def exportable(model: Detector, classes: tuple[str, ...] = ("real", "fake")) -> ExportedDetector:
    """A copy in eval mode whose FFT (if any) is the matmul form with constant bases.

    The weights are shared in value, not in identity: the caller's model keeps its training
    FFT implementation.
    """
    model = copy.deepcopy(model).cpu().eval()
    if isinstance(model.frontend, FFTFrontend):
        model.frontend.use_impl("matmul")
    return ExportedDetector(model, classes.index("fake")).eval()


def example_batch(size: int, dtype: InputDType, batch: int = 2, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen)
    return x if dtype == "uint8" else x.float() / 255.0
