"""Bounding how deeply HTML nests, before any parser or tree walk sees it.

Real documentation pages nest a few dozen elements deep. A hostile or broken
page can nest tens of thousands (``<div>`` × 100,000): the HTML parser then
takes time quadratic in the depth, and every recursive walk over the tree
(extraction, text collection) overflows Python's stack, which would drop the
whole page. :func:`flatten_deep_nesting` keeps the text and the outer
:data:`MAX_NESTING` levels of structure and drops only the tags nested below
them, in one linear pass over the markup.
"""

from __future__ import annotations

import re

#: Elements deeper than this lose their tags (their text stays). Two Python frames per
#: level in the extraction walk must fit well under the default recursion limit (1000).
MAX_NESTING = 200

#: Elements that never hold children, so they open no level; and links, which are
#: kept whatever their depth (the crawler follows them) and cannot nest in each other.
_VOID = frozenset(
    "a area base br col embed hr img input link meta param source track wbr".split()  # noqa: SIM905
)
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)\b[^>]*?(/?)>")
#: How far down the open elements a closing tag may look for its match.
_MATCH_WINDOW = 64


def max_nesting(html: str) -> int:
    """The deepest element nesting in ``html``, as a tolerant tag scan counts it."""
    depth = deepest = 0
    stack: list[str] = []
    for match in _TAG.finditer(html):
        closing, name, self_closing = match.group(1), match.group(2).lower(), match.group(3)
        if closing:
            _close(stack, name)
        elif name not in _VOID and not self_closing:
            stack.append(name)
        depth = len(stack)
        deepest = max(deepest, depth)
    return deepest


def flatten_deep_nesting(html: str, limit: int = MAX_NESTING) -> str:
    """``html`` with the tags of elements nested deeper than ``limit`` removed.

    Returns ``html`` itself (no copy) when nothing nests that deep, which is
    the case for every ordinary page.
    """
    if html.count("<") <= limit or max_nesting(html) <= limit:
        return html
    pieces: list[str] = []
    position = 0
    stack: list[str] = []
    for match in _TAG.finditer(html):
        closing, name, self_closing = match.group(1), match.group(2).lower(), match.group(3)
        deep = len(stack) >= limit and name != "a"
        if closing:
            deep = name != "a" and _close(stack, name) > limit
        elif name not in _VOID and not self_closing:
            stack.append(name)
        if deep:
            pieces.append(html[position : match.start()])
            pieces.append(" ")
            position = match.end()
    pieces.append(html[position:])
    return "".join(pieces)


def _close(stack: list[str], name: str) -> int:
    """Pop ``name``'s element (and any left open inside it); the depth it was at, or 0."""
    for offset in range(1, min(len(stack), _MATCH_WINDOW) + 1):
        if stack[-offset] == name:
            depth = len(stack) - offset + 1
            del stack[-offset:]
            return depth
    return 0  # a stray closing tag: parsers ignore it, so does the scan
