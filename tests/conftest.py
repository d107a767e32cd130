"""pytest settings for everything under tests/.

hypothesis runs the same examples on every run (the "repeatable" profile: derandomize), so CI
tests exactly what the last local run tested, and a red run means a regression, never an
unlucky draw.  To hunt for new counterexamples, run with ``HYPOTHESIS_PROFILE=explore``
(random examples; 1000 for tests that do not set their own count); a counterexample it finds
belongs in a test of its own.

It also provides a headless browser to any test that needs one (``browser``, ``browser_page``):
the system's Chromium driven by playwright, never a browser playwright downloads; the test is
skipped, saying how to get one, where there is none.
"""

import os
import shutil

import pytest
from hypothesis import settings

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


# --- a headless browser ------------------------------------------------------------------------

#: Where a Chromium is looked for on PATH (``$CHROMIUM`` overrides): Debian's package first.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The Chromium to drive: ``$CHROMIUM``, else the first of :data:`CHROMIUM_NAMES` on PATH.
    Skips the test where there is none (CI installs Debian's ``chromium`` when root)."""
    path = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not path:
        pytest.skip("no Chromium to drive: install one (Debian: apt-get install chromium) "
                    "or point CHROMIUM at its executable")
    return path


@pytest.fixture(scope="module")
def browser(chromium_executable):
    """A headless Chromium, driven through playwright's sync API (so use it from a plain test,
    not inside a running asyncio loop; an asyncio test can launch its own with
    ``async_playwright`` and :func:`chromium_executable`).  One per test module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    args = ["--disable-dev-shm-usage"]     # containers often have a tiny /dev/shm
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")        # Chromium's sandbox refuses to run as root
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable,
                                             headless=True, args=args)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(browser):
    """A fresh page (in a context of its own: no cookies or storage shared between tests),
    1280 x 800 CSS pixels, the screen of a small laptop."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    context.close()
