"""Sections of markdown and plain-text documents (a folder of ``.md``/``.rst``/``.txt``).

Markdown splits at ATX (``## Title``) and setext (``Title\\n-----``) headings,
outside fenced code, with anchors slugified as GitHub does (MkDocs and
Docusaurus agree for ordinary headings) or taken from an explicit
``{#custom-id}``. Plain text splits at reStructuredText-style underlined titles
when it has them, with docutils-style ids; otherwise it is one section.

Section text is the source as written (markdown syntax kept: it reads well and
code fences stay intact), with YAML front matter removed.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from ragserve.documents import Document, Section

__all__ = ["github_slug", "markdown_sections", "text_sections"]

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*\n", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CUSTOM_ID = re.compile(r"[ \t]*\{#([\w.:-]+)[^}]*\}[ \t]*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
#: Code and emphasis markers and inline HTML; underscores only at word edges
#: (``_word_``), not inside identifiers (``num_replicas``).
_INLINE_MARKS = re.compile(r"[`*]+|(?<!\w)_+|_+(?!\w)|<[^>]+>")
_NOT_SLUG = re.compile(r"[^\w\- ]", re.UNICODE)
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}[ \t]*$")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")

Heading = tuple[int, str, str]  # (level, text, anchor)


def markdown_sections(document: Document) -> list[Section]:
    """Split a markdown document at its headings."""
    body, front_title = _strip_front_matter(document.content)
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    headings = _markdown_headings(lines)
    title = front_title or next((text for level, text, _ in headings.values() if level == 1), "")
    return _build(document, lines, headings, title)


def text_sections(document: Document) -> list[Section]:
    """Split plain text at reStructuredText-style titles, else keep it whole."""
    lines = document.content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    headings = _rst_headings(lines)
    title = next(iter(headings.values()))[1] if headings else ""
    return _build(document, lines, headings, title)


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped,
    spaces to hyphens."""
    plain = _INLINE_MARKS.sub("", _LINK.sub(r"\1", text)).strip().lower()
    return _NOT_SLUG.sub("", plain).replace(" ", "-")


def _strip_front_matter(content: str) -> tuple[str, str]:
    match = _FRONT_MATTER.match(content)
    if match is None:
        return content, ""
    title = _FRONT_TITLE.search(match.group(1))
    return content[match.end() :], title.group(1).strip("'\"") if title else ""


def _markdown_headings(lines: list[str]) -> dict[int, Heading]:
    """Headings by the index of their first line; a setext heading also owns
    its underline (the index after it is skipped when building)."""
    headings: dict[int, Heading] = {}
    seen: dict[str, int] = {}
    fence = ""
    for index, line in enumerate(lines):
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if not fence:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = ""
            continue
        if fence:
            continue
        heading = _atx_or_setext(lines, index)
        if heading is not None:
            level, raw = heading
            headings[index] = (level, *_heading_text_and_anchor(raw, seen))
    return headings


def _atx_or_setext(lines: list[str], index: int) -> tuple[int, str] | None:
    atx = _ATX.match(lines[index])
    if atx:
        return len(atx.group(1)), atx.group(2)
    if (
        index + 1 < len(lines)
        and lines[index].strip()
        and not lines[index].startswith((" " * 4, "\t", "-", "*", "+", ">", "|"))
    ):
        underline = _SETEXT.match(lines[index + 1])
        previous_blank = index == 0 or not lines[index - 1].strip()
        if underline and previous_blank:
            return (1 if underline.group(1)[0] == "=" else 2), lines[index].strip()
    return None


def _heading_text_and_anchor(raw: str, seen: dict[str, int]) -> tuple[str, str]:
    custom = _CUSTOM_ID.search(raw)
    if custom:
        raw = raw[: custom.start()]
    text = _INLINE_MARKS.sub("", _LINK.sub(r"\1", raw)).strip()
    anchor = custom.group(1) if custom else github_slug(raw)
    if not custom and anchor:
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        if count:
            anchor = f"{anchor}-{count}"
    return text, anchor


def _rst_headings(lines: list[str]) -> dict[int, Heading]:
    """reStructuredText titles: a line underlined (optionally overlined) with
    one punctuation character; levels follow the order styles first appear."""
    headings: dict[int, Heading] = {}
    styles: list[str] = []
    for index in range(len(lines) - 1):
        text, underline = lines[index].strip(), lines[index + 1].rstrip()
        match = _RST_UNDERLINE.match(underline)
        if not text or not match or len(underline) < len(text) or _RST_UNDERLINE.match(text):
            continue
        overlined = index > 0 and lines[index - 1].rstrip() == underline
        style = ("o" if overlined else "u") + match.group(1)
        if style not in styles:
            styles.append(style)
        anchor = _NON_ALNUM.sub("-", _ascii(text).lower()).strip("-")
        headings[index] = (styles.index(style) + 1, text, anchor)
    return headings


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _build(
    document: Document, lines: list[str], headings: dict[int, Heading], title: str
) -> list[Section]:
    """Cut ``lines`` at the heading indexes; title underlines (and rst
    overlines) are markup, not text, so they are dropped."""
    title = title or _title_from_url(document.url)
    sections: list[Section] = []
    stack: list[Heading] = []
    current: list[str] = []
    anchor = ""
    path: tuple[str, ...] = ()

    def close() -> None:
        text = "\n".join(line.rstrip() for line in current).strip("\n")
        if text.strip():
            sections.append(Section(document.url, title, anchor, path, text))

    underlines = {
        index + 1
        for index in headings
        if index + 1 < len(lines) and _is_underline(lines[index + 1])
    }
    overlines = {index - 1 for index in headings if index > 0 and _is_underline(lines[index - 1])}
    for index, line in enumerate(lines):
        heading = headings.get(index)
        if heading is None:
            if index not in underlines and index not in overlines:
                current.append(line)
            continue
        close()
        current = []
        while stack and stack[-1][0] >= heading[0]:
            stack.pop()
        stack.append(heading)
        anchor = heading[2] or next((a for _, _, a in reversed(stack) if a), "")
        path = tuple(text for _, text, _ in stack)
    close()
    return sections


def _is_underline(line: str) -> bool:
    return bool(_SETEXT.match(line) or _RST_UNDERLINE.match(line.rstrip()))


def _title_from_url(url: str) -> str:
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name
