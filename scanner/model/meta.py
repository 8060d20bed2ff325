"""What a dfscan .onnx file says about itself, read and written on both sides of the format.

``dfscan export`` writes these ``metadata_props`` and the scanner reads them back, so the .onnx
file alone says how to feed the model and how to read its output: ``dfscan.spec`` is the
:class:`~dfscan.scanner.model.spec.DetectorSpec` as JSON (arch, classes, frontend recipe, the whole
host preprocessing, a threshold per precision, its sha256), ``dfscan.precision`` picks the
threshold, and ``dfscan.training``/``metrics``/``versions``/``export`` say what made the file.
All readable in Netron or ``onnx.load(...).metadata_props``.

The graph contract, for anyone calling the model without dfscan:

- one input, ``image``: ``(N, 3, S, S)`` RGB, ``uint8`` 0-255 (or ``float32`` 0-1 when exported
  with ``--input-dtype float32``), S = the spec's ``preprocess.size``, N dynamic;
- outputs ``p_fake`` ``(N,)`` (probability that the image is generated) and ``logits``
  ``(N, 2)`` in the order of the spec's ``classes``.

Read with ONNX Runtime's ``get_modelmeta()``: the scanner imports neither torch nor onnx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DataError, ModelError
from ..labels import CLASSES
from .preprocess import PreprocessConfig
from .spec import DetectorSpec, SpecView, Threshold, legacy_spec

if TYPE_CHECKING:
    import onnxruntime

ONNX_FORMAT = "dfscan-onnx"
# 2: the detector spec (dfscan.spec) is the one source of arch, classes, preprocessing and
# thresholds; 1: flat keys (crop_size, preprocess_mode, threshold, ...), read for crop mode only
ONNX_FORMAT_VERSION = 2
PREFIX = "dfscan."
INPUT_NAME = "image"
OUTPUT_P_FAKE = "p_fake"
OUTPUT_LOGITS = "logits"
PRECISIONS = ("fp32", "fp16", "int8")

_JSON_FIELDS = ("training", "metrics", "versions", "export")


@dataclass(frozen=True)
class ModelMeta(SpecView):
    """Everything the scanner needs besides the graph: the spec, and what made the file."""

    spec: DetectorSpec
    precision: str = "fp32"  # picks the spec's threshold
    training: dict[str, Any] = field(default_factory=dict)  # generators, counts, split hash
    metrics: dict[str, Any] = field(default_factory=dict)  # validation/test metrics
    versions: dict[str, str] = field(default_factory=dict)  # dfscan/torch/onnx at export
    export: dict[str, Any] = field(default_factory=dict)  # input dtype, opset, int8 settings
    format_version: int = ONNX_FORMAT_VERSION

    @property
    def threshold(self) -> float:
        return self.spec.threshold(self.precision).value

    @property
    def threshold_rule(self) -> str:
        return self.spec.threshold(self.precision).rule

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` of the exported graph (all values are strings)."""
        self.spec.threshold(self.precision)  # a file must be able to say its threshold
        props = {
            "format": ONNX_FORMAT,
            "format_version": str(self.format_version),
            "spec": self.spec.to_json(),
            "precision": self.precision,
            "training": json.dumps(self.training, sort_keys=True),
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "versions": json.dumps(self.versions, sort_keys=True),
            "export": json.dumps(self.export, sort_keys=True),
        }
        return {PREFIX + k: v for k, v in props.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ModelMeta:
        """Parse ``metadata_props``; a graph without dfscan metadata is refused, not guessed."""
        own = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
        if own.get("format") != ONNX_FORMAT:
            raise ModelError(
                f"{source} is an ONNX model without dfscan metadata",
                hint="export a trained checkpoint with: dfscan export CKPT --onnx OUT.onnx",
            )
        try:
            version = int(own.get("format_version", "0"))
            if version > ONNX_FORMAT_VERSION:
                raise ModelError(
                    f"{source} uses dfscan model format {version}; this dfscan reads up to "
                    f"{ONNX_FORMAT_VERSION}",
                    hint="upgrade dfscan",
                )
            precision = own.get("precision", "fp32")
            if precision not in PRECISIONS:
                raise ModelError(f"{source}: unknown precision {precision!r}")
            spec = (
                DetectorSpec.from_json(own["spec"], source)
                if version >= 2
                else _spec_v1(own, precision, source)
            )
            parsed = {k: json.loads(own[k]) if k in own else None for k in _JSON_FIELDS}
            meta = cls(
                spec=spec,
                precision=precision,
                training=parsed["training"] or {},
                metrics=parsed["metrics"] or {},
                versions=parsed["versions"] or {},
                export=parsed["export"] or {},
                format_version=version,
            )
        except KeyError as exc:
            raise ModelError(f"{source}: dfscan metadata lacks {PREFIX}{exc.args[0]}") from None
        except (ValueError, DataError) as exc:  # bad number, JSON or preprocessing settings
            raise ModelError(f"{source}: unreadable dfscan metadata ({exc})") from None
        spec.threshold(precision)  # refused here, at load, rather than mid-scan
        return meta


def _spec_v1(own: dict[str, str], precision: str, source: str) -> DetectorSpec:
    """Format 1 wrote flat keys; the frontend's maths is inside the graph, so none is needed."""
    classes = json.loads(own["classes"]) if "classes" in own else list(CLASSES)
    return legacy_spec(
        own["arch"],
        own["input"],
        PreprocessConfig(
            size=int(own["crop_size"]),
            # a format-1 file's own string ("crop" or "resize", as that version wrote it)
            mode=own.get("preprocess_mode", "crop"),  # type: ignore[arg-type]
        ),
        tuple(classes),
        {},
        {precision: Threshold(float(own["threshold"]), own.get("threshold_rule", "unrecorded"))},
        source,
    )


def meta_from_session(session: onnxruntime.InferenceSession, source: str) -> ModelMeta:
    return ModelMeta.from_props(dict(session.get_modelmeta().custom_metadata_map), source)


def read_model_meta(path: str | Path) -> ModelMeta:
    """The dfscan metadata of an .onnx file (loads it on the CPU; nothing runs)."""
    from .runtime import load_session

    session = load_session(Path(path), providers=["CPUExecutionProvider"], optimize=False)
    return meta_from_session(session, str(path))
