"""Answers without a language model: the best sentences of the sources, cited.

Used when no LLM is configured (the default, so a fresh install answers at
all) and as the QueryAgent's fallback when the LLM is down. It quotes; it
never follows what a passage says, so instructions planted in a page are
shown as text at worst. Sentences are picked by plain lexical overlap with the
question, weighted so that rare question words count more than common ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ragserve.generate.base import Completion, Prompt
from ragserve.generate.prompt import NO_ANSWER, SourceBlock, parse_sources
from ragserve.generate.tokens import estimate_tokens

EXTRACTIVE_LABEL = "Extracted from the documentation (no language model configured):"
EXTRACTIVE_MODEL = "extractive"

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_MAX_SENTENCE_CHARS = 400
_STOPWORD_TEXT = (
    "a an and are as at be by can could do does did for from had has have how i if in into "
    "is it its me my no not of on or our should so than that the their them then there "
    "these they this to was we were what when where which who why will with would you your "
    "about any all also get use using want need"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True, slots=True)
class _Passage:
    n: int
    text: str
    score: float


class ExtractiveLLM:
    """The ``LLM`` protocol without a model: extracted sentences cited as ``[n]``.

    ``label`` heads every answer so nobody mistakes a quote for a generated
    answer; the QueryAgent passes its own when it falls back after an LLM error.
    """

    def __init__(
        self,
        *,
        context_window: int = 8192,
        max_sources: int = 3,
        sentences_per_source: int = 2,
        label: str = EXTRACTIVE_LABEL,
    ) -> None:
        self._context_window = context_window
        self._max_sources = max_sources
        self._sentences_per_source = sentences_per_source
        self._label = label

    @property
    def model(self) -> str:
        return EXTRACTIVE_MODEL

    @property
    def context_window(self) -> int:
        return self._context_window

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def check(self) -> None:
        """Always ready: there is nothing to reach."""

    def complete(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Completion:
        text = "".join(self._pieces(prompt, max_tokens))
        usage = {
            "prompt_tokens": estimate_tokens(prompt.user),
            "completion_tokens": estimate_tokens(text),
        }
        return Completion(text=text, model=EXTRACTIVE_MODEL, usage=usage)

    def stream(self, prompt: Prompt, *, max_tokens: int, temperature: float) -> Iterator[str]:
        yield from self._pieces(prompt, max_tokens)

    def _pieces(self, prompt: Prompt, max_tokens: int) -> Iterator[str]:
        question, blocks = parse_sources(prompt.user)
        passages = self._select(question, blocks)
        if not passages:
            yield f"{NO_ANSWER}: no passage of the documentation matched the question."
            return
        yield self._label
        budget_chars = int(max_tokens * 3.5)
        for passage in passages:
            piece = f"\n\n[{passage.n}] {passage.text}"
            if len(piece) > budget_chars:
                yield piece[: max(budget_chars, 0)].rstrip() + "…"
                return
            budget_chars -= len(piece)
            yield piece

    def _select(self, question: str, blocks: Sequence[SourceBlock]) -> list[_Passage]:
        """The best passage of each of the most relevant sources, best first."""
        sentences = {block.n: _sentences(block.text) for block in blocks}
        weights = _term_weights(
            content_terms(question), [s for ss in sentences.values() for s in ss]
        )
        passages = [
            passage
            for block in blocks
            if (passage := self._best_passage(block.n, sentences[block.n], weights))
        ]
        if not passages and blocks and sentences[blocks[0].n]:
            # No lexical overlap anywhere: the retriever still ranked the first
            # block best (dense search matches synonyms), so quote its opening.
            lead = " ".join(sentences[blocks[0].n][: self._sentences_per_source])
            return [_Passage(n=blocks[0].n, text=lead, score=0.0)]
        passages.sort(key=lambda passage: -passage.score)  # stable: ties keep rank order
        return passages[: self._max_sources]

    def _best_passage(
        self, n: int, sentences: Sequence[str], weights: dict[str, float]
    ) -> _Passage | None:
        scored = [(_score(sentence, weights), index) for index, sentence in enumerate(sentences)]
        best = sorted((item for item in scored if item[0] > 0), key=lambda item: -item[0])
        chosen = sorted(index for _, index in best[: self._sentences_per_source])
        if not chosen:
            return None
        text = " ".join(sentences[index] for index in chosen)
        return _Passage(n=n, text=text, score=best[0][0])


def content_terms(text: str) -> set[str]:
    """Lower-cased, plural-folded words of ``text`` without stop words (shared with
    ``ragserve.generate.citations``, which matches answer sentences to sources)."""
    return {_stem(word) for word in _WORD.findall(text.lower()) if word not in _STOPWORDS}


def _stem(word: str) -> str:
    """Crude plural folding so "chunks" matches "chunk" and "libraries" "library"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _term_weights(question_terms: set[str], sentences: Sequence[str]) -> dict[str, float]:
    """Inverse sentence frequency of each question term: rare words decide."""
    sentence_terms = [content_terms(sentence) for sentence in sentences]
    total = len(sentence_terms) or 1
    return {
        term: math.log(1 + total / (1 + sum(term in terms for terms in sentence_terms)))
        for term in question_terms
    }


def _score(sentence: str, weights: dict[str, float]) -> float:
    return sum(weights.get(term, 0.0) for term in content_terms(sentence))


def _sentences(text: str) -> list[str]:
    pieces = (" ".join(piece.split()) for piece in _SENTENCE_END.split(text))
    return [
        piece if len(piece) <= _MAX_SENTENCE_CHARS else piece[:_MAX_SENTENCE_CHARS].rstrip() + "…"
        for piece in pieces
        if piece
    ]
