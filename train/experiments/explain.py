"""``dfscan explain``: where a detector looks, as per-layer Grad-CAM figures.

Images go through the scanner's preprocessing (:func:`dfscan.scanner.model.preprocess.load_image`,
centred crop or resize to the checkpoint's size), so the maps show what a scan would score.
One figure per image: the model input, then one panel per chosen stage with the map of the
"fake" logit overlaid, and p_fake with the verdict at the checkpoint's calibrated threshold in
the title. For ``fft`` models the backbone sees the spectrum, so the maps are drawn over the
centred, log-scaled spectrum (centre = low frequencies, edges = high) and the figure says so.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dfscan.scanner.errors import DataError
from dfscan.scanner.labels import FAKE, REAL
from dfscan.scanner.model.preprocess import PreprocessConfig, load_image, to_chw_batch

from ..fit.predict import resolve_device
from ..models.checkpoint import LoadedCheckpoint, load_checkpoint
from ..models.gradcam import STRIDES, grad_cam, parse_layers

SPECTRUM_NOTE = (
    "fft model: Grad-CAM over the input spectrum (centred 2-D DFT, log scale); "
    "centre = low frequencies, edges = high"
)


@dataclass
class Explanation:
    """One image explained: what the model saw, its maps per layer and its score."""

    source: str  # the file (or a label for in-memory images)
    image: np.ndarray  # (S, S, 3) uint8: the model input after the shared preprocessing
    spectrum: np.ndarray | None  # (S, S) float in [0, 1] for fft models: what the maps cover
    maps: dict[str, np.ndarray]  # layer -> (S, S) float32 in [0, 1]
    p_fake: float
    threshold: float
    figure: Path | None = None

    @property
    def verdict(self) -> str:
        return FAKE if self.p_fake >= self.threshold else REAL

    @property
    def background(self) -> np.ndarray:
        return self.image if self.spectrum is None else self.spectrum


def load_inputs(paths: Sequence[str | Path], cfg: PreprocessConfig) -> list[np.ndarray]:
    """Decode and prepare each file as scanning does; DataError names the file that failed."""
    images = []
    for path in paths:
        if Path(path).is_dir():
            raise DataError(f"{path} is a folder", hint="explain takes image files")
        try:
            images.append(load_image(Path(path), cfg))
        except DataError as exc:
            raise DataError(
                f"{path}: {exc.message}", hint="explain takes image files (.png, .jpg, …)"
            ) from exc
    return images


def spectrum_image(spectrum: torch.Tensor) -> np.ndarray:
    """The frontend's (N, 3, S, S) compressed spectrum → (N, S, S) in [0, 1] for display.

    Mean over channels of |sign(v)·log1p(|v|)|, i.e. the log-magnitude of the real part,
    stretched between its 1st and 99.5th percentiles per image.
    """
    mag = spectrum.abs().mean(dim=1).cpu().numpy().astype(np.float32)
    out = np.empty_like(mag)
    for i, m in enumerate(mag):
        lo, hi = np.percentile(m, (1.0, 99.5))
        out[i] = np.clip((m - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return out


def explain_arrays(
    loaded: LoadedCheckpoint,
    images: Sequence[np.ndarray],
    sources: Sequence[str],
    layers: str | Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
) -> list[Explanation]:
    """Grad-CAM of the "fake" class for prepared (S, S, 3) uint8 images."""
    model = loaded.model
    chosen = parse_layers(layers, model)
    fake = list(loaded.config.classes).index(FAKE)
    dev = torch.device(device) if isinstance(device, str) else device
    model.to(dev)
    fft = loaded.config.input == "fft"
    out: list[Explanation] = []
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        x = torch.from_numpy(to_chw_batch(chunk)).to(dev)
        result = grad_cam(model, x, chosen, class_index=fake)
        spectra = None
        if fft:
            with torch.no_grad():
                spectra = spectrum_image(model.frontend(x))
        for i, image in enumerate(chunk):
            out.append(
                Explanation(
                    source=sources[start + i],
                    image=image,
                    spectrum=None if spectra is None else spectra[i],
                    maps={k: v[i].numpy() for k, v in result.maps.items()},
                    p_fake=float(result.prob[i]),
                    threshold=loaded.threshold,
                )
            )
    return out


def explain_files(
    loaded: LoadedCheckpoint,
    paths: Sequence[str | Path],
    layers: str | Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> list[Explanation]:
    parse_layers(layers, loaded.model)  # a bad --layers fails before any decoding
    images = load_inputs(paths, loaded.config.preprocess)
    return explain_arrays(loaded, images, [str(p) for p in paths], layers, device)


def explain(
    images: Sequence[str | Path],
    checkpoint: str | Path,
    out: str | Path,
    layers: str | Sequence[str] | None = None,
    device: str = "auto",
) -> list[Explanation]:
    """Write ``OUT/<image>_gradcam.png`` per image and ``OUT/explain.csv``; return the maps."""
    if not images:
        raise DataError("no images given")
    out = Path(out)
    dev = resolve_device(device)
    loaded = load_checkpoint(checkpoint, dev)
    results = explain_files(loaded, images, layers, dev)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for item in results:
        item.figure = out / _unique_name(Path(item.source).stem, used)
        plot_explanation(item, loaded.config.input, item.figure, loaded.config.arch)
    with (out / "explain.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("image", "p_fake", "verdict", "threshold", "figure"))
        for item in results:
            figure = item.figure.name if item.figure else ""
            p, t = f"{item.p_fake:.6f}", f"{item.threshold:.6f}"
            writer.writerow((item.source, p, item.verdict, t, figure))
    return results


def _unique_name(stem: str, used: set[str]) -> str:
    name, k = f"{stem}_gradcam.png", 2
    while name in used:
        name, k = f"{stem}-{k}_gradcam.png", k + 1
    used.add(name)
    return name


# --- figures ---------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_row(axes, item: Explanation, fft: bool, label: str | None = None) -> None:
    ax = axes[0]
    ax.imshow(item.image)
    ax.set_title(label or "input", fontsize=9)
    offset = 1
    if fft:
        axes[1].imshow(item.spectrum, cmap="gray", vmin=0, vmax=1)
        axes[1].set_title("spectrum (log)", fontsize=9)
        offset = 2
    for ax, (layer, cam) in zip(axes[offset:], item.maps.items(), strict=True):
        background = item.background
        ax.imshow(background, cmap="gray" if background.ndim == 2 else None)
        ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        empty = "" if cam.max() > 0 else ": none"  # no positive evidence for "fake"
        ax.set_title(f"{layer} ({STRIDES.get(layer, '')}){empty}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])


def _panels(fft: bool, layers: int) -> int:
    return 1 + int(fft) + layers


def plot_explanation(item: Explanation, input_kind: str, path: str | Path, arch: str = "") -> None:
    """The seed's figure: input, then one Grad-CAM panel per layer; score in the title."""
    plt = _plt()
    fft = input_kind == "fft"
    n = _panels(fft, len(item.maps))
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 3.1 if fft else 2.9), squeeze=False)
    _draw_row(axes[0], item, fft)
    title = (
        f"{Path(item.source).name} — p_fake {item.p_fake:.3f} → {item.verdict.upper()} "
        f"(threshold {item.threshold:.3f})"
    )
    fig.suptitle(f"{title}\nGrad-CAM of 'fake', {arch} {input_kind}".rstrip(), fontsize=10)
    if fft:
        fig.text(0.5, 0.01, SPECTRUM_NOTE, ha="center", fontsize=8, style="italic")
    fig.tight_layout(rect=(0, 0.05 if fft else 0, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_explanation_grid(
    items: Sequence[Explanation],
    labels: Sequence[str],
    input_kind: str,
    path: str | Path,
    title: str = "",
) -> None:
    """Several images, one row each (the experiment report's Grad-CAM panel)."""
    plt = _plt()
    fft = input_kind == "fft"
    n = _panels(fft, len(items[0].maps))
    fig, axes = plt.subplots(
        len(items), n, figsize=(1.9 * n, 2.2 * len(items) + 0.6), squeeze=False
    )
    for row, item, label in zip(axes, items, labels, strict=True):
        _draw_row(row, item, fft, f"{label}\np {item.p_fake:.2f} → {item.verdict}")
    if title:
        fig.suptitle(title, fontsize=10)
    if fft:
        fig.text(0.5, 0.005, SPECTRUM_NOTE, ha="center", fontsize=7, style="italic")
    fig.tight_layout(rect=(0, 0.03 if fft else 0, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)
