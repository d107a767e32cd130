"""Fixtures for the SSE tests: a real browser (Debian's chromium, driven by playwright).

The browser is never downloaded: playwright's Python package drives the distribution's
``chromium`` through ``executable_path``.  Where either is missing the browser tests skip and
say what to install; CI runs as root and installs chromium (``.ci/run``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# playwright must never fetch a browser of its own (the network here reaches package indexes only).
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


def chromium_path() -> Path | None:
    """``LABLIB_CHROMIUM``, else ``chromium`` on PATH, else Debian's /usr/bin/chromium."""
    explicit = os.environ.get("LABLIB_CHROMIUM")
    if explicit:
        return Path(explicit)
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                         else None)
    return Path(found) if found else None


@pytest.fixture
def chromium() -> Path:
    """The chromium executable for playwright (skips the test, with the reason, when absent)."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright (the Python package) is not installed: pip install -e . "
                    "(it is in pyproject.toml); no browser download is needed")
    path = chromium_path()
    if path is None or not path.exists():
        pytest.skip("no chromium executable: `apt-get install chromium` (Debian; CI installs it "
                    "when root) or set LABLIB_CHROMIUM to a Chromium binary")
    return path
