"""Render a fastmmm report.html in headless Chromium and check the screenshot is not blank.

Not a test module (pytest collects ``test_*.py`` only): ``tests/test_report.py``
imports it, and it runs on its own::

    python tests/render_report.py REPORT_HTML [OUT_PNG] [--window-size 1200,3000]
    python tests/render_report.py SAVED_RESULT_DIR [OUT_PNG]   # writes the report first

Chromium: Debian ``apt-get install -y chromium``; or set ``FASTMMM_CHROMIUM`` to a
Chrome/Chromium binary. Exit status 0 when the screenshot looks like a report
(enough distinct colours and non-white area), 1 when it is blank, 2 when no
browser is found.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Binaries tried in order (after $FASTMMM_CHROMIUM).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary, or None."""
    env = os.environ.get("FASTMMM_CHROMIUM")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(
    html: Path,
    png: Path,
    *,
    width: int = 1200,
    height: int = 3000,
    browser: str | None = None,
    timeout: float = 180.0,
) -> Path:
    """Screenshot ``html`` (a local file) to ``png`` with headless Chromium."""
    browser = browser or find_chromium()
    if browser is None:
        raise FileNotFoundError(
            "no chromium binary found (apt-get install -y chromium, or set FASTMMM_CHROMIUM)"
        )
    html, png = Path(html).resolve(), Path(png).resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="fastmmm-chromium-") as profile:
        cmd = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            html.as_uri(),
        ]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return png


def image_stats(png: Path) -> dict:
    """Size, number of distinct colours and fraction of non-white pixels of an image."""
    from PIL import Image

    with Image.open(png) as im:
        rgb = im.convert("RGB")
        colors = rgb.getcolors(maxcolors=1 << 24) or []
        hist = rgb.convert("L").histogram()
    n = rgb.width * rgb.height
    white = sum(hist[250:])
    return {
        "width": rgb.width,
        "height": rgb.height,
        "colors": len(colors),
        "ink": (n - white) / n if n else 0.0,
    }


def looks_rendered(stats: dict, *, min_colors: int = 2000, min_ink: float = 0.08) -> bool:
    """Whether a 1200x3000 screenshot shows the report's plots.

    Measured on the example report: with its four plots ~13,500 colours and ~15%
    non-white; the same page with the plots removed ~950 colours and ~4%; an
    empty page ~130 colours and 0%.
    """
    return stats["colors"] >= min_colors and stats["ink"] >= min_ink


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "report", type=Path, help="report.html, or a saved result directory (meta.json + idata.nc)"
    )
    p.add_argument("out", type=Path, nargs="?", default=Path("report_screenshot.png"))
    p.add_argument("--window-size", default="1200,3000", help="WIDTH,HEIGHT in pixels")
    args = p.parse_args(argv)
    width, height = (int(x) for x in args.window_size.split(","))
    html = args.report
    if html.is_dir():
        from fastmmm.report import write_report
        from fastmmm.results import load

        html = write_report(load(html), args.out.with_suffix(".html"))
        print(f"wrote {html}")
    if find_chromium() is None:
        print(
            "no chromium binary found (apt-get install -y chromium, or set FASTMMM_CHROMIUM)",
            file=sys.stderr,
        )
        return 2
    png = screenshot(html, args.out, width=width, height=height)
    st = image_stats(png)
    ok = looks_rendered(st)
    print(
        f"{png}: {st['width']}x{st['height']}, {st['colors']} colours, "
        f"{100 * st['ink']:.1f}% non-white: {'ok' if ok else 'BLANK?'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
