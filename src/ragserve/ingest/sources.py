"""Where documents come from: a website (crawled) or a local folder (read).

:func:`iter_source` is the one entry point. It checks the source argument
eagerly (a bad URL, a private address, a missing or empty folder raise at the
call) and then streams ``SourceItem`` values as they are produced:

* ``Document``     a page or file to index;
* ``PageProblem``  a page that could not be ingested, with a reason for humans;
  the job goes on. :func:`is_gone` tells the pages the site says no longer
  exist (404/410) from those that merely failed this time;
* ``NotModified``  the source says the page is unchanged since ``known``'s
  validators: keep what the index has.

Incremental sync (``known`` = URL → validators of what the index holds;
pass every indexed URL of the source, with ``Validators(None, None)`` where
there are none, because only URLs in ``known`` are revisited when the pages
linking to them answer 304) gives this guarantee: every URL in ``known`` that
lies in the source's scope gets exactly one item, so a pipeline may treat a
known URL as vanished only when it got an ``is_gone`` problem, or got no item
while the crawl ran through (then it redirects elsewhere or lost its links).
A page that is unchanged is therefore never reported as vanished.

Folder URLs: with ``settings.base_url`` a file is named ``base_url`` + its
path relative to the folder (``dir/index.html`` as ``dir/``, as the crawler
does), so a folder export and a crawl of the same site index the same URLs.
Without it a file is named by its absolute ``file://`` URI: stable as long as
the folder is re-ingested from the same place, which is what re-ingest needs;
relative names would collide between two folders with the same layout.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

from ragserve.config import IngestSettings
from ragserve.documents import ContentKind, Document
from ragserve.errors import ConfigError, ContentError, ScopeError
from ragserve.ingest.crawl import crawl
from ragserve.ingest.decode import binary_reason, decode_bytes
from ragserve.ingest.items import (
    NotModified,
    PageProblem,
    SourceItem,
    Validators,
    too_large_reason,
)
from ragserve.ingest.urls import page_key

logger = logging.getLogger(__name__)


#: File suffixes a folder source reads, and the kind of content each holds.
FOLDER_KINDS: dict[str, ContentKind] = {
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".rst": "text",
}


def iter_source(
    source: str, settings: IngestSettings, known: Mapping[str, Validators] | None = None
) -> Iterator[SourceItem]:
    """Stream the documents of ``source``: an http(s) URL to crawl or a local folder.

    Raises (whole-job failures): ``ScopeError`` for an unsupported scheme or a
    private address without ``allow_private``; ``FetchError`` for an
    unresolvable or unreachable start URL (raised by the first ``next()``);
    ``ConfigError`` for a path that is not a folder; ``ContentError`` for a
    folder with no readable files. Per-page problems are yielded instead.
    """
    lowered = source.strip().lower()
    if lowered.startswith(("http://", "https://")):
        return crawl(source.strip(), settings, known)
    if re.match(r"^[a-z][a-z0-9+.-]*://", lowered):
        raise ScopeError(
            f"cannot read {source!r}: sources are http:// or https:// URLs, or a local folder path"
        )
    return iter_folder(Path(source).expanduser(), settings, known)


def iter_folder(
    folder: Path, settings: IngestSettings, known: Mapping[str, Validators] | None = None
) -> Iterator[SourceItem]:
    """Stream the supported files under ``folder`` in sorted path order.

    Hidden files and folders are skipped. A file whose size and modification
    time match ``known``'s validators yields ``NotModified`` without being read.
    """
    root = Path(os.path.abspath(folder))  # absolute without resolving symlinks
    files = _supported_files(root)
    return _Listed(_read_files(root, files, settings, known or {}), len(files))


class _Listed(Iterator[SourceItem]):
    """A folder's items, which know how many they are (``operator.length_hint``).

    Why: the files are listed before the first is read, so progress can show
    a total and an ETA; a crawl discovers its pages as it goes and has no hint.
    """

    def __init__(self, items: Iterator[SourceItem], count: int) -> None:
        self._items = items
        self._count = count

    def __next__(self) -> SourceItem:
        return next(self._items)

    def __length_hint__(self) -> int:
        return self._count


def _supported_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise ConfigError(
            f"source {str(folder)!r} is neither an http(s) URL nor an existing folder; "
            "pass a URL like https://docs.example.com/ or the path of a folder of docs"
        )
    if not folder.is_dir():
        raise ConfigError(f"source {str(folder)!r} is a file; pass the folder that holds it")
    found: list[Path] = []
    others = 0
    for directory, subdirs, names in os.walk(folder):
        subdirs[:] = [name for name in subdirs if not name.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in FOLDER_KINDS:
                found.append(Path(directory, name))
            else:
                others += 1
    if not found:
        readable = ", ".join(FOLDER_KINDS)
        detail = f"it holds {others} other files" if others else "it is empty"
        raise ContentError(
            f"folder {str(folder)!r} has no documents to ingest ({detail}); "
            f"ragserve reads files ending in {readable}"
        )
    pages = _without_page_sources(folder, found)
    return sorted(pages, key=lambda path: path.relative_to(folder).as_posix())


#: Suffixes a generator gives the source text it copies beside the page it built.
_SOURCE_SUFFIXES = (".rst.txt", ".md.txt", ".txt", ".rst", ".md", ".markdown")


def _without_page_sources(folder: Path, found: list[Path]) -> list[Path]:
    """Drop text files that are the source of an HTML page the folder also holds.

    Why: documentation generators ship each page's source beside it: Sphinx
    copies ``page.rst`` to ``_sources/page.rst.txt`` (the "Show Source" link),
    AsciiDoc builds leave ``page.txt`` next to ``page.html``. Read as well,
    every such page is indexed twice: the Python docs from Debian are 530
    pages and 497 sources, and the sources' chunks then compete with the
    pages' for the top results while lacking the pages' section anchors. The
    rendered page is kept; a text file with no HTML counterpart is read.
    """
    html = {path.with_suffix("") for path in found if FOLDER_KINDS[path.suffix.lower()] == "html"}
    if not html:
        return found
    kept: list[Path] = []
    skipped: list[Path] = []
    for path in found:
        page = _page_of_source(folder, path)
        (skipped if page is not None and page in html else kept).append(path)
    if skipped:
        logger.info(
            "skipped %d source files of HTML pages in %s (e.g. %s): the pages are read instead",
            len(skipped),
            folder,
            skipped[0].relative_to(folder).as_posix(),
        )
    return kept


def _page_of_source(folder: Path, path: Path) -> Path | None:
    """The HTML page (without suffix) ``path`` would be the source of; None for a page."""
    if FOLDER_KINDS[path.suffix.lower()] == "html":
        return None
    name = path.name
    suffix = next((s for s in _SOURCE_SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None:
        return None
    stem = name[: -len(suffix)]
    parts = path.relative_to(folder).parent.parts
    if "_sources" in parts:  # Sphinx: <root>/_sources/<dir>/<page>.rst.txt -> <root>/<dir>/<page>
        at = len(parts) - 1 - parts[::-1].index("_sources")
        return folder.joinpath(*parts[:at], *parts[at + 1 :], stem)
    return path.with_name(stem)


def _read_files(
    root: Path, files: list[Path], settings: IngestSettings, known: Mapping[str, Validators]
) -> Iterator[SourceItem]:
    for path in files:
        yield _read_file(root, path, settings, known)


def _read_file(
    root: Path, path: Path, settings: IngestSettings, known: Mapping[str, Validators]
) -> SourceItem:
    kind = FOLDER_KINDS[path.suffix.lower()]
    url = folder_file_url(root, path, settings.base_url, kind)
    try:
        stat = path.stat()
        etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        last_modified = formatdate(stat.st_mtime, usegmt=True)
        previous = known.get(url)
        if previous is not None and previous.etag == etag:
            return NotModified(url=url)
        if stat.st_size > settings.max_page_bytes:
            return PageProblem(url, too_large_reason(settings.max_page_bytes))
        raw = path.read_bytes()
    except OSError as exc:
        return PageProblem(url, f"could not be read: {exc.strerror or exc}")
    content = decode_bytes(raw, sniff_html=kind == "html")
    binary = binary_reason(raw, content)
    if binary is not None:
        return PageProblem(url, f"binary file ({binary}); skipped")
    return Document(
        url=url,
        content=content,
        kind=kind,
        fetched_at=time.time(),
        etag=etag,
        last_modified=last_modified,
    )


def folder_file_url(root: Path, path: Path, base_url: str | None, kind: ContentKind) -> str:
    """The URL a folder file is indexed under (see the module docstring)."""
    if not base_url:
        return path.as_uri()
    relative = quote(path.relative_to(root).as_posix(), safe="/")
    url = base_url.rstrip("/") + "/" + relative
    return page_key(url) if kind == "html" else url
