"""The L-BFGS head fit: exact features, the optimum of a convex problem, folded into the head."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

torch = pytest.importorskip("torch")

from dfscan.scanner.errors import DataError, ModelError  # noqa: E402
from dfscan.scanner.labels import REAL  # noqa: E402
from dfscan.train.data.folder import Sample  # noqa: E402
from dfscan.train.fit.probe import (  # noqa: E402
    L2_GRID,
    block_penalty,
    check_probe,
    choose_l2,
    collect_features,
    cv_folds,
    cv_sources,
    fit_head,
    fit_logistic,
    platt,
    set_binary_head,
)
from dfscan.train.fit.robustness import roc_auc  # noqa: E402
from dfscan.train.models.registry import create_model  # noqa: E402

if TYPE_CHECKING:
    from dfscan.train.fit.config import TrainConfig


def _batches(n: int = 3, size: int = 32, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "x": torch.randint(0, 256, (4, 3, size, size), dtype=torch.uint8, generator=g),
            "y": torch.tensor([0, 1, 0, 1]),
            "index": torch.arange(4 * i, 4 * i + 4),
        }
        for i in range(n)
    ]


def _stats_model():
    return create_model("efficientnet_lite0_stats", "spatial", "none", "head", 32)


def test_collected_features_are_what_the_eval_model_computes():
    model = _stats_model()
    batches = _batches()
    feats, labels, indices = collect_features(model, [batches, batches], torch.device("cpu"))
    assert feats.shape == (24, model.backbone.num_features) and labels.tolist() == [0, 1] * 12
    assert indices.tolist() == list(range(12)) * 2
    model.eval()
    with torch.no_grad():
        x = torch.cat([b["x"] for b in batches])
        expected = model.backbone(model.frontend(x)).double()
    # both passes are standardised with the final statistics, not those of their moment
    torch.testing.assert_close(feats[:12], expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(feats[12:], expected, rtol=1e-4, atol=1e-4)


def test_logistic_fit_separates_and_balances_classes():
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(16, generator=g, dtype=torch.float64)
    x = torch.randn(400, 16, generator=g, dtype=torch.float64) * 3 + 5  # not standardised
    y = ((x - 5) @ direction > 1.5).long()  # ~30 % positives
    w, b, stats = fit_logistic(x, y, l2=1e-3)
    p = torch.sigmoid(x.float() @ w + b)
    assert ((p > 0.5).long() == y).float().mean() > 0.97
    assert stats["iterations"] > 0
    stronger, _, _ = fit_logistic(x, y, l2=10.0)
    assert stronger.norm() < w.norm()  # the penalty is applied


def test_a_wide_block_does_not_drown_a_narrow_one():
    """Equal signal in a 1-feature block and a 16-feature block: one penalty gives the wide
    block most of the weight; the block penalty gives each block about the same say."""
    assert block_penalty((7,)) is None
    assert block_penalty((2, 6)).tolist() == [1.0, 1.0, *[3.0] * 6]
    g = torch.Generator().manual_seed(0)
    signal = torch.randn(600, generator=g, dtype=torch.float64)
    y = (signal > 0).long()

    def noisy(k: int) -> torch.Tensor:
        return signal.unsqueeze(1) + 2.0 * torch.randn(600, k, generator=g, dtype=torch.float64)

    x = torch.cat([noisy(1), noisy(16)], dim=1)

    def say(penalty):
        w, _, _ = fit_logistic(x, y, l2=1.0, penalty=penalty)
        z = w * x.std(0).float()  # weights on standardised features
        return float(z[0].abs() / z[1:].abs().sum())

    uniform, balanced = say(None), say(block_penalty((1, 16)))
    assert uniform < 0.25 < balanced  # the narrow block's weight against the wide block's
    w_ones, _, _ = fit_logistic(x, y, l2=1.0, penalty=torch.ones(17))
    w_none, _, _ = fit_logistic(x, y, l2=1.0)
    torch.testing.assert_close(w_ones, w_none)


def test_the_fitted_head_outputs_sigmoid_of_the_fit():
    model = _stats_model()
    linear = check_probe(model)
    w, b = torch.randn(linear.in_features), torch.tensor(0.3)
    set_binary_head(linear, w, b)
    f = torch.randn(5, linear.in_features)
    p_fake = torch.softmax(model.head(f), dim=1)[:, 1]
    torch.testing.assert_close(p_fake, torch.sigmoid(f @ w + b))


def test_fit_head_writes_a_head_that_ranks_the_training_views():
    model = _stats_model()
    g = torch.Generator().manual_seed(1)
    bright = torch.randint(150, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g)
    dark = torch.randint(0, 100, (8, 3, 32, 32), dtype=torch.uint8, generator=g)
    batch = {
        "x": torch.cat([dark, bright]),
        "y": torch.tensor([0] * 8 + [1] * 8),
        "index": torch.arange(16),
    }
    samples = [Sample(f"r{i}.png", 0, REAL, f"r{i}") for i in range(8)]
    samples += [Sample(f"f{i}.png", 1, f"gen{i % 4}", f"f{i}") for i in range(8)]
    head = fit_head(model, [[batch]], torch.device("cpu"), samples)
    stats = head.stats
    assert stats["views"] == 16 and stats["l2"] in L2_GRID and stats["cv_auc"]
    assert len(head.oof_p_fake) == len(head.oof_labels) > 0  # views of usable folds
    assert ((head.oof_p_fake >= 0) & (head.oof_p_fake <= 1)).all()
    with torch.no_grad():
        p = torch.softmax(model(batch["x"]), dim=1)[:, 1]
    assert p[8:].min() > p[:8].max()


def test_only_frozen_linear_heads_can_be_fitted():
    with pytest.raises(ModelError, match="trains"):
        check_probe(create_model("efficientnet_lite0_stats", "spatial", "none", "all", 32))
    with pytest.raises(ModelError, match="linear head"):
        check_probe(create_model("efficientnet_lite0", "spatial", "none", "head", 32))


def test_cv_holds_out_whole_generators_and_keeps_groups_together():
    gens = ["real", "real", "real", "a", "a", "b", "c", "d", "e"]
    groups = ["p1", "p1", "p2", "a1", "a2", "b1", "c1", "d1", "e1"]
    folds = cv_folds(gens, groups, k=4)
    assert folds[0] == folds[1]  # two views of one photo
    assert folds[3] == folds[4]  # one generator, one fold
    assert len({folds[i] for i in range(3, 9)}) == 4
    one_generator = cv_folds(["real", "a", "a"], ["p", "a1", "a2"], k=2)
    assert one_generator[1] != one_generator[2]  # then its groups are held out instead


def test_cv_can_hold_out_whole_real_sources():
    sources = ["cam"] * 6 + ["site"] * 4 + ["pkg"] * 3 + ["scan"] * 2 + ["misc"] + [""] * 4
    gens = ["real"] * 16 + ["a", "b", "c", "d"]
    groups = [f"p{i}" for i in range(16)] + ["a1", "b1", "c1", "d1"]
    by_group = cv_folds(gens, groups, k=4)
    folds = cv_folds(gens, groups, k=4, sources=sources)
    assert folds[16:] == by_group[16:]  # fakes as before
    fold_of = {}
    for src, f in zip(sources[:16], folds[:16], strict=True):
        assert fold_of.setdefault(src, f) == f  # a source is never split
    # largest first to the fold with the fewest real views: cam 0, site 1, pkg 2, scan 3, misc 3
    assert fold_of == {"cam": 0, "site": 1, "pkg": 2, "scan": 3, "misc": 3}
    assert len({by_group[i] for i in range(6)}) > 1  # by photo, "cam" was spread


def test_cv_sources_only_when_every_real_has_one_and_there_are_enough():
    def views(*sources: str) -> list[Sample]:
        reals = [Sample(f"r{i}.png", 0, REAL, f"r{i}", s) for i, s in enumerate(sources)]
        return [*reals, Sample("a.png", 1, "a", "a")]

    four = views("a", "b", "c", "d", "d")
    assert cv_sources(four, "sources") == ["a", "b", "c", "d", "d", ""]
    assert cv_sources(four, "groups") is None
    assert cv_sources(views("a", "b", "c", "c"), "sources") is None  # 3 sources, 4 folds
    assert cv_sources(views("a", "b", "c", "d", ""), "sources") is None  # one unknown


def lbfgs_config(data: Path, out: Path, **changes: Any) -> TrainConfig:
    """A tiny run of the frozen stage-statistics backbone whose head L-BFGS fits, the threshold
    at 10 % false positives."""
    from .test_train import tiny_config

    lbfgs = dict(arch="efficientnet_lite0_stats", input="spatial", train_layers="head")
    return tiny_config(data, out, **lbfgs, head_fit="lbfgs", target_fpr=0.1, **changes)


@pytest.mark.parametrize(
    ("cv_reals", "rule"),
    [
        ("sources", "fpr0.1_on_val_and_out_of_source_train_reals"),
        ("groups", "fpr0.1_on_val_and_out_of_fold_train_reals"),
    ],
)
def test_lbfgs_threshold_rule_names_reals_held_out_by_source(
    tiny_dataset, tmp_path, cv_reals, rule
):
    from dfscan.train.fit.loop import train
    from dfscan.train.models.checkpoint import load_checkpoint

    for i, path in enumerate(sorted((tiny_dataset / "real").glob("*.png"))):
        (tiny_dataset / "real" / f"src{i % 5}").mkdir(exist_ok=True)
        path.rename(tiny_dataset / "real" / f"src{i % 5}" / path.name)
    out = tmp_path / "run"
    cfg = lbfgs_config(tiny_dataset, out, epochs=1, head_l2=1.0, cv_reals=cv_reals)
    train(cfg)
    assert load_checkpoint(out / "model.ckpt").threshold_rule == rule
    raw = torch.load(out / "model.ckpt", weights_only=True)
    assert raw["head_fit"]["cv_reals"] == cv_reals
    assert "source" in (out / "split.csv").read_text().splitlines()[0]


def test_choose_l2_scores_each_penalty_on_held_out_folds():
    g = torch.Generator().manual_seed(0)
    n = 120
    labels = (torch.arange(n) % 2).long()
    x = torch.randn(n, 20, generator=g, dtype=torch.float64)
    x[:, 0] += 0.8 * (labels * 2 - 1)
    folds = [(i // 2) % 3 for i in range(n)]
    _, cv, _ = choose_l2(x, labels, folds, grid=(0.01, 1.0))
    fold = torch.tensor(folds)
    manual = []
    for f in range(3):
        w, b, _ = fit_logistic(x[fold != f], labels[fold != f], 1.0, max_iter=200)
        manual.append(roc_auc(labels[fold == f].numpy(), (x[fold == f].float() @ w + b).numpy()))
    assert cv[1.0] == pytest.approx(sum(manual) / 3)
    assert cv[1.0] < 1.0  # held out: the training folds would rank perfectly


def test_choose_l2_breaks_ties_towards_the_simpler_model():
    labels = (torch.arange(40) % 2).long()
    x = torch.stack([labels * 10.0 - 5, torch.zeros(40)], 1).double()  # separable at any l2
    l2, cv, _ = choose_l2(x, labels, [(i // 2) % 2 for i in range(40)], grid=(0.1, 1.0, 10.0))
    assert set(cv.values()) == {1.0} and l2 == 10.0


def test_a_training_run_with_head_fit_lbfgs(tiny_dataset, tmp_path):
    from dfscan.train.fit.config import TrainConfig
    from dfscan.train.fit.loop import train
    from dfscan.train.models.checkpoint import load_checkpoint

    out = tmp_path / "run"
    cfg = lbfgs_config(tiny_dataset, out, epochs=2)  # two augmented passes, one fit
    result = train(cfg)
    rule = load_checkpoint(out / "model.ckpt").threshold_rule
    assert rule == "fpr0.1_on_val_and_out_of_fold_train_reals"
    assert result.best_epoch == 1 and len(result.history) == 1
    raw = torch.load(out / "model.ckpt", weights_only=True)
    assert raw["head_fit"]["l2"] in L2_GRID and raw["head_fit"]["views"] > 0
    assert 0 <= load_checkpoint(out / "model.ckpt").threshold <= 1
    assert result.test["n"] > 0 and (out / "history.csv").is_file()
    with pytest.raises(DataError, match="nothing to resume"):
        train(TrainConfig(**{**cfg.__dict__, "resume": True}))


def test_choose_l2_takes_the_strongest_penalty_within_one_standard_error(monkeypatch):
    table = {0.1: [0.90, 0.92, 0.94], 1.0: [0.91, 0.90, 0.92], 10.0: [0.80, 0.82, 0.84]}
    calls: list[int] = []

    def fake_fit(feats, labels, l2, max_iter=500, penalty=None):
        return torch.zeros(feats.shape[1]), torch.tensor(float(l2)), {}

    def fake_auc(y, scores):
        calls.append(1)
        return table[round(float(scores[0]), 6)][(len(calls) - 1) % 3]

    monkeypatch.setattr("dfscan.train.fit.probe.fit_logistic", fake_fit)
    monkeypatch.setattr("dfscan.train.fit.probe.roc_auc", fake_auc)
    labels = (torch.arange(30) % 2).long()
    l2, cv, _ = choose_l2(torch.zeros(30, 2), labels, [i // 10 for i in range(30)], tuple(table))
    assert cv[0.1] == pytest.approx(0.92)  # the best mean, SE 0.0115
    assert l2 == 1.0  # 0.91 is within one SE of it; 10's 0.82 is not


def test_platt_scaling_restores_probabilities_shrunk_by_the_penalty():
    g = torch.Generator().manual_seed(0)
    labels = (torch.arange(400) % 2).long()
    true_logit = 3.0 * (labels * 2 - 1) + torch.randn(400, generator=g) * 2
    shrunk = true_logit * 0.05  # what a strong penalty leaves of it
    a, c = platt(shrunk, labels)
    assert 10 < a < 40 and abs(c) < 0.5  # about 1/0.05 × the calibration of the true logit
    assert platt(torch.full((4,), float("nan")), labels[:4]) == (1.0, 0.0)
    assert platt(-shrunk, labels) == (1.0, 0.0)  # no held-out signal: left as fitted
    assert platt(true_logit * 5, labels) == (1.0, 0.0)  # never shrinks further
