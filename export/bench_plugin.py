"""The ``torch`` stage of ``dfscan bench`` (entry point ``dfscan.bench``), run when a checkpoint
is given. Loading it is cheap: torch is imported only when the stage runs, by
:mod:`dfscan.export.bench_torch`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dfscan.scanner.bench.settings import BenchContext, BenchSettings


class TorchStage:
    """PyTorch eager/TorchScript, ONNX fp32/int8, the other input variant, the seed's pipeline:
    the ratios the scanner is held to, from interleaved rounds."""

    def wanted(self, settings: BenchSettings) -> bool:
        return settings.checkpoint is not None

    def run(self, context: BenchContext) -> dict[str, Any]:
        from .bench_torch import torch_comparisons

        context.note("PyTorch comparisons")
        return torch_comparisons(context)


stage = TorchStage()
