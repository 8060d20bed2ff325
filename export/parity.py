"""Parity: do eager PyTorch, TorchScript and ONNX Runtime compute the same detector?

The reference is the model as trained (eager, its training FFT implementation, float32). Every
other runtime is compared with it on the same preprocessed images: max |Δ p_fake|,
max |Δ logit|, agreement of the predicted class and, when the images are labelled, AP and AUC.
float32 graphs must agree within ``FP32_TOLERANCE`` on every image. fp16/int8 graphs may
differ per image, but on labelled images their AP may not fall more than ``AP_TOLERANCE``
below the reference's (the int8 target in docs/performance.md); on unlabelled images they are
reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from dfscan.scanner.errors import DeviceError, DfscanError, ExitCode
from dfscan.scanner.formatting import NA, num
from dfscan.scanner.model.meta import OUTPUT_LOGITS, OUTPUT_P_FAKE
from dfscan.scanner.model.runtime import CPU, load_session, open_session

from .check_images import ImageSet
from .graph_module import InputDType
from .settings import AP_TOLERANCE

FP32_TOLERANCE = 1e-4
SATURATION_FREE_WEIGHT = 64
"""|int8 weight| up to which VPMADDUBSW's int16 pair sums cannot saturate (2·255·64 < 32,767):
graphs within it score the same on every x86 CPU, with or without VNNI."""
CHUNK = 16  # images per forward pass: bounds memory at large crop sizes


class ParityError(DfscanError):
    """An exported graph does not compute what the trained model computes."""

    exit_code = ExitCode.PARITY


@dataclass(frozen=True)
class Outputs:
    p_fake: np.ndarray  # (N,)
    logits: np.ndarray  # (N, 2)


@dataclass(frozen=True)
class ParityRow:
    runtime: str
    precision: str
    max_dp: float
    max_dlogit: float
    agreement: float  # fraction of images given the same class as the reference
    tolerance: float | None  # max |Δ p_fake| allowed; None: reported, not enforced
    ap: float | None = None
    auc: float | None = None
    ap_floor: float | None = None  # lowest AP allowed (reference AP − tolerance); None: not checked

    @property
    def ap_passed(self) -> bool:
        return self.ap_floor is None or (self.ap is not None and self.ap >= self.ap_floor)

    @property
    def checked(self) -> bool:
        return self.tolerance is not None or self.ap_floor is not None

    @property
    def passed(self) -> bool:
        if not (math.isfinite(self.max_dp) and math.isfinite(self.max_dlogit)):
            return False
        if not self.ap_passed:
            return False
        return self.tolerance is None or (self.max_dp <= self.tolerance and self.agreement == 1)


@dataclass
class ParityReport:
    images: int
    origin: str
    rows: list[ParityRow]
    reference_ap: float | None = None
    reference_auc: float | None = None
    notes: list[str] = field(default_factory=list)
    int8_drift: float | None = None  # int8: mean |Δp| of the kernels against exact arithmetic

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def table(self) -> Table:
        labelled = self.reference_ap is not None
        table = Table(title=f"parity on {self.images} images ({self.origin})", title_justify="left")
        table.add_column("runtime", no_wrap=True)
        table.add_column("dtype")
        for col in ("Δp max", "Δlogit max", "agree"):
            table.add_column(col, justify="right")
        if labelled:  # each runtime's own AP/AUC on these images
            table.add_column("AP", justify="right")
            table.add_column("AUC", justify="right")
        table.add_column("")
        ref = ["eager (ref)", "fp32", "-", "-", "-"]
        table.add_row(
            *ref, *([num(self.reference_ap, NA), num(self.reference_auc, NA)] * labelled), ""
        )
        for r in self.rows:
            verdict = (
                "[green]ok[/]" if r.passed and r.checked else "[red]FAIL[/]" if not r.passed else ""
            )
            cells = [r.runtime, r.precision, f"{r.max_dp:.1e}", f"{r.max_dlogit:.1e}"]
            cells.append(
                f"{100 * r.agreement:.0f}%"
                if r.agreement in (0, 1)
                else f"{100 * r.agreement:.1f}%"
            )
            if labelled:
                cells += [num(r.ap, NA), num(r.auc, NA)]
            table.add_row(*cells, verdict)
        return table

    def failures(self) -> str:
        return "; ".join(_failure(r) for r in self.rows if not r.passed)


def _failure(r: ParityRow) -> str:
    if not r.ap_passed:
        assert r.ap_floor is not None
        return (
            f"{r.runtime} ({r.precision}): AP {num(r.ap, NA)}, below the allowed "
            f"{r.ap_floor:.3f} (reference AP minus the tolerance)"
        )
    limit = "n/a" if r.tolerance is None else f"{r.tolerance:g}"
    return (
        f"{r.runtime} ({r.precision}): max |Δ p_fake| {r.max_dp:.3g} (limit {limit}), "
        f"agreement {100 * r.agreement:.1f} %"
    )


def max_int8_weight(onnx_path: Path) -> int:
    """The largest |weight| among the int8 weights the graph dequantises (0: none)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(onnx_path))
    inits = {i.name: i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    weights = [
        numpy_helper.to_array(inits[n.input[0]])
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits
    ]
    return max((int(np.abs(w.astype(np.int32)).max()) for w in weights), default=0)


def _note_int8_drift(
    report: ParityReport, onnx_path: Path, batch: np.ndarray, kernels: Outputs
) -> None:
    """Say which int8 path this CPU took, how far its integer kernels are from the graph's own
    arithmetic (rounding: ~4e-4 on a 32² Lite0, ~5e-3 on Lite0 at 224²), and whether they can
    saturate here (8-bit weights on a CPU without VNNI)."""
    from dfscan.scanner.model.cpu import has_vnni, int8_kernels

    exact = exact_int8_scores(onnx_path, batch)
    drift = float(np.mean(np.abs(kernels.p_fake.astype(np.float64) - exact)))
    report.int8_drift = drift
    path = int8_kernels()
    note = f"int8 kernels on this CPU: {path}; mean |Δp| against the graph's exact arithmetic "
    note += f"{drift:.1e}"
    if max_int8_weight(onnx_path) > SATURATION_FREE_WEIGHT and not has_vnni():
        note += (
            " — 8-bit weights on a CPU without VNNI: the integer kernels can saturate, so scores "
            "depend on the CPU (dfscan's own int8 exports use 7-bit weights)"
        )
    report.notes.append(note)


def as_input(batch: np.ndarray, dtype: InputDType) -> np.ndarray:
    """The graph's input from uint8 NCHW images (float graphs take [0, 1])."""
    return batch if dtype == "uint8" else (batch.astype(np.float32) / 255.0)


@torch.no_grad()
def run_torch(module: torch.nn.Module, batch: np.ndarray, dtype: InputDType) -> Outputs:
    """``module`` returns logits (a Detector) or (p_fake, logits) (an exported module)."""
    ps, ls = [], []
    for start in range(0, len(batch), CHUNK):
        x = torch.from_numpy(as_input(batch[start : start + CHUNK], dtype))
        out = module(x)
        if isinstance(out, tuple):
            p, logits = out
        else:
            logits = out
            p = torch.softmax(logits, dim=1)[:, 1]
        ps.append(p.float().numpy())
        ls.append(logits.float().numpy())
    return Outputs(np.concatenate(ps), np.concatenate(ls))


def run_onnx(session, batch: np.ndarray) -> Outputs:
    """Feed the session by the names and dtype it declares."""
    inp = session.get_inputs()[0]
    dtype: InputDType = "uint8" if inp.type == "tensor(uint8)" else "float32"
    names = [o.name for o in session.get_outputs()]
    ps, ls = [], []
    for start in range(0, len(batch), CHUNK):
        feed = {inp.name: as_input(batch[start : start + CHUNK], dtype)}
        out = dict(zip(names, session.run(None, feed), strict=True))
        ps.append(out[OUTPUT_P_FAKE])
        ls.append(out[OUTPUT_LOGITS])
    return Outputs(np.concatenate(ps), np.concatenate(ls))


def ranking_metrics(labels: np.ndarray | None, p: np.ndarray) -> tuple[float | None, float | None]:
    if labels is None:
        return None, None
    from sklearn.metrics import average_precision_score, roc_auc_score

    return float(average_precision_score(labels, p)), float(roc_auc_score(labels, p))


def exact_int8_scores(path: Path, batch: np.ndarray) -> np.ndarray:
    """p_fake of an int8 graph by its own arithmetic, with ONNX Runtime's integer kernels off.

    Without graph optimisations every QuantizeLinear/DequantizeLinear pair runs as written and
    the convolutions run in float on dequantised values, so the result cannot depend on the
    CPU's integer instructions; with them (the scan) the pairs are fused into integer kernels.
    The two agree up to rounding unless those kernels saturate.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return run_onnx(session, batch).p_fake


def compare(
    runtime: str,
    precision: str,
    ref: Outputs,
    out: Outputs,
    labels: np.ndarray | None,
    tolerance: float | None,
    ap_floor: float | None = None,
) -> ParityRow:
    dp = np.abs(out.p_fake.astype(np.float64) - ref.p_fake)
    dl = np.abs(out.logits.astype(np.float64) - ref.logits)
    agree = float(np.mean(out.logits.argmax(1) == ref.logits.argmax(1)))
    ap, auc = ranking_metrics(labels, out.p_fake)
    return ParityRow(
        runtime, precision, float(dp.max()), float(dl.max()), agree, tolerance, ap, auc, ap_floor
    )


def check_parity(
    reference: torch.nn.Module,
    images: ImageSet,
    onnx_path: Path,
    precision: str,
    input_dtype: InputDType,
    exported: torch.nn.Module | None = None,
    torchscript_path: Path | None = None,
    cuda: bool = True,
    ap_tolerance: float = AP_TOLERANCE,
) -> ParityReport:
    """Compare every runtime with the eager reference (the model as trained).

    fp32 graphs: max |Δ p_fake| ≤ ``FP32_TOLERANCE`` and the same class on every image.
    fp16/int8 graphs on labelled images: AP ≥ reference AP − ``ap_tolerance``.
    """
    from .torchscript_writer import load_torchscript

    batch, labels = images.batch, images.labels
    ref = run_torch(reference.eval(), batch, "uint8")
    tol = FP32_TOLERANCE
    onnx_tol = tol if precision == "fp32" else None
    report = ParityReport(len(batch), images.origin, [])
    report.reference_ap, report.reference_auc = ranking_metrics(labels, ref.p_fake)
    ap_floor = None
    if precision != "fp32":
        if report.reference_ap is None:
            report.notes.append(
                f"{precision} AP not checked: the check images are unlabelled (pass "
                "--check-images DATA with real/ and generator folders)"
            )
        else:
            ap_floor = report.reference_ap - ap_tolerance
            report.notes.append(
                f"{precision} must keep AP ≥ {ap_floor:.3f} (reference {report.reference_ap:.3f} "
                f"− tolerance {ap_tolerance:g})"
            )
    if exported is not None:
        out = run_torch(exported.eval(), batch, input_dtype)
        report.rows.append(compare("eager export", "fp32", ref, out, labels, tol))
    if torchscript_path is not None:
        module, _ = load_torchscript(torchscript_path)
        out = run_torch(module, batch, input_dtype)
        report.rows.append(compare("TorchScript", "fp32", ref, out, labels, tol))
    session = load_session(onnx_path, [CPU])
    cpu_out = run_onnx(session, batch)
    report.rows.append(compare("ORT CPU", precision, ref, cpu_out, labels, onnx_tol, ap_floor))
    if precision == "int8":
        _note_int8_drift(report, onnx_path, batch, cpu_out)
    if cuda:
        try:
            opened = open_session(onnx_path, "cuda")
        except DeviceError as exc:
            report.notes.append(f"ORT CUDA not checked: {exc.message}")
        else:
            out = run_onnx(opened.session, batch)
            report.rows.append(compare("ORT CUDA", precision, ref, out, labels, onnx_tol, ap_floor))
    return report
