"""The per-generator table: built once (tallies.generator_table), one order, shown by the
terminal and the HTML page alike."""

from __future__ import annotations

import re

from dfscan.scanner.cli.scan import plain_table
from dfscan.scanner.labels import FAKE, REAL
from dfscan.scanner.scan.discovery import ROOT_GENERATOR
from dfscan.scanner.scan.html_report import ReportCollector, RunInfo, render_html
from dfscan.scanner.scan.reports import Row
from dfscan.scanner.scan.tallies import Tallies, disagrees, generator_table

# "(a" is a folder whose name starts like the root's: the old HTML rule put it last
SCANNED = ["zeta", ROOT_GENERATOR, "(a", REAL, "alpha"]
ORDER = [REAL, "(a", "alpha", "zeta", ROOT_GENERATOR]


def row(generator: str, p: float, provenance: str | None = None) -> Row:
    verdict = FAKE if p >= 0.5 else REAL
    return Row(
        path=f"{generator}/x.png",
        generator=generator,
        p_fake=p,
        verdict=verdict,
        threshold=0.5,
        model_sha256="c" * 64,
        width=8,
        height=8,
        format="PNG",
        error=None,
        provenance=provenance,
    )


def scanned(provenance: str | None = None) -> ReportCollector:
    collector = ReportCollector()
    for i, generator in enumerate(SCANNED):
        collector.add(row(generator, 0.2 + 0.15 * i, provenance))
    return collector


def test_one_order_real_first_then_by_name_the_root_last():
    tallies = scanned().tallies
    assert tallies.generators == ORDER
    assert [r[0] for r in generator_table(tallies).rows] == ORDER
    assert list(tallies.to_dict()["generators"]) == ORDER


def test_the_terminal_and_the_page_show_the_same_table():
    collector = scanned()
    table = generator_table(collector.tallies, declared_columns=True)
    page = render_html(collector, RunInfo("m.onnx"))
    section = re.search(r'<section id="generators">(.*?)</section>', page, re.S)
    assert section is not None
    cells = [re.findall(r"<t[dh]>(.*?)</t[dh]>", r) for r in re.findall(r"<tr.*?</tr>", section[1])]
    assert cells == [table.header, *table.rows, table.total]
    terminal = plain_table(generator_table(collector.tallies)).splitlines()
    names = [line.split()[0] for line in terminal]
    assert names[2:-2] == ORDER  # under the header and its rule, above the rule and the total


def test_the_declared_columns_show_when_a_file_declares():
    quiet = generator_table(scanned().tallies)
    assert "declared AI" not in quiet.header
    assert len(quiet.header) == len(quiet.total) == len(quiet.rows[0])
    declaring = generator_table(scanned("png:comfyui").tallies)
    assert declaring.header[-2:] == ["declared AI", "disagree"]
    assert declaring.total[-2:] == [str(len(SCANNED)), "2"]  # the two scored real


def test_disagreement_is_one_rule_for_tallies_and_page():
    said_generated = row("gan", 0.1, "png:comfyui")
    assert disagrees(said_generated) and not disagrees(row("gan", 0.9, "png:comfyui"))
    collector = ReportCollector()
    collector.add(said_generated)
    assert collector.tallies.total().disagree == 1 and collector.disagree.rows() == [said_generated]
    assert isinstance(collector.tallies, Tallies)
