"""Grad-CAM and ``dfscan explain`` on tiny trained models (CPU, 32² inputs)."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app
from dfscan.scanner.errors import DataError, ModelError
from dfscan.train.data.augment_config import AugmentConfig
from dfscan.train.experiments.explain import explain, explain_files
from dfscan.train.fit.config import TrainConfig
from dfscan.train.fit.loop import train
from dfscan.train.models.checkpoint import load_checkpoint
from dfscan.train.models.gradcam import as_map, grad_cam
from dfscan.train.models.registry import create_model

from ..conftest import make_folder_dataset, one_torch_thread, write_image

SIZE = 32


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Lite0 checkpoints (spatial and fft) with layer1-3 frozen, one training step each."""
    root = tmp_path_factory.mktemp("explain")
    data = make_folder_dataset(root / "data")
    ckpts = {"data": data}
    with one_torch_thread():
        for variant in ("spatial", "fft"):
            out = root / variant
            cfg = TrainConfig(
                data=data,
                out=out,
                arch="efficientnet_lite0",
                input=variant,
                weights="none",
                train_layers="layer4",
                epochs=1,
                batch_size=8,
                workers=0,
                size=SIZE,
                max_steps=1,
                augment=AugmentConfig.off(),
            )
            train(cfg)
            ckpts[variant] = out / "model.ckpt"
    return ckpts


@pytest.mark.parametrize("variant", ["spatial", "fft"])
def test_explain_writes_one_figure_per_image(variant, trained, tmp_path: Path):
    data = trained["data"]
    images = [data / "real" / "r000.png", data / "gan_a" / "gan_a000.png"]
    twin = write_image(tmp_path / "other" / "r000.png", np.full((40, 50, 3), 90, np.uint8))
    out = tmp_path / "cams"
    results = explain([*images, twin], trained[variant], out)

    assert [Path(r.source) for r in results] == [*images, twin]
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["gan_a000_gradcam.png", "r000-2_gradcam.png", "r000_gradcam.png"]
    for item in results:
        assert set(item.maps) == {"layer1", "layer2", "layer3", "layer4"}
        for cam in item.maps.values():
            assert cam.shape == (SIZE, SIZE) and cam.dtype == np.float32
            assert cam.min() >= 0.0 and cam.max() <= 1.0
        assert item.image.shape == (SIZE, SIZE, 3) and item.image.dtype == np.uint8
        assert 0.0 <= item.p_fake <= 1.0 and item.verdict in ("real", "fake")
        if variant == "fft":
            assert item.spectrum.shape == (SIZE, SIZE)
            assert item.spectrum.min() >= 0.0 and item.spectrum.max() <= 1.0
        else:
            assert item.spectrum is None
        with Image.open(item.figure) as fig:
            assert fig.format == "PNG" and fig.width > 3 * fig.height
    # frozen stages pass gradients: the maps are not all empty
    assert any(r.maps["layer1"].max() == 1.0 for r in results)
    rows = list(csv.DictReader((out / "explain.csv").open()))
    assert [r["figure"] for r in rows] == [r.figure.name for r in results]
    assert all(r["verdict"] in ("real", "fake") for r in rows)


def test_frozen_stages_give_the_same_maps_as_trainable_ones():
    torch.manual_seed(0)
    frozen = create_model("resnet50", "fft", weights="none", train_layers="head", size=SIZE)
    trainable = create_model("resnet50", "fft", weights="none", train_layers="all", size=SIZE)
    trainable.load_state_dict(frozen.state_dict())
    frozen.train()  # grad_cam runs in eval mode and gives the mode back
    x = torch.randint(0, 256, (3, 3, SIZE, SIZE), dtype=torch.uint8)
    layers = ("stem", "layer1", "layer2", "layer3", "layer4")
    a = grad_cam(frozen, x, layers)
    b = grad_cam(trainable.eval(), x, layers)
    assert frozen.training and not any(p.grad is not None for p in frozen.parameters())
    for layer in layers:
        assert a.maps[layer].shape == (3, SIZE, SIZE)
        assert torch.allclose(a.maps[layer], b.maps[layer], atol=1e-5)
    assert torch.allclose(a.prob, torch.softmax(frozen.eval()(x), 1)[:, 1], atol=1e-6)


def test_layer_choice_and_errors(trained, tmp_path: Path):
    loaded = load_checkpoint(trained["spatial"])
    image = trained["data"] / "real" / "r001.png"
    (item,) = explain_files(loaded, [image], "layer4,stem")
    assert list(item.maps) == ["layer4", "stem"]
    with pytest.raises(ModelError, match="no layer 'layer5'"):
        explain_files(loaded, [image], "layer2,layer5")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.png: not a readable image"):
        explain_files(loaded, [image, text])


def test_explain_cli(trained, tmp_path: Path):
    runner = CliRunner()
    image = trained["data"] / "gan_b" / "gan_b001.png"
    out = tmp_path / "cli"
    args = ["explain", str(image), "--checkpoint", str(trained["fft"]), "--out", str(out)]
    result = runner.invoke(app, [*args, "--layers", "layer2,layer4", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "gan_b001_gradcam.png" in result.stdout and (out / "gan_b001_gradcam.png").is_file()

    result = runner.invoke(app, [*args, "--layers", "fc"])
    assert result.exit_code == 4 and "no layer 'fc'" in result.output
    assert "Traceback" not in result.output
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    result = runner.invoke(app, ["explain", str(bad), "-c", str(trained["fft"]), "-o", str(out)])
    assert result.exit_code == 2 and "bad.jpg" in result.output
    result = runner.invoke(app, ["explain", str(image), "-c", str(image), "-o", str(out)])
    assert result.exit_code == 4


def test_patch_tokens_are_laid_back_on_their_grid():
    backbone = SimpleNamespace(layout="nlc", prefix_tokens=1)
    tokens = torch.arange(1 + 6 * 6, dtype=torch.float32).view(1, -1, 1).repeat(1, 1, 2)
    grid = as_map(tokens, backbone)  # type: ignore[arg-type]
    assert grid.shape == (1, 2, 6, 6)
    assert grid[0, 1, 2, 3] == 1 + 2 * 6 + 3  # row-major, after the CLS token
    with pytest.raises(ModelError, match="do not form a square grid"):
        as_map(tokens[:, :-1], backbone)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arch", "empty"), [("timm:test_vit+stats", ()), ("timm:test_vit", ("layer4",))]
)
def test_grad_cam_of_a_vit(arch: str, empty: tuple[str, ...]):
    """A ViT's maps lie on its patch grid; without +stats its last stage's patch tokens do not
    reach the head (it reads CLS), so that map is empty and the earlier ones are not."""
    pytest.importorskip("timm")
    torch.manual_seed(0)
    model = create_model(arch, weights="none", size=160)
    x = torch.randint(0, 256, (2, 3, 160, 160), dtype=torch.uint8)
    result = grad_cam(model, x, ("layer1", "layer3", "layer4"))
    for layer, cam in result.maps.items():
        assert cam.shape == (2, 160, 160) and cam.min() >= 0.0 and cam.max() <= 1.0
        assert (cam.max() == 0.0) == (layer in empty), layer
