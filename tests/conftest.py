"""Shared fixtures: small datasets made on the fly (no network, no files in git)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, array: np.ndarray, **save_kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return path


def make_folder_dataset(
    root: Path,
    n_real: int = 20,
    generators: tuple[str, ...] = ("gan_a", "gan_b"),
    n_fake: int = 10,
    size: tuple[int, int] = (72, 80),
    seed: int = 0,
) -> Path:
    """Noise "photos" for real; fakes carry a periodic 2-px grid, an easy generator trace."""
    rng = np.random.default_rng(seed)
    for i in range(n_real):
        write_image(
            root / "real" / f"r{i:03d}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        )
    for g, gen in enumerate(generators):
        for i in range(n_fake):
            img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            img[g::2, ::2] //= 4
            write_image(root / gen / f"{gen}{i:03d}.png", img)
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_folder_dataset(tmp_path / "data")
