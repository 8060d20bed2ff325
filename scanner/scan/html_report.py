"""A scan report people can look at: one self-contained HTML page (no CDN, works offline).

:class:`ReportCollector` sees every row once, as the scan writes it (or as ``dfscan report``
reads an existing CSV/JSONL back), and keeps only counts, fixed-size histograms and the few rows
the page shows: the most confidently fake, the borderline (nearest the threshold), a random
sample of real-scored images, files whose declared origin and verdict disagree, and the first
errors. Memory therefore stays bounded on scans of millions of files. :func:`write_html` then
reads the shown images once more for small embedded JPEG thumbnails and writes the page
atomically (a temporary file renamed over the target).

Sections (their ``id``): ``run``, ``generators``, ``histograms``, ``most-fake``,
``borderline``, ``real-sample``, ``disagree``, ``errors``.
"""

from __future__ import annotations

import base64
import heapq
import html
import io
import itertools
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..formatting import num, pct
from ..labels import REAL
from .reports import Row
from .tallies import Tallies, disagrees, generator_order, generator_table

BINS = 20  # histogram bins over p_fake in [0, 1]
SHOWN = 12  # images per gallery
MAX_ERRORS = 200  # error rows listed (the count covers all)
THUMB = 160  # thumbnail side, pixels


@dataclass
class RunInfo:
    """What the page says about the run (a scan's result, or what a report file tells)."""

    source: str  # the model file, or the report file the page was rebuilt from
    model_sha256: list[str] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)  # (name, value) lines


class _Top:
    """The ``k`` rows with the highest key, in bounded memory."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.heap: list[tuple[float, int, Row]] = []

    def add(self, key: float, seq: int, row: Row) -> None:
        item = (key, -seq, row)  # on equal keys the earlier row stays
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, item)
        elif item[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, item)

    def rows(self) -> list[Row]:
        return [row for _, _, row in sorted(self.heap, key=lambda i: i[:2], reverse=True)]


class ReportCollector:
    """Feed it every row (``add``); it keeps what the page needs and nothing else."""

    def __init__(self, shown: int = SHOWN, max_errors: int = MAX_ERRORS, seed: int = 0) -> None:
        self.tallies = Tallies()
        self.histograms: dict[str, list[int]] = {}
        self.most_fake = _Top(shown)
        self.borderline = _Top(shown)
        self.disagree = _Top(shown)
        self.real_sample: list[Row] = []
        self._real_seen = 0
        self._rng = random.Random(seed)
        self.shown = shown
        self.errors: list[Row] = []
        self.max_errors = max_errors
        self.models: Counter[str] = Counter()
        self.thresholds: Counter[float] = Counter()
        self._seq = itertools.count()

    def add(self, row: Row) -> None:
        seq = next(self._seq)
        self.tallies.add(row)
        self.models[row.model_sha256] += 1
        self.thresholds[row.threshold] += 1
        if row.p_fake is None:
            if len(self.errors) < self.max_errors:
                self.errors.append(row)
            return
        bins = self.histograms.setdefault(row.generator, [0] * BINS)
        bins[min(int(row.p_fake * BINS), BINS - 1)] += 1
        self.most_fake.add(row.p_fake, seq, row)
        self.borderline.add(-abs(row.p_fake - row.threshold), seq, row)
        if disagrees(row):
            self.disagree.add(abs(row.p_fake - row.threshold), seq, row)
        if row.verdict == REAL:  # reservoir sampling: each real-scored row equally likely
            self._real_seen += 1
            if len(self.real_sample) < self.shown:
                self.real_sample.append(row)
            else:
                j = self._rng.randrange(self._real_seen)
                if j < self.shown:
                    self.real_sample[j] = row

    def run_info(self, source: str) -> RunInfo:
        return RunInfo(source, sorted(self.models), sorted(self.thresholds))


# --- rendering --------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d232a;
background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;
padding-bottom:4px}
table{border-collapse:collapse;background:#fff}td,th{padding:4px 10px;border:1px solid #e2e2e2;
text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f0f2f5}
tr.total td{font-weight:600}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0}dt{color:#666}
dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
.hists{display:flex;flex-wrap:wrap;gap:16px}.hist{background:#fff;border:1px solid #e2e2e2;
padding:8px}.hist h3{font-size:13px;margin:0 0 4px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:170px;background:#fff;border:1px solid #e2e2e2;padding:5px;font-size:12px}
figure img,figure .none{width:160px;height:160px;object-fit:contain;background:#eee;display:block}
figure .none{display:flex;align-items:center;justify-content:center;color:#888}
figcaption{margin-top:4px;word-break:break-all}.fake{color:#b3261e;font-weight:600}
.real{color:#1b6e3a;font-weight:600}.prov{color:#5a3ea8}.path{color:#555}
.muted{color:#777}ul.errors{font-family:ui-monospace,monospace;font-size:12px}
"""

# Reports images that did not decode as a console error, so a browser test catches them.
_SCRIPT = """
window.addEventListener("load", function () {
  var bad = Array.prototype.filter.call(document.images, function (img) {
    return !img.complete || img.naturalWidth === 0;
  });
  if (bad.length) { console.error("dfscan report: " + bad.length + " images did not load"); }
  document.body.setAttribute("data-images-ok", bad.length ? "false" : "true");
});
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def thumbnail(path: str, side: int = THUMB) -> str | None:
    """A small JPEG of the image as a data: URI, or None when it cannot be read any more."""
    from ..model.preprocess import open_rgb
    from .sources import is_uri, read_bytes

    try:
        image = open_rgb(read_bytes(path) if is_uri(path) else path, draft_side=side)
        image.thumbnail((side, side))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
    except Exception:  # a preview is optional: the file is gone, unreadable, a bomb…
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(row: Row) -> str:
    uri = thumbnail(row.path)
    img = (
        f'<img src="{uri}" alt="{_e(Path(row.path).name)}" width="{THUMB}" height="{THUMB}">'
        if uri
        else '<div class="none">no preview</div>'
    )
    verdict = row.verdict or "error"
    prov = f'<br><span class="prov">{_e(row.provenance)}</span>' if row.provenance else ""
    p = num(row.p_fake)
    return (
        f"<figure>{img}<figcaption>p_fake {p} · "
        f'<span class="{_e(verdict)}">{_e(verdict)}</span>{prov}<br>'
        f'<span class="path">{_e(row.path)}</span></figcaption></figure>'
    )


def _gallery(anchor: str, title: str, note: str, rows: list[Row]) -> str:
    body = (
        '<div class="gallery">' + "".join(_figure(r) for r in rows) + "</div>"
        if rows
        else '<p class="muted">none</p>'
    )
    head = f'<h2>{_e(title)}</h2><p class="muted">{_e(note)}</p>'
    return f'<section id="{anchor}">{head}{body}</section>'


def _histogram_svg(counts: list[int], threshold: float | None) -> str:
    w, h, pad = 300, 90, 14
    top = max(counts) or 1
    bar = (w - 2) / len(counts)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + pad}" '
        f'viewBox="0 0 {w} {h + pad}" role="img">'
    ]
    for i, c in enumerate(counts):
        bh = (h - 4) * c / top
        color = (
            "#b3261e"
            if threshold is not None and (i + 0.5) / len(counts) >= threshold
            else "#1b6e3a"
        )
        parts.append(
            f'<rect x="{1 + i * bar:.1f}" y="{h - bh:.1f}" width="{bar - 1:.1f}" '
            f'height="{bh:.1f}" fill="{color}"><title>{i / len(counts):.2f}–'
            f"{(i + 1) / len(counts):.2f}: {c}</title></rect>"
        )
    parts.append(f'<line x1="0" y1="{h}" x2="{w}" y2="{h}" stroke="#999"/>')
    if threshold is not None:
        x = 1 + threshold * (w - 2)
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{h}" stroke="#000" '
            'stroke-dasharray="3,2"/>'
        )
    parts.append(
        f'<text x="0" y="{h + pad - 2}" font-size="10">0</text>'
        f'<text x="{w - 8}" y="{h + pad - 2}" font-size="10">1</text>'
    )
    if threshold is not None:
        parts.append(
            f'<text x="{min(max(1 + threshold * (w - 2) - 30, 12), w - 80):.1f}" '
            f'y="{h + pad - 2}" font-size="10">threshold {threshold:g}</text>'
        )
    return "".join(parts) + "</svg>"


def _generator_table(collector: ReportCollector) -> str:
    tallies = collector.tallies
    table = generator_table(tallies, declared_columns=True)  # the page always shows them
    th = "".join(f"<th>{_e(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in table.rows)
    foot = '<tr class="total">' + "".join(f"<td>{_e(c)}</td>" for c in table.total) + "</tr>"
    fpr = tallies.false_positive_rate()
    fpr_line = f"<p>false-positive rate on real: {pct(fpr)}</p>" if fpr is not None else ""
    return (
        f'<section id="generators"><h2>Per generator</h2><table><thead><tr>{th}</tr></thead>'
        f"<tbody>{body}{foot}</tbody></table>{fpr_line}</section>"
    )


def render_html(collector: ReportCollector, run: RunInfo) -> str:
    """The page as text."""
    total = collector.tallies.total()
    threshold = run.thresholds[0] if len(run.thresholds) == 1 else None
    facts = [
        ("source", run.source),
        ("model sha256", ", ".join(run.model_sha256) or "–"),
        ("threshold", ", ".join(repr(t) for t in run.thresholds) or "–"),
        ("files", str(total.images + total.errors)),
        ("scored", str(total.images)),
        ("flagged fake", f"{total.flagged} ({pct(total.fake_fraction)})"),
        ("errors", str(total.errors)),
        (
            "declared generated",
            (collector.tallies.declared_line() or "0").removeprefix("declared generated: "),
        ),
        *run.facts,
    ]
    if len(run.model_sha256) > 1:
        facts.append(("warning", "rows from more than one model"))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    hists = "".join(
        f'<div class="hist"><h3>{_e(g)} ({sum(c)})</h3>{_histogram_svg(c, threshold)}</div>'
        for g, c in sorted(collector.histograms.items(), key=lambda item: generator_order(item[0]))
    )
    errors = (
        "".join(f"<li>{_e(r.path)}: {_e(r.error)}</li>" for r in collector.errors)
        or '<li class="muted">none</li>'
    )
    more = total.errors - len(collector.errors)
    more_line = f'<p class="muted">and {more} more (see the report file)</p>' if more > 0 else ""
    t = "the threshold" if threshold is None else f"the threshold {threshold:g}"
    sections = [
        f'<section id="run"><h1>dfscan scan report</h1><dl>{dl}</dl></section>',
        _generator_table(collector),
        '<section id="histograms"><h2>p_fake per generator</h2><p class="muted">'
        f"dashed line: {_e(t)}; red bins are flagged fake</p>"
        f'<div class="hists">{hists or "<p class=muted>no scored image</p>"}</div></section>',
        _gallery(
            "most-fake", "Most confidently fake", "highest p_fake", collector.most_fake.rows()
        ),
        _gallery("borderline", "Borderline", f"nearest {t}", collector.borderline.rows()),
        _gallery("real-sample", "A sample of real-scored images", "random", collector.real_sample),
        _gallery(
            "disagree",
            "Declared origin and score disagree",
            "declared generated but scored real, or declared a capture but scored fake",
            collector.disagree.rows(),
        ),
        f'<section id="errors"><h2>Errors ({total.errors})</h2><ul class="errors">{errors}</ul>'
        f"{more_line}</section>",
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>dfscan report · {_e(Path(run.source).name)}</title><style>{_CSS}</style>"
        f"<script>{_SCRIPT}</script></head><body>{''.join(sections)}</body></html>\n"
    )


def write_html(collector: ReportCollector, run: RunInfo, out: Path) -> Path:
    """Write the page to ``out`` atomically."""
    text = render_html(collector, run)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", errors="replace")  # undecodable names: U+FFFD/?
    os.replace(tmp, out)
    return out


def rebuild_from_report(report: Path, out: Path) -> ReportCollector:
    """``dfscan report REPORT --html OUT``: the page from an existing CSV or JSONL report."""
    from ..errors import DataError
    from .reports import read_csv_report, read_jsonl_report

    if not report.is_file():
        raise DataError(f"report not found: {report}")
    collector = ReportCollector()
    reader = read_jsonl_report if report.suffix.lower() == ".jsonl" else read_csv_report
    back = reader(report, collector.add)
    run = collector.run_info(str(report))
    if back.cut:
        run.facts.append(("note", "the report's last row was cut mid-write and is left out"))
    if back.n_rows == 0:
        raise DataError(f"{report} has no rows to report")
    write_html(collector, run, out)
    return collector
