"""Screenshots of the web page: chat and status, desktop and phone width, light and dark.

    .venv/bin/python bench/ui_screenshots.py                       # builds the demo index
    .venv/bin/python bench/ui_screenshots.py --data-dir .ragserve/demo/index

Without ``--data-dir`` it ingests the bundled sample as ``make demo`` does (URLs
under https://docs.ray.io/en/master/). Answers are extractive unless ``--llm``
names another provider (``auto`` picks the offline model where it is fetched).
The server is ``ragserve serve --no-ray`` on a free port; the browser is
Debian's Chromium under Playwright.
Writes PNGs to ``bench/results/ui/``.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.web import browser_missing, chromium, ingest, ragserve_server  # noqa: E402

QUESTION = "How do I configure autoscaling for a Ray Serve deployment?"
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def demo_index(workdir: Path) -> Path:
    corpus = workdir / "corpus"
    with tarfile.open(REPO / "examples" / "ray-serve-docs-2023.tar.gz") as archive:
        archive.extractall(corpus, filter="data")
    data_dir = workdir / "index"
    ingest(corpus, "https://docs.ray.io/en/master/", data_dir)
    return data_dir


def shrink(path: Path) -> None:
    """A 256-colour palette PNG: a third of the size, the same to the eye for a UI."""
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with matplotlib (dev extras); without it keep RGB
        return
    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(
            colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        )
    palette.save(path, optimize=True)


def shoot(base: str, out_dir: Path, question: str) -> list[Path]:
    written = []
    with chromium() as browser:
        for scheme in ("light", "dark"):
            for name, viewport in VIEWPORTS.items():
                context = browser.new_context(viewport=viewport, color_scheme=scheme)
                page = context.new_page()
                page.goto(base + "/")
                page.locator("#index-badge .dot").wait_for(timeout=60_000)
                page.get_by_label("Your question").fill(question)
                page.get_by_label("Your question").press("Enter")
                page.locator(".turn:last-child .actions").wait_for(state="visible", timeout=120_000)
                page.evaluate("window.scrollTo(0, 0)")
                target = out_dir / f"chat-{name}-{scheme}.png"
                page.screenshot(path=str(target))
                shrink(target)
                written.append(target)
                page.goto(base + "/status")
                page.locator(".status-card").first.wait_for(timeout=60_000)
                target = out_dir / f"status-{name}-{scheme}.png"
                page.screenshot(path=str(target))
                shrink(target)
                written.append(target)
                context.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, help="An existing index (default: build one).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ui")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument(
        "--llm", default="extractive", help="RAGSERVE_LLM__PROVIDER for the server [extractive]."
    )
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        raise SystemExit(f"cannot take screenshots: {missing}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ragserve-ui-") as workdir:
        data_dir = args.data_dir or demo_index(Path(workdir))
        with ragserve_server(data_dir, env={"RAGSERVE_LLM__PROVIDER": args.llm}) as base:
            for path in shoot(base, args.out, args.question):
                print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


if __name__ == "__main__":
    main()
