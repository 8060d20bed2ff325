"""fsspec URI sources: listed one directory at a time, sorted, generators as for folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfscan.scanner.errors import DataError
from dfscan.scanner.scan.discovery import DiscoveryStats, discover
from dfscan.scanner.scan.sources import check_uri, discover_uri, is_uri, read_bytes

from ..conftest import write_image
from ..onnx_models import grey

pytest.importorskip("fsspec", reason='fsspec is not installed (pip install "dfscan[ray]")')


def test_a_file_uri_lists_like_the_folder(tmp_path: Path):
    root = tmp_path / "data"
    rels = ("real/b.png", "real/a.png", "gan/x/deep.jpg", "top.webp", "gan/z.PNG")
    rels += ("progan/car/0_real/r.png", "progan/car/1_fake/f.png")  # CNNDetection layout
    for rel in rels:
        write_image(root / rel, grey(100))
    (root / "gan" / "notes.txt").write_text("x")
    stats, local_stats = DiscoveryStats(), DiscoveryStats()
    found = list(discover_uri(root.as_uri(), stats))
    local = list(discover([root], local_stats))
    uri = root.as_uri()
    assert [(f.path, f.generator) for f in found] == [
        (uri + "/" + Path(f.path).relative_to(root).as_posix(), f.generator) for f in local
    ]
    generators = {Path(f.path).name: f.generator for f in found}
    assert generators["r.png"] == "real" and generators["f.png"] == "progan"
    assert stats.ignored == local_stats.ignored == 1
    assert read_bytes(found[0].path) == Path(local[0].path).read_bytes()
    assert is_uri("s3://b/p") and is_uri("file:///x") and not is_uri("photos/s3:/x")
    with pytest.raises(DataError, match="folder not found"):
        check_uri((tmp_path / "missing").as_uri())
