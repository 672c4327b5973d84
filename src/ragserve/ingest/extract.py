"""Main-content extraction: a page's reading text, split into anchored sections.

Documentation pages are mostly chrome (navigation, tables of contents, footers)
around a small article. Embedding the chrome makes every page look alike, and
citing a whole page when one section answers wastes the reader's time. So this
module keeps only the article, splits it at the headings that carry an ``id``
(the targets of the site's own permalinks) and returns one ``Section`` per
heading, with the heading path and the text under it.

It is a pure function of the ``Document`` (no I/O, no state), so it runs
unchanged inside Ray Data tasks. HTML is parsed with selectolax (lexbor), which
never raises on malformed markup; markdown and plain text are handled in
``ragserve.ingest.markdown``.

Built against real output of Sphinx (alabaster, furo, Read the Docs,
pydata/book themes), MkDocs (default, Material) and Docusaurus; see
``tests/fixtures/sites``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from ragserve.documents import Document, Section
from ragserve.ingest.markdown import markdown_sections, text_sections

__all__ = ["extract_sections", "extract_title"]

_HEADING_LEVELS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

#: Elements that never hold reading text.
_SKIP_TAGS = frozenset(
    {
        "script", "style", "noscript", "svg", "math", "form", "nav", "aside",
        "footer", "button", "template", "iframe", "select", "input", "textarea",
        "dialog", "search", "head", "link", "meta", "object", "canvas", "video",
        "audio", "map", "symbol", "img", "picture",
    }
)  # fmt: skip

#: Elements whose start and end break a paragraph.
_BLOCK_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "blockquote", "figure",
        "figcaption", "details", "summary", "address", "center", "hr", "body",
        "caption", "fieldset", "legend", "hgroup", "dl", "dt", "dd", "table", "tr",
        "td", "th", "tbody", "thead",
    }
)  # fmt: skip

#: A class or id naming site chrome rather than content. Matched against each
#: class token as a whole "word" between ``-``/``_`` boundaries, so ``toc`` hits
#: ``theme-doc-toc-desktop`` but not ``toctree-wrapper``.
_CHROME = re.compile(
    r"(?:^|[-_])(?:sidebar|sidenav|toc|breadcrumbs?|navbar|nav|menu|footer|"
    r"header-article|edit-this-page|editthispage|prev-next|prevnext|pagination|"
    r"related|cookies?|consent|announcement|skip-link|skiplink|headerlink|hash-link|"
    r"copybtn|copy-button|clipboard|linenos|lineno|linenodiv|searchbox|search|"
    r"noprint|d-print-none|hidden-print|onlyprint|sr-only|visually-hidden)(?:$|[-_])",
    re.IGNORECASE,
)

#: Containers that themes put the article in, most specific first; used before
#: the generic ``[role=main]`` / ``<main>`` / ``<article>`` fallbacks.
_THEME_CONTAINERS = (
    ".theme-doc-markdown",  # Docusaurus
    "article.md-content__inner",  # MkDocs Material
    "[itemprop=articleBody]",  # Sphinx Read the Docs theme
    "article.bd-article",  # pydata-sphinx-theme >= 0.10
)

#: Link texts that are permalink symbols, not words ("¶", "#", "🔗").
_PERMALINK_TEXTS = frozenset({"", "¶", "#", "§", "🔗", "\u200b", "∞"})

#: Separators of "Page — Site 1.0" style <title> suffixes.
_TITLE_SUFFIX = re.compile(r"\s+(?:—|–|\||·|::|-)\s+")

_SPACES = re.compile(r"\s+")
#: Invisible characters and C0 controls other than tab and newline.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_BREAK = "\ue000"  # a private-use character stands for <br> while spaces collapse


def extract_sections(document: Document) -> list[Section]:
    """Split a document's main content into sections, in page order.

    Returns ``[]`` when the page has no text content (the pipeline reports it);
    never raises on malformed HTML.
    """
    if document.kind == "markdown":
        return markdown_sections(document)
    if document.kind == "text":
        return text_sections(document)
    tree = _parse(document.content)
    root = _main_root(tree)
    if root is None:
        return []
    walker = _Walker()
    walker.walk(root)
    raw_sections = walker.finish()
    if not raw_sections:
        return []
    title = walker.first_h1 or _clean_title(_title_tag(tree)) or _title_from_url(document.url)
    return [
        Section(url=document.url, title=title, anchor=anchor, heading_path=path, text=text)
        for anchor, path, text in raw_sections
    ]


def extract_title(document: Document) -> str:
    """The page's title: its first ``<h1>`` in the main content, else ``<title>``
    without a site suffix (``"Autoscaling — Ray 3.0.0"`` → ``"Autoscaling"``),
    else the last segment of the URL. Every section carries the same title."""
    sections = extract_sections(document)
    if sections:
        return sections[0].title
    if document.kind != "html":
        return _title_from_url(document.url)
    return _clean_title(_title_tag(_parse(document.content))) or _title_from_url(document.url)


def _parse(html: str) -> LexborHTMLParser:
    # lexbor recovers from any markup; selectolax drops lone surrogates
    # (bytes decoded with surrogateescape) on the way in.
    return LexborHTMLParser(html)


def _main_root(tree: LexborHTMLParser) -> LexborNode | None:
    """The element holding the article: a known theme container, else
    ``[role=main]`` / ``<main>`` (narrowed to its one ``<article>`` if it has
    exactly one), else a lone ``<article>``, else ``<body>``."""
    candidates: list[LexborNode] = []
    for selector in _THEME_CONTAINERS:
        node = tree.css_first(selector)
        if node is not None:
            candidates.append(node)
    for selector in ("[role=main]", "main"):
        node = tree.css_first(selector)
        if node is not None:
            articles = node.css("article")
            candidates.append(articles[0] if len(articles) == 1 else node)
    articles = tree.css("article")
    if len(articles) == 1:
        candidates.append(articles[0])
    if tree.body is not None:
        candidates.append(tree.body)
    for node in candidates:
        if node.text(deep=True).strip():
            return node
    return None


def _title_tag(tree: LexborHTMLParser) -> str:
    node = tree.css_first("title")
    return node.text(deep=True) if node is not None else ""


def _clean_title(title: str) -> str:
    """``"Set Up Autoscaling — Ray 3.0.0"`` → ``"Set Up Autoscaling"``."""
    title = _normalise(title)
    head = _TITLE_SUFFIX.split(title, maxsplit=1)[0].strip()
    return head or title


def _title_from_url(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    name = path.rsplit("/", 1)[-1] or urlsplit(url).netloc
    return name.rsplit(".", 1)[0] if "." in name else name


def _normalise(text: str) -> str:
    """Collapse whitespace runs to one space, keeping ``<br>`` breaks."""
    text = _INVISIBLE.sub("", text)
    lines = _SPACES.sub(" ", text).split(_LINE_BREAK)
    return "\n".join(line.strip() for line in lines if line.strip())


def _is_chrome(node: LexborNode, attributes: dict[str, Any]) -> bool:
    """Whether a non-root element is site chrome to drop with its subtree."""
    tag = node.tag
    if tag in _SKIP_TAGS:
        return True
    if tag == "a":
        # Links are judged by what they say, not their class: Sphinx wraps
        # heading text in <a class="toc-backref">.
        return _is_permalink(node, attributes)
    # Note: ``hidden`` is not chrome: inactive tab panels (sphinx-tabs,
    # Docusaurus) are hidden until clicked and hold real content.
    if tag == "header" and (node.css_first("nav") is not None or not _has_heading(node)):
        return True
    names = attributes.get("class") or ""
    if tag != "section" and "section" not in names:
        # Sphinx derives section ids from headings ("search", "navigation"):
        # those name content, so only other elements' ids are judged.
        names = f"{names} {attributes.get('id') or ''}"
    if not any(_CHROME.search(token) for token in names.split()):
        return False
    # A wrapper such as <div class="page-with-sidebar"> may hold the article.
    return node.css_first("main, article, [role=main], h1") is None


def _has_heading(node: LexborNode) -> bool:
    return node.css_first("h1, h2, h3, h4, h5, h6") is not None


def _is_permalink(node: LexborNode, attributes: dict[str, Any]) -> bool:
    """``<a href="#id">¶</a>``: a heading's permalink symbol, not text."""
    link_class = attributes.get("class") or ""
    if "headerlink" in link_class or "hash-link" in link_class:
        return True
    href = attributes.get("href") or ""
    return "#" in href and _INVISIBLE.sub("", node.text(deep=True)).strip() in _PERMALINK_TEXTS


@dataclass
class _Block:
    text: str
    tight: bool  # joined to the previous block by "\n" instead of "\n\n"


@dataclass
class _OpenSection:
    anchor: str
    path: tuple[str, ...]
    blocks: list[_Block] = field(default_factory=list)


class _Walker:
    """One depth-first pass over the main root, emitting blocks into sections.

    Inline text accumulates in ``_inline`` and becomes a block whenever a block
    element starts or ends; headings close the open section and start a new one.
    """

    def __init__(self) -> None:
        self.first_h1 = ""
        self._sections: list[_OpenSection] = [_OpenSection(anchor="", path=())]
        self._stack: list[tuple[int, str, str]] = []  # (level, text, anchor)
        self._inline: list[str] = []
        self._list_depth = 0
        self._list_start = False
        self._item_start = False

    def finish(self) -> list[tuple[str, tuple[str, ...], str]]:
        self._flush()
        result = []
        for section in self._sections:
            text = _join_blocks(section.blocks)
            if text:
                result.append((section.anchor, section.path, text))
        return result

    def walk(self, node: LexborNode) -> None:
        child = node.child
        while child is not None:
            self._visit(child)
            child = child.next

    def _visit(self, node: LexborNode) -> None:
        tag = node.tag
        if tag == "-text":
            self._inline.append(node.text_content or "")
            return
        if not _is_element(tag):
            return
        attributes = node.attributes
        if _is_chrome(node, attributes):
            return
        if tag == "br":
            self._inline.append(_LINE_BREAK)
        elif tag in _HEADING_LEVELS:
            self._heading(node, _HEADING_LEVELS[tag], attributes)
        elif tag == "pre":
            self._flush()
            self._add_block(_pre_text(node), tight=False)
        elif tag == "table" and node.css_first("pre") is None:
            self._table(node)
        elif tag in ("ul", "ol"):
            self._list(node)
        elif tag == "li":
            self._flush()
            self._item_start = True
            self.walk(node)
            self._flush()
        elif tag in _BLOCK_TAGS:
            self._flush()
            self.walk(node)
            self._flush()
        else:
            self.walk(node)

    def _heading(self, node: LexborNode, level: int, attributes: dict[str, Any]) -> None:
        text = _flat_text(node)
        if not text:
            return
        self._flush()
        if level == 1 and not self.first_h1:
            self.first_h1 = text
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        anchor = _heading_anchor(node, attributes)
        if not anchor:
            # An id-less heading links to the nearest anchored heading above it.
            anchor = next((a for _, _, a in reversed(self._stack) if a), "")
        self._stack.append((level, text, anchor))
        path = tuple(heading for _, heading, _ in self._stack)
        self._sections.append(_OpenSection(anchor=anchor, path=path))

    def _list(self, node: LexborNode) -> None:
        self._flush()
        self._list_depth += 1
        self._list_start = True
        self.walk(node)
        self._flush()
        self._list_depth -= 1
        self._list_start = False

    def _table(self, node: LexborNode) -> None:
        self._flush()
        first = True
        for row in node.css("tr"):
            cells = [_flat_text(cell) for cell in row.css("th, td")]
            if any(cells):
                self._add_block(" | ".join(cells), tight=not first)
                first = False

    def _flush(self) -> None:
        if not self._inline:
            return
        text = _normalise("".join(self._inline))
        self._inline = []
        if not text:
            return
        in_list = self._list_depth > 0
        if in_list and self._item_start:
            text = "  " * (self._list_depth - 1) + "- " + text
        self._add_block(text, tight=in_list and not self._list_start)
        self._list_start = False
        self._item_start = False

    def _add_block(self, text: str, *, tight: bool) -> None:
        if text.strip():
            self._sections[-1].blocks.append(_Block(text=text, tight=tight))


def _heading_anchor(node: LexborNode, attributes: dict[str, Any]) -> str:
    """The fragment that deep-links to a heading.

    MkDocs and Docusaurus put the id on the heading; Sphinx puts it on the
    wrapping ``<section>`` (or ``<div class="section">``) and repeats it in the
    heading's permalink (``a.headerlink``).
    """
    anchor = attributes.get("id") or ""
    if anchor:
        return str(anchor)
    for link in node.css("a"):
        href = link.attributes.get("href") or ""
        link_class = link.attributes.get("class") or ""
        if "#" in href and ("headerlink" in link_class or "hash-link" in link_class):
            return href.split("#", 1)[1]
    parent = node.parent
    if parent is not None and parent.tag in ("section", "div"):
        parent_id = parent.attributes.get("id")
        if parent_id and (
            parent.tag == "section" or "section" in (parent.attributes.get("class") or "")
        ):
            return str(parent_id)
    return ""


def _flat_text(node: LexborNode) -> str:
    """A heading's or table cell's text on one line, without chrome or
    permalink symbols."""
    parts: list[str] = []
    _collect_flat(node, parts)
    return _normalise("".join(parts)).replace("\n", " ")


def _collect_flat(node: LexborNode, parts: list[str]) -> None:
    child = node.child
    while child is not None:
        tag = child.tag
        if tag == "-text":
            parts.append(child.text_content or "")
        elif _is_element(tag) and not _is_chrome(child, child.attributes):
            gap = " " if tag in _BLOCK_TAGS or tag in ("li", "br", "pre") else ""
            parts.append(gap)
            _collect_flat(child, parts)
            parts.append(gap)
        child = child.next


def _pre_text(node: LexborNode) -> str:
    """A code block's text, newlines and indentation intact, without line
    numbers or copy buttons."""
    parts: list[str] = []
    _collect_pre(node, parts)
    text = "".join(parts).replace("\r\n", "\n").replace("\xa0", " ")
    lines = [line.rstrip() for line in _INVISIBLE.sub("", text).split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines).rstrip()


def _collect_pre(node: LexborNode, parts: list[str]) -> None:
    child = node.child
    while child is not None:
        tag = child.tag
        if tag == "-text":
            parts.append(child.text_content or "")
        elif tag == "br":
            parts.append("\n")
        elif _is_element(tag) and not _is_chrome(child, child.attributes):
            _collect_pre(child, parts)
            # Docusaurus renders each code line as a <div> ending in <br>.
            if tag == "div" and parts and not parts[-1].endswith("\n"):
                parts.append("\n")
        child = child.next


def _is_element(tag: str | None) -> bool:
    """Not a text, comment or doctype node (lexbor names those "-text" etc.)."""
    return tag is not None and not tag.startswith(("-", "!", "_"))


def _join_blocks(blocks: list[_Block]) -> str:
    pieces: list[str] = []
    for block in blocks:
        if pieces:
            pieces.append("\n" if block.tight else "\n\n")
        pieces.append(block.text)
    return "".join(pieces).strip("\n")
