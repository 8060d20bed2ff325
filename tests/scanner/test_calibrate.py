"""``dfscan calibrate``: the threshold rule, the interval, the metadata rewrite without onnx,
and the command end to end on real (tiny) ONNX models and images written in tmp dirs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dfscan.scanner.cli.app import app
from dfscan.scanner.errors import DataError, ModelError
from dfscan.scanner.model.detector import Detector
from dfscan.scanner.model.meta import ModelMeta, read_model_meta
from dfscan.scanner.model.onnx_props import read_props, replace_props
from dfscan.scanner.model.spec import DetectorSpec
from dfscan.scanner.scan.calibrate import (
    CALIBRATION_KEY,
    allowed_flagged,
    calibrate,
    fpr_threshold,
    min_reals,
    wilson_interval,
)

from ..conftest import write_image
from ..onnx_models import brightness_meta, brightness_model, grey

onnx = pytest.importorskip("onnx")

runner = CliRunner()


def calibrate_cli(*args: object) -> object:
    return runner.invoke(app, ["calibrate", *(str(a) for a in args), "--device", "cpu", "-q"])


def reals_folder(root: Path, n: int = 40) -> Path:
    """n greys 0, 5, 10, … (distinct brightness scores), half of them in a subfolder, and one
    broken file, which is skipped and counted."""
    for i in range(n):
        write_image(root / ("sub" if i % 2 else "") / f"r{i:02d}.png", grey(5 * i))
    (root / "sub" / "broken.jpg").write_bytes(b"not an image")
    return root


def scores_of(model: Path, folder: Path) -> np.ndarray:
    images = sorted(p for p in folder.rglob("*.png"))
    return Detector.from_onnx(model, "cpu").predict(images)


# --- the rule ----------------------------------------------------------------------------------


def test_the_threshold_flags_exactly_floor_target_n_distinct_scores():
    scores = [i / 100 for i in range(40)]  # 0.00 … 0.39
    t = fpr_threshold(scores, 0.05)  # k = 2: 0.38 and 0.39 flagged, 0.37 not
    assert 0.37 < t <= 0.38 and t == math.nextafter(0.37, 1.0)
    assert sum(s >= t for s in scores) == 2
    assert sum(s >= fpr_threshold(scores, 0.1) for s in scores) == 4
    assert sum(s >= fpr_threshold(scores, 0.01) for s in scores) == 0  # k = 0: above the max
    assert fpr_threshold(scores, 0.01) == math.nextafter(0.39, 1.0)


def test_ties_at_the_cut_flag_fewer_never_more():
    scores = [0.1] * 10 + [0.9] * 3  # k = floor(0.2 · 13) = 2, but three tie at the top
    t = fpr_threshold(scores, 0.2)
    assert t == math.nextafter(0.9, 1.0) and sum(s >= t for s in scores) == 0
    scores = [0.1] * 7 + [0.5, 0.5, 0.9]  # k = 2: the cut (3rd highest) ties with the 2nd
    t = fpr_threshold(scores, 0.2)
    assert sum(s >= t for s in scores) == 1 and t > 0.5


def test_the_rule_against_brute_force():
    """flagged = the most reals any threshold of the form 'just above a score' flags without
    exceeding k: the rule is neither one too strict nor one too lax, ties included."""
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 60)
        scores = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, rng.random()]) for _ in range(n)]
        target = rng.choice([0.01, 0.05, 0.1, 0.2, 0.29, 0.5])
        k = allowed_flagged(n, target)
        t = fpr_threshold(scores, target)
        flagged = sum(s >= t for s in scores)
        candidates = [min(math.nextafter(c, 1.0), 1.0) for c in scores]  # thresholds ≤ 1
        feasible = [sum(s >= c for s in scores) for c in candidates]
        best = max((f for f in feasible if f <= k), default=None)
        if best is None:  # more than k reals score 1.0: the fewest flagged is the best
            assert t == 1.0 and flagged == min(feasible) > k
        else:
            assert flagged == best, (scores, target, t)


def test_allowed_flagged_is_the_floor_without_float_noise():
    assert allowed_flagged(100, 0.29) == 29  # 0.29 * 100 == 28.999999999999996
    assert allowed_flagged(40, 0.05) == 2 and allowed_flagged(39, 0.05) == 1
    assert allowed_flagged(19, 0.05) == 0
    assert min_reals(0.05) == 200 and min_reals(0.01) == 1000 and min_reals(0.5) == 20


def test_all_reals_at_one_cannot_be_left_unflagged():
    assert fpr_threshold([1.0, 1.0, 1.0], 0.05) == 1.0


def test_wilson_interval_known_values():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.27754, abs=1e-5)
    low, high = wilson_interval(5, 100)
    assert low == pytest.approx(0.02154, abs=1e-5) and high == pytest.approx(0.11175, abs=1e-5)
    low, high = wilson_interval(2, 40)
    assert low == pytest.approx(0.01382, abs=1e-5) and high == pytest.approx(0.16504, abs=1e-5)
    assert wilson_interval(10, 10) == (pytest.approx(1 - 0.27754, abs=1e-5), 1.0)
    for k in range(0, 21):  # symmetric: the interval of k/n mirrors that of (n-k)/n
        low, high = wilson_interval(k, 20)
        mirror = wilson_interval(20 - k, 20)
        assert low == pytest.approx(1 - mirror[1]) and high == pytest.approx(1 - mirror[0])
        assert low <= k / 20 <= high
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_wilson_interval_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(0, 10), (1, 13), (3, 7), (2, 40), (17, 350), (50, 50)]:
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == (pytest.approx(ci.low), pytest.approx(ci.high))


# --- metadata_props without onnx ---------------------------------------------------------------


def test_replace_props_copies_everything_else_byte_for_byte(tmp_path: Path):
    model = brightness_model(tmp_path / "m.onnx")
    proto = onnx.load(str(model))
    proto.doc_string = "after the metadata"  # a field that follows metadata_props' entries
    proto.metadata_props.add(key="other.tool", value="kept as it was")
    data = proto.SerializeToString()

    assert replace_props(data, {}) == data
    assert read_props(data) == {p.key: p.value for p in proto.metadata_props}
    updates = {"dfscan.precision": "fp32x", "added": "ü [red]", "dfscan.training": None}
    edited = onnx.ModelProto.FromString(replace_props(data, updates))
    props = [(p.key, p.value) for p in edited.metadata_props]
    want = [(p.key, p.value) for p in proto.metadata_props]
    assert "dfscan.training" in dict(want)
    want = [(k, "fp32x" if k == "dfscan.precision" else v) for k, v in want]
    want = [(k, v) for k, v in want if k != "dfscan.training"]
    assert props == [*want, ("added", "ü [red]")]  # replaced in place, new ones at the end
    del edited.metadata_props[:]
    del proto.metadata_props[:]
    assert edited.SerializeToString() == proto.SerializeToString()


def test_replace_props_refuses_what_is_not_protobuf():
    with pytest.raises(ModelError, match="not a readable ONNX"):
        replace_props(b"\x0a\xff\xff\xff\x0f", {"k": "v"})  # a length past the end
    with pytest.raises(ModelError, match="not a readable ONNX"):
        read_props(b"\x0b")  # wire type 3 (groups): not in ONNX


# --- the command --------------------------------------------------------------------------------


def test_calibrate_writes_the_threshold_into_a_copy_and_scan_uses_it(tmp_path: Path):
    model = brightness_model(tmp_path / "models" / "m.onnx")
    reals = reals_folder(tmp_path / "photos" / "holiday")
    out = tmp_path / "out" / "calibrated.onnx"
    before = model.read_bytes()

    result = calibrate_cli(model, "--reals", reals, "--out", out)
    assert result.exit_code == 0, result.output
    assert model.read_bytes() == before  # the original is untouched

    # the threshold: just above the 3rd highest of the 40 scores (k = floor(0.05 · 40) = 2)
    scores = np.sort(scores_of(model, reals))
    meta = read_model_meta(out)  # verifies the spec against its sha256
    assert meta.threshold == math.nextafter(scores[-3], 1.0)
    assert scores[-3] < meta.threshold <= scores[-2]
    assert meta.threshold_rule == "fpr0.05_on_user_reals (40 photos in holiday/)"

    # the graph and every other field are those of the model; only the metadata changed
    original, written = onnx.load(str(model)), onnx.load(str(out))
    assert written.graph.SerializeToString() == original.graph.SerializeToString()
    old_props = {p.key: p.value for p in original.metadata_props}
    new_props = {p.key: p.value for p in written.metadata_props}
    del original.metadata_props[:], written.metadata_props[:]
    assert written.SerializeToString() == original.SerializeToString()
    changed = {k for k in new_props if new_props[k] != old_props.get(k)}
    assert changed == {"dfscan.spec", CALIBRATION_KEY}
    spec = json.loads(new_props["dfscan.spec"])
    assert (
        spec["sha256"]
        == DetectorSpec.from_dict(spec).sha256
        != json.loads(old_props["dfscan.spec"])["sha256"]
    )
    old_spec = DetectorSpec.from_json(old_props["dfscan.spec"])
    assert DetectorSpec.from_dict(spec) == old_spec.with_threshold(
        "fp32", meta.threshold, meta.threshold_rule
    )
    record = json.loads(new_props[CALIBRATION_KEY])
    assert record["reals"] == 40 and record["reals_folder"] == "holiday"
    assert record["skipped_unreadable"] == 1 and record["threshold_before"] == 0.5
    assert record["fpr"] == 2 / 40 and record["fpr_before"] == 14 / 40
    assert str(tmp_path) not in new_props[CALIBRATION_KEY] + new_props["dfscan.spec"]

    # what it printed
    out_text = result.stdout
    assert "on 40 real photos in holiday/; skipped 1 unreadable" in out_text
    assert "threshold: 0.5 → " in out_text
    assert "at the old threshold: 35.0% (14 of 40)" in out_text
    assert "new threshold: 5.0% (2 of 40), 95% interval 1.4%–16.5% (Wilson)" in out_text
    assert "warning:" in result.stderr and "only 40 real photos" in result.stderr
    assert "200 or more" in result.stderr

    # dfscan scan with the copy flags exactly those 2 reals, at the new threshold
    scan = runner.invoke(
        app,
        ["scan", str(reals), "-m", str(out), "--device", "cpu", "-q", "--summary-json", "-"],
    )
    assert scan.exit_code == 0, scan.output
    summary = json.loads(scan.stdout)
    assert summary["threshold"] == meta.threshold
    assert summary["total"]["flagged_fake"] == 2 and summary["total"]["errors"] == 1


def test_the_python_api_returns_the_figures(tmp_path: Path):
    model = brightness_model(tmp_path / "m.onnx")
    reals = reals_folder(tmp_path / "reals", n=20)
    result = calibrate(model, reals, tmp_path / "c.onnx", target_fpr=0.5, device="cpu")
    assert result.n == 20 and result.flagged == 10 and result.fpr == 0.5
    assert result.rule.startswith("fpr0.5_on_user_reals") and len(result.skipped) == 1
    assert result.interval == wilson_interval(10, 20)
    assert result.warnings == []  # 20 photos at 50 %: 10 expected above, enough
    assert read_model_meta(tmp_path / "c.onnx").threshold == result.threshold
    again = calibrate(model, reals, tmp_path / "d.onnx", target_fpr=0.45, device="cpu")
    assert again.flagged == 9 and len(again.warnings) == 1  # min_reals(0.45) = 23 > 20


def test_only_the_files_precision_gets_the_new_threshold(tmp_path: Path):
    base = brightness_meta(threshold=0.5)
    spec = base.spec.with_threshold("fp16", 0.4, "fp32 threshold (test)")
    model = brightness_model(tmp_path / "m.onnx", ModelMeta(spec=spec, precision="fp16"))
    reals = reals_folder(tmp_path / "reals")
    calibrate(model, reals, tmp_path / "c.onnx", device="cpu")
    meta = read_model_meta(tmp_path / "c.onnx")
    assert meta.precision == "fp16" and meta.spec.thresholds["fp32"].value == 0.5
    assert meta.threshold != 0.4 and meta.threshold_rule.startswith("fpr0.05_on_user_reals")


def test_a_format_1_model_is_rewritten_as_format_2(tmp_path: Path):
    legacy = {
        "dfscan.format": "dfscan-onnx",
        "dfscan.format_version": "1",
        "dfscan.arch": "brightness_test",
        "dfscan.input": "spatial",
        "dfscan.crop_size": "16",
        "dfscan.preprocess_mode": "crop",
        "dfscan.classes": '["real", "fake"]',
        "dfscan.threshold": "0.25",
        "dfscan.threshold_rule": "eer_on_val",
        "dfscan.precision": "fp32",
        "producer.note": "not ours: kept",
    }
    model = brightness_model(tmp_path / "m.onnx", props=legacy)
    result = calibrate(model, reals_folder(tmp_path / "r"), tmp_path / "c.onnx", device="cpu")
    assert result.threshold_before == 0.25 and result.rule_before == "eer_on_val"
    props = read_props((tmp_path / "c.onnx").read_bytes())
    assert props["dfscan.format_version"] == "2" and "dfscan.threshold" not in props
    assert props["producer.note"] == "not ours: kept"
    assert read_model_meta(tmp_path / "c.onnx").threshold == result.threshold


def test_out_is_refused_when_it_exists_or_is_the_model(tmp_path: Path):
    model = brightness_model(tmp_path / "m.onnx")
    reals = reals_folder(tmp_path / "reals", n=20)
    before = model.read_bytes()
    result = calibrate_cli(model, "--reals", reals, "--out", model)
    assert result.exit_code == 2 and "--out is the model itself" in result.stderr
    assert model.read_bytes() == before
    (tmp_path / "taken.onnx").write_bytes(b"x")
    result = calibrate_cli(model, "--reals", reals, "--out", tmp_path / "taken.onnx")
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    result = calibrate_cli(model, "--reals", reals, "--out", tmp_path)
    assert result.exit_code == 2 and "is a folder" in result.stderr

    result = calibrate_cli(model, "--reals", reals, "--out", model, "--overwrite")
    assert result.exit_code == 0, result.output
    assert read_model_meta(model).threshold_rule.startswith("fpr0.05_on_user_reals")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("target", ["0", "-0.1", "0.6", "nan"])
def test_a_target_outside_0_to_half_is_refused(tmp_path: Path, target: str):
    model = brightness_model(tmp_path / "m.onnx")
    reals = reals_folder(tmp_path / "reals", n=4)
    result = calibrate_cli(model, "--reals", reals, "--out", tmp_path / "c", "--target-fpr", target)
    assert result.exit_code == 2 and "--target-fpr must be in (0, 0.5]" in result.stderr
    assert not (tmp_path / "c").exists()


def test_input_errors_exit_2_with_one_line(tmp_path: Path):
    model = brightness_model(tmp_path / "m.onnx")
    out = tmp_path / "c.onnx"
    result = calibrate_cli(model, "--reals", tmp_path / "missing", "--out", out)
    assert result.exit_code == 2 and "folder not found" in result.stderr
    (tmp_path / "empty" / "deep").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no image")
    result = calibrate_cli(model, "--reals", tmp_path / "empty", "--out", out)
    assert result.exit_code == 2 and "no images found" in result.stderr
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"")
    result = calibrate_cli(model, "--reals", tmp_path / "broken", "--out", out)
    assert result.exit_code == 2 and "none of the 1 image files" in result.stderr
    assert "Traceback" not in result.output and not out.exists()
    with pytest.raises(DataError, match="must be a folder"):
        calibrate(model, model, out)


def test_a_model_without_dfscan_metadata_exits_4(tmp_path: Path):
    foreign = brightness_model(tmp_path / "foreign.onnx", metadata=False)
    reals = reals_folder(tmp_path / "reals", n=4)
    result = calibrate_cli(foreign, "--reals", reals, "--out", tmp_path / "c.onnx")
    assert result.exit_code == 4 and "without dfscan metadata" in result.stderr
    result = calibrate_cli(tmp_path / "nope.onnx", "--reals", reals, "--out", tmp_path / "c.onnx")
    assert result.exit_code == 4 and "model not found" in result.stderr
    assert not (tmp_path / "c.onnx").exists()


CALIBRATE_SCRIPT = """
import json, sys
from dfscan.scanner.cli.app import main
sys.argv = ["dfscan", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "onnx", "onnxscript"})
print(json.dumps({"code": code, "heavy": heavy}))
"""


def test_calibrate_imports_neither_torch_nor_onnx(tmp_path: Path):
    import subprocess
    import sys

    model = brightness_model(tmp_path / "m.onnx")
    reals = reals_folder(tmp_path / "reals", n=4)
    args = ["calibrate", str(model), "--reals", str(reals), "--out", str(tmp_path / "c.onnx")]
    done = subprocess.run(
        [sys.executable, "-c", CALIBRATE_SCRIPT, *args, "--device", "cpu", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 0, "heavy": []}, done.stderr
    assert read_model_meta(tmp_path / "c.onnx").threshold_rule.startswith("fpr0.05")
