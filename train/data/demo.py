"""A small, deterministic real-vs-fake dataset built offline, for demos and tests.

This is a SIMULATION, not a benchmark. No generative model runs here: the "fakes" are real photo
crops pushed through tiny fixed pipelines that imitate the *kinds* of traces real generators
leave (the up-sampling fingerprints that show as spectral peaks, see Odena et al. 2016 on
checkerboard artifacts and Frank et al. 2020 on frequency analysis). A detector trained on it
proves that the training, export and scanning plumbing works; its accuracy says nothing about
real deepfakes.

Design, and why:

- Real images are photos shipped inside scikit-image and scikit-learn, so no download is needed.
  Each photo is cut into disjoint tiles of about 256 px; a tile is a group (``astronaut-t2``),
  and ``<group>__<k>.png`` lets the splitter keep a tile in one split, so no pixel is shared
  between train and test.
- Real crops are native pixels (cut and maybe mirrored, never resampled), because resampling a
  real image would plant the very traces the fakes are made of.
- Fakes are cut from the same tiles (same group names), so content is matched across classes
  and the only systematic difference is the simulated generator.
- Each generator has fixed random "weights" drawn from its own name, like a trained model whose
  fingerprint does not change between datasets. After generation a random share of the crop's
  own high-frequency detail is added back, so "fake = blurry" is not the only cue.
- Some source photos are JPEGs: their 8×8 block traces are in real crops, and partly in fakes
  through the added-back detail, as in real-world data.
- Everything is PNG (so the file format is no cue) and every random draw comes from a
  ``numpy.random.Generator`` seeded from ``seed`` and names: two builds give identical bytes.

Only numpy, scipy.ndimage and Pillow are used (no torch), so building takes a few seconds.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from dfscan.scanner.errors import DataError
from dfscan.scanner.labels import REAL

from ._demo_generators import GENERATORS, make_fake, make_generator, seeded_rng

MANIFEST = "demo_dataset.json"  # marks a folder as ours, so a rebuild may replace it
_KIND = "dfscan-demo-dataset"
_TILE = 256  # target tile side in pixels
_MAX_GRID = 4  # at most 4×4 tiles per photo, so the big retina scan does not dominate
_MIN_STD = 2.0  # a crop flatter than this (black retina corners) is redrawn

_SKIMAGE = (  # (group name, file in skimage/data); greyscale files are stacked to RGB
    ("astronaut", "astronaut.png"),
    ("chelsea", "chelsea.png"),
    ("coffee", "coffee.png"),
    ("rocket", "rocket.jpg"),
    ("immunohistochemistry", "ihc.png"),
    ("retina", "retina.jpg"),
    ("hubble", "hubble_deep_field.jpg"),
    ("camera", "camera.png"),
    ("moon", "moon.png"),
    ("brick", "brick.png"),
    ("grass", "grass.png"),
    ("gravel", "gravel.png"),
    ("coins", "coins.png"),
    ("clock", "clock_motion.png"),
    ("cell", "cell.png"),
)
_SKLEARN = (("china", "china.jpg"), ("flower", "flower.jpg"))
_SKIMAGE_LOADERS = {"immunohistochemistry": "immunohistochemistry", "hubble": "hubble_deep_field"}


@dataclass
class DemoSummary:
    root: Path
    counts: dict[str, int]  # folder name -> number of images


@dataclass(frozen=True)
class _Photo:
    name: str
    pixels: np.ndarray  # (H, W, 3) uint8, read-only
    grey: bool


@dataclass(frozen=True)
class _Tile:
    group: str
    photo: _Photo
    y0: int
    y1: int
    x0: int
    x1: int


# ---------------------------------------------------------------- real photos and tiles


def _package_dir(package: str) -> Path | None:
    """Where a package is installed, without importing it (sklearn takes ~0.7 s to import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _read_photo(name: str, path: Path | None, skimage_loader: str | None) -> _Photo | None:
    if path is not None and path.is_file():
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    elif skimage_loader is not None:  # older scikit-image fetches some photos into a cache
        try:
            import skimage.data

            pixels = np.asarray(getattr(skimage.data, skimage_loader)())
        except Exception:  # not installed, or not cached and offline: use the other photos
            return None
    else:
        return None
    grey = pixels.ndim == 2
    if grey:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    pixels = np.ascontiguousarray(pixels[:, :, :3], dtype=np.uint8)
    pixels.setflags(write=False)
    return _Photo(name, pixels, grey)


@lru_cache(maxsize=1)
def _photos() -> tuple[_Photo, ...]:
    """The sample photos that are installed (decoded with Pillow, cached for repeated builds)."""
    skimage_dir, sklearn_dir = _package_dir("skimage"), _package_dir("sklearn")
    photos: list[_Photo | None] = []
    for name, file in _SKIMAGE:
        path = skimage_dir / "data" / file if skimage_dir else None
        loader = _SKIMAGE_LOADERS.get(name, Path(file).stem)
        photos.append(_read_photo(name, path, loader if skimage_dir else None))
    for name, file in _SKLEARN:
        path = sklearn_dir / "datasets" / "images" / file if sklearn_dir else None
        photos.append(_read_photo(name, path, None))
    return tuple(p for p in photos if p is not None)


def _tiles(photos: tuple[_Photo, ...], size: int) -> list[_Tile]:
    """Disjoint tiles of about ``_TILE`` px, each at least ``size`` px on both sides."""
    tiles: list[_Tile] = []
    for photo in photos:
        h, w = photo.pixels.shape[:2]
        if h < size or w < size:
            continue
        rows = max(1, min(int(h / _TILE + 0.5), h // size, _MAX_GRID))
        cols = max(1, min(int(w / _TILE + 0.5), w // size, _MAX_GRID))
        ys = np.linspace(0, h, rows + 1).astype(int)
        xs = np.linspace(0, w, cols + 1).astype(int)
        for r in range(rows):
            for c in range(cols):
                group = f"{photo.name}-t{r * cols + c}"
                tiles.append(_Tile(group, photo, ys[r], ys[r + 1], xs[c], xs[c + 1]))
    return tiles


def _crop(tile: _Tile, size: int, rng: np.random.Generator) -> np.ndarray:
    """A native-pixel ``size``² crop at a random place inside the tile, maybe mirrored."""
    for _ in range(20):
        y = int(rng.integers(tile.y0, tile.y1 - size + 1))
        x = int(rng.integers(tile.x0, tile.x1 - size + 1))
        crop = tile.photo.pixels[y : y + size, x : x + size]
        if crop.std() >= _MIN_STD:
            break
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


# ---------------------------------------------------------------- simulated generators


# ---------------------------------------------------------------- building the folder


def _prepare(out: Path) -> None:
    """Refuse a foreign non-empty folder; clear only what a previous build wrote."""
    if out.exists() and not out.is_dir():
        raise DataError(f"not a folder: {out}", hint="pick a new or empty folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    manifest = out / MANIFEST
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8"))
        if previous.get("kind") != _KIND:
            raise ValueError(previous.get("kind"))
    except (OSError, ValueError, AttributeError):
        raise DataError(
            f"{out} is not empty and is not a dfscan demo dataset (no valid {MANIFEST})",
            hint="pick a new or empty folder; only a previous demo dataset is rebuilt in place",
        ) from None
    listed = previous.get("counts")
    owned = {REAL, *GENERATORS, *(listed if isinstance(listed, dict) else ())}
    for name in sorted(owned):
        if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
            continue  # only plain folder names directly inside out
        path = out / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    manifest.unlink()


def _per_generator(n_fake: int) -> list[int]:
    """Split n_fake as evenly as possible (the first generators get any remainder)."""
    base, extra = divmod(n_fake, len(GENERATORS))
    return [base + (i < extra) for i in range(len(GENERATORS))]


def _save(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)  # fast; lossless anyway


def build_demo_dataset(
    out: Path, *, seed: int = 0, n_real: int = 240, size: int = 128
) -> DemoSummary:
    """Write ``out/real/*.png`` and ``out/<generator>/*.png`` (n_real fakes in all).

    Files are ``<tile>__<k>.png``: the tile is the group, ``k`` numbers images across the whole
    dataset. Crops are spread evenly over all tiles, real and fake alike. Raises DataError when
    ``out`` holds anything but a previous demo dataset, or for unusable ``n_real``/``size``.
    """
    out = Path(out)
    if size % 8 or not 16 <= size <= 512:
        raise DataError(f"demo crop size {size} is unusable", hint="use a multiple of 8, 16..512")
    if n_real < len(GENERATORS):
        raise DataError(
            f"n_real={n_real} is too small",
            hint=f"use at least {len(GENERATORS)} so each generator gets a fake",
        )
    tiles = _tiles(_photos(), size)
    if not tiles:
        raise DataError(
            f"no sample photo is {size}×{size} px or larger",
            hint="install scikit-image and scikit-learn (dfscan[train]) or use a smaller size",
        )
    _prepare(out)

    per_gen = _per_generator(n_real)
    counts = {REAL: n_real, **dict(zip(GENERATORS, per_gen, strict=True))}
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "kind": _KIND,
        "note": "SIMULATION for demos and tests, not a benchmark (see dfscan.train.data.demo)",
        "seed": seed,
        "n_real": n_real,
        "size": size,
        "generators": list(GENERATORS),
        "counts": counts,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for folder in counts:
        (out / folder).mkdir()

    # One tile order for both classes: the i-th real and the i-th fake come from the same tile,
    # so both classes cover the same groups equally often.
    order = seeded_rng(seed, "tile-order").permutation(len(tiles))
    gen_of = np.repeat(np.arange(len(GENERATORS)), per_gen)
    gen_of = gen_of[seeded_rng(seed, "generator-order").permutation(n_real)]
    generators = [make_generator(name) for name in GENERATORS]
    width = len(str(2 * n_real - 1))
    for i in range(n_real):
        tile = tiles[order[i % len(tiles)]]
        crop = _crop(tile, size, seeded_rng(seed, "real", i))
        _save(crop, out / REAL / f"{tile.group}__{i:0{width}d}.png")
    for i in range(n_real):
        tile = tiles[order[i % len(tiles)]]
        g = int(gen_of[i])
        rng = seeded_rng(seed, "fake", i)
        fake = make_fake(_crop(tile, size, rng), tile.photo.grey, GENERATORS[g], generators[g], rng)
        _save(fake, out / GENERATORS[g] / f"{tile.group}__{n_real + i:0{width}d}.png")
    return DemoSummary(out, counts)
