"""Token estimates for backends that cannot count tokens offline.

tiktoken downloads its encodings at run time, which fails on machines without
internet, and an OpenAI-compatible server may run any tokenizer anyway. So the
HTTP backends *estimate*: English prose averages about four characters per
token with GPT-style tokenizers, but code, URLs and non-Latin scripts are
denser. Dividing the UTF-8 length by 3.5 over-counts prose by roughly 15% and
keeps CJK text (3 bytes, about one token per character) on the safe side, so a
prompt trimmed with this estimate still fits the real window.
"""

from __future__ import annotations

import math

#: UTF-8 bytes per token assumed by ``estimate_tokens`` (below the ~4 of English prose).
BYTES_PER_TOKEN = 3.5


def estimate_tokens(text: str) -> int:
    """A conservative (over-)estimate of how many tokens ``text`` takes."""
    if not text:
        return 0
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)
