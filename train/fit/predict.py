"""Running a detector over a DataLoader: scores, labels and loss, no gradients."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dfscan.scanner.labels import FAKE_LABEL


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
            float(((self.p_fake >= 0.5) == (self.labels == FAKE_LABEL)).mean())
            if len(self.labels)
            else 0.0
        )


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when torch can use it, else the CPU; ``cpu``; ``cuda`` or ``cuda:N``.

    ``cuda`` without a working CUDA is a ``DeviceError`` (exit 5, one line), as in the scanner:
    torch is asked whether it sees a GPU and then made to put a tensor on it, which catches a
    driver that torch finds but cannot use. Under ``auto`` such a GPU means the CPU, with a
    warning.
    """
    import warnings

    from dfscan.scanner.errors import DeviceError, first_line
    from dfscan.scanner.model.runtime import parse_device  # the one device grammar

    name, index = parse_device(device)
    if name == "cpu":
        return torch.device("cpu")
    target = torch.device("cuda", index)
    reason = None
    if not torch.cuda.is_available():
        reason = (
            "this torch build has no CUDA (a CPU-only wheel)"
            if torch.version.cuda is None
            else "torch finds no CUDA GPU (no device, or the NVIDIA driver is missing)"
        )
    elif target.index >= torch.cuda.device_count():
        reason = f"there is no GPU {target.index} ({torch.cuda.device_count()} found)"
    else:
        try:
            torch.zeros(1, device=target).add_(1)
        except Exception as exc:  # torch raises RuntimeError/AcceleratorError from the driver
            reason = f"a first tensor failed on {target}: {first_line(exc)}"
    if reason is None:
        return target
    if name == "cuda":
        raise DeviceError(f"CUDA is not available: {reason}", hint="use --device cpu or auto")
    if torch.cuda.is_available():  # a GPU torch sees but cannot use: say so once
        warnings.warn(f"CUDA unavailable ({reason}); running on CPU", RuntimeWarning, stacklevel=2)
    return torch.device("cpu")


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
