"""The web page as a reader meets it: a docs site, its index, the server, Chromium.

Real parts only, all on 127.0.0.1: the bundled 43-page sample (plus one page
full of hostile markup) served by ``SiteServer``, ingested from the folder with
``--base-url`` pointing at that server (so a citation click really lands on a
page), ``ragserve serve`` in a subprocess, and Debian's Chromium driven by
Playwright (``executable_path``; Playwright never downloads a browser here).

Used by ``tests/e2e/test_web_page.py`` and ``bench/ui_screenshots.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

#: Debian's package; the network is closed, so nothing may phone home either.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Set by .ci/run: a missing browser then fails the tests instead of skipping them.
REQUIRE_ENV = "RAGSERVE_TEST_BROWSER"

UNTRUSTED_PAGE = "serve/untrusted-markup.html"
#: Markup that runs if the page ever renders retrieved text as HTML. The escaped
#: forms are what survives extraction as chunk *text*; the real <script> tests
#: that the extractor drops code.
UNTRUSTED_HTML = """<!doctype html>
<html><head><title>Escaping untrusted markup — Ray 3.0.0</title>
<script>window.__pwned = "raw script tag";</script></head>
<body><main><article>
<h1 id="escaping-untrusted-markup">Escaping untrusted markup</h1>
<p>Untrusted markup injection probe: when a deployment echoes user input, markup such as
&lt;img src=x onerror="window.__pwned='img onerror'"&gt; and
&lt;script&gt;window.__pwned='script tag'&lt;/script&gt; must reach the client as text.</p>
<h2 id="injection-probe">Probe in a heading &lt;img src=y onerror="window.__pwned='h2'"&gt;</h2>
<p>A second untrusted markup injection probe: &lt;svg onload="window.__pwned='svg'"&gt;&lt;/svg&gt;
and a link &lt;a href="javascript:window.__pwned='href'"&gt;click&lt;/a&gt; are only shown.</p>
<script>window.__pwned = "inline script in body";</script>
</article></main></body></html>
"""
UNTRUSTED_QUESTION = "untrusted markup injection probe onerror script"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chromium_path() -> str | None:
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed: pip install 'ragserve[browser]'"
    if chromium_path() is None:
        return "Chromium is not installed: apt-get install -y chromium (Debian's package)"
    return None


def browser_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") == "required"


def build_site(sample_corpus: Path, root: Path) -> Path:
    """The sample corpus plus the page of hostile markup, as a folder to serve and ingest."""
    shutil.copytree(sample_corpus, root)
    (root / UNTRUSTED_PAGE).write_text(UNTRUSTED_HTML, encoding="utf-8")
    return root


def ragserve_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "ragserve.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def ingest(site_root: Path, base_url: str, data_dir: Path) -> dict[str, Any]:
    """``ragserve ingest FOLDER --base-url URL``; the JSON summary."""
    result = ragserve_cli(
        "ingest", str(site_root), "--base-url", base_url, "--data-dir", str(data_dir), "--json"
    )
    if result.returncode != 0:
        raise AssertionError(f"ingest failed ({result.returncode}): {result.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


@contextlib.contextmanager
def ragserve_server(
    data_dir: Path, *, env: Mapping[str, str] | None = None, ray: bool = False
) -> Iterator[str]:
    """``ragserve serve [--no-ray]`` on a free port until the block ends; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "ragserve.cli", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir)] + ([] if ray else ["--no-ray"])
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAGSERVE_EMBED__DEVICE": "cpu",
        **(env or {}),
    }
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(process, base, log)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_ready(process: subprocess.Popen[bytes], base: str, log: Any) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            tail = log.read()[-3000:].decode(errors="replace")
            raise AssertionError(f"ragserve serve exited with {process.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"ragserve serve at {base} was not ready within 180s")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium under Playwright; yields the ``Browser``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
