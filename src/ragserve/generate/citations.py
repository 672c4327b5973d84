"""Citations a small model forgot, attached from the source each sentence is drawn from.

A 0.5B instruct model writes fluent answers from the sources but often cites
none of them, and an uncited answer cannot be checked. After generation each
answer sentence without a ``[n]`` gets the number of the source whose words
cover most of its own (token-set containment: the share of the sentence's
content words that occur in the source). Below ``threshold`` no source
supports the sentence well enough and it stays uncited, so the grounding
check still sees it: an attached citation is evidence, never decoration.
Citations the model wrote itself are kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragserve.documents import ScoredChunk
from ragserve.generate.extractive import content_terms
from ragserve.generate.prompt import NO_ANSWER

#: Share of a sentence's content words that must occur in a source to cite it. A
#: faithful paraphrase by the 0.5B model keeps ~50-60% of its words in the source
#: (it adds "you need to", file names); an invented sentence shares few or none.
DEFAULT_THRESHOLD = 0.5
#: Sentences with fewer content words ("Yes.", "For example:") are not judged.
MIN_TERMS = 3

#: A citation as the prompt asks for it, ``[n]``; the one definition the agent's
#: grounding check, eval's grading and attachment here all read (group 1: n).
CITATION = re.compile(r"\[(\d{1,3})\]")
_SPACED_CITATION = re.compile(r"[ \t]*" + CITATION.pattern)  # the space before goes too
#: A sentence ends at . ! ? (not inside 1.5 or ray.serve) or at a line break.
_SENTENCE = re.compile(r"[^\n]*?(?:[.!?](?=\s|$)|\n|$)")
_TRAILING = re.compile(r"(?P<body>.*?)(?P<punct>[.!?:;]*)(?P<space>\s*)$", re.DOTALL)
_FENCE = "```"


def attach_citations(
    answer: str, sources: Sequence[str], *, threshold: float = DEFAULT_THRESHOLD
) -> str:
    """``answer`` with ``[n]`` added to each uncited sentence a source supports.

    ``sources[i]`` is the text of source ``i + 1``. Code blocks and "I don't
    know" answers are left alone.
    """
    if not sources or not answer.strip() or answer.lstrip().startswith(NO_ANSWER):
        return answer
    source_terms = [content_terms(text) for text in sources]
    pieces: list[str] = []
    in_code = False
    for line in answer.splitlines(keepends=True):
        if line.lstrip().startswith(_FENCE):
            in_code = not in_code
            pieces.append(line)
        elif in_code:
            pieces.append(line)
        else:
            pieces.append(_cite_line(line, source_terms, threshold))
    return "".join(pieces)


def cite_from_chunks(answer: str, chunks: Sequence[ScoredChunk]) -> str:
    """``attach_citations`` with ``chunks[i]`` as source ``i + 1``, headings included
    (an answer often names the section: "autoscaling", "deployment handles")."""
    texts = [" ".join((*scored.chunk.heading_path, scored.chunk.text)) for scored in chunks]
    return attach_citations(answer, texts)


def drop_unretrieved(answer: str, n_sources: int) -> tuple[str, list[int]]:
    """``answer`` without the ``[n]`` that name no retrieved source, and those n.

    A model may copy ``[7]`` out of a poisoned page, or invent one; a citation
    that resolves to nothing retrieved is a claim nobody can check, and a
    client rendering it as a link would send the reader wherever the page
    chose. Only ``[1]..[n_sources]`` survive.
    """
    dropped: list[int] = []

    def keep_or_drop(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if 1 <= n <= n_sources:
            return match.group(0)
        dropped.append(n)
        return ""

    text = _SPACED_CITATION.sub(keep_or_drop, answer)
    return (text, list(dict.fromkeys(dropped))) if dropped else (answer, [])


def supporting_source(
    sentence: str, source_terms: Sequence[set[str]], threshold: float = DEFAULT_THRESHOLD
) -> int | None:
    """The number (1-based) of the source that best contains ``sentence``, or None.

    Ties go to the earlier source: the retriever ranked it higher.
    """
    terms = content_terms(sentence)
    if len(terms) < MIN_TERMS:
        return None
    best_n, best_share = None, threshold
    for n, candidate in enumerate(source_terms, start=1):
        share = len(terms & candidate) / len(terms)
        if share > best_share or (share == best_share and best_n is None):
            best_n, best_share = n, share
    return best_n


def _cite_line(line: str, source_terms: Sequence[set[str]], threshold: float) -> str:
    out: list[str] = []
    position = 0
    for match in _SENTENCE.finditer(line):
        sentence = match.group(0)
        if not sentence:
            continue
        out.append(line[position : match.start()])
        position = match.end()
        out.append(_cite_sentence(sentence, source_terms, threshold))
    out.append(line[position:])
    return "".join(out)


def _cite_sentence(sentence: str, source_terms: Sequence[set[str]], threshold: float) -> str:
    if CITATION.search(sentence):
        return sentence
    n = supporting_source(sentence, source_terms, threshold)
    if n is None:
        return sentence
    parts = _TRAILING.match(sentence)
    assert parts is not None  # the pattern matches any string
    return f"{parts['body'].rstrip()} [{n}]{parts['punct']}{parts['space']}"
