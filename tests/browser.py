"""Headless Chromium for the page tests (the HTML report, the serve page): where it is, and the
flags that work as root in a sandbox without network (see the machine notes)."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium on this machine (Debian: apt-get install chromium; .ci/run does)",
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
