"""Named training recipes: a full set of ``dfscan train`` settings behind one name.

``dfscan train DATA --recipe robust`` starts from the recipe; options given after it override
it. The keys are :class:`dfscan.train.fit.config.TrainConfig` fields (``augment`` is a preset
name of :data:`dfscan.train.data.augment_config.AUGMENT_PRESETS`), so a grid run may name a
recipe too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dfscan.scanner.errors import DataError


@dataclass(frozen=True)
class Recipe:
    name: str
    about: str
    settings: dict[str, Any]


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "seed",
            "The research write-up: ResNet-50 (ImageNet), images resized to 224, layer3+layer4 "
            "and the head trained, Adam 1e-3, 20 epochs, flips + RandomAffine. Offline, put "
            "torchvision's resnet50 weights in the torch hub cache (the error says where).",
            {
                "arch": "resnet50",
                "input": "spatial",
                "weights": "imagenet",
                "train_layers": "layer3,layer4",
                "preprocess": "resize",
                "size": 224,
                "epochs": 20,
                "batch_size": 16,
                "lr": 1e-3,
                "augment": "seed",
                "synth": (),
            },
        ),
        Recipe(
            "robust",
            "What held best on unseen generators (docs/results.md): "
            "EfficientNet-Lite0 with its ImageNet weights (offline) kept frozen and read at every "
            "stage (per-channel mean and std), a linear head fitted exactly (L2 logistic "
            "regression by L-BFGS over 8 augmented passes, the penalty by held-out-generator CV "
            "on the train split), the threshold at 5 % false positives on the validation reals "
            "pooled with the training reals' out-of-fold scores, "
            "native-pixel 224 crops, re-encoding/rescaling on both classes. Trains in minutes "
            "on a CPU. (lr, weight_decay and keep are the SGD head's: --head-fit sgd gives "
            "the recipe as it was before L-BFGS.)",
            {
                "arch": "efficientnet_lite0_stats",
                "input": "spatial",
                "weights": "imagenet",
                "train_layers": "head",
                "preprocess": "crop",
                "size": 224,
                "epochs": 8,
                "batch_size": 32,
                "lr": 1e-3,
                "weight_decay": 0.5,
                "keep": "last",
                "target_fpr": 0.05,
                "head_fit": "lbfgs",
                "augment": "robust",
                "synth": (),
            },
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise DataError(
            f"unknown recipe {name!r}", hint=f"available: {', '.join(RECIPES)} (--list-recipes)"
        ) from None
