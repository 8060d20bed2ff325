"""``--arch fuse:<arch>,<arch>``: branches read the same image, each with its own
normalisation; features are theirs side by side; every tensor is saved once; refusals are one
line. Tiny timm test models with different pretraining statistics: nothing downloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfscan.scanner.errors import ModelError
from dfscan.scanner.model.preprocess import PreprocessConfig
from dfscan.train.fit.probe import check_probe
from dfscan.train.models.checkpoint import ModelConfig, load_checkpoint, save_checkpoint
from dfscan.train.models.fusion import FusedBackbone
from dfscan.train.models.registry import create_model, get_spec

from ..library_models import TIMM_CNN, TIMM_VIT

timm = pytest.importorskip("timm")
SIZE = 160  # both timm test models' pretrained side
BRANCHES = (TIMM_VIT, f"{TIMM_CNN}+stats")  # ImageNet and (0.5, 0.5, 0.5) normalisations
FUSED = "fuse:" + ",".join(BRANCHES)


def _images(n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8, generator=gen)


@pytest.fixture(scope="module")
def fused() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(FUSED, size=SIZE)
    model.train()
    with torch.no_grad():
        model(_images(4))  # the joint standardisation sees a batch: not the identity
    return model.eval()


def test_the_spec_takes_pixels_and_the_branches_side(fused: torch.nn.Module) -> None:
    spec = get_spec(FUSED)
    assert (spec.mean, spec.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # branches normalise
    assert (spec.input_size, spec.inputs, spec.head_hidden) == (SIZE, ("spatial",), 0)
    assert spec.short_name == "fuse-timm-test_vit+timm-test_efficientnet+stats"
    assert isinstance(fused.backbone, FusedBackbone)
    widths = tuple(b.num_features for b in fused.backbone.__dict__["branches"])
    assert fused.backbone.feature_blocks == widths  # the probe's penalty balances them
    check_probe(fused)  # default: frozen branches, one linear head over both


def test_features_are_each_branch_alone_side_by_side(fused: torch.nn.Module) -> None:
    """A detector of each branch alone, given that branch's weights, reads the same features
    from its own frontend (its own mean/std) as the fused backbone holds in its slice."""
    x = _images(3)
    with torch.no_grad():
        joint = fused.backbone.features(fused.frontend(x))
        parts = []
        for name, branch in zip(BRANCHES, fused.backbone.__dict__["branches"], strict=True):
            alone = create_model(name, size=SIZE).eval()
            alone.backbone.load_state_dict(branch.state_dict())
            parts.append(alone.backbone.features(alone.frontend(x)))
    assert [p.shape[1] for p in parts] == [
        b.num_features for b in fused.backbone.__dict__["branches"]
    ]
    torch.testing.assert_close(joint, torch.cat(parts, dim=1), rtol=0, atol=0)
    out = fused.backbone(fused.frontend(x))  # standardised once, together
    norm = fused.backbone.norm
    torch.testing.assert_close(out, (joint - norm.scale_mean) / norm.scale_std)
    assert not torch.equal(norm.scale_std, torch.ones_like(norm.scale_std))


def test_every_tensor_is_registered_once(fused: torch.nn.Module) -> None:
    branches = fused.backbone.__dict__["branches"]
    own = {id(p) for p in fused.parameters()}
    assert {id(p) for b in branches for p in b.parameters()} <= own
    keys = list(fused.state_dict())
    assert len(keys) == len(set(keys))
    assert sum(p.numel() for p in fused.backbone.parameters()) == sum(
        p.numel() for b in branches for p in b.parameters()
    )


def test_train_layers_reach_every_branch() -> None:
    model = create_model(FUSED, size=SIZE, train_layers="layer4")
    stages = model.backbone.stages
    for branch_stage in stages["layer4"]:
        assert all(p.requires_grad for p in branch_stage.parameters())
    assert not any(p.requires_grad for p in stages["layer3"].parameters())
    model.train()
    assert stages["layer4"][0].training and not stages["layer3"][1].training


def test_a_checkpoint_round_trips(fused: torch.nn.Module, tmp_path: Path) -> None:
    config = ModelConfig.for_model(FUSED, "spatial", PreprocessConfig(SIZE), fused)
    save_checkpoint(tmp_path / "m.ckpt", fused, config, threshold=0.5, threshold_rule="test")
    loaded = load_checkpoint(tmp_path / "m.ckpt")
    assert loaded.spec.arch == FUSED
    x = _images(2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), fused(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: get_spec(f"fuse:{TIMM_VIT}"), "fusion needs two or more"),
        (lambda: get_spec(f"fuse:{TIMM_VIT},"), "fusion needs two or more"),
        (lambda: get_spec(f"fuse:{TIMM_CNN},{FUSED}"), "cannot hold another fused arch"),
        (lambda: create_model(FUSED, input="fft", size=SIZE), "takes spatial input, not fft"),
        (lambda: get_spec("fuse:timm:no_such_net,efficientnet_lite0"), "timm has no model"),
    ],
)
def test_refusals_are_one_clear_line(call, message: str) -> None:
    with pytest.raises(ModelError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_vits_pretrained_at_different_sides_fuse_at_the_runs_side() -> None:
    arch = f"fuse:{TIMM_VIT},timm:vit_tiny_patch16_224"  # pretrained at 160 and 224
    assert get_spec(arch).input_size is None  # no one side of its own: --size decides
    model = create_model(arch, size=64).eval()
    grids = [branch.pool.net.patch_embed.grid_size for branch in model.backbone.branches]
    assert grids == [(4, 4), (4, 4)]
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=gen)
    assert model(x).shape == (2, 2)
    cnns = create_model(f"fuse:{TIMM_CNN},timm:tf_efficientnet_lite2", size=64)  # 160 and 260
    assert cnns(x).shape == (2, 2)  # CNNs take any side: nothing to refuse


def test_a_branch_weights_file_is_refused(tmp_path: Path) -> None:
    torch.save(timm.create_model("test_vit").state_dict(), tmp_path / "vit.pth")
    with pytest.raises(ModelError, match="a fused arch takes --weights imagenet, none"):
        create_model(FUSED, weights=tmp_path / "vit.pth", size=SIZE)


def test_grad_cam_refuses_a_fused_arch_in_one_line(fused: torch.nn.Module) -> None:
    from dfscan.train.models.gradcam import grad_cam

    with pytest.raises(ModelError, match="Grad-CAM of a fused arch is not supported") as info:
        grad_cam(fused, _images(1), ("layer4",))
    assert info.value.hint == "explain a checkpoint of one branch alone"


@pytest.mark.parametrize("blocks", ["balanced", "joint"])
def test_a_fused_probe_trains_end_to_end(blocks: str, tiny_dataset: Path, tmp_path: Path) -> None:
    """``dfscan train --arch fuse:… --head-fit lbfgs``: the exact head over both branches, its
    penalty balanced over their widths (or one penalty: ``--head-blocks joint``), the
    checkpoint rebuilt from the fused name."""
    from dfscan.train.fit.loop import train

    from .test_train import tiny_config

    arch = f"fuse:{TIMM_CNN},{TIMM_CNN}+stats"  # two CNNs: any side, 32 px is enough
    out = tmp_path / "run"
    lbfgs = {"input": "spatial", "head_fit": "lbfgs", "head_blocks": blocks, "epochs": 2}
    train(tiny_config(tiny_dataset, out, arch=arch, **lbfgs))
    raw = torch.load(out / "model.ckpt", weights_only=True)
    loaded = load_checkpoint(out / "model.ckpt")
    assert loaded.spec.arch == arch
    widths = [b.num_features for b in loaded.model.backbone.__dict__["branches"]]
    assert raw["head_fit"]["feature_blocks"] == widths and widths[0] < widths[1]
    assert raw["head_fit"]["features"] == sum(widths)
    assert raw["head_fit"]["head_blocks"] == blocks
    assert 0 <= loaded.threshold <= 1
