"""Cutting a library's network (timm, open_clip) into the uniform stages of ``STAGES``.

Two shapes cover the field's backbones:

- **feature-map networks** (CNNs): the network's own list of feature levels (timm's
  ``feature_info``: module and output stride of each) marks where stages end; the modules run
  in the order they are registered, as timm's ``features_only`` wrappers assume.
- **token networks** (ViTs): an embedding (patches, class token, positions) is the stem and the
  transformer blocks are split into four equal groups, ``layer1`` … ``layer4``.

What lies before the blocks or after them (a ViT's positional embedding, an attention pool, a
projection) stays with the library's code: :class:`NetPart` runs one of the network's own
methods while registering only the members it owns, so every tensor sits once in the state
dict, under the stage that trains it. Every cut is checked by one forward pass against the
library's own forward: a network whose forward is not the sequence we assumed fails here with
one line, instead of giving different features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

from dfscan.scanner.errors import ModelError

from .detector import STAGES, Layout, StagedBackbone

Run = Callable[[nn.Module, Tensor], Tensor]


class NetPart(nn.Module):
    """Runs ``run(net, x)``: a piece of the library's own forward, on members this part owns.

    ``net`` is held by reference, not registered; ``owns`` names the submodules and
    parameters of ``net`` this part registers (and so saves, trains and moves with ``.to``).
    """

    def __init__(self, net: nn.Module, owns: Iterable[str], run: Run) -> None:
        super().__init__()
        self.__dict__["net"] = net  # outside _modules: the owning parts hold its tensors
        self.run = run
        for name in owns:
            member = getattr(net, name)
            if isinstance(member, nn.Parameter):
                self.register_parameter(name, member)
            elif isinstance(member, nn.Module):
                self.add_module(name, member)

    def forward(self, x: Tensor) -> Tensor:
        return self.run(self.__dict__["net"], x)

    def train(self, mode: bool = True) -> NetPart:
        super().train(mode)
        self.__dict__["net"].training = mode  # its own flag (functional dropout reads it)
        return self


def members(net: nn.Module) -> list[str]:
    """The direct submodules and parameters of ``net``; direct buffers are refused (a part
    could not move them with ``.to``: they would stay behind on the hidden network)."""
    if any(True for _ in net.named_buffers(recurse=False)):
        raise ModelError(f"{type(net).__name__} holds buffers of its own; not supported")
    params = [name for name, _ in net.named_parameters(recurse=False)]
    return [*params, *(name for name, _ in net.named_children())]


@dataclass(frozen=True)
class Cut:
    """A network cut into stages, with what the stats and pooled variants need of it."""

    stages: dict[str, nn.Module]
    pool: nn.Module
    num_features: int
    channels: dict[str, int]
    layout: Layout
    prefix_tokens: int = 0
    source: dict[str, str] | None = None  # the stage path of each of the network's modules

    def stage_key(self, key: str) -> str:
        """A key of the network's state dict as the stages hold it (``blocks.1.0.conv.weight``
        → ``layer1.0.0.conv.weight``)."""
        module = key
        while module and module not in (self.source or {}):
            module = module.rpartition(".")[0]
        if not module:
            raise KeyError(key)
        return (self.source or {})[module] + key[len(module) :]

    def backbone(self, stats: bool) -> StagedBackbone:
        return StagedBackbone(
            self.stages,
            self.num_features,
            STAGES if stats else (),
            self.channels,
            pool=self.pool,
            layout=self.layout,
            prefix_tokens=self.prefix_tokens,
        )


def check_owned(net: nn.Module, parts: Iterable[nn.Module], what: str) -> None:
    """Every parameter of ``net`` is registered in one of ``parts`` (else a checkpoint would
    silently lose it)."""
    owned = {id(p) for part in parts for p in part.parameters()}
    lost = [name for name, p in net.named_parameters() if id(p) not in owned]
    if lost:
        raise ModelError(f"{what}: the cut leaves out {lost[0]}; not supported")


def _flat_modules(net: nn.Module, targets: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """``net``'s children in order, opened wherever a feature level lies deeper inside."""
    out: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            path = prefix + name
            if any(t.startswith(path + ".") for t in targets):
                visit(path + ".", child)
            else:
                out.append((path, child))

    visit("", net)
    return out


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def cut_feature_maps(
    net: nn.Module,
    levels: Sequence[tuple[str, int]],
    features: Run,
    embed: Run,
    head: Sequence[str],
    size: int,
    what: str,
) -> Cut:
    """Cut a CNN at its feature levels ``(module path, output stride)``.

    ``layer1``…``layer4`` end at the last level of the four deepest strides, the stem at the
    level before them (or just before ``layer1``'s level when there is none). The modules
    between the last level and the end of ``features(net, x)`` (a 1×1 head conv, a final norm)
    join ``layer4``; the rest, from the first module named in ``head`` on, is the pooling,
    which ``embed(net, maps)`` runs.
    """
    by_stride: dict[int, str] = {}
    for level, stride in levels:
        by_stride[stride] = level  # the last level of each stride
    ends = list(by_stride.values())
    if len(ends) < 4:
        raise ModelError(f"{what} has {len(ends)} feature levels; dfscan needs 4 or more")
    modules = _flat_modules(net, ends)
    names = [name for name, _ in modules]
    missing = [e for e in ends[-5:] if e not in names]
    if missing:
        raise ModelError(f"{what}: cannot find its feature level {missing[0]} among its modules")
    cut = [names.index(e) + 1 for e in ends[-5:]]
    if len(cut) == 4:
        cut.insert(0, cut[0] - 1)
    head_start = min((names.index(h) for h in head if h in names), default=len(names))
    groups = {stage: modules[a:b] for stage, a, b in zip(STAGES, [0, *cut[:-1]], cut, strict=True)}

    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    reference = features(net, x)
    channels = {}
    for stage, group in groups.items():
        for _, module in group:
            x = module(x)
        channels[stage] = int(x.shape[1])
    tail: list[tuple[str, nn.Module]] = []
    for name, module in modules[cut[-1] : head_start]:  # shortest run that ends the features
        if _close(x, reference):
            break
        x = module(x)
        tail.append((name, module))
    if not _close(x, reference):
        raise ModelError(f"{what} does not run as the sequence of its modules; not supported")
    groups["layer4"] = [*groups["layer4"], *tail]
    channels["layer4"] = int(x.shape[1])

    rest = [name for name, _ in modules[cut[-1] + len(tail) :]]
    if any("." in name for name in rest):
        raise ModelError(f"{what}: its pooling is nested in other modules; not supported")
    pool = NetPart(net, rest, embed)
    num_features = int(embed(net, reference).shape[1])
    source = {
        name: f"{stage}.{i}" for stage, group in groups.items() for i, (name, _) in enumerate(group)
    }
    stages: dict[str, nn.Module] = {
        stage: nn.Sequential(*(m for _, m in group)) for stage, group in groups.items()
    }
    check_owned(net, [*stages.values(), pool], what)
    return Cut(stages, pool, num_features, channels, "nchw", source=source)


def quarters(blocks: Sequence[nn.Module]) -> list[nn.Sequential]:
    """Blocks in four equal consecutive groups (the first ones smaller when they do not divide)."""
    n = len(blocks)
    bounds = [n * k // 4 for k in range(5)]
    return [nn.Sequential(*blocks[a:b]) for a, b in pairwise(bounds)]


@torch.no_grad()
def cut_tokens(
    net: nn.Module,
    embed: NetPart,
    blocks: Sequence[nn.Module],
    after_blocks: nn.Module | None,
    pool: NetPart,
    forward: Callable[[Tensor], Tensor],
    size: int,
    prefix_tokens: int,
    what: str,
) -> Cut:
    """Cut a ViT: ``embed`` is the stem, the blocks are four groups (``after_blocks``, a final
    norm, joins ``layer4``), ``pool`` maps tokens to the embedding; ``forward`` is the
    library's own image → embedding, to check the cut against."""
    groups = quarters(blocks)
    if after_blocks is not None:
        groups[-1].append(after_blocks)
    stages = {"stem": embed, **dict(zip(STAGES[1:], groups, strict=True))}
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    reference = forward(x)
    channels = {}
    for stage, module in stages.items():
        x = module(x)
        if x.dim() != 3:
            raise ModelError(f"{what}: its {stage} does not give a token sequence")
        channels[stage] = int(x.shape[-1])
    pooled = pool(x)
    if not _close(pooled, reference):
        raise ModelError(f"{what} does not run as embedding → blocks → pooling; not supported")
    num_features = int(pooled.shape[1])
    check_owned(net, [*stages.values(), pool], what)
    return Cut(stages, pool, num_features, channels, "nlc", prefix_tokens)
