"""Main-content extraction: a page's reading text, split into anchored sections.

Documentation pages are mostly chrome (navigation, tables of contents, footers)
around a small article. Embedding the chrome makes every page look alike, and
citing a whole page when one section answers wastes the reader's time. So this
module keeps only the article, splits it at the headings that carry an ``id``
(the targets of the site's own permalinks) and returns one ``Section`` per
heading, with the heading path and the text under it.

API reference pages document each object in an element with an id and a
permalink but no heading tag (Sphinx autodoc's ``<dt id="pkg.Class.method">``,
pdoc's ``<section id="Class">``). Each such definition starts a section too, as
a heading one level below the enclosing heading or definition, titled with its
shortened signature; when the definition's element ends, the text that follows
goes back to the enclosing section.

It is a pure function of the ``Document`` (no I/O, no state), so it runs
unchanged inside Ray Data tasks. HTML is parsed with selectolax (lexbor), which
never raises on malformed markup; markdown and plain text are handled in
``ragserve.ingest.markdown``.

Built against real output of Sphinx (alabaster, furo, Read the Docs,
pydata, book themes), MkDocs (default, Material, readthedocs), Zensical,
Docusaurus, VitePress, Astro Starlight and pdoc; see ``tests/fixtures/sites``. What
counts as chrome, and how headings find their anchors, is in
``ragserve.ingest.html_parts``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from ragserve.documents import Document, Section
from ragserve.ingest.html_depth import flatten_deep_nesting
from ragserve.ingest.html_parts import (
    BLOCK_TAGS,
    HEADING_LEVELS,
    INVISIBLE,
    LINE_BREAK,
    definition_heading,
    flat_text,
    heading_anchor,
    is_chrome,
    is_element,
    normalise,
    pre_text,
    toggles_source,
)
from ragserve.ingest.markdown import markdown_sections, text_sections

__all__ = ["empty_page_reason", "extract_sections", "extract_title"]

#: Containers that themes put the article in, most specific first; used before
#: the generic ``[role=main]`` / ``<main>`` / ``<article>`` fallbacks.
_THEME_CONTAINERS = (
    ".theme-doc-markdown",  # Docusaurus
    "article.md-content__inner",  # MkDocs Material
    "[itemprop=articleBody]",  # Sphinx Read the Docs theme
    "article.bd-article",  # pydata-sphinx-theme >= 0.10
)

#: Separators of "Page — Site 1.0" style <title> suffixes.
_TITLE_SUFFIX = re.compile(r"\s+(?:—|–|\||·|::|-)\s+")


def extract_sections(document: Document) -> list[Section]:
    """Split a document's main content into sections, in page order.

    Returns ``[]`` when the page has no text content (the pipeline reports it);
    never raises on malformed HTML.
    """
    if document.kind == "markdown":
        cleaned = replace(document, content=strip_markdown_comments(document.content))
        return _unhidden(markdown_sections(cleaned))
    if document.kind == "text":
        return _unhidden(text_sections(document))
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


#: An HTML comment in markdown; an unclosed one runs to the end, as browsers read it.
_MD_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
#: A fenced code block (``` or ~~~), whose text is shown verbatim and kept verbatim.
_MD_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^(?P=fence)[ \t]*$|\Z)", re.M | re.S)


def strip_markdown_comments(markdown: str) -> str:
    """Markdown without its HTML comments, outside fenced code blocks.

    A rendered page never shows a comment, so text in one is read by the model
    and by nobody else: the classic place to hide instructions for it. A comment
    shown *as code* (inside a fence) is content and stays.
    """
    parts: list[str] = []
    position = 0
    for fence in _MD_FENCE.finditer(markdown):
        parts.append(_MD_COMMENT.sub("", markdown[position : fence.start()]))
        parts.append(fence.group(0))
        position = fence.end()
    parts.append(_MD_COMMENT.sub("", markdown[position:]))
    return "".join(parts)


def _unhidden(sections: list[Section]) -> list[Section]:
    """Sections without invisible characters (HTML text is cleaned as it is read)."""
    cleaned = []
    for section in sections:
        text = INVISIBLE.sub("", section.text)
        if text.strip():
            cleaned.append(replace(section, text=text, title=INVISIBLE.sub("", section.title)))
    return cleaned


#: Below this much visible body text, a page that runs scripts is taken for an
#: app shell (Docsify, a single-page app) rather than a page without content.
_SHELL_TEXT_CHARS = 40
_NOT_RENDERED = "script, style, noscript, template"


def empty_page_reason(document: Document) -> str:
    """Why ``extract_sections`` found nothing, worded for the ingest report.

    The common surprise on an unknown site is a page that the browser renders
    from JavaScript (Docsify, single-page apps): the HTML we fetch is an empty
    shell, and the fix is to ingest the site's sources or a pre-rendered build.
    """
    generic = "no text content found in the page's main content"
    if document.kind != "html":
        return generic
    tree = _parse(document.content)
    body = tree.body
    if body is None or tree.css_first("script") is None:
        return generic
    for node in body.css(_NOT_RENDERED):
        node.decompose()
    if len(normalise(body.text(separator=" "))) >= _SHELL_TEXT_CHARS:
        return generic
    return (
        "no text in the HTML the server sends: the page looks rendered in the browser by "
        "JavaScript (an app shell such as Docsify); ingest the site's markdown sources as a "
        "folder, or a pre-rendered (static) build of it"
    )


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
    # (bytes decoded with surrogateescape) on the way in. Pathological nesting
    # is flattened first: it is quadratic to parse and too deep to walk.
    return LexborHTMLParser(flatten_deep_nesting(html))


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
    title = normalise(title)
    head = _TITLE_SUFFIX.split(title, maxsplit=1)[0].strip()
    return head or title


def _title_from_url(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    name = path.rsplit("/", 1)[-1] or urlsplit(url).netloc
    return name.rsplit(".", 1)[0] if "." in name else name


@dataclass
class _Block:
    text: str
    tight: bool  # joined to the previous block by "\n" instead of "\n\n"


@dataclass
class _Definition:
    """An open API definition: ``entry`` is its place in the heading stack
    until the walk leaves ``scope``, the ``mem_id`` of the ``<dl>`` around a
    ``<dt>``, else of the element itself. (Node identity: ``LexborNode ==``
    compares serialised HTML.)"""

    scope: int
    depth: int
    entry: tuple[int, str, str]
    #: The definition took over the empty section of the heading right above
    #: it (``entry`` is that heading's): it opened no section of its own.
    adopted: bool = False


@dataclass
class _OpenSection:
    anchor: str
    path: tuple[str, ...]
    blocks: list[_Block] = field(default_factory=list)
    from_heading: bool = False


class _Walker:
    """One depth-first pass over the main root, emitting blocks into sections.

    Inline text accumulates in ``_inline`` and becomes a block whenever a block
    element starts or ends; headings and definitions close the open section and
    start a new one.
    """

    def __init__(self) -> None:
        self.first_h1 = ""
        self._sections: list[_OpenSection] = [_OpenSection(anchor="", path=())]
        self._stack: list[tuple[int, str, str]] = []  # (level, text, anchor)
        self._definitions: list[_Definition] = []
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
        hidden_source = False
        while child is not None:
            if hidden_source and is_element(child.tag):
                if child.tag == "pre" or child.css_first("pre") is not None:
                    # The code block a "View Source" checkbox shows (pdoc).
                    hidden_source = False
                    child = child.next
                    continue
            elif child.tag == "input" and toggles_source(child):
                hidden_source = True
            self._visit(child)
            child = child.next

    def _visit(self, node: LexborNode) -> None:
        tag = node.tag
        if tag == "-text":
            self._inline.append(node.text_content or "")
            return
        if not is_element(tag):
            return
        attributes = node.attributes
        if is_chrome(node, attributes):
            return
        heading = None if tag in HEADING_LEVELS else definition_heading(node, attributes)
        if heading is not None:
            self._open_definition(node, heading, str(attributes.get("id")))
        if tag == "br":
            self._inline.append(LINE_BREAK)
        elif tag in HEADING_LEVELS:
            self._heading(node, HEADING_LEVELS[tag], attributes)
        elif tag == "pre":
            self._flush()
            self._add_block(pre_text(node), tight=False)
        elif tag == "table" and node.css_first("pre") is None:
            self._table(node)
        elif tag in ("ul", "ol"):
            self._list(node)
        elif tag == "li":
            self._flush()
            self._item_start = True
            self.walk(node)
            self._flush()
        elif tag in BLOCK_TAGS:
            self._flush()
            self.walk(node)
            self._flush()
        else:
            self.walk(node)
        while self._definitions and self._definitions[-1].scope == node.mem_id:
            self._flush()
            self._close_definition()

    def _open_definition(self, node: LexborNode, text: str, anchor: str) -> None:
        """Start a section for an API definition, one level below the
        definition it is nested in, else below the current heading.

        A definition that opens right under the page's ``<h1>``, before any
        text (an autosummary stub page:
        ``<h1>ray.data.Dataset.map_batches</h1><dl><dt id=…>``), takes over the
        h1's section instead: the page's object keeps the page heading's anchor
        and path rather than leaving an empty section and a path that names the
        object twice. Its members still nest below it, under the h1's name.
        """
        self._flush()
        parent_node = node.parent
        scope = (parent_node if node.tag == "dt" and parent_node is not None else node).mem_id
        # Several <dt> in one <dl> (overloads) are siblings, not nested.
        while self._definitions and self._definitions[-1].scope == scope:
            self._close_definition()
        parent = next((d for d in reversed(self._definitions) if self._is_open(d)), None)
        current = self._sections[-1]
        if (
            parent is None
            and current.from_heading
            and not current.blocks
            and len(self._stack) == 1
            and self._stack[0][0] == 1
        ):
            self._definitions.append(
                _Definition(
                    scope=scope, depth=len(self._stack) - 1, entry=self._stack[-1], adopted=True
                )
            )
            return
        level = parent.entry[0] + 1 if parent else (self._stack[-1][0] + 1 if self._stack else 1)
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        entry = (level, text, anchor)
        self._definitions.append(_Definition(scope=scope, depth=len(self._stack), entry=entry))
        self._stack.append(entry)
        path = tuple(heading for _, heading, _ in self._stack)
        self._sections.append(_OpenSection(anchor=anchor, path=path))

    def _is_open(self, definition: _Definition) -> bool:
        depth = definition.depth
        return len(self._stack) > depth and self._stack[depth] is definition.entry

    def _close_definition(self) -> None:
        """Leave the innermost definition: the text after it belongs to the
        enclosing heading or definition again (unless a heading inside the
        definition already closed it)."""
        definition = self._definitions.pop()
        if not self._is_open(definition):
            return
        del self._stack[definition.depth + definition.adopted :]
        anchor = next((a for _, _, a in reversed(self._stack) if a), "")
        path = tuple(heading for _, heading, _ in self._stack)
        current = self._sections[-1]
        if (current.anchor, current.path) != (anchor, path):
            self._sections.append(_OpenSection(anchor=anchor, path=path))

    def _heading(self, node: LexborNode, level: int, attributes: dict[str, Any]) -> None:
        text = flat_text(node)
        if not text:
            return
        self._flush()
        if level == 1 and not self.first_h1:
            self.first_h1 = text
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        anchor = heading_anchor(node, attributes)
        if not anchor:
            # An id-less heading links to the nearest anchored heading above it.
            anchor = next((a for _, _, a in reversed(self._stack) if a), "")
        self._stack.append((level, text, anchor))
        path = tuple(heading for _, heading, _ in self._stack)
        self._sections.append(_OpenSection(anchor=anchor, path=path, from_heading=True))

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
            cells = [flat_text(cell) for cell in row.css("th, td")]
            if any(cells):
                self._add_block(" | ".join(cells), tight=not first)
                first = False

    def _flush(self) -> None:
        if not self._inline:
            return
        text = normalise("".join(self._inline))
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


def _join_blocks(blocks: list[_Block]) -> str:
    pieces: list[str] = []
    for block in blocks:
        if pieces:
            pieces.append("\n" if block.tight else "\n\n")
        pieces.append(block.text)
    return "".join(pieces).strip("\n")
