"""The training Dataset: shared host preprocessing + augmentation → uint8 NCHW tensors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dfscan.scanner.errors import DataError
from dfscan.scanner.model.preprocess import (
    PreprocessConfig,
    decode_for,
    four_patches,
    prepare,
)

from .augment import augment, augment_source
from .augment_config import AugmentConfig
from .folder import Sample

Batch = dict[str, torch.Tensor]
Degrade = Callable[[Image.Image], Image.Image]


class ImageDataset(Dataset):
    """One item per source image: 1 view, or 4 with the 4-patch split.

    Random choices (crop position, augmentation) come from a generator seeded by
    (seed, epoch, index), so runs are reproducible whatever the number of workers. A file that
    fails to decode yields zero views and is counted in the batch's ``skipped``. ``degrade``
    (evaluation only) alters the decoded image before the shared geometry, e.g. a JPEG
    re-encoding or a rescale, to measure robustness on the same images.
    """

    def __init__(
        self,
        root: Path,
        samples: Sequence[Sample],
        preprocess: PreprocessConfig,
        augmentation: AugmentConfig | None = None,
        seed: int = 0,
        degrade: Degrade | None = None,
    ) -> None:
        self.root = root
        self.degrade = degrade
        self.samples = list(samples)
        self.preprocess = preprocess
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    @property
    def views_per_item(self) -> int:
        return 4 if self.augmentation is not None and self.augmentation.four_patch else 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Batch:
        sample = self.samples[index]
        size = self.preprocess.size
        aug = self.augmentation
        four = aug is not None and aug.four_patch
        try:
            img, _ = decode_for(self.root / sample.path, self.preprocess, 2 if four else 1)
        except DataError:
            empty = torch.empty((0, 3, size, size), dtype=torch.uint8)
            return {
                "x": empty,
                "y": torch.empty(0, dtype=torch.long),
                "index": torch.empty(0, dtype=torch.long),
                "skipped": torch.tensor([index]),
            }
        if self.degrade is not None:
            img = self.degrade(img)
        rng = np.random.default_rng((self.seed, self.epoch, index)) if aug is not None else None
        if aug is not None and rng is not None:
            img = augment_source(img, aug, rng)
        if four:
            views = list(four_patches(img, self.preprocess, rng))
        else:
            views = [prepare(img, self.preprocess, rng)]
        if aug is not None and rng is not None:
            views = [augment(v, aug, rng) for v in views]
        x = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).contiguous()
        n = len(views)
        return {
            "x": x,
            "y": torch.full((n,), sample.label, dtype=torch.long),
            "index": torch.full((n,), index, dtype=torch.long),
            "skipped": torch.empty(0, dtype=torch.long),
        }


def collate(items: list[Batch]) -> Batch:
    """Concatenate views (items may hold 0, 1 or 4)."""
    return {key: torch.cat([item[key] for item in items]) for key in items[0]}
