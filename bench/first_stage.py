"""First stage × fusion on the Ray docs dev set: which embedder, which fusion, which rescoring.

Re-embedding 23k chunks per variant through a full ingest costs ~10 min each on 2
cores, so this bench works on one chunking of the corpus (exactly ragserve's:
``extract_sections`` + ``chunk_sections``, 512/50, section-aware) and scores
variants in memory: exact dense search, BM25 with ragserve's own sparse encoder
and Qdrant's IDF, reciprocal-rank fusion (k=60, which reproduces Qdrant's own
fusion: the lab's MiniLM hybrid scores 0.716, ``ragserve eval`` 0.697–0.706),
one chunk per page, then optional rescoring of the top N with the
cross-encoder or the late-interaction model, fused by rank with the first stage
(``ragserve.retrieve.fuse_ranks``). Scoring is the guide's retrieval score, as
``ragserve eval`` computes it, with the exact sign test against the default.

    python bench/first_stage.py embed all-MiniLM-L6-v2 bge-small-en  # -> tmp/first-stage
    python bench/first_stage.py score [--rescore-top 20]  # -> bench/results/first-stage.json

Models come from ``ragserve models fetch bge-small-en ms-marco-minilm-l12
answerai-colbert-small``; the corpus from ``../shared/corpora/ray-docs-2023.tar.gz``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse as sp

from ragserve.config import EmbedSettings, Settings
from ragserve.documents import Document
from ragserve.embed import build_embedder
from ragserve.eval.metrics import normalize_url, page_of
from ragserve.eval.statistics import sign_test_p
from ragserve.ingest.chunk import chunk_sections
from ragserve.ingest.extract import extract_sections
from ragserve.ingest.sources import iter_source
from ragserve.models import model_path
from ragserve.onnx_encoder import OnnxEncoder
from ragserve.store.sparse import SparseEncoder

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CACHE = ROOT / "tmp" / "first-stage"
BASE_URL = "https://docs.ray.io/en/master/"
RRF_K = 60
Floats = npt.NDArray[np.float32]


def load_chunks() -> list[dict[str, Any]]:
    path = CACHE / "chunks.pkl"
    if path.exists():
        rows: list[dict[str, Any]] = pickle.loads(path.read_bytes())
        return rows
    corpus = CACHE / "raydocs"
    if not corpus.exists():
        with tarfile.open(SHARED / "corpora" / "ray-docs-2023.tar.gz") as tar:
            tar.extractall(corpus, filter="data")
    settings = Settings()
    settings.ingest.base_url = BASE_URL
    rows = []
    for item in iter_source(str(corpus), settings.ingest):
        if not isinstance(item, Document):
            continue
        sections = extract_sections(item)
        for chunk in chunk_sections(
            sections, document_hash=item.content_hash, chunk_size=512, chunk_overlap=50
        ):
            rows.append(
                {"id": chunk.id, "text": chunk.text, "url": chunk.url, "section": chunk.section_url}
            )
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(rows))
    return rows


def embed(model: str, rows: list[dict[str, Any]]) -> None:
    out = CACHE / f"{model}.npy"
    if out.exists():
        return
    embedder = build_embedder(
        EmbedSettings(model=model, batch_size=32), models_dir=Settings().models_dir, threads=2
    )
    started = time.perf_counter()
    vectors = embedder.embed_documents([row["text"] for row in rows])
    print(f"{model}: {len(rows) / (time.perf_counter() - started):.1f} chunks/s", flush=True)
    np.save(out, vectors)


class Lab:
    """Everything scored in memory over one chunking of the corpus."""

    def __init__(self, rows: list[dict[str, Any]], questions: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.questions = questions
        self.pages = [normalize_url(row["url"]) for row in rows]
        self.sections = [normalize_url(row["section"]) for row in rows]
        self.encoder = SparseEncoder()
        self.bm25, self.vocab, self.idf = self._bm25_index()

    def _bm25_index(self) -> tuple[Any, dict[int, int], Floats]:
        vectors = self.encoder.encode_documents([row["text"] for row in self.rows])
        vocab: dict[int, int] = {}
        indices: list[int] = []
        values: list[float] = []
        pointers = [0]
        for vector in vectors:
            for term, weight in zip(vector.indices, vector.values, strict=True):
                indices.append(vocab.setdefault(term, len(vocab)))
                values.append(weight)
            pointers.append(len(indices))
        matrix = sp.csr_matrix((values, indices, pointers), shape=(len(vectors), len(vocab)))
        df = np.diff(matrix.tocsc().indptr)
        n = len(vectors)
        idf = np.log((n - df + 0.5) / (df + 0.5) + 1.0).astype(np.float32)
        return matrix.tocsc(), vocab, idf

    def bm25_scores(self, question: str) -> Floats:
        query = self.encoder.encode_query(question)
        scores = np.zeros(len(self.rows), dtype=np.float32)
        for term, weight in zip(query.indices, query.values, strict=True):
            column = self.vocab.get(term)
            if column is None:
                continue
            start, end = self.bm25.indptr[column], self.bm25.indptr[column + 1]
            rows = self.bm25.indices[start:end]
            scores[rows] += weight * self.idf[column] * self.bm25.data[start:end]
        return scores

    def diversify(self, order: Sequence[int]) -> list[int]:
        seen: set[str] = set()
        taken: set[str] = set()
        kept = []
        for i in order:
            text = " ".join(self.rows[i]["text"].split()).lower()
            if text in seen or self.pages[i] in taken:
                continue
            seen.add(text)
            taken.add(self.pages[i])
            kept.append(int(i))
        return kept

    def score(self, ranked: Sequence[Sequence[int]], k: int = 5) -> dict[str, Any]:
        hits, section_hits, reciprocal = [], [], []
        for question, order in zip(self.questions, ranked, strict=True):
            reference = normalize_url(question["source"])
            page = page_of(reference)
            top_pages = [self.pages[i] for i in order[:k]]
            hits.append(page in top_pages)
            top_sections = [self.sections[i] for i in order[:k]]
            section_hits.append(
                reference in top_sections if reference != page else page in top_pages
            )
            rank = next((n for n, i in enumerate(order[:50], 1) if self.pages[i] == page), None)
            reciprocal.append(1 / rank if rank else 0.0)
        return {
            "hits": hits,
            "score@5": round(float(np.mean(hits)), 3),
            "section@5": round(float(np.mean(section_hits)), 3),
            "mrr": round(float(np.mean(reciprocal)), 3),
        }


def top(scores: Floats, n: int) -> npt.NDArray[np.intp]:
    idx = np.argpartition(-scores, n)[:n]
    return idx[np.argsort(-scores[idx])]


def rrf(lists: Sequence[Sequence[int]], weights: Sequence[float]) -> list[int]:
    fused: dict[int, float] = {}
    for weight, order in zip(weights, lists, strict=True):
        for rank, i in enumerate(order, start=1):
            fused[int(i)] = fused.get(int(i), 0.0) + weight / (RRF_K + rank)
    return sorted(fused, key=lambda i: -fused[i])


def fuse_with(first: list[int], scores: Sequence[float], weight: float) -> list[int]:
    order = sorted(range(len(first)), key=lambda j: -scores[j])
    second = {first[j]: rank for rank, j in enumerate(order, start=1)}
    own = {i: rank for rank, i in enumerate(first, start=1)}
    return sorted(first, key=lambda i: -(1 / (RRF_K + own[i]) + weight / (RRF_K + second[i])))


def cross_encoder_scores(lab: Lab, firsts: list[list[int]], n: int) -> list[list[float]]:
    encoder = OnnxEncoder(model_path("ms-marco-minilm-l12", Settings().models_dir), max_length=256)
    return [
        [
            float(o.reshape(-1)[0])
            for o in encoder.run([(q["question"], lab.rows[i]["text"]) for i in f[:n]])
        ]
        for q, f in zip(lab.questions, firsts, strict=True)
    ]


def late_interaction_scores(lab: Lab, firsts: list[list[int]], n: int) -> list[list[float]]:
    """MaxSim over the packaged answerai-colbert-small. Its ONNX has no projection
    head (it outputs the 384-d backbone states), so this is MaxSim over normalised
    backbone states, not the trained 96-d ColBERT space."""
    encoder = OnnxEncoder(
        model_path("answerai-colbert-small", Settings().models_dir), max_length=256
    )

    def normed(x: Floats) -> Floats:
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)

    out = []
    for question, first in zip(lab.questions, firsts, strict=True):
        query = normed(encoder.run(["[unused0] " + question["question"]])[0])
        docs = encoder.run(["[unused1] " + lab.rows[i]["text"] for i in first[:n]])
        out.append([float((query @ normed(d).T).max(axis=1).sum()) for d in docs])
    return out


def cached(name: str, compute: Callable[[], Any]) -> Any:
    path = CACHE / f"{name}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    started = time.perf_counter()
    value = compute()
    print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    path.write_bytes(pickle.dumps(value))
    return value


def score_all(rescore_top: int) -> dict[str, Any]:
    rows = load_chunks()
    questions = [json.loads(line) for line in (SHARED / "eval" / "ray-docs-dev.jsonl").open()]
    lab = Lab(rows, questions)
    models = ["all-MiniLM-L6-v2", "bge-small-en"]
    vectors = {m: np.load(CACHE / f"{m}.npy") for m in models}
    queries = {}
    for m in models:
        embedder = build_embedder(
            EmbedSettings(model=m), models_dir=Settings().models_dir, threads=2
        )
        queries[m] = np.stack([embedder.embed_query(q["question"]) for q in questions])
    bm25 = [lab.bm25_scores(q["question"]) for q in questions]

    def run(dense: dict[str, float], bm25_weight: float) -> list[list[int]]:
        ranked = []
        for qi in range(len(questions)):
            lists: list[Sequence[int]] = [top(vectors[m] @ queries[m][qi], 400) for m in dense]
            weights = list(dense.values())
            if bm25_weight:
                lists.append(top(bm25[qi], 400))
                weights.append(bm25_weight)
            ranked.append(lab.diversify(rrf(lists, weights)))
        return ranked

    variants: dict[str, list[list[int]]] = {
        "BM25": [lab.diversify(top(s, 400)) for s in bm25],
        "MiniLM dense": run({"all-MiniLM-L6-v2": 1.0}, 0),
        "bge-small-en dense": run({"bge-small-en": 1.0}, 0),
        "MiniLM + BM25 (default)": run({"all-MiniLM-L6-v2": 1.0}, 1.0),
        "bge-small-en + BM25": run({"bge-small-en": 1.0}, 1.0),
        "MiniLM + bge-small-en + BM25": run({"all-MiniLM-L6-v2": 1.0, "bge-small-en": 1.0}, 1.0),
        "MiniLM + bge-small-en×0.5 + BM25": run(
            {"all-MiniLM-L6-v2": 1.0, "bge-small-en": 0.5}, 1.0
        ),
    }
    default = variants["MiniLM + BM25 (default)"]
    n = rescore_top
    ce = cached(f"ce-{n}", lambda: cross_encoder_scores(lab, default, n))
    li = cached(f"colbert-{n}", lambda: late_interaction_scores(lab, default, n))
    for weight in (0.5, 1.0, 2.0):
        variants[f"default, cross-encoder top {n} fused ×{weight}"] = [
            fuse_with(f[:n], s, weight) + f[n:] for f, s in zip(default, ce, strict=True)
        ]
        variants[f"default, late interaction top {n} fused ×{weight}"] = [
            fuse_with(f[:n], s, weight) + f[n:] for f, s in zip(default, li, strict=True)
        ]
    variants[f"default, cross-encoder top {n} alone"] = [
        fuse_with(f[:n], s, 1e6) + f[n:] for f, s in zip(default, ce, strict=True)
    ]
    base_hits = lab.score(default)["hits"]
    results = {}
    for name, ranked in variants.items():
        scored = lab.score(ranked)
        hits = scored.pop("hits")
        gained = sum(1 for b, h in zip(base_hits, hits, strict=True) if h and not b)
        lost = sum(1 for b, h in zip(base_hits, hits, strict=True) if b and not h)
        scored["vs_default"] = {
            "gained": gained,
            "lost": lost,
            "p": round(sign_test_p(gained, lost), 3),
        }
        results[name] = scored
        print(f"{name:48s} {scored}", flush=True)
    return {"questions": len(questions), "chunks": len(rows), "rrf_k": RRF_K, "variants": results}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    embed_cmd = sub.add_parser("embed")
    embed_cmd.add_argument("models", nargs="+")
    score_cmd = sub.add_parser("score")
    score_cmd.add_argument("--rescore-top", type=int, default=20)
    args = parser.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.command == "embed":
        rows = load_chunks()
        for model in args.models:
            embed(model, rows)
        return
    result = score_all(args.rescore_top)
    out = ROOT / "bench" / "results" / "first-stage.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
