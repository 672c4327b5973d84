"""Search latency of the Qdrant Edge store at 100k chunks; prints one JSON object.

Synthetic but shaped like real data: 384-d unit vectors drawn around a few
hundred cluster centres (as sentence embeddings cluster by topic), 512-char
texts from a Zipf-distributed vocabulary with code identifiers mixed in, real
``SparseEncoder`` vectors. Queries are perturbed stored vectors plus a few
words of their chunk, so both sides have something to find.

Measures: sparse encoding rate, ingest rate (upsert + flush per batch),
``page_states()`` time, hybrid top-5 latency before and after ``optimize()``,
and dense recall@5 of the HNSW index against exact search.

    .venv/bin/python bench/store_latency.py --points 100000 --out bench/results/store_latency.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ragserve.documents import Chunk, SparseVector, chunk_id
from ragserve.store.base import IndexedChunk, IndexSchema
from ragserve.store.edge import EdgeStore
from ragserve.store.sparse import SparseEncoder

IDENTIFIERS = ["map_batches", "num_replicas", "ray.serve.deployment", "batch_size", "ray.init"]


def make_texts(count: int, rng: np.random.Generator) -> list[str]:
    vocabulary = [f"w{n}" for n in range(20_000)] + IDENTIFIERS
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    weights /= weights.sum()
    words = rng.choice(len(vocabulary), size=(count, 90), p=weights)
    return [" ".join(vocabulary[i] for i in row)[:512] for row in words]


def make_vectors(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((300, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 300, count)] + 0.6 * rng.standard_normal((count, dim)).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def build_points(
    texts: list[str], vectors: np.ndarray, sparse: list[SparseVector]
) -> list[IndexedChunk]:
    points = []
    for n, text in enumerate(texts):
        url = f"https://docs.example.org/page/{n // 8}"
        chunk = Chunk(
            id=chunk_id(url, n % 8, "h"),
            text=text,
            url=url,
            section_url=f"{url}#s{n % 8}",
            title=f"Page {n // 8}",
            heading_path=("Docs", f"Page {n // 8}"),
            ordinal=n % 8,
            document_hash="h",
            chunk_count=8,
        )
        points.append(IndexedChunk(chunk=chunk, dense=vectors[n], sparse=sparse[n]))
    return points


def time_queries(
    store: EdgeStore, queries: list[tuple[np.ndarray, SparseVector]], mode: str
) -> dict[str, float]:
    for dense, sparse in queries[:20]:  # warm caches
        store.search(dense=dense, sparse=sparse, limit=5, mode=mode)  # type: ignore[arg-type]
    timings = []
    for dense, sparse in queries:
        started = time.perf_counter()
        store.search(dense=dense, sparse=sparse, limit=5, mode=mode)  # type: ignore[arg-type]
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": round(float(np.percentile(timings, 50)), 3),
        "p99_ms": round(float(np.percentile(timings, 99)), 3),
        "mean_ms": round(float(np.mean(timings)), 3),
    }


def dense_recall(
    store: EdgeStore, vectors: np.ndarray, points: list[IndexedChunk], queries: np.ndarray
) -> float:
    found = 0
    for query in queries:
        exact = np.argsort(-(vectors @ query))[:5]
        expected = {points[i].chunk.id for i in exact}
        hits = store.search(dense=query, sparse=None, limit=5, mode="dense")
        found += len(expected & {hit.chunk.id for hit in hits})
    return round(found / (5 * len(queries)), 4)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    encoder = SparseEncoder()
    texts = make_texts(args.points, rng)
    started = time.perf_counter()
    sparse = encoder.encode_documents(texts)
    encode_s = time.perf_counter() - started
    vectors = make_vectors(args.points, args.dim, rng)
    points = build_points(texts, vectors, sparse)

    picks = rng.integers(0, args.points, args.queries)
    query_vectors = vectors[picks] + 0.1 * rng.standard_normal((args.queries, args.dim)).astype(
        np.float32
    )
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    queries = [
        (query_vectors[i], encoder.encode_query(" ".join(texts[p].split()[:6])))
        for i, p in enumerate(picks)
    ]

    result: dict[str, Any] = {
        "points": args.points,
        "dim": args.dim,
        "queries": args.queries,
        "search_threads": args.search_threads,
        "hnsw_ef": args.hnsw_ef,
        "sparse_encode_texts_per_s": round(args.points / encode_s),
    }
    with tempfile.TemporaryDirectory() as data_dir:
        store = EdgeStore(
            data_dir, "bench", hnsw_ef=args.hnsw_ef, search_threads=args.search_threads
        )
        store.open(IndexSchema("synthetic", args.dim, 512, 50))
        started = time.perf_counter()
        for start in range(0, len(points), args.batch):
            store.upsert(points[start : start + args.batch])
        result["ingest_points_per_s"] = round(args.points / (time.perf_counter() - started))

        started = time.perf_counter()
        states = store.page_states()
        result["page_states_s"] = round(time.perf_counter() - started, 3)
        result["pages"] = len(states)

        result["hybrid_before_optimize"] = time_queries(store, queries[:200], "hybrid")
        started = time.perf_counter()
        store.optimize()
        result["optimize_s"] = round(time.perf_counter() - started, 2)
        result["hybrid"] = time_queries(store, queries, "hybrid")
        result["dense"] = time_queries(store, queries, "dense")
        result["sparse"] = time_queries(store, queries, "sparse")
        result["dense_recall_at_5"] = dense_recall(store, vectors, points, query_vectors[:100])
        store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--hnsw-ef", type=int, default=None)
    parser.add_argument("--search-threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
