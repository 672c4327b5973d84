"""The element-level judgements behind ``ragserve.ingest.extract``.

What is site chrome (navigation, permalink symbols, line-number gutters, …),
which fragment deep-links to a heading, which element is an API definition that
acts as a heading, and how a heading, table cell or code block reads as text.
Each is a pure function of one element and its subtree, so it can be checked on
its own against the generator fixtures in ``tests/fixtures/sites``.
"""

from __future__ import annotations

import re
from typing import Any

from selectolax.lexbor import LexborNode

__all__ = [
    "BLOCK_TAGS",
    "HEADING_LEVELS",
    "LINE_BREAK",
    "definition_heading",
    "flat_text",
    "heading_anchor",
    "is_chrome",
    "is_element",
    "normalise",
    "pre_text",
    "toggles_source",
]

HEADING_LEVELS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

#: Elements that never hold reading text. ``<aside>`` is not here: Starlight
#: admonitions and docutils footnotes are asides; sidebars are caught by name,
#: by their ``<nav>`` or by being mostly links.
_SKIP_TAGS = frozenset(
    {
        "script", "style", "noscript", "svg", "math", "form", "nav",
        "footer", "button", "template", "iframe", "select", "input", "textarea",
        "dialog", "search", "head", "link", "meta", "object", "canvas", "video",
        "audio", "map", "symbol", "img", "picture",
    }
)  # fmt: skip

#: Elements whose start and end break a paragraph.
BLOCK_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "blockquote", "figure",
        "figcaption", "details", "summary", "address", "center", "hr", "body",
        "caption", "fieldset", "legend", "hgroup", "dl", "dt", "dd", "table", "tr",
        "td", "th", "tbody", "thead", "aside",
    }
)  # fmt: skip

#: ARIA landmark roles of chrome (the role equivalents of nav/aside/footer/…).
_CHROME_ROLES = frozenset({"navigation", "search", "contentinfo", "complementary", "dialog"})

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

#: Link texts that are permalink symbols, not words ("¶", "#", "🔗").
_PERMALINK_TEXTS = frozenset({"", "¶", "#", "§", "🔗", "\u200b", "∞"})

#: Labels of a checkbox that shows a hidden copy of the source code (pdoc's
#: "View Source"). Not plain "Source": that can be a tab's title.
_SOURCE_TOGGLE_TEXTS = frozenset(
    {"view source", "show source", "hide source", "view source code", "show source code"}
)

#: A link whose text is bracketed (Sphinx viewcode's "[source]", "[docs]") is a
#: control, not part of an API signature.
_BRACKETED = re.compile(r"^\[[^\]]*\]$")

#: Definition headings are cut to about this many characters: the qualified
#: name and the start of the parameters (the full signature stays in the text).
DEFINITION_HEADING_LENGTH = 120

#: An aside (or ``role=complementary``) whose text is at least this share link
#: text is a link list (related pages, a sidebar), not a note.
_LINK_HEAVY = 0.5

_SPACES = re.compile(r"\s+")
#: Characters a reader never sees, removed from every extracted text: C0 controls
#: other than tab and newline; zero-width spaces and joiners, invisible operators
#: and the soft hyphen; bidirectional embeddings, overrides, isolates and marks
#: (they reorder what a reader sees versus what a model reads); and Unicode tag
#: characters (U+E0000-E007F), which spell ASCII invisibly ("ASCII smuggling").
#: Each is a way to hide instructions for a model in a page that looks clean.
INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
)
LINE_BREAK = "\ue000"  # a private-use character stands for <br> while spaces collapse


def normalise(text: str) -> str:
    """Collapse whitespace runs to one space, keeping ``<br>`` breaks."""
    text = INVISIBLE.sub("", text)
    lines = _SPACES.sub(" ", text).split(LINE_BREAK)
    return "\n".join(line.strip() for line in lines if line.strip())


def is_element(tag: str | None) -> bool:
    """Not a text, comment or doctype node (lexbor names those "-text" etc.)."""
    return tag is not None and not tag.startswith(("-", "!", "_"))


def is_chrome(node: LexborNode, attributes: dict[str, Any]) -> bool:
    """Whether a non-root element is site chrome to drop with its subtree."""
    tag = node.tag
    if tag in _SKIP_TAGS:
        return True
    # Hidden from screen readers: decorative icons, line-number gutters
    # (VitePress, Expressive Code), closed modals. Note: ``hidden`` is not
    # chrome: inactive tab panels (sphinx-tabs, Docusaurus) are hidden until
    # clicked and hold real content.
    if attributes.get("aria-hidden") == "true":
        return True
    if tag == "a":
        # Links are judged by what they say, not their class: Sphinx wraps
        # heading text in <a class="toc-backref">.
        return _is_permalink(node, attributes)
    if tag == "label":
        return _is_source_toggle_label(node)
    role = (attributes.get("role") or "").lower()
    if role in _CHROME_ROLES and not _holds_article(node):
        return True
    if (tag == "header" or role == "banner") and (
        node.css_first("nav") is not None or not _has_heading(node)
    ):
        return True
    if (tag == "aside" or role == "complementary") and (
        node.css_first("nav") is not None or _link_heavy(node)
    ):
        return True
    names = attributes.get("class") or ""
    chrome = any(_CHROME.search(token) for token in names.split())
    element_id = str(attributes.get("id") or "")
    if not chrome and element_id and tag != "section" and "section" not in names:
        # Sphinx derives section ids from headings ("search", "navigation")
        # and definition ids from object names ("ray.tune.grid_search"): those
        # name content, so only other elements' ids are judged.
        chrome = any(_CHROME.search(token) for token in element_id.split())
        chrome = chrome and _signature_before_permalink(node, element_id) is None
    if not chrome:
        return False
    # A wrapper such as <div class="page-with-sidebar"> may hold the article.
    return not _holds_article(node)


def _holds_article(node: LexborNode) -> bool:
    return node.css_first("main, article, [role=main], h1") is not None


def _has_heading(node: LexborNode) -> bool:
    return node.css_first("h1, h2, h3, h4, h5, h6") is not None


def _link_heavy(node: LexborNode) -> bool:
    text = len(_SPACES.sub("", node.text(deep=True)))
    if not text:
        return True
    linked = sum(len(_SPACES.sub("", link.text(deep=True))) for link in node.css("a"))
    return linked >= _LINK_HEAVY * text


def _is_permalink(node: LexborNode, attributes: dict[str, Any]) -> bool:
    """``<a href="#id">¶</a>``: a heading's permalink symbol, not text."""
    link_class = attributes.get("class") or ""
    if "headerlink" in link_class or "hash-link" in link_class:
        return True
    href = attributes.get("href") or ""
    return "#" in href and INVISIBLE.sub("", node.text(deep=True)).strip() in _PERMALINK_TEXTS


def _is_source_toggle_label(node: LexborNode) -> bool:
    return normalise(node.text(deep=True)).lower() in _SOURCE_TOGGLE_TEXTS


def toggles_source(node: LexborNode) -> bool:
    """Whether an ``<input>`` is a checkbox labelled "View Source" (pdoc).

    Its next sibling holding a ``<pre>`` is a copy of the object's source that
    CSS shows only while the box is checked (``:checked ~ .pdoc-code``); it
    duplicates the docstrings, so it is chrome. The markup alone cannot say
    what a checkbox hides (sphinx-design tabs use the same input + label
    pattern for real content), so the label's words decide.
    """
    attributes = node.attributes
    box_id = attributes.get("id")
    if (attributes.get("type") or "").lower() != "checkbox" or not box_id or node.parent is None:
        return False
    return any(
        label.attributes.get("for") == box_id and _is_source_toggle_label(label)
        for label in node.parent.css("label")
    )


def definition_heading(node: LexborNode, attributes: dict[str, Any]) -> str | None:
    """The heading text of an API definition, or ``None`` if ``node`` is not one.

    A definition is a non-heading element with an ``id`` and, among its own
    children, a permalink to that id: Sphinx autodoc's
    ``<dt id="pkg.Class.method">signature<a class="headerlink"
    href="#pkg.Class.method">¶</a></dt>``, pdoc's ``<section id="Class">`` /
    ``<div id="Class.method">`` with an ``a.headerlink``. Its heading is the
    text before the permalink (the signature, without "[source]" links),
    shortened; the id itself if that is empty. Captioned figures, tables and
    code blocks keep their permalink inside the caption, and Sphinx sections
    inside their heading, so they are not definitions.
    """
    anchor = str(attributes.get("id") or "")
    if not anchor or node.tag in HEADING_LEVELS:
        return None
    before = _signature_before_permalink(node, anchor)
    if before is None:
        return None
    parts: list[str] = []
    for part in before:
        _collect_flat(part, parts, signature=True, node_itself=True)
    text = normalise("".join(parts)).replace("\n", " ").rstrip(":").strip()
    return _shorten(text, DEFINITION_HEADING_LENGTH) or anchor


def _signature_before_permalink(node: LexborNode, anchor: str) -> list[LexborNode] | None:
    """The children before ``node``'s own permalink to ``anchor``; ``None`` if
    no child is one, or a heading comes first (the heading is the title)."""
    before: list[LexborNode] = []
    child = node.child
    while child is not None:
        tag = child.tag
        if tag in HEADING_LEVELS:
            return None
        if tag == "a" and _links_to(child, anchor):
            return before
        before.append(child)
        child = child.next
    return None


def _links_to(link: LexborNode, anchor: str) -> bool:
    attributes = link.attributes
    href = attributes.get("href") or ""
    return "#" in href and href.split("#", 1)[1] == anchor and _is_permalink(link, attributes)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,") + "…"


def heading_anchor(node: LexborNode, attributes: dict[str, Any]) -> str:
    """The fragment that deep-links to a heading.

    MkDocs, Docusaurus, VitePress and Starlight put the id on the heading;
    Sphinx puts it on the wrapping ``<section>`` (or ``<div class="section">``)
    and repeats it in the heading's permalink (``a.headerlink``). DocBook and
    older generators put an empty named anchor inside the heading
    (``<h2><a name="reflogs"></a>Reflogs</h2>``).
    """
    anchor = attributes.get("id") or ""
    if anchor:
        return str(anchor)
    for link in node.css("a"):
        href = link.attributes.get("href") or ""
        link_class = link.attributes.get("class") or ""
        if "#" in href and ("headerlink" in link_class or "hash-link" in link_class):
            return href.split("#", 1)[1]
        target = link.attributes.get("id") or link.attributes.get("name")
        if target and not href:
            return str(target)
    parent = node.parent
    if parent is not None and parent.tag in ("section", "div"):
        parent_id = parent.attributes.get("id")
        if parent_id and (
            parent.tag == "section" or "section" in (parent.attributes.get("class") or "")
        ):
            return str(parent_id)
    return ""


def flat_text(node: LexborNode) -> str:
    """A heading's or table cell's text on one line, without chrome or
    permalink symbols."""
    parts: list[str] = []
    _collect_flat(node, parts)
    return normalise("".join(parts)).replace("\n", " ")


def _collect_flat(
    node: LexborNode, parts: list[str], *, signature: bool = False, node_itself: bool = False
) -> None:
    """Append the text of ``node``'s children, or with ``node_itself`` of
    ``node`` (a text node or an element); ``signature`` also drops bracketed
    links ("[source]")."""
    child: LexborNode | None = node if node_itself else node.child
    while child is not None:
        tag = child.tag
        if tag == "-text":
            parts.append(child.text_content or "")
        elif (
            is_element(tag)
            and not is_chrome(child, child.attributes)
            and not (signature and tag == "a" and _BRACKETED.match(normalise(child.text())))
        ):
            gap = " " if tag in BLOCK_TAGS or tag in ("li", "br", "pre") else ""
            parts.append(gap)
            _collect_flat(child, parts, signature=signature)
            parts.append(gap)
        child = None if node_itself else child.next


def pre_text(node: LexborNode) -> str:
    """A code block's text, newlines and indentation intact, without line
    numbers or copy buttons."""
    parts: list[str] = []
    _collect_pre(node, parts)
    text = "".join(parts).replace("\r\n", "\n").replace("\xa0", " ")
    lines = [line.rstrip() for line in INVISIBLE.sub("", text).split("\n")]
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
        elif is_element(tag) and not is_chrome(child, child.attributes):
            _collect_pre(child, parts)
            # Docusaurus and Expressive Code render each code line as a <div>.
            if tag == "div" and parts and not parts[-1].endswith("\n"):
                parts.append("\n")
        child = child.next
