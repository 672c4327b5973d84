"""Page bytes to text, for the folder reader and the crawler alike.

Kept apart from both so that neither imports the other to decode.
"""

from __future__ import annotations

import codecs
import logging
import re

logger = logging.getLogger(__name__)

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_SNIFF_BYTES = 4096
_BINARY_SAMPLE = 8192
_BINARY_ODD_SHARE = 0.1


def decode_bytes(raw: bytes, declared: str | None = None, *, sniff_html: bool = False) -> str:
    """Decode page bytes to text, never failing.

    Precedence as browsers do it: a byte-order mark, then the charset the
    server declared, then a ``<meta charset>`` in the first bytes (HTML only),
    then UTF-8, then Windows-1252 (what "latin-1" pages usually really are),
    then Latin-1, which decodes anything. A declared charset Python does not
    know is ignored; bytes invalid in the chosen charset become U+FFFD.
    """
    for bom, bom_codec in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if raw.startswith(bom):
            return raw.decode(bom_codec, errors="replace")
    encoding = _known_codec(declared)
    if encoding is None and sniff_html:
        match = _META_CHARSET.search(raw[:_SNIFF_BYTES])
        encoding = _known_codec(match.group(1).decode("ascii")) if match else None
    if encoding is not None:
        return raw.decode(encoding, errors="replace")
    for fallback in ("utf-8", "cp1252"):
        try:
            return raw.decode(fallback)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def binary_reason(raw: bytes, text: str) -> str | None:
    """Why ``raw`` (decoded as ``text``) is not text, or None if it is.

    Servers label images, archives and compressed streams ``text/html``; indexed,
    they become hundreds of garbage chunks. NUL bytes (outside UTF-16) or a
    sample dense with control characters and U+FFFD give them away.
    """
    utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if not utf16 and b"\x00" in raw[:_BINARY_SAMPLE]:
        return "it contains NUL bytes"
    sample = text[:_BINARY_SAMPLE]
    odd = sum(1 for char in sample if char == "\ufffd" or (char < " " and char not in "\t\n\r\f"))
    if sample and odd > len(sample) * _BINARY_ODD_SHARE:
        return f"{odd} of its first {len(sample)} characters are control or undecodable bytes"
    return None


def _known_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        logger.debug("ignoring unknown charset %r", name)
        return None
