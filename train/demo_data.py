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

import hashlib
import importlib.util
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from dfscan.scanner.errors import DataError
from dfscan.scanner.labels import REAL

GENERATORS: tuple[str, ...] = ("upconv", "nn_upsample", "bilinear_x4", "vae_x8")
"""Simulated generators, each a folder of fakes. Their traces: ``upconv`` a stride-2 transposed
convolution (checkerboard, spectral peaks at N/2); ``nn_upsample`` nearest-neighbour up-sampling
then a 3×3 conv (no N/2 peak: an exact notch at N/2 between mirrored low frequencies);
``bilinear_x4`` a bilinear-initialised ×4 up-sampler whose weights drifted (peaks at N/4);
``vae_x8`` an 8× latent decoded by a pixel-shuffle-like kernel bank (peaks at multiples of N/8).
"""

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

_Float = np.ndarray  # (H, W, C) float64 image, 0..255 scale
_Pipeline = Callable[[_Float], _Float]  # one simulated generator


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


def _rng(*names: object) -> np.random.Generator:
    """A generator seeded from names, independent of call order and of the global RNG."""
    digest = hashlib.sha256("\x1f".join(str(n) for n in names).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


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


def _area_down(x: _Float, f: int) -> _Float:
    h, w, c = x.shape
    return x.reshape(h // f, f, w // f, f, c).mean(axis=(1, 3))


def _conv_same(x: _Float, kernel: np.ndarray) -> _Float:
    """Same-size convolution, kernel (k, k, C_in, C_out), edges replicated."""
    k = kernel.shape[0]
    h, w = x.shape[:2]
    padded = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)), mode="edge")
    out = np.zeros((h, w, kernel.shape[3]))
    for ky in range(k):
        for kx in range(k):
            out += padded[ky : ky + h, kx : kx + w] @ kernel[ky, kx]
    return out


def _conv_transpose(x: _Float, kernel: np.ndarray, stride: int) -> _Float:
    """Stride-``stride`` transposed convolution, kernel (k, k, C_in, C_out), output ×stride.

    The input is edge-padded first so the border pixels get all their taps, like the interior.
    """
    k = kernel.shape[0]
    pad = -(-k // stride)
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    full = np.zeros(((h - 1) * stride + k, (w - 1) * stride + k, kernel.shape[3]))
    for ky in range(k):
        for kx in range(k):
            rows = slice(ky, ky + (h - 1) * stride + 1, stride)
            cols = slice(kx, kx + (w - 1) * stride + 1, stride)
            full[rows, cols] += x @ kernel[ky, kx]
    start = pad * stride + (k - stride) // 2
    out_h, out_w = (h - 2 * pad) * stride, (w - 2 * pad) * stride
    return full[start : start + out_h, start : start + out_w]


def _unit_dc_gain(kernel: np.ndarray, phases: int, encode: np.ndarray | None = None) -> np.ndarray:
    """Rescale so a flat RGB image keeps its colour on average (mean gain over phases = 1).

    ``encode`` (3, C_in) is the linear map in front of the kernel, if any (a latent encoder).
    """
    gain = kernel.sum(axis=(0, 1)) / phases  # (C_in, C_out)
    if encode is not None:
        gain = encode @ gain
    return kernel @ np.linalg.inv(gain)


def _learned_kernel(
    base: np.ndarray,
    stride: int,
    drift: float,
    rng: np.random.Generator,
    mix: np.ndarray,
    encode: np.ndarray | None = None,
) -> np.ndarray:
    """An up-sampling kernel that started as ``base`` and drifted during "training".

    Each output phase of a smooth base sums to one; the random drift makes the phase sums
    unequal, which is what prints a periodic pattern (spectral peaks at multiples of N/stride)
    into real generator output. ``drift`` is the spread of a phase sum.
    """
    k = base.shape[0]
    taps = (k // stride) ** 2
    noise = rng.normal(0.0, drift / np.sqrt(taps), size=(k, k, *mix.shape))
    noise *= np.where(np.eye(*mix.shape, dtype=bool), 1.0, 0.3)  # mostly within a channel
    kernel = base[:, :, None, None] * mix + noise
    return _unit_dc_gain(kernel, stride * stride, encode)


def _small_conv(k: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """A fixed near-identity k×k RGB conv (a trained output layer), unit DC gain."""
    kernel = rng.normal(0.0, spread, size=(k, k, 3, 3))
    kernel *= np.where(np.eye(3, dtype=bool), 1.0, 0.2)
    kernel[k // 2, k // 2] += np.eye(3)
    return _unit_dc_gain(kernel, 1)


def _triangle(k: int) -> np.ndarray:
    """Linear-interpolation kernel of a ×k/2 up-sampler (half-pixel centres), as 2-D."""
    half = np.arange(1, k, 2, dtype=float)
    t = np.concatenate([half, half[::-1]]) / k
    return np.outer(t, t)


def _make_generator(name: str) -> _Pipeline:
    """The fixed pipeline of a simulated generator; its weights depend on its name only."""
    rng = _rng("generator-weights", name)
    eye = np.eye(3)
    if name == "upconv":
        kernel = _learned_kernel(_triangle(4), 2, 0.04, rng, eye)

        def upconv(x: _Float) -> _Float:
            return _conv_transpose(_area_down(x, 2), kernel, 2)

        return upconv
    if name == "nn_upsample":
        conv = _small_conv(3, 0.08, rng)

        def nn_upsample(x: _Float) -> _Float:
            low = _area_down(x, 2)
            return _conv_same(low.repeat(2, axis=0).repeat(2, axis=1), conv)

        return nn_upsample
    if name == "bilinear_x4":
        kernel = _learned_kernel(_triangle(8), 4, 0.03, rng, eye)
        conv = _small_conv(5, 0.03, rng)

        def bilinear_x4(x: _Float) -> _Float:
            return _conv_same(_conv_transpose(_area_down(x, 4), kernel, 4), conv)

        return bilinear_x4
    if name == "vae_x8":
        encode = eye[:, [0, 1, 2, 0]] + rng.normal(0.0, 0.2, size=(3, 4))  # RGB -> 4 latents
        decode = np.linalg.pinv(encode)  # (4, 3)
        kernel = _learned_kernel(_triangle(16), 8, 0.03, rng, decode, encode)

        def vae_x8(x: _Float) -> _Float:
            return _conv_transpose(_area_down(x, 8) @ encode, kernel, 8)

        return vae_x8
    raise ValueError(f"unknown generator {name!r}")


_FACTOR = {"upconv": 2, "nn_upsample": 2, "bilinear_x4": 4, "vae_x8": 8}


def _fake(
    crop: np.ndarray, grey: bool, name: str, generate: _Pipeline, rng: np.random.Generator
) -> np.ndarray:
    """Generator output plus a random share of the crop's own detail above its band limit."""
    x = crop.astype(np.float64)
    sigma = _FACTOR[name] / 2
    detail = x - ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect")
    y = generate(x) + rng.uniform(0.5, 0.9) * detail
    if grey:  # grey in, grey out: colour must not tell the classes apart
        y = np.repeat(y.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


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
        "note": "SIMULATION for demos and tests, not a benchmark (see dfscan.train.demo_data)",
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
    order = _rng(seed, "tile-order").permutation(len(tiles))
    gen_of = np.repeat(np.arange(len(GENERATORS)), per_gen)
    gen_of = gen_of[_rng(seed, "generator-order").permutation(n_real)]
    generators = [_make_generator(name) for name in GENERATORS]
    width = len(str(2 * n_real - 1))
    for i in range(n_real):
        tile = tiles[order[i % len(tiles)]]
        crop = _crop(tile, size, _rng(seed, "real", i))
        _save(crop, out / REAL / f"{tile.group}__{i:0{width}d}.png")
    for i in range(n_real):
        tile = tiles[order[i % len(tiles)]]
        g = int(gen_of[i])
        rng = _rng(seed, "fake", i)
        fake = _fake(_crop(tile, size, rng), tile.photo.grey, GENERATORS[g], generators[g], rng)
        _save(fake, out / GENERATORS[g] / f"{tile.group}__{n_real + i:0{width}d}.png")
    return DemoSummary(out, counts)
