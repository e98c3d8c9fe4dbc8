"""The web view in a real browser: Debian's headless Chromium loads each page, the test
reads the DOM it built and keeps a screenshot of each page in the test's output folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonkit import Rig, make_rig
from tests.test_web import RULES, listen


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("the browser tests must run in CI, and chromium is not installed")
        pytest.skip("no chromium here (apt-get install chromium)")
    return found


def browse(url: str, out: Path, name: str) -> str:
    """The DOM Chromium built for `url`; a screenshot of it in `out`."""
    chromium = _chromium()
    common = [
        chromium,
        "--headless",
        "--no-sandbox",  # root in CI: Chromium's sandbox refuses to run as root
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={out / 'profile'}",
        "--window-size=1280,900",
    ]
    shot = out / f"{name}.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", url], capture_output=True, timeout=60, check=True
    )
    assert shot.stat().st_size > 1000
    dom = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, timeout=60, check=True
    )
    return dom.stdout


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = make_rig(tmp_path)
    rig.rules(RULES)
    rig.start()
    rig.write(
        "UPDATE deals SET stage = 'won', name = '<b>Acme</b>', updated_at = {stamp}, "
        "updated_by = {by} WHERE id = 1"
    )
    rig.tick(seconds=5)
    yield rig
    rig.close()


@pytest.mark.browser
def test_each_page_shows_its_rows_in_a_browser(rig: Rig, tmp_path: Path) -> None:
    _chromium()
    server, _ = listen(rig)
    out = tmp_path / "screenshots"
    out.mkdir()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        pending = browse(f"{base}/", out, "pending")
        history = browse(f"{base}/history?workflow=won", out, "history")
        record = browse(f"{base}/records/deal/1", out, "record")
    finally:
        server.shutdown()
    assert pending.count("<tr>") >= 2 and "deal:1" in pending  # a header and the delayed warn
    assert "<h1>History</h1>" in history and history.count('class="fired"') == 1
    assert '<table id="workflows">' in record
    assert 'class="fired">fired' in record and "not fired" in record
    assert "&lt;b&gt;Acme&lt;/b&gt;" in record and "<b>Acme</b>" not in record
    print(f"screenshots: {sorted(p.name for p in out.glob('*.png'))} in {out}")
