"""The encoder alone, torch vs ONNX Runtime, on the same real chunks, in one run.

    .venv/bin/python bench/encoder.py                       # 1,500 sample-corpus chunks
    .venv/bin/python bench/encoder.py --corpus ray-docs --chunks 3000
    .venv/bin/python bench/encoder.py --folder tmp/pydoc/usr/share/doc/python3.11/html
        # (apt-get download python3.11-doc && dpkg -x python3.11-doc_*.deb tmp/pydoc)

Why: ingest on a CPU spends its time in the encoder, so this is the number the
ingest rate is bounded by, and the evidence that the ONNX export gives the same
vectors (min/mean cosine per chunk against torch) before it is used. Tokens/s is
the fair unit across corpora: a corpus of longer chunks costs more per chunk
(attention grows with length), which chunks/s alone hides.

Backends measured: ``torch`` (sentence-transformers, as the ingest runs it:
bf16 autocast where the CPU has native bf16, else fp32), ``onnx`` (the fp32
export made by ``ragserve models export``) and with ``--int8`` also ``onnx-int8`` (that
export with onnxruntime's dynamic INT8 quantisation, made here in a temporary
folder: its vectors drift to a mean cosine of 0.95, too far to share an index).
Each backend embeds the chunks once to warm up, then ``--repeats`` times timed.
Page figures (chunks per page, extract+chunk time) come from every page read
(``--pages``), and the chunks encoded are a seeded sample of them: they are what
tells two corpora apart upstream of the encoder (README "Why the Python docs
ingested slower").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, unpack, write_result
from ragserve.config import DEFAULT_EMBED_MODEL, EmbedSettings
from ragserve.documents import Document
from ragserve.embed import Embedder, OnnxEmbedder, OnnxProfile, SentenceTransformerEmbedder
from ragserve.ingest.chunk import chunk_sections
from ragserve.ingest.extract import extract_sections
from ragserve.onnx_export import export_model, spec_for


def load_chunks(
    folder: Path, wanted: int, min_pages: int, seed: int
) -> tuple[list[str], dict[str, Any]]:
    """``wanted`` chunk texts cut by the project's own extractor and chunker, and page figures.

    Pages are read in a seeded random order until there are ``wanted`` chunks and
    at least ``min_pages`` pages; the chunks encoded are a seeded sample of all of
    them, so one long page does not fill the sample. The page figures (chunks per
    page, extract+chunk time per page) are what tell two corpora apart upstream
    of the encoder.
    """
    pages = sorted(p for p in folder.rglob("*.html") if p.is_file())
    random.Random(seed).shuffle(pages)
    texts: list[str] = []
    per_page: list[int] = []
    page_bytes: list[int] = []
    parse_s = 0.0
    for page in pages:
        html = page.read_text(encoding="utf-8", errors="replace")
        started = time.perf_counter()
        document = Document(url="https://docs.example.org/" + page.name, content=html)
        chunks = chunk_sections(extract_sections(document), document_hash=document.content_hash)
        parse_s += time.perf_counter() - started
        texts.extend(chunk.text for chunk in chunks)
        per_page.append(len(chunks))
        page_bytes.append(len(html.encode()))
        if len(texts) >= wanted and len(per_page) >= min_pages:
            break
    total = len(texts)
    sample = random.Random(seed).sample(texts, min(wanted, total))
    figures = {
        "pages_read": len(per_page),
        "chunks_cut": total,
        "chunks_per_page": {
            "mean": round(total / len(per_page), 1),
            "median": statistics.median(per_page),
            "p90": float(np.percentile(per_page, 90)),
            "max": max(per_page),
        },
        "page_kb_mean": round(sum(page_bytes) / len(page_bytes) / 1024, 1),
        "extract_chunk_s": round(parse_s, 2),
        "extract_chunk_chunks_per_s": round(total / parse_s, 1),
        "extract_chunk_ms_per_page": round(1000 * parse_s / len(per_page), 1),
    }
    return sample, figures


def token_lengths(model_dir: Path, texts: list[str], max_length: int) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return [len(e.ids) for e in tokenizer.encode_batch(texts)]


def quantized_copy(folder: Path, into: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    into.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "tokenizer.json", into / "tokenizer.json")
    import onnx

    quantize_dynamic(
        str(folder / "model.onnx"),
        str(into / "model.onnx"),
        weight_type=QuantType.QInt8,
        # The fused Attention op is outside shape inference's domain.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return into


def timed(embedder: Embedder, texts: list[str], repeats: int) -> tuple[np.ndarray, list[float]]:
    vectors = embedder.embed_documents(texts)  # warm-up, and the vectors compared
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        embedder.embed_documents(texts)
        seconds.append(time.perf_counter() - started)
    return np.asarray(vectors), seconds


def cosine_figures(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Per-chunk cosine of two backends' (unit) vectors: min, mean and 1st percentile."""
    cosines = np.sum(vectors * reference, axis=1)
    return {
        "min": round(float(cosines.min()), 6),
        "mean": round(float(cosines.mean()), 6),
        "p01": round(float(np.percentile(cosines, 1)), 6),
    }


def _where(folder: Path) -> str:
    """The folder as the result names it: relative to the repository when inside it."""
    resolved = folder.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else folder.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=["sample", "ray-docs"], default="sample")
    parser.add_argument("--folder", type=Path, help="Any folder of HTML pages instead.")
    parser.add_argument("--chunks", type=int, default=1500)
    parser.add_argument("--pages", type=int, default=0, help="Read at least this many pages.")
    parser.add_argument(
        "--backends", default="torch,torch-fp32,onnx", help="Comma list (torch first)."
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--int8", action="store_true", help="Also dynamic INT8 (far lower cosine: not used)."
    )
    parser.add_argument("--models-dir", type=Path, default=Path("~/.cache/ragserve/models"))
    parser.add_argument("--name", default=None, help="Result file name [encoder].")
    args = parser.parse_args()

    folder = args.folder or unpack(args.corpus, REPO / "tmp" / "bench")
    texts, page_figures = load_chunks(folder, args.chunks, args.pages, args.seed)
    spec = spec_for(DEFAULT_EMBED_MODEL)
    assert spec is not None
    export = export_model(DEFAULT_EMBED_MODEL, args.models_dir.expanduser())
    lengths = token_lengths(export, texts, spec.max_length)
    tokens = sum(lengths)
    settings = EmbedSettings(model=DEFAULT_EMBED_MODEL, device="cpu", batch_size=args.batch_size)
    profile = OnnxProfile(pooling="mean", max_length=spec.max_length)

    makers: dict[str, Any] = {
        "torch": lambda: SentenceTransformerEmbedder(settings, threads=args.threads),
        "torch-fp32": lambda: SentenceTransformerEmbedder(
            settings.model_copy(update={"precision": "fp32"}), threads=args.threads
        ),
        "onnx": lambda: OnnxEmbedder(settings, export, profile=profile, threads=args.threads),
    }
    scratch = Path(tempfile.mkdtemp(prefix="ragserve-int8-"))
    if args.int8:
        int8 = quantized_copy(export, scratch / "int8")
        makers["onnx-int8"] = lambda: OnnxEmbedder(
            settings, int8, profile=profile, threads=args.threads
        )

    wanted = args.backends.split(",") + (["onnx-int8"] if args.int8 else [])
    backends = {name: makers[name] for name in wanted}
    results: dict[str, Any] = {}
    reference: np.ndarray | None = None
    fp32: np.ndarray | None = None
    try:
        for name, make in backends.items():
            embedder = make()
            vectors, seconds = timed(embedder, texts, args.repeats)
            best = min(seconds)
            entry: dict[str, Any] = {
                "seconds": [round(s, 3) for s in seconds],
                "chunks_per_s": round(len(texts) / best, 1),
                "tokens_per_s": round(tokens / best, 1),
            }
            if name.startswith("torch"):
                entry["precision"] = embedder.precision  # type: ignore[attr-defined]
            if name == "torch":
                reference = vectors
            if name == "torch-fp32":
                fp32 = vectors
            if name != "torch" and reference is not None:
                entry["cosine_vs_torch"] = cosine_figures(vectors, reference)
            if name.startswith("onnx") and fp32 is not None:
                entry["cosine_vs_torch_fp32"] = cosine_figures(vectors, fp32)
            results[name] = entry
            print(name, json.dumps(entry), flush=True)
            del embedder
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    first = next(iter(results))
    torch_rate = results[first]["chunks_per_s"]
    payload = {
        "corpus": _where(args.folder) if args.folder else args.corpus,
        **page_figures,
        "chunks": len(texts),
        "tokens": tokens,
        "tokens_per_chunk": {
            "mean": round(tokens / len(texts), 1),
            "median": statistics.median(lengths),
            "p90": float(np.percentile(lengths, 90)),
            "at_max_length": sum(1 for n in lengths if n >= spec.max_length),
        },
        "chars_per_chunk_mean": round(sum(map(len, texts)) / len(texts), 1),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "backends": results,
        "speedup_vs_torch": {
            name: round(entry["chunks_per_s"] / torch_rate, 2)
            for name, entry in results.items()
            if name != first
        },
        "speedup_reference": first,
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "machine": machine(),
    }
    path = write_result(args.name or "encoder", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
