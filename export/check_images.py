"""Images for parity checks and int8 calibration, through the scanner's preprocessing.

Parity is checked on decoded photos cropped exactly as the scanner crops them, not only on
random tensors: real images have the smooth spectra, saturated regions and JPEG blocks that
random noise lacks, and they are what the exported graph will see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType

import numpy as np
from PIL import Image

from dfscan.scanner.errors import DataError
from dfscan.scanner.labels import FAKE_LABEL, REAL_LABEL
from dfscan.scanner.model.preprocess import PreprocessConfig, load_image, prepare, to_chw_batch
from dfscan.scanner.scan.discovery import iter_image_files
from dfscan.train.data.folder import label_of

# skimage.data images bundled with the package (no download): photographs and scans
BUNDLED_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "camera",
    "coins",
    "moon",
)


@dataclass
class ImageSet:
    batch: np.ndarray  # (N, 3, S, S) uint8
    names: list[str]
    origin: str
    labels: np.ndarray | None = None  # 1 = fake, when the folder follows the dataset layout
    skipped: int = 0  # unreadable files


def evenly_spaced(items: list[Path], limit: int) -> list[Path]:
    """Up to ``limit`` items spread over a sorted list, so every subfolder is represented."""
    if len(items) <= limit:
        return items
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in sorted(set(idx.tolist()))]


def folder_images(root: Path, preprocess: PreprocessConfig, limit: int = 64) -> ImageSet:
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    paths = evenly_spaced(list(iter_image_files(root)), limit)
    arrays, names, labels, skipped = [], [], [], 0
    for path in paths:
        try:
            arrays.append(load_image(path, preprocess))
        except (DataError, OSError, ValueError):
            skipped += 1
            continue
        rel = PurePosixPath(path.relative_to(root).as_posix())
        names.append(str(rel))
        labelled = label_of(rel)
        labels.append(-1 if labelled is None else labelled[0])
    if not arrays:
        raise DataError(f"no readable images in {root}")
    y = np.array(labels)
    has_both = (y >= 0).all() and {REAL_LABEL, FAKE_LABEL} <= set(y.tolist())
    return ImageSet(to_chw_batch(arrays), names, str(root), y if has_both else None, skipped)


def bundled_photos(preprocess: PreprocessConfig, views: int = 3, seed: int = 0) -> ImageSet:
    """scikit-image's bundled photos (centre crop + random crops) and a few noise images."""
    rng = np.random.default_rng(seed)
    arrays, names = [], []
    skdata: ModuleType | None
    try:
        from skimage import data as skdata
    except ImportError:  # pragma: no cover - skimage comes with the export extra
        skdata = None
    for name in BUNDLED_PHOTOS if skdata is not None else ():
        try:
            img = Image.fromarray(getattr(skdata, name)()).convert("RGB")
        except Exception:  # a photo that would need a download
            continue
        for view in range(views):
            arrays.append(prepare(img, preprocess, rng if view else None))
            names.append(f"skimage.data.{name}#{view}")
    s = preprocess.size
    extremes = {  # what a photo set lacks: noise, flat, saturated, the highest frequency
        "noise": rng.integers(0, 256, (s, s, 3)),
        "black": np.zeros((s, s, 3)),
        "white": np.full((s, s, 3), 255),
        "checkerboard": (np.indices((s, s)).sum(0) % 2 * 255)[..., None].repeat(3, -1),
    }
    for name, arr in extremes.items():
        arrays.append(arr.astype(np.uint8))
        names.append(name)
    return ImageSet(to_chw_batch(arrays), names, "bundled photos (skimage.data) + synthetic")
