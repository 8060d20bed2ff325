"""Running a detector over a DataLoader: scores, labels and loss, no gradients."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader


@dataclass
class Predictions:
    p_fake: np.ndarray
    labels: np.ndarray
    indices: np.ndarray  # dataset index of each view
    loss: float
    skipped: list[int] = field(default_factory=list)  # dataset indices that failed to decode

    @property
    def accuracy_at_half(self) -> float:
        return (
            float(((self.p_fake >= 0.5) == (self.labels == 1)).mean()) if len(self.labels) else 0.0
        )


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device, progress=None
) -> Predictions:
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    scores, labels, indices, skipped = [], [], [], []
    total_loss = 0.0
    for batch in loader:
        skipped.extend(batch["skipped"].tolist())
        if len(batch["y"]):
            logits = model(batch["x"].to(device, non_blocking=True))
            y = batch["y"].to(device)
            total_loss += float(loss_fn(logits, y))
            scores.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
            labels.append(batch["y"])
            indices.append(batch["index"])
        if progress is not None:
            progress()
    if not scores:
        empty = np.empty(0)
        return Predictions(empty, empty.astype(int), empty.astype(int), float("nan"), skipped)
    p = torch.cat(scores).numpy()
    return Predictions(
        p, torch.cat(labels).numpy(), torch.cat(indices).numpy(), total_loss / len(p), skipped
    )
