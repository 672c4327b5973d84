"""Scoring generated answers: lexical overlap with a reference, and an LLM judge.

Two graders because they fail differently: token F1 is free and deterministic
but punishes paraphrase; a judge model reads meaning but costs a call and can
be wrong. ``ragserve eval --answers`` reports both where it can. The judge gets
a grading prompt of its own and must reply with a 1-5 score; anything else is
recorded as "no grade" rather than guessed.

The rest reads an answer's form rather than its meaning: which ``[n]`` it
cites, whether it declines to answer, and its text without citation markers
(so a reference answer is compared with what a reader reads, not with "[2]").
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

from ragserve.generate.citations import CITATION

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _squad_tokens(text: str) -> list[str]:
    """SQuAD normalisation: lower case, no punctuation, no articles, split on space."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def lexical_overlap(reference: str, generated: str) -> float:
    """Token F1 between two answers (SQuAD-style), from 0 to 1.

    A cheap, deterministic answer check that needs no LLM; it rewards shared
    wording, so use the judge for paraphrases. Two empty answers agree (1.0).
    """
    reference_tokens = _squad_tokens(reference)
    generated_tokens = _squad_tokens(generated)
    if not reference_tokens or not generated_tokens:
        return float(reference_tokens == generated_tokens)
    common = sum((Counter(reference_tokens) & Counter(generated_tokens)).values())
    if common == 0:
        return 0.0
    precision = common / len(generated_tokens)
    recall = common / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


_JUDGE_TEMPLATE = """\
You are grading an answer to a question about software documentation.
Compare the generated answer with the reference answer and score it from 1 to 5:
5 = correct and complete, 4 = correct with minor omissions, 3 = partly correct,
2 = mostly wrong or unhelpful, 1 = wrong or no answer.
If no reference answer is given, judge correctness and helpfulness on your own.

Question: {question}

Reference answer: {reference}

Generated answer: {generated}

Reply with a JSON object and nothing else: {{"score": <1-5>, "reasoning": "<one sentence>"}}
"""


def judge_prompt(question: str, reference: str | None, generated: str) -> str:
    """The user message for an LLM-as-judge call; ``parse_judge_score`` reads the reply."""
    return _JUDGE_TEMPLATE.format(
        question=question.strip(),
        reference=(reference or "(none)").strip(),
        generated=generated.strip() or "(empty)",
    )


_SCORE_FIELD = re.compile(r"""["']?score["']?\s*[:=]\s*["']?([0-9]+(?:\.[0-9]+)?)""", re.I)
_LEADING_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\b")


def parse_judge_score(text: str) -> int | None:
    """The 1–5 score in a judge's reply, or ``None`` when there is none.

    Accepts the JSON we ask for, a ``score: N`` line, or a reply that starts
    with the number (the guide's judge format). Out-of-range or fractional
    scores are ``None`` rather than clamped: a malformed grade is no grade.
    """
    match = _SCORE_FIELD.search(text) or _LEADING_NUMBER.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    if not value.is_integer() or not 1 <= value <= 5:
        return None
    return int(value)


def cited_numbers(text: str) -> list[int]:
    """The distinct ``[n]`` an answer cites, in order of first appearance."""
    return list(dict.fromkeys(int(number) for number in CITATION.findall(text)))


def answer_body(text: str, labels: Iterable[str] = ()) -> str:
    """The answer's words alone: ``[n]`` markers and any UI ``labels`` removed.

    The extractive backend heads its answers with a label and every backend
    sprinkles ``[n]``; neither is part of what is being compared with a
    reference answer, and both would otherwise cost F1 and similarity.
    """
    for label in labels:
        text = text.replace(label, " ")
    return " ".join(CITATION.sub(" ", text).split())


_REFUSAL = re.compile(
    r"\bi (?:do not|don't|dont) know\b"
    r"|\b(?:i )?(?:cannot|can't|am unable to|am not able to) (?:answer|find|tell|say)\b"
    r"|\b(?:the )?(?:sources?|context|documentation|passages?) (?:do|does) not "
    r"(?:contain|provide|mention|say|include|cover)\b"
    r"|\bno (?:information|passage|answer)\b"
    r"|\bnot (?:mentioned|provided|covered|found) in the (?:sources?|context|documentation)\b",
    re.IGNORECASE,
)
_FIRST_SENTENCE = re.compile(r"[.!?\n]")


def is_refusal(text: str) -> bool:
    """Does the answer decline ("I don't know", "the sources do not contain ...")?

    Only the first sentence is read: a model that declines says so up front,
    while "... if you don't know the replica count, ..." deep in an answer
    is not a refusal. Curly apostrophes count as straight ones.
    """
    opening = _FIRST_SENTENCE.split(text.replace("’", "'").strip(), maxsplit=1)[0]
    return bool(_REFUSAL.search(opening))
