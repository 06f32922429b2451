"""report.html in a real browser: Debian's headless Chromium at 1280 px, driven by Selenium through
/usr/bin/chromedriver (the driver path is given, so Selenium Manager downloads nothing).

Two checks, measured on the rendered page rather than read from the CSS: no table is wider than the block that holds
it and no cell's content spills out of its cell (scrollWidth against clientWidth); and no word of a header or cell is
broken across lines ("clien t"): each word is a DOM range whose client rects must all lie on one line. Words are
split at white space and after hyphens and slashes, where a break is legitimate. Skipped, with the reason, where
Chromium, its driver or Selenium cannot be had (`make test` installs Debian's chromium and chromium-driver as root).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = Path("/usr/bin/chromedriver")
WIDTH = 1280

#: Per table: [index, table width, container width]; per cell: [text, scrollWidth, clientWidth] when it spills.
OVERFLOW_JS = """
const out = {tables: [], cells: []};
document.querySelectorAll('table').forEach((t, i) => {
  const box = t.parentElement.getBoundingClientRect(), r = t.getBoundingClientRect();
  const style = getComputedStyle(t.parentElement);
  const inner = box.right - parseFloat(style.paddingRight) - parseFloat(style.borderRightWidth);
  if (r.right > inner + 0.5 || t.scrollWidth > t.clientWidth + 1) out.tables.push([i, r.width, box.width]);
});
document.querySelectorAll('th, td').forEach(c => {
  if (c.scrollWidth > c.clientWidth + 1) out.cells.push([c.textContent, c.scrollWidth, c.clientWidth]);
});
return out;
"""

#: Every word (split at white space, after '-' and '/') of every th/td whose range spans more than one line.
BROKEN_WORDS_JS = """
const broken = [];
document.querySelectorAll('th, td').forEach(cell => {
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const m of node.data.matchAll(/[^\\s\\-\\/]+[\\-\\/]?/g)) {
      const range = document.createRange();
      range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
      const tops = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
      if (tops.size > 1) broken.push([cell.textContent.trim(), m[0]]);
    }
  }
});
return broken;
"""


def _browser():
    """A headless Chromium WebDriver at 1280 px, or a skip naming what is missing."""
    if not CHROMIUM.is_file() or not DRIVER.is_file():
        pytest.skip(f"{CHROMIUM} or {DRIVER} missing: install Debian's chromium and chromium-driver (make test does, "
                    "as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra: pip install -e .[dev]")
    profile = tempfile.mkdtemp(prefix="fedleak-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={WIDTH},1000"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(DRIVER)), options=options)
    except Exception as exc:  # noqa: BLE001 — a browser that will not start is a skip with its reason
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"headless Chromium did not start: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return driver, profile


def rendered_layout(page: Path) -> tuple[dict, list]:
    """(overflowing tables and cells, broken words) of ``page`` rendered at 1280 px."""
    driver, profile = _browser()
    try:
        driver.set_window_size(WIDTH, 1000)
        driver.get(page.resolve().as_uri())
        width = driver.execute_script("return window.innerWidth")
        assert abs(width - WIDTH) <= 20, f"the window is {width} px wide, not {WIDTH}"
        return driver.execute_script(OVERFLOW_JS), driver.execute_script(BROKEN_WORDS_JS)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


NARROW_TABLE = """<!doctype html><html><head><meta charset="utf-8"><style>{style}
.squeeze {{ width: 120px; }}</style></head><body><div class="squeeze"><table><thead><tr><th>client</th>
<th>defense</th><th>worst-case PSNR (dB)</th></tr></thead><tbody><tr><td>0</td><td>dp_sgd</td><td class="num">41.60</td>
</tr></tbody></table></div></body></html>"""


def test_the_checks_catch_a_table_squeezed_below_its_words(tmp_path: Path) -> None:
    """The measurement can fail: a 120 px box is narrower than the table's words, so it overflows (and the old
    ``overflow-wrap: anywhere`` rule broke "clien t" instead)."""
    from fedleak.report.html import STYLE

    page = tmp_path / "narrow.html"
    page.write_text(NARROW_TABLE.format(style=STYLE), encoding="utf-8")
    overflow, _ = rendered_layout(page)
    assert overflow["tables"], "a table wider than its 120 px box was not reported"
    page.write_text(NARROW_TABLE.format(style=STYLE + "th, td { overflow-wrap: anywhere; }"), encoding="utf-8")
    _, broken = rendered_layout(page)
    assert broken, "words broken mid-word under overflow-wrap: anywhere were not reported"


@pytest.mark.slow
def test_a_smoke_report_fits_1280_px_without_broken_words(tmp_path: Path) -> None:
    """The report of scenarios/smoke.yaml (two clients, two rounds, iDLG): every table fits, no word breaks."""
    if not CHROMIUM.is_file() or not DRIVER.is_file():
        pytest.skip(f"{CHROMIUM} or {DRIVER} missing: install Debian's chromium and chromium-driver")
    import fedleak

    root = Path(__file__).resolve().parents[1]
    run = fedleak.simulate(fedleak.load_scenario(root / "scenarios" / "smoke.yaml"), out=tmp_path / "run")
    overflow, broken = rendered_layout(run.report)
    assert overflow == {"tables": [], "cells": []}, overflow
    assert broken == [], broken
