"""The PyTorch side of ``dfscan bench --checkpoint``: the ratios the scanner is held to.

Measured on the same inputs, in interleaved rounds (:mod:`dfscan.scanner.bench.timing`):
PyTorch eager and TorchScript, the checkpoint exported to ONNX fp32 and int8 (calibrated on
the benchmark's JPEGs), the other input variant of the same architecture (fft vs spatial,
random weights: speed does not depend on them); then, in rounds of their own, the real scan
with the fp32 export and the seed's pipeline (Pillow full decode, torchvision Resize +
CenterCrop + ToTensor, eager PyTorch, batch 16, a DataLoader with 2 workers).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfscan.scanner.bench.settings import BenchContext
from dfscan.scanner.bench.stages import ScanRun, scan_options
from dfscan.scanner.bench.timing import Arm, Rounds, run_rounds
from dfscan.scanner.model.detector import Detector
from dfscan.scanner.model.preprocess import load_image, to_chw_batch
from dfscan.train.models.checkpoint import (
    LoadedCheckpoint,
    ModelConfig,
    load_checkpoint,
    save_checkpoint,
)
from dfscan.train.models.registry import InputVariant, create_model

from .exporter import export_checkpoint
from .graph_module import exportable
from .torchscript_writer import quiet_jit

EAGER, TORCHSCRIPT, FP32, INT8 = "PyTorch eager", "TorchScript", "ORT CPU fp32", "ORT CPU int8"
SCAN, SEED = "dfscan scan, ORT fp32 (jpeg)", "seed pipeline (torchvision + eager)"


def seed_pipeline(loaded: LoadedCheckpoint, paths: list[Path], bs: int, workers: int):
    """A call = the seed's way over ``paths`` (full decode, torchvision resize, eager model,
    DataLoader); returns its seconds, after a warm-up batch of the model."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    size = loaded.config.preprocess.size
    tf = transforms.Compose(
        [transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()]
    )

    class Files(Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> torch.Tensor:
            with Image.open(paths[i]) as im:
                return tf(im.convert("RGB"))

    model = loaded.model.eval()

    def run() -> float:
        loader = DataLoader(Files(), batch_size=bs, num_workers=workers)
        with torch.inference_mode():
            model(torch.zeros(bs, 3, size, size))  # warm-up, as for every other runtime
            start = time.perf_counter()
            for batch in loader:
                model(batch)
            return time.perf_counter() - start

    return run


def _other_variant_checkpoint(loaded: LoadedCheckpoint, path: Path) -> tuple[Path, str]:
    cfg = loaded.config
    other: InputVariant = "spatial" if cfg.input == "fft" else "fft"
    model = create_model(cfg.arch, other, weights="none", size=cfg.preprocess.size)
    save_checkpoint(path, model, ModelConfig.for_model(cfg.arch, other, cfg.preprocess, model))
    return path, other


def _ap(detector: Detector, folder: Path | None) -> float | None:
    """AP on a labelled benchmark folder (real/ + generator folders), else None."""
    if folder is None:
        return None
    from sklearn.metrics import average_precision_score

    from .check_images import folder_images

    images = folder_images(folder, detector.meta.preprocess, limit=256)
    if images.labels is None:
        return None
    p = detector.run(images.batch.transpose(0, 2, 3, 1))
    return float(average_precision_score(images.labels, p))


def _torch_arms(loaded: LoadedCheckpoint, x: torch.Tensor, bs: int) -> dict[str, Arm]:
    model = loaded.model.eval()

    def inference(fn):
        def run() -> None:
            with torch.inference_mode():
                fn(x)

        return run

    with torch.inference_mode(), quiet_jit():
        traced = torch.jit.trace(exportable(model, loaded.config.classes), (x,), check_trace=False)
    return {EAGER: Arm(inference(model), bs), TORCHSCRIPT: Arm(inference(traced), bs)}


def _exports(ctx: BenchContext, loaded: LoadedCheckpoint) -> tuple[dict[str, Path], str]:
    """fp32, int8 (calibrated on the benchmark JPEGs) and the other variant's fp32, by arm."""
    ckpt, tmp = ctx.settings.checkpoint, ctx.tmp
    assert ckpt is not None
    fp32, int8 = tmp / "ckpt-fp32.onnx", tmp / "ckpt-int8.onnx"
    export_checkpoint(ckpt, fp32)
    export_checkpoint(ckpt, int8, precision="int8", calibration=ctx.jpeg_paths[0].parent)
    other_ckpt, other = _other_variant_checkpoint(loaded, tmp / "other.ckpt")
    export_checkpoint(other_ckpt, tmp / "other-fp32.onnx")
    return {FP32: fp32, INT8: int8, f"{FP32} ({other})": tmp / "other-fp32.onnx"}, other


def _model_ratios(rounds: Rounds, own: str, other: str) -> dict[str, Any]:
    other_arm = f"{FP32} ({other})"
    fft, spatial = (FP32, other_arm) if own == "fft" else (other_arm, FP32)
    return {
        "ORT fp32 / eager": rounds.ratio(FP32, EAGER),
        "ORT int8 / eager": rounds.ratio(INT8, EAGER),
        "int8 / fp32": rounds.ratio(INT8, FP32),
        "TorchScript / eager": rounds.ratio(TORCHSCRIPT, EAGER),
        "fft / spatial (ORT fp32)": rounds.ratio(fft, spatial),
    }


def torch_comparisons(ctx: BenchContext) -> dict[str, Any]:
    settings, note = ctx.settings, ctx.note
    assert settings.checkpoint is not None
    loaded = load_checkpoint(settings.checkpoint)
    cfg = loaded.config
    bs = 2 if settings.smoke else 16
    nhwc = np.stack([load_image(p, cfg.preprocess) for p in ctx.jpeg_paths[:bs]])
    nhwc = np.resize(nhwc, (bs, *nhwc.shape[1:]))
    x = torch.from_numpy(to_chw_batch(list(nhwc)))

    note("exporting fp32, int8 and the other input variant")
    paths, other = _exports(ctx, loaded)
    detectors = {name: Detector.from_onnx(path, "cpu") for name, path in paths.items()}
    arms = _torch_arms(loaded, x, bs)
    arms |= {name: Arm(lambda d=d: d.run(nhwc), bs) for name, d in detectors.items()}
    note(f"PyTorch and ONNX Runtime, {settings.rounds} interleaved rounds")
    model_rounds = run_rounds(arms, settings.rounds, settings.turn_seconds, note)

    note("the scan with the fp32 export against the seed's pipeline, interleaved")
    folder = ctx.jpeg_paths[0].parent
    fp32_settings = replace(settings, model=paths[FP32])
    scan = ScanRun(scan_options(folder, fp32_settings, ctx.tmp / "ckpt-scan.csv"), detectors[FP32])
    seed = seed_pipeline(loaded, ctx.jpeg_paths, bs, 0 if settings.smoke else 2)
    pipeline_arms = {SCAN: scan.arm(), SEED: Arm(seed, len(ctx.jpeg_paths))}
    pipeline_rounds = run_rounds(pipeline_arms, settings.rounds, 0.0, note)

    runtimes = [
        {"name": name, "batch_size": bs, "images_per_s": rounds.rate(name)}
        for rounds in (model_rounds, pipeline_rounds)
        for name in rounds.rates
    ]
    aps = {
        key: _ap(detectors[arm], settings.folder) for key, arm in (("fp32", FP32), ("int8", INT8))
    }
    ratios = _model_ratios(model_rounds, cfg.input, other)
    ratios["scan / seed pipeline"] = pipeline_rounds.ratio(SCAN, SEED)
    return {
        "checkpoint": str(settings.checkpoint),
        "arch": cfg.arch,
        "input": cfg.input,
        "crop_size": cfg.preprocess.size,
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "runtimes": runtimes,
        "ap": aps,
        "int8_ap_loss": None
        if aps["fp32"] is None or aps["int8"] is None
        else aps["fp32"] - aps["int8"],
        "ratios": ratios,
    }
