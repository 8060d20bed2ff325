"""dfscan's export part (the ``[export]`` extra): a checkpoint into ONNX and TorchScript with the
preprocessing maths and the detector spec inside, parity-checked against eager PyTorch; int8
and fp16 variants; the built-in detector's assembly and its refit to a user's photos."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfscan.scanner.lazy import lazy_attributes

if TYPE_CHECKING:
    from .exporter import export_checkpoint

__all__ = ["export_checkpoint"]

__getattr__ = lazy_attributes(__name__, {"export_checkpoint": ".exporter"})
