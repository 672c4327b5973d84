"""Reading a local folder of docs."""

from __future__ import annotations

import operator
import os
from pathlib import Path

import pytest

from ragserve.config import IngestSettings
from ragserve.documents import Document
from ragserve.errors import ConfigError, ContentError
from ragserve.ingest.decode import decode_bytes
from ragserve.ingest.items import NotModified, PageProblem, SourceItem, Validators
from ragserve.ingest.sources import iter_source

pytestmark = pytest.mark.integration


def write(folder: Path, relative: str, content: str | bytes) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def read_all(folder: Path, **overrides: object) -> list[SourceItem]:
    return list(iter_source(str(folder), IngestSettings(**overrides)))  # type: ignore[arg-type]


@pytest.fixture
def docs_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    write(folder, "index.html", "<h1>Home</h1>")
    write(folder, "guide/install.md", "# Install\n")
    write(folder, "guide/notes.txt", "plain notes")
    write(folder, "api.rst", "API\n===\n")
    write(folder, "old.htm", "<p>old</p>")
    write(folder, "logo.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    write(folder, ".git/config", "[core]")
    write(folder, ".hidden.md", "# hidden")
    write(folder, "_build/.doctrees/x.html", "<p>hidden dir inside</p>")
    return folder


def test_folder_yields_supported_files_in_sorted_order_with_their_kinds(docs_folder: Path) -> None:
    items = read_all(docs_folder)

    assert all(isinstance(item, Document) for item in items)
    names = [item.url.rsplit("/docs/", 1)[1] for item in items if isinstance(item, Document)]
    assert names == ["api.rst", "guide/install.md", "guide/notes.txt", "index.html", "old.htm"]
    kinds = {item.url.rsplit("/", 1)[1]: item.kind for item in items if isinstance(item, Document)}
    assert kinds == {
        "api.rst": "text",
        "install.md": "markdown",
        "notes.txt": "text",
        "index.html": "html",
        "old.htm": "html",
    }


def test_folder_urls_are_absolute_file_uris_stable_across_reads(docs_folder: Path) -> None:
    first = [item.url for item in read_all(docs_folder)]
    again = [
        item.url for item in iter_source(str(docs_folder / "." / "guide" / ".."), IngestSettings())
    ]

    assert first == again
    assert first[0] == (docs_folder / "api.rst").as_uri()


def test_base_url_names_files_by_the_public_site(docs_folder: Path) -> None:
    urls = [item.url for item in read_all(docs_folder, base_url="https://docs.example.org/v1/")]

    assert "https://docs.example.org/v1/" in urls
    assert "https://docs.example.org/v1/guide/install.md" in urls


def test_binary_and_oversized_files_are_problems_not_crashes(tmp_path: Path) -> None:
    write(tmp_path, "good.md", "# fine")
    write(tmp_path, "binary.html", b"<html>\x00\x01\x02 not text")
    write(tmp_path, "huge.txt", "x" * 5000)

    items = read_all(tmp_path, max_page_bytes=2048)

    reasons = {
        item.url.rsplit("/", 1)[1]: item.reason for item in items if isinstance(item, PageProblem)
    }
    assert reasons == {
        "binary.html": "binary file (it contains NUL bytes); skipped",
        "huge.txt": "page is larger than 2048 bytes; raise --max-page-bytes to ingest it",
    }
    assert [item.url.rsplit("/", 1)[1] for item in items if isinstance(item, Document)] == [
        "good.md"
    ]


def test_files_in_legacy_encodings_are_decoded(tmp_path: Path) -> None:
    write(tmp_path, "cp1252.txt", "naïve café “quotes”".encode("cp1252"))
    write(tmp_path, "meta.html", '<meta charset="iso-8859-1"><p>señor</p>'.encode("latin-1"))
    write(tmp_path, "bom.md", "\ufeff# Título".encode())

    contents = {
        item.url.rsplit("/", 1)[1]: item.content
        for item in read_all(tmp_path)
        if isinstance(item, Document)
    }

    assert contents["cp1252.txt"] == "naïve café “quotes”"
    assert "señor" in contents["meta.html"]
    assert contents["bom.md"] == "# Título"


def test_undecodable_bytes_never_raise() -> None:
    assert (
        decode_bytes(b"ok \x81\x8d\x8f\x90\x9d", declared="utf-8")
        == "ok \ufffd\ufffd\ufffd\ufffd\ufffd"
    )
    assert decode_bytes(b"ok \x81", declared="no-such-charset").startswith("ok ")
    assert decode_bytes(b"\x81\x8d") == "\x81\x8d"


def test_unchanged_files_are_not_modified_on_reingest(docs_folder: Path) -> None:
    first = {item.url: item for item in read_all(docs_folder) if isinstance(item, Document)}
    known = {url: Validators(doc.etag, doc.last_modified) for url, doc in first.items()}
    changed = docs_folder / "guide" / "notes.txt"
    changed.write_text("new notes", encoding="utf-8")
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))

    second = list(iter_source(str(docs_folder), IngestSettings(), known))

    assert [item.url for item in second if isinstance(item, Document)] == [changed.as_uri()]
    assert sum(isinstance(item, NotModified) for item in second) == 4


def test_empty_folder_says_which_files_are_read(tmp_path: Path) -> None:
    with pytest.raises(ContentError, match=r"it is empty.*\.html, \.htm, \.md"):
        read_all(tmp_path)


def test_folder_without_supported_files_says_which_files_are_read(tmp_path: Path) -> None:
    write(tmp_path, "image.png", b"\x89PNG")
    write(tmp_path, "data.json", "{}")

    with pytest.raises(ContentError, match=r"2 other files.*\.markdown, \.txt, \.rst"):
        read_all(tmp_path)


def test_missing_folder_is_a_config_error_saying_what_a_source_can_be(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither an http"):
        read_all(tmp_path / "nope")


def test_a_folder_source_knows_how_many_files_it_yields_and_a_crawl_does_not(
    tmp_path: Path,
) -> None:
    write(tmp_path, "a.html", "<p>a</p>")
    write(tmp_path, "guide/b.md", "# b")
    write(tmp_path, "logo.png", b"\x89PNG")
    write(tmp_path, ".hidden/c.html", "<p>c</p>")
    folder = iter_source(str(tmp_path), IngestSettings())
    assert operator.length_hint(folder) == len(list(folder)) == 2
    crawl = iter_source("http://127.0.0.1:1/docs/", IngestSettings(allow_private=True))
    assert operator.length_hint(crawl) == 0  # nothing fetched: the pages are not known yet


def test_the_sources_generators_copy_beside_html_pages_are_not_indexed_twice(
    tmp_path: Path,
) -> None:
    # Sphinx: _sources/<page>.rst.txt per page; AsciiDoc: <page>.txt beside <page>.html.
    write(tmp_path, "index.html", "<h1>Home</h1>")
    write(tmp_path, "library/os.html", "<h1>os</h1>")
    write(tmp_path, "_sources/index.rst.txt", "Home\n====")
    write(tmp_path, "_sources/library/os.rst.txt", "os\n==")
    write(tmp_path, "git-commit.html", "<h1>git-commit</h1>")
    write(tmp_path, "git-commit.txt", "git-commit(1)\n=============")
    # Text with no rendered page is a document of its own.
    write(tmp_path, "_sources/orphan.rst.txt", "Orphan\n======")
    write(tmp_path, "NOTES.md", "# Notes")
    urls = sorted(item.url.rsplit(str(tmp_path), 1)[1] for item in read_all(tmp_path))
    assert urls == [
        "/NOTES.md",
        "/_sources/orphan.rst.txt",
        "/git-commit.html",
        "/index.html",
        "/library/os.html",
    ]
    assert operator.length_hint(iter_source(str(tmp_path), IngestSettings())) == 5


def test_a_folder_of_text_only_keeps_every_file(tmp_path: Path) -> None:
    write(tmp_path, "_sources/a.rst.txt", "A\n=")
    write(tmp_path, "b.txt", "b")
    assert len(read_all(tmp_path)) == 2
