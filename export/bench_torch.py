"""The PyTorch side of ``dfscan bench --checkpoint``: the ratios the scanner is held to.

Measured in one run on the same inputs: PyTorch eager and TorchScript, the checkpoint exported
to ONNX fp32 and int8 (calibrated on the benchmark's JPEGs), the other input variant of the
same architecture (fft vs spatial, random weights: speed does not depend on them), the real
scan with the fp32 export, and the seed's pipeline (Pillow full decode, torchvision
Resize + CenterCrop + ToTensor, eager PyTorch, batch 16, a DataLoader with 2 workers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfscan.export.exporter import export_checkpoint
from dfscan.export.graph_module import exportable
from dfscan.export.torchscript_writer import quiet_jit
from dfscan.scanner.bench import BenchSettings, bench_scan, time_repeated
from dfscan.scanner.detector import Detector
from dfscan.scanner.preprocess import load_image, to_chw_batch
from dfscan.train.checkpoint import LoadedCheckpoint, ModelConfig, load_checkpoint, save_checkpoint
from dfscan.train.registry import create_model


def _rate(fn: Callable[[], object], n: int, min_seconds: float) -> float:
    return n / time_repeated(fn, min_seconds).median


def seed_pipeline_rate(loaded: LoadedCheckpoint, paths: list[Path], bs: int, workers: int) -> float:
    """Images/s of the seed's way: full decode, torchvision resize, eager model, DataLoader."""
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
    loader = DataLoader(Files(), batch_size=bs, num_workers=workers)
    with torch.inference_mode():
        model(torch.zeros(bs, 3, size, size))  # warm-up, as for every other runtime
        start = time.perf_counter()
        for batch in loader:
            model(batch)
    return len(paths) / (time.perf_counter() - start)


def _other_variant_checkpoint(loaded: LoadedCheckpoint, path: Path) -> tuple[Path, str]:
    cfg = loaded.config
    other = "spatial" if cfg.input == "fft" else "fft"
    model = create_model(cfg.arch, other, weights="none", size=cfg.preprocess.size)
    save_checkpoint(path, model, ModelConfig.for_model(cfg.arch, other, cfg.preprocess, model))
    return path, other


def _ap(detector: Detector, folder: Path | None) -> float | None:
    """AP on a labelled benchmark folder (real/ + generator folders), else None."""
    if folder is None:
        return None
    from sklearn.metrics import average_precision_score

    from dfscan.export.check_images import folder_images

    images = folder_images(folder, detector.meta.preprocess, limit=256)
    if images.labels is None:
        return None
    p = detector.run(images.batch.transpose(0, 2, 3, 1))
    return float(average_precision_score(images.labels, p))


def torch_comparisons(
    settings: BenchSettings,
    report: dict[str, Any],
    jpeg_paths: list[Path],
    crops: np.ndarray,
    tmp: Path,
    note: Callable[[str], None],
) -> dict[str, Any]:
    assert settings.checkpoint is not None
    loaded = load_checkpoint(settings.checkpoint)
    cfg = loaded.config
    bs = 2 if settings.smoke else 16
    min_s = settings.min_seconds
    nhwc = np.stack([load_image(p, cfg.preprocess) for p in jpeg_paths[:bs]])
    nhwc = np.resize(nhwc, (bs, *nhwc.shape[1:]))
    x = torch.from_numpy(to_chw_batch(list(nhwc)))
    runtimes: list[dict[str, Any]] = []

    def add(name: str, rate: float, **extra: Any) -> float:
        runtimes.append({"name": name, "batch_size": bs, "images_per_s": rate, **extra})
        return rate

    note("PyTorch eager and TorchScript")
    model = loaded.model.eval()
    with torch.inference_mode():
        eager = add(f"PyTorch eager ({cfg.input})", _rate(lambda: model(x), bs, min_s))
        module = exportable(model, cfg.classes)
        with quiet_jit():
            traced = torch.jit.trace(module, (x,), check_trace=False)
        add("TorchScript", _rate(lambda: traced(x), bs, min_s))

    note("exporting fp32, int8 and the other input variant")
    calibration = jpeg_paths[0].parent
    fp32_path, int8_path = tmp / "ckpt-fp32.onnx", tmp / "ckpt-int8.onnx"
    export_checkpoint(settings.checkpoint, fp32_path)
    export_checkpoint(settings.checkpoint, int8_path, precision="int8", calibration=calibration)
    other_ckpt, other = _other_variant_checkpoint(loaded, tmp / "other.ckpt")
    other_path = tmp / "other-fp32.onnx"
    export_checkpoint(other_ckpt, other_path)

    rates: dict[str, float] = {}
    aps: dict[str, float | None] = {}
    for key, path in (("fp32", fp32_path), ("int8", int8_path), (other, other_path)):
        det = Detector.from_onnx(path, "cpu")
        rates[key] = add(
            f"ORT CPU {key}" if key in ("fp32", "int8") else f"ORT CPU fp32 ({other})",
            _rate(lambda d=det: d.run(nhwc), bs, min_s),
        )
        if key in ("fp32", "int8"):
            aps[key] = _ap(det, settings.folder)

    note("end-to-end scan with the fp32 export, and the seed's pipeline")
    det = Detector.from_onnx(fp32_path, "cpu")
    scan = bench_scan(calibration, det, replace(settings, model=fp32_path), tmp)
    add("dfscan scan, ORT fp32 (jpeg)", scan["images_per_s"] or 0.0)
    seed = add(
        "seed pipeline (torchvision + eager)",
        seed_pipeline_rate(loaded, jpeg_paths, bs, 0 if settings.smoke else 2),
    )
    fft_rate = rates["fp32"] if cfg.input == "fft" else rates[other]
    spatial_rate = rates[other] if cfg.input == "fft" else rates["fp32"]
    return {
        "checkpoint": str(settings.checkpoint),
        "arch": cfg.arch,
        "input": cfg.input,
        "crop_size": cfg.preprocess.size,
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "runtimes": runtimes,
        "ap": aps,
        "ratios": {
            "ORT fp32 / eager": rates["fp32"] / eager,
            "ORT int8 / eager": rates["int8"] / eager,
            "int8 / fp32": rates["int8"] / rates["fp32"],
            "fft / spatial (ORT fp32)": fft_rate / spatial_rate,
            "scan / seed pipeline": (scan["images_per_s"] or 0.0) / seed,
            "int8 AP loss": None
            if aps.get("fp32") is None or aps.get("int8") is None
            else aps["fp32"] - aps["int8"],
        },
    }
