"""Retrieval latency: ragserve's Qdrant Edge search vs the tutorial's in-memory Qdrant.

    .venv/bin/python bench/query.py                         # 10k and 100k chunks
    .venv/bin/python bench/query.py --quick                 # 2k chunks, smoke run
    .venv/bin/python bench/query.py --sizes 10000 --queries 300

Everything runs in this process, sequentially, one client: latency is what one
request pays, QPS is 1000 / mean latency.

What is measured, and how the data is made:

* ``embed_query``: the bundled MiniLM embedder on the real dev questions
  (``/work/shared/eval/ray-docs-dev.jsonl``), one question per call.
* Retrieval cells, query embedding excluded: the questions are embedded once,
  then each timed call is ``EdgeStore.search(dense=..., sparse=..., limit=5)``.
  For ``sparse`` and ``hybrid`` the timed call *includes*
  ``SparseEncoder.encode_query`` because that is per-query CPU work a server pays
  (``dense`` needs nothing extra). ``retriever-hybrid`` times the whole
  ``Retriever.retrieve()`` path (sparse encoding, a 20-candidate hybrid search,
  near-duplicate and per-page diversification) with an embedder that returns the
  cached question vector.
* Chunks: real ones, extracted and chunked by ragserve from the Ray docs HTML
  (``tmp/raydocs`` or ``tmp/sample``; the dev questions if neither is there).
  The first ``--base-chunks`` (2,000) are embedded for real. Chunk ``i`` beyond
  them is a remix of real chunk ``i mod base``: its sentences reshuffled with one
  sentence swapped in from another real chunk, under a copy URL, so BM25 sees the
  corpus's real term distribution and pages keep their real size. Its dense vector
  is the real chunk's vector plus gaussian noise (sigma ``--noise`` = 0.03 per
  dimension, cosine to its source ~0.86, to other copies of it ~0.74),
  re-normalised: realistic neighbourhoods at the cost of 2,000 embeddings.
* Baseline: the tutorial's store, ``QdrantClient(":memory:")`` (qdrant-client's
  pure-Python local mode, a brute-force numpy scan), same dense vectors, cosine,
  ``query_points(limit=5)``.

Each cell gets warm-up queries, then at least ``--queries`` timed queries
(cycling over the questions) but stops after ``--cell-seconds``. Beside wall
time it records the process CPU time of each query: a query whose wall time far
exceeds its CPU time spent its time waiting for a core (other processes on this
shared 2-core machine), not searching. ``os.getloadavg()`` is recorded per cell.
At the largest size, hybrid search is re-run with other ``search_threads`` and
``hnsw_ef`` settings (with dense recall@5 against exact search) to see where its
tail comes from. Writes ``bench/results/query.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from _common import REPO, SHARED, machine, write_result
from ragserve.config import EmbedSettings, RetrieveSettings
from ragserve.documents import Chunk, Document, chunk_id
from ragserve.embed import SentenceTransformerEmbedder
from ragserve.ingest.chunk import chunk_sections
from ragserve.ingest.extract import extract_sections
from ragserve.retrieve import Retriever
from ragserve.store import SPARSE_ENCODING, SparseEncoder
from ragserve.store.base import IndexedChunk, IndexSchema, SearchMode
from ragserve.store.edge import EdgeStore

logger = logging.getLogger("bench.query")

Vectors = npt.NDArray[np.float32]
QUESTIONS = SHARED / "eval" / "ray-docs-dev.jsonl"
CORPUS_DIRS = (REPO / "tmp" / "raydocs", REPO / "tmp" / "sample")
DOCS_ROOT = "https://docs.ray.io/en/master/"
TARGET_P99_MS = 10.0
BASE_CACHE = REPO / "tmp" / "bench"
PROGRESS_EVERY = 100_000
NOISE_BLOCK = 1000
BASELINE_SKIPPED = (
    "qdrant-client local mode is a brute-force numpy scan over every point, each point a "
    "Python object: at 100k it answered p50 160 ms / p99 428 ms (bench/results/query.json), "
    "so at 1M it would be ~1.6 s a query with several GB of Python objects; not run"
)
_SENTENCE = re.compile(r"(?<=[.!?:])\s+|\n+")


@dataclass(frozen=True, slots=True)
class Query:
    question: str
    dense: Vectors


class CachedEmbedder:
    """An ``Embedder`` that answers known questions from a cache, so the
    ``Retriever`` path can be timed without the model's forward pass."""

    def __init__(self, cache: dict[str, Vectors], model_name: str) -> None:
        self._cache = cache
        self._model_name = model_name

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        return int(next(iter(self._cache.values())).shape[0])

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return np.stack([self._cache[text] for text in texts])

    def embed_query(self, text: str) -> Vectors:
        return self._cache[text]

    def warm_up(self) -> None:
        """Nothing to load: the vectors are cached."""


# -- data ---------------------------------------------------------------------


def load_questions(limit: int) -> list[str]:
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"].strip() for line in lines if line.strip()]
    return [q for q in questions if q][:limit]


def real_chunks(wanted: int, questions: list[str], rng: random.Random) -> tuple[list[Chunk], str]:
    """At least ``wanted`` real chunks (or all there are) from the first corpus found."""
    for folder in CORPUS_DIRS:
        pages = sorted(folder.rglob("*.html")) if folder.is_dir() else []
        if not pages:
            continue
        rng.shuffle(pages)
        chunks: list[Chunk] = []
        for page in pages:
            url = DOCS_ROOT + page.relative_to(folder).as_posix()
            html = page.read_text(encoding="utf-8", errors="replace")
            document = Document(url=url, content=html)
            sections = extract_sections(document)
            chunks.extend(chunk_sections(sections, document_hash=document.content_hash))
            if len(chunks) >= wanted:
                break
        if chunks:
            return chunks, str(folder.relative_to(REPO))
    return _question_chunks(questions), str(QUESTIONS)


def _question_chunks(questions: list[str]) -> list[Chunk]:
    """Fallback corpus: chunks made of the dev questions, a page per 8 questions."""
    chunks = []
    for n in range(0, len(questions), 4):
        url = f"{DOCS_ROOT}questions/{n // 32}"
        text = " ".join(questions[n : n + 4])
        ordinal = (n // 4) % 8
        chunks.append(
            Chunk(chunk_id(url, ordinal, "q"), text, url, url, "Questions", (), ordinal, "q", 8)
        )
    return chunks


def remix(source: Chunk, donor: Chunk, copy: int, rng: random.Random) -> Chunk:
    """A synthetic chunk shaped like ``source``: same page structure and vocabulary."""
    sentences = [s for s in _SENTENCE.split(source.text) if s.strip()] or [source.text]
    donor_sentences = [s for s in _SENTENCE.split(donor.text) if s.strip()] or [donor.text]
    sentences[rng.randrange(len(sentences))] = rng.choice(donor_sentences)
    rng.shuffle(sentences)
    text = " ".join(sentences)[:512]
    url = f"{source.url}?copy={copy}"
    return Chunk(
        id=chunk_id(url, source.ordinal, source.document_hash),
        text=text,
        url=url,
        section_url=source.section_url.replace(source.url, url, 1),
        title=source.title,
        heading_path=source.heading_path,
        ordinal=source.ordinal,
        document_hash=source.document_hash,
        chunk_count=source.chunk_count,
    )


def noisy_rows(base: Vectors, start: int, stop: int, noise: float, seed: int) -> Vectors:
    """Rows ``start..stop`` of the corpus's vectors, made again on demand.

    Row ``n`` is ``base[n]`` for the real chunks and ``base[n % len(base)]``
    plus gaussian noise, unit length, beyond them. The noise of each block of
    ``NOISE_BLOCK`` rows comes from a generator seeded by ``(seed, block)``, so
    a row is the same whichever span it is made in: the index is built batch by
    batch and the exact scan of the recall check makes the rows again in larger
    spans instead of holding every vector at once.
    """
    first, last = start // NOISE_BLOCK, (stop - 1) // NOISE_BLOCK
    blocks = []
    for block in range(first, last + 1):
        rows = np.arange(block * NOISE_BLOCK, (block + 1) * NOISE_BLOCK)
        vectors = base[rows % len(base)].astype(np.float32)
        rng = np.random.default_rng([seed, block])
        noisy = vectors + noise * rng.standard_normal(vectors.shape, np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        synthetic = rows >= len(base)
        vectors[synthetic] = noisy[synthetic]
        blocks.append(vectors)
    offset = first * NOISE_BLOCK
    return np.concatenate(blocks)[start - offset : stop - offset]


@dataclass(frozen=True, slots=True)
class RealBase:
    """The real, really embedded chunks every corpus size is grown from."""

    chunks: list[Chunk]
    vectors: Vectors
    source: str
    embed_s: float
    cached: bool = False


def embed_real_base(
    count: int, embedder: SentenceTransformerEmbedder, questions: list[str]
) -> RealBase:
    """Embeds with one torch thread: on this oversubscribed 2-core machine that is
    ~1.7x faster than two (measured 16-18 vs 9-10 texts/s). Data prep only.

    The vectors are cached under ``tmp/bench/`` keyed by the chunk ids and the
    model, so a second run (100k first to estimate, then 1M) does not pay the
    ~150 s of embedding again.
    """
    import torch

    chunks, source = real_chunks(count, questions, random.Random(7))
    chunks = chunks[:count]
    cache = BASE_CACHE / f"query-base-{len(chunks)}.npz"
    ids = np.asarray([chunk.id for chunk in chunks])
    if cache.exists():
        stored = np.load(cache)
        if str(stored["model"]) == embedder.model_name and np.array_equal(stored["ids"], ids):
            return RealBase(chunks, stored["vectors"], source, float(stored["embed_s"]), True)
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        vectors = embedder.embed_documents([chunk.text for chunk in chunks])
        embed_s = time.perf_counter() - started
    finally:
        torch.set_num_threads(default_threads)
    BASE_CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cache, ids=ids, vectors=vectors, embed_s=embed_s, model=embedder.model_name)
    return RealBase(chunks, vectors, source, embed_s)


class Corpus:
    """``size`` chunks grown from the real base, made batch by batch on demand.

    Nothing here holds more than one batch: a 1M-chunk corpus is ~1.5 GB of
    vectors and ~1 GB of chunk text, which a list of ``Chunk`` objects would
    double. Chunk ``n`` is always made the same way, so any batch can be made
    again (the recall check's exact scan does).
    """

    def __init__(self, base: RealBase, size: int, noise: float) -> None:
        self.base = base
        self.size = size
        self.noise = noise
        self.real = min(size, len(base.chunks))
        self.source = base.source
        self.dimension = int(base.vectors.shape[1])
        self._rows = {
            (chunk.url, chunk.ordinal): n for n, chunk in enumerate(base.chunks[: self.real])
        }

    def chunks(self, start: int, stop: int) -> list[Chunk]:
        real = self.base.chunks[: self.real]
        rng = random.Random(start * 1_000_003 + self.size)
        return [
            real[n]
            if n < len(real)
            else remix(real[n % len(real)], rng.choice(real), n // len(real), rng)
            for n in range(start, stop)
        ]

    def vectors(self, start: int, stop: int) -> Vectors:
        return noisy_rows(self.base.vectors[: self.real], start, stop, self.noise, self.size)

    def spans(self, batch: int) -> Iterator[tuple[int, int]]:
        for start in range(0, self.size, batch):
            yield start, min(start + batch, self.size)

    def row_of(self, chunk: Chunk) -> int:
        """The row a stored chunk was made from: its source chunk and copy number."""
        url, _, copy = chunk.url.partition("?copy=")
        return int(copy or 0) * self.real + self._rows[(url, chunk.ordinal)]


# -- timing -------------------------------------------------------------------


def time_cell(
    search: Callable[[Query], object],
    queries: list[Query],
    *,
    warmup: int,
    minimum: int,
    max_seconds: float,
) -> dict[str, Any]:
    """Sequential latency of ``search`` over ``queries`` (cycled), after warm-up."""
    for n in range(warmup):
        search(queries[n % len(queries)])
    wall_ms: list[float] = []
    cpu_ms: list[float] = []
    load_before = os.getloadavg()[0]
    deadline = time.perf_counter() + max_seconds
    while len(wall_ms) < minimum and time.perf_counter() < deadline:
        query = queries[len(wall_ms) % len(queries)]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        search(query)
        wall_ms.append((time.perf_counter() - wall0) * 1000)
        cpu_ms.append((time.process_time() - cpu0) * 1000)
    return summarise(wall_ms, cpu_ms, load_before)


def summarise(wall_ms: list[float], cpu_ms: list[float], load_before: float) -> dict[str, Any]:
    wall = np.asarray(wall_ms)
    cpu = np.asarray(cpu_ms)
    slow = wall > TARGET_P99_MS
    mean = float(wall.mean())
    return {
        "queries": len(wall),
        "p50_ms": _r(np.percentile(wall, 50)),
        "p95_ms": _r(np.percentile(wall, 95)),
        "p99_ms": _r(np.percentile(wall, 99)),
        "max_ms": _r(wall.max()),
        "mean_ms": _r(mean),
        "qps": round(1000.0 / mean, 1),
        "cpu_p50_ms": _r(np.percentile(cpu, 50)),
        "cpu_p99_ms": _r(np.percentile(cpu, 99)),
        # Of the queries over the target, how many spent under half their wall
        # time on a CPU of this process, i.e. mostly waited to be scheduled.
        # Process CPU time also counts background threads (torch/OpenMP spin,
        # Edge workers), so this is a lower bound on the waiting ones.
        "over_target": int(slow.sum()),
        "over_target_mostly_waiting": int((slow & (cpu < 0.5 * wall)).sum()),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def _uptime() -> str:
    import subprocess

    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _r(value: float | np.floating[Any]) -> float:
    return round(float(value), 3)


def embed_query_stats(
    embedder: SentenceTransformerEmbedder, questions: list[str]
) -> tuple[dict[str, Any], dict[str, Vectors]]:
    """``embed_query`` latency with torch's default thread count, then with one thread.

    On a shared, oversubscribed CPU, torch's intra-op threads wait for each other
    at every operator when one of them is descheduled; the one-thread run shows
    what that costs. The default count is restored afterwards.
    """
    import torch

    started = time.perf_counter()
    embedder.warm_up()
    load_s = time.perf_counter() - started
    default_threads = torch.get_num_threads()
    stats, cache = _embed_query_run(embedder, questions)
    stats.update(
        model=embedder.model_name,
        device=embedder.device,
        precision=embedder.precision,
        model_load_s=round(load_s, 2),
        torch_threads=default_threads,
    )
    if default_threads > 1:
        torch.set_num_threads(1)
        try:
            stats["torch_threads_1"], _ = _embed_query_run(embedder, questions)
        finally:
            torch.set_num_threads(default_threads)
    return stats, cache


def _embed_query_run(
    embedder: SentenceTransformerEmbedder, questions: list[str]
) -> tuple[dict[str, Any], dict[str, Vectors]]:
    for question in questions[:5]:
        embedder.embed_query(question)
    wall_ms, cpu_ms, cache = [], [], {}
    load_before = os.getloadavg()[0]
    for question in questions:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        cache[question] = embedder.embed_query(question)
        wall_ms.append((time.perf_counter() - wall0) * 1000)
        cpu_ms.append((time.process_time() - cpu0) * 1000)
    stats = summarise(wall_ms, cpu_ms, load_before)
    for key in ("over_target", "over_target_mostly_waiting"):
        stats.pop(key)
    return stats, cache


# -- engines ------------------------------------------------------------------


def fill_edge(
    store: EdgeStore, corpus: Corpus, model: str, encoder: SparseEncoder, batch: int
) -> dict[str, Any]:
    """Build the index batch by batch through ``EdgeStore.upsert``, then optimize.

    Each batch is made, BM25-encoded and upserted before the next is made, so
    the benchmark's own memory stays one batch however large the corpus; what
    grows is Edge's. Times the three steps apart and logs progress.
    """
    store.open(IndexSchema(model, corpus.dimension, 512, 50, sparse=SPARSE_ENCODING))
    make_s = sparse_s = upsert_s = 0.0
    started = time.perf_counter()
    for start, stop in corpus.spans(batch):
        t0 = time.perf_counter()
        chunks = corpus.chunks(start, stop)
        vectors = corpus.vectors(start, stop)
        t1 = time.perf_counter()
        sparse = encoder.encode_documents([chunk.text for chunk in chunks])
        t2 = time.perf_counter()
        store.upsert([IndexedChunk(chunk, vectors[n], sparse[n]) for n, chunk in enumerate(chunks)])
        t3 = time.perf_counter()
        make_s, sparse_s, upsert_s = make_s + t1 - t0, sparse_s + t2 - t1, upsert_s + t3 - t2
        if stop % PROGRESS_EVERY < batch or stop == corpus.size:
            logger.info(
                "upserted %d/%d in %.0f s, rss %.0f MB, load %.2f",
                stop,
                corpus.size,
                time.perf_counter() - started,
                rss_mb(),
                os.getloadavg()[0],
            )
    memory_after_upsert = memory_mb()
    t0 = time.perf_counter()
    store.optimize()
    optimize_s = time.perf_counter() - t0
    logger.info("optimized in %.0f s, rss %.0f MB", optimize_s, rss_mb())
    return {
        "make_chunks_s": round(make_s, 2),
        "sparse_encode_s": round(sparse_s, 2),
        "upsert_s": round(upsert_s, 2),
        "optimize_s": round(optimize_s, 2),
        "build_total_s": round(time.perf_counter() - started, 2),
        "memory_mb_after_upsert": memory_after_upsert,
        "memory_mb_after_optimize": memory_mb(),
        "batch": batch,
    }


def rss_mb() -> float:
    """This process's resident set now (Edge runs in it), in MB."""
    return memory_mb()["rss_mb"]


def memory_mb() -> dict[str, float]:
    """Resident set now, split: ``anon_mb`` is heap (what the process really
    needs), ``file_mb`` the pages of Edge's mmap'ed segment files that are
    resident: page cache, which the kernel drops under memory pressure and
    reads back on demand, so it counts in RSS without being owned by it."""
    fields = {"VmRSS:": "rss_mb", "RssAnon:": "anon_mb", "RssFile:": "file_mb"}
    found = dict.fromkeys(fields.values(), 0.0)
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key = line.split(maxsplit=1)[0] if line.strip() else ""
            if key in fields:
                found[fields[key]] = round(int(line.split()[1]) / 1024)
    return found


def peak_rss_mb() -> float:
    """The process's peak resident set so far (``ru_maxrss``, KB on Linux), in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mb(path: Path) -> dict[str, float]:
    """Allocated bytes on disk (sparse WAL files count as what they hold) and apparent size."""
    allocated = apparent = 0
    for directory, _, files in os.walk(path):
        for name in files:
            info = os.stat(os.path.join(directory, name))
            allocated += info.st_blocks * 512
            apparent += info.st_size
    return {"disk_mb": round(allocated / 1e6, 1), "apparent_mb": round(apparent / 1e6, 1)}


def edge_search(
    store: EdgeStore, encoder: SparseEncoder, mode: SearchMode
) -> Callable[[Query], object]:
    def search(query: Query) -> object:
        sparse = encoder.encode_query(query.question) if mode != "dense" else None
        dense = query.dense if mode != "sparse" else None
        return store.search(dense=dense, sparse=sparse, limit=5, mode=mode)

    return search


def dense_recall(
    store: EdgeStore, corpus: Corpus, queries: list[Query], batch: int
) -> dict[str, float]:
    """Recall@5 of the store's dense (HNSW) search against an exact scan.

    The synthetic copies make near-ties (dozens of points within a few
    thousandths of cosine), where strict id recall says little. ``tie_recall``
    also accepts a hit whose exact cosine is within 0.005 of the exact 5th best,
    and ``cosine_gap_5th`` is the mean shortfall of HNSW's 5th hit.

    The exact scan makes the corpus's vectors again batch by batch, keeping
    only each query's running top 5 and the cosines of the rows HNSW found.
    """
    found = [
        [
            corpus.row_of(hit.chunk)
            for hit in store.search(dense=q.dense, sparse=None, limit=5, mode="dense")
        ]
        for q in queries
    ]
    pairs = [(n, row) for n, rows in enumerate(found) for row in rows]
    matrix = np.stack([q.dense for q in queries])
    best = np.full((len(queries), 5), -np.inf, np.float32)
    best_rows = np.full((len(queries), 5), -1, np.int64)
    found_cosine: dict[tuple[int, int], float] = {}
    for start, stop in corpus.spans(batch * 20):
        similarity = matrix @ corpus.vectors(start, stop).T
        rows = np.broadcast_to(np.arange(start, stop), similarity.shape)
        merged = np.concatenate([best, similarity], axis=1)
        merged_rows = np.concatenate([best_rows, rows], axis=1)
        top = np.argpartition(-merged, 5, axis=1)[:, :5]
        best = np.take_along_axis(merged, top, axis=1)
        best_rows = np.take_along_axis(merged_rows, top, axis=1)
        for n, row in pairs:
            if start <= row < stop:
                found_cosine[(n, row)] = float(similarity[n, row - start])
    strict = tolerant = 0
    gaps = []
    for n, hit_rows in enumerate(found):
        fifth = float(best[n].min())
        strict += len(set(best_rows[n].tolist()) & set(hit_rows))
        cosines = [found_cosine[(n, row)] for row in hit_rows]
        tolerant += sum(1 for cosine in cosines if cosine >= fifth - 0.005)
        gaps.append(fifth - cosines[-1] if cosines else fifth)
    return {
        "recall_at_5": round(strict / (5 * len(queries)), 4),
        "tie_recall_at_5": round(tolerant / (5 * len(queries)), 4),
        "cosine_gap_5th": round(float(np.mean(gaps)), 5),
    }


def bench_edge(
    corpus: Corpus, queries: list[Query], args: argparse.Namespace, tune: bool, model: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    size = corpus.size
    encoder = SparseEncoder()
    cells: list[dict[str, Any]] = []
    timing = {"warmup": args.warmup, "minimum": args.queries, "max_seconds": args.cell_seconds}
    with tempfile.TemporaryDirectory(prefix="bench-query-", dir=args.index_dir) as data_dir:
        store = EdgeStore(
            data_dir, "bench", hnsw_ef=args.hnsw_ef, search_threads=args.search_threads
        )
        build: dict[str, Any] = fill_edge(store, corpus, model, encoder, args.batch)
        build.update(disk_mb(store.path))
        build["dense_recall"] = dense_recall(store, corpus, queries[:100], args.batch)
        logger.info("edge %d chunks built: %s", size, build)
        for mode in ("dense", "sparse", "hybrid"):
            stats = time_cell(edge_search(store, encoder, mode), queries, **timing)
            cells.append(_cell(size, "ragserve-edge", mode, stats))
            logger.info("edge %d %s: %s", size, mode, stats)
        cache = {query.question: query.dense for query in queries}
        retriever = Retriever(
            store, CachedEmbedder(cache, model), RetrieveSettings(), sparse_encoder=encoder
        )
        stats = time_cell(lambda q: retriever.retrieve(q.question), queries, **timing)
        cells.append(_cell(size, "ragserve-edge", "retriever-hybrid", stats))
        logger.info("edge %d retriever: %s", size, stats)
        build["memory_mb_serving"] = memory_mb()
        if tune:
            build["tuning"] = tune_hybrid(store, data_dir, corpus, queries, encoder, args)
        store.close()
        build["peak_rss_mb_process"] = round(peak_rss_mb())
    return cells, build


def tune_hybrid(
    store: EdgeStore,
    data_dir: str,
    corpus: Corpus,
    queries: list[Query],
    encoder: SparseEncoder,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Hybrid latency under other ``hnsw_ef`` / ``search_threads`` settings.

    ``hnsw_ef`` is per handle, so it shares the open shard; ``search_threads`` is
    fixed when the shard opens, so the store is closed and loaded again for it.
    """
    timing = {"warmup": args.warmup, "minimum": args.queries, "max_seconds": args.cell_seconds}
    results = []
    for ef in (32, 64, 128, 256, 512):
        handle = EdgeStore(data_dir, "bench", hnsw_ef=ef)
        stats = time_cell(edge_search(handle, encoder, "hybrid"), queries, **timing)
        stats["dense_recall"] = dense_recall(handle, corpus, queries[:100], args.batch)
        handle.close()
        results.append({"hnsw_ef": ef, "search_threads": None, **stats})
        logger.info("tune ef=%d: %s", ef, stats)
    store.close()
    for threads in (1, 2):
        started = time.perf_counter()
        handle = EdgeStore(data_dir, "bench", search_threads=threads)
        handle.count()  # loads the shard with this thread count
        load_s = round(time.perf_counter() - started, 2)
        stats = time_cell(edge_search(handle, encoder, "hybrid"), queries, **timing)
        results.append({"hnsw_ef": None, "search_threads": threads, "load_s": load_s, **stats})
        logger.info("tune threads=%d: %s", threads, stats)
        handle.close()
    return results


def bench_tutorial(
    corpus: Corpus, queries: list[Query], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The tutorial's store: qdrant-client local mode, dense only."""
    from qdrant_client import QdrantClient, models

    size = corpus.size
    client = QdrantClient(":memory:")
    client.create_collection(
        "docs",
        vectors_config=models.VectorParams(size=corpus.dimension, distance=models.Distance.COSINE),
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # local mode warns above 20k points
        for start, stop in corpus.spans(args.batch):
            part = corpus.chunks(start, stop)
            client.upsert(
                "docs",
                points=models.Batch(
                    ids=[chunk.id for chunk in part],
                    vectors=corpus.vectors(start, stop).tolist(),
                    payloads=[{"text": chunk.text, "source": chunk.url} for chunk in part],
                ),
            )
    build = {"upsert_s": round(time.perf_counter() - started, 2)}

    def search(query: Query) -> object:
        return client.query_points("docs", query=query.dense.tolist(), limit=5)

    stats = time_cell(
        search,
        queries,
        warmup=min(args.warmup, 5),
        minimum=args.queries,
        max_seconds=args.cell_seconds,
    )
    logger.info("tutorial %d dense: %s", size, stats)
    client.close()
    return [_cell(size, "tutorial-qdrant-memory", "dense", stats)], build


def _cell(size: int, engine: str, mode: str, stats: dict[str, Any]) -> dict[str, Any]:
    return {"n_chunks": size, "engine": engine, "mode": mode, **stats}


# -- main ---------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    questions = load_questions(args.questions)
    embedder = SentenceTransformerEmbedder(EmbedSettings())
    embed_stats, cache = embed_query_stats(embedder, questions)
    logger.info("embed_query: %s", embed_stats)
    queries = [Query(question, vector) for question, vector in cache.items()]
    cells: list[dict[str, Any]] = []
    builds: dict[str, Any] = {}
    largest = max(args.sizes)
    base = embed_real_base(min(args.base_chunks, largest), embedder, questions)
    logger.info(
        "embedded %d real chunks in %.1f s%s",
        len(base.chunks),
        base.embed_s,
        " (cached)" if base.cached else "",
    )
    for size in sorted(args.sizes):
        corpus = Corpus(base, size, args.noise)
        logger.info("corpus %d from %s, load %s", size, corpus.source, os.getloadavg())
        edge_cells, edge_build = bench_edge(
            corpus, queries, args, size == largest and not args.no_tune, embedder.model_name
        )
        cells += edge_cells
        build: dict[str, Any] = {"real_chunks": corpus.real, "ragserve_edge": edge_build}
        if args.skip_baseline:
            pass
        elif size > args.baseline_max:
            build["tutorial_qdrant_memory"] = {"skipped": BASELINE_SKIPPED}
        else:
            tutorial_cells, tutorial_build = bench_tutorial(corpus, queries, args)
            cells += tutorial_cells
            build["tutorial_qdrant_memory"] = tutorial_build
        builds[str(size)] = build
    return {
        "machine": machine(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "uptime": _uptime(),
        "settings": {
            "sizes": sorted(args.sizes),
            "questions": len(queries),
            "min_timed_queries": args.queries,
            "warmup": args.warmup,
            "cell_seconds": args.cell_seconds,
            "top_k": 5,
            "base_chunks": args.base_chunks,
            "noise_sigma": args.noise,
            "search_threads": args.search_threads,
            "hnsw_ef": args.hnsw_ef,
            "sparse_encoding_in_latency": "sparse, hybrid, retriever-hybrid",
            "batch": args.batch,
            "target": "hybrid top-5 p99 <= 10 ms at 100k; <= 20 ms and RSS <= 8 GB at 1M",
            "over_target_ms": TARGET_P99_MS,
        },
        "embed_query": embed_stats,
        "cells": cells,
        "build": {
            "real_chunks_embedded": len(base.chunks),
            "embed_real_chunks_s": round(base.embed_s, 2),
            "corpus_source": base.source,
            **builds,
        },
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--chunks", type=int, default=None, help="one size (replaces --sizes)")
    parser.add_argument(
        "--index-dir", default=None, help="where the temporary index is built (default: /tmp)"
    )
    parser.add_argument(
        "--baseline-max",
        type=int,
        default=100_000,
        help="skip the brute-force tutorial store above this many chunks",
    )
    parser.add_argument("--queries", type=int, default=300, help="timed queries per cell (min)")
    parser.add_argument("--quick", action="store_true", help="2,000 chunks only (smoke run)")
    parser.add_argument("--questions", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--cell-seconds", type=float, default=60.0)
    parser.add_argument("--base-chunks", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.03)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--hnsw-ef", type=int, default=None)
    parser.add_argument("--search-threads", type=int, default=None)
    parser.add_argument("--no-tune", action="store_true", help="skip the ef/threads sweep")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--out", default="query", help="result name under bench/results/")
    args = parser.parse_args()
    if args.chunks is not None:
        args.sizes = [args.chunks]
    if args.quick:
        args.sizes = [2000]
        if args.out == "query":
            args.out = "query-quick"  # a smoke run must not overwrite the real figures
    return args


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "sentence_transformers", "ragserve"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args()
    result = run(args)
    path = write_result(args.out, result)
    logger.info("wrote %s", Path(path).relative_to(REPO))
    print(format_table(result))


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{'chunks':>7} {'engine':<23} {'mode':<17} {'p50':>8} {'p95':>8} {'p99':>8}"
        f" {'mean':>8} {'qps':>7}"
    ]
    for cell in result["cells"]:
        lines.append(
            f"{cell['n_chunks']:>7} {cell['engine']:<23} {cell['mode']:<17}"
            f" {cell['p50_ms']:>8.2f} {cell['p95_ms']:>8.2f} {cell['p99_ms']:>8.2f}"
            f" {cell['mean_ms']:>8.2f} {cell['qps']:>7.1f}"
        )
    embed = result["embed_query"]
    lines.append(f"embed_query p50 {embed['p50_ms']} ms, p99 {embed['p99_ms']} ms")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
