"""In the base install a test module that needs an extra is a skip, anything else missing is
still an error (tests/scanner/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")


@pytest.mark.parametrize(
    ("base_install", "expected"),
    [("1", ["1 passed", "1 skipped", "1 error"]), ("0", ["1 passed", "2 errors"])],
)
def test_only_a_missing_extra_is_a_skip(tmp_path: Path, base_install: str, expected: list[str]):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    # None in sys.modules makes ``import torch`` fail as it fails where torch is not installed
    (tmp_path / "test_needs_torch.py").write_text(
        "import sys\nsys.modules['torch'] = None\nimport torch\n\ndef test_x():\n    pass\n"
    )
    (tmp_path / "test_needs_a_typo.py").write_text(
        "import dfscan_no_such_module\n\ndef test_y():\n    pass\n"
    )
    (tmp_path / "test_plain.py").write_text("def test_z():\n    pass\n")
    env = os.environ | {"DFSCAN_BASE_INSTALL": base_install}
    flags = ["-q", "-p", "no:cacheprovider", "-rs", "--continue-on-collection-errors"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *flags, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert all(part in summary for part in expected), done.stdout
    if base_install == "1":
        assert "needs the full install (torch" in done.stdout
