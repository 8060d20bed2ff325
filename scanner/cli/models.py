"""``dfscan models``: the built-in detector's card, and the architectures training offers.

The card is read from the package (torch-free, so a base install shows it); the architecture
table comes from the ``dfscan.models`` entry point of the training part, when it is installed.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from typing import Annotated, Any

import typer
from rich.markup import escape

from .support import console, report_errors


def card_lines(name: str, card: dict[str, Any], threshold: float) -> list[str]:
    """The card as lines of Rich markup (every value from the card escaped)."""
    lines = [f"[bold]{escape(name)}[/] — dfscan's built-in detector (dfscan scan without --model)"]
    lines.append(escape(str(card.get("summary", ""))))
    data = card.get("training_data", {})
    if data:
        lines.append(
            f"[bold]trained on[/] {escape(str(data.get('description', '')))}: "
            f"{data.get('real', '?')} real, {data.get('fake', '?')} generated images "
            f"({data.get('generators', '?')} generators, {data.get('families', '?')} families)"
        )
        for key in ("real_sources", "fake_sources"):
            if data.get(key):
                label = key.replace("_", " ")
                lines.append(f"  {label}: " + escape("; ".join(map(str, data[key]))))
        if data.get("excluded"):
            lines.append(f"  left out: {escape(str(data['excluded']))}")
    rule = card.get("threshold_rule", "")
    lines.append(f"[bold]threshold[/] {threshold:.4g}: {escape(str(rule))}")
    return lines


def held_out_rows(card: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    held = card.get("held_out", {})
    columns = [str(c) for c in held.get("columns", [])]
    return columns, [[str(cell) for cell in row] for row in held.get("rows", [])]


@report_errors
def models(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the built-in detector's card as JSON.")
    ] = False,
) -> None:
    """Show the built-in detector's card and the architectures dfscan can train."""
    from rich.table import Table

    from ..model.builtin import load_part

    part = load_part()
    if as_json:
        payload = {"name": part.name, "threshold": part.threshold, **part.card}
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    for line in card_lines(part.name, part.card, part.threshold):
        console.print(line, highlight=False)
    columns, rows = held_out_rows(part.card)
    if rows:
        held = part.card["held_out"]
        table = Table(title=escape(str(held.get("title", "held out"))), title_justify="left")
        for column in columns:
            table.add_column(escape(column))
        for row in rows:
            table.add_row(*map(escape, row))
        console.print(table)
        if held.get("command"):
            console.print(f"[dim]measured with: {escape(str(held['command']))}[/]")
    for weakness in part.card.get("weaknesses", []):
        console.print(f"[yellow]weakness:[/] {escape(str(weakness))}", highlight=False)
    tables = sorted(entry_points(group="dfscan.models"), key=lambda e: e.name)
    if not tables:
        console.print('architectures to train: pip install "dfscan[train]"', markup=False)
    for ep in tables:
        console.print(ep.load()())
