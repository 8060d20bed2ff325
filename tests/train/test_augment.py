from pathlib import Path

import numpy as np
import pytest

from dfscan.scanner.model.preprocess import PreprocessConfig
from dfscan.train.data.augment import augment
from dfscan.train.data.augment_config import AugmentConfig
from dfscan.train.data.folder import scan_dataset
from dfscan.train.data.loaders import ImageDataset, collate


def photo(size=64):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig.off().with_changes(hflip=True),
        AugmentConfig.off().with_changes(vflip=True),
        AugmentConfig.off().with_changes(affine=True),
        AugmentConfig.off().with_changes(blur_prob=1.0),
        AugmentConfig(affine=True, blur_prob=1.0),
    ],
    ids=["hflip", "vflip", "affine", "blur", "all"],
)
def test_each_augmentation_changes_pixels_not_shape(cfg):
    img = photo()
    rng = np.random.default_rng(1)
    outs = [augment(img, cfg, rng) for _ in range(6)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(o, img) for o in outs)


@pytest.mark.parametrize(
    "changes,fmt",
    [({"jpeg_prob": 1.0}, "JPEG"), ({"webp_prob": 1.0}, "WEBP"), ({"rescale_prob": 1.0}, None)],
    ids=["jpeg", "webp", "rescale"],
)
def test_source_augmentations_act_on_the_whole_image(changes, fmt):
    """Re-encoding and rescaling happen to the decoded source, before the crop."""
    from PIL import Image

    from dfscan.train.data.augment import augment_source
    from dfscan.train.fit.robustness import jpeg

    img = Image.fromarray(photo(64))
    cfg = AugmentConfig.off().with_changes(**changes)
    rng = np.random.default_rng(2)
    outs = [augment_source(img, cfg, rng) for _ in range(6)]
    if fmt is None:  # a rescale by 0.5-1.5
        assert all(32 <= o.size[0] <= 96 and o.size[0] == o.size[1] for o in outs)
        assert len({o.size for o in outs}) > 1
        return
    assert all(o.size == img.size and o.mode == "RGB" for o in outs)
    assert all(not np.array_equal(np.asarray(o), np.asarray(img)) for o in outs)
    if fmt == "JPEG":  # the quality is drawn in jpeg_quality: never below its lower bound
        worst = np.abs(np.asarray(jpeg(img, 30), float) - np.asarray(img, float)).mean()
        assert all(
            np.abs(np.asarray(o, float) - np.asarray(img, float)).mean() < worst for o in outs
        )


def test_robust_preset_reencodes_both_classes_often():
    from dfscan.train.data.augment_config import AUGMENT_PRESETS

    robust = AUGMENT_PRESETS["robust"]
    assert robust.jpeg_prob >= 0.5 and robust.webp_prob > 0 and robust.rescale_prob > 0
    assert AugmentConfig.preset(True) == AUGMENT_PRESETS["on"]
    with pytest.raises(ValueError, match="unknown augmentation"):
        AugmentConfig.preset("heavy")


def test_off_is_identity():
    img = photo()
    assert np.array_equal(augment(img, AugmentConfig.off(), np.random.default_rng(0)), img)


def test_config_roundtrip():
    cfg = AugmentConfig(affine=True, jpeg_quality=(50, 90))
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg


def test_four_patch_dataset_keeps_labels(tiny_dataset: Path):
    scan = scan_dataset(tiny_dataset)
    cfg = AugmentConfig(four_patch=True)
    real = [s for s in scan.samples if s.label == 0][:3]
    fake = [s for s in scan.samples if s.label == 1][:2]
    ds = ImageDataset(tiny_dataset, real + fake, PreprocessConfig(32), cfg)
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["x"].shape == (20, 3, 32, 32)
    assert batch["y"].tolist() == [0] * 12 + [1] * 8
    assert batch["index"].tolist() == [i for i in range(5) for _ in range(4)]


def test_dataset_is_reproducible_per_epoch(tiny_dataset: Path):
    scan = scan_dataset(tiny_dataset)
    ds = ImageDataset(tiny_dataset, scan.samples, PreprocessConfig(32), AugmentConfig(), seed=5)
    a, b = ds[0]["x"], ds[0]["x"]
    ds.set_epoch(1)
    c = ds[0]["x"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_broken_file_yields_no_view(tiny_dataset: Path):
    scan = scan_dataset(tiny_dataset)
    (tiny_dataset / scan.samples[0].path).write_bytes(b"broken after the scan")
    ds = ImageDataset(tiny_dataset, scan.samples[:2], PreprocessConfig(32))
    batch = collate([ds[0], ds[1]])
    assert batch["x"].shape[0] == 1 and batch["skipped"].tolist() == [0]
