"""Scores per image (not per view): what evaluation reports when an image gives several views."""

from __future__ import annotations

import numpy as np
import torch

from ..data.loaders import ImageDataset
from .predict import predict


def predict_images(
    model: torch.nn.Module, dataset: ImageDataset, workers: int, device: torch.device
) -> np.ndarray:
    """p_fake of every item of ``dataset`` in order (mean over its views; NaN if unreadable)."""
    from .fitting import make_loader

    preds = predict(model, make_loader(dataset, 32, workers, False, 0), device)
    total = np.zeros(len(dataset))
    count = np.zeros(len(dataset))
    np.add.at(total, preds.indices, preds.p_fake)
    np.add.at(count, preds.indices, 1)
    with np.errstate(invalid="ignore"):
        return total / count
