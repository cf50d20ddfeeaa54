"""Benchmarks. Each returns one dict of figures; references are measured in the same run."""

from __future__ import annotations

import multiprocessing
import os
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples), q))


def _synthetic_corpus(stickers: int, seed: int = 3) -> tuple[list[list[list[str]]], list[str]]:
    """Per sticker, 2–10 queries of 1–3 words from a Zipf-distributed vocabulary (like real queries)."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(30_000)]
    per_sticker = rng.integers(2, 11, size=stickers)
    lengths = rng.integers(1, 4, size=int(per_sticker.sum()))
    words = (rng.zipf(1.3, size=int(lengths.sum())) - 1) % len(vocabulary)
    corpus, w, q = [], 0, 0
    for count in per_sticker.tolist():
        queries = []
        for _ in range(count):
            n = int(lengths[q])
            queries.append([vocabulary[i] for i in words[w:w + n].tolist()])
            w += n
            q += 1
        corpus.append(queries)
    return corpus, vocabulary


def bench_search(stickers: int = 100_000, n_queries: int = 1000, reference_queries: int = 20) -> dict:
    import bm25s
    from rank_bm25 import BM25Okapi

    from core.search import BM25Index

    corpus, _ = _synthetic_corpus(stickers)
    rng = random.Random(5)
    index = BM25Index()
    for sticker_id, queries in enumerate(corpus):
        for tokens in queries:
            index.add_tokens(sticker_id, tokens)
    index.prepare()
    # Test queries: real queries of random stickers, sometimes two joined (as a labeler types them).
    targets = [rng.randrange(stickers) for _ in range(n_queries)]
    probes = [list(rng.choice(corpus[t])) + (list(rng.choice(corpus[t])) if rng.random() < 0.3 else [])
              for t in targets]

    ours = []
    for tokens, target in zip(probes, targets, strict=True):
        start = time.perf_counter()
        index.search(tokens, k=10, target=target)
        ours.append((time.perf_counter() - start) * 1000)

    documents = [[t for q in queries for t in q] for queries in corpus]
    retriever = bm25s.BM25(k1=1.5, b=0.75)
    retriever.index(documents, show_progress=False)
    theirs = []
    for tokens in probes:
        start = time.perf_counter()
        retriever.retrieve([tokens], k=10, show_progress=False)
        theirs.append((time.perf_counter() - start) * 1000)

    okapi = BM25Okapi(documents)
    reference, parity = [], True
    for tokens in probes[:reference_queries]:
        start = time.perf_counter()
        expected = okapi.get_scores(tokens)
        reference.append((time.perf_counter() - start) * 1000)
        parity &= bool(np.allclose(index.scores(tokens), expected, rtol=1e-9, atol=1e-9))
    return {
        "stickers": stickers,
        "queries": sum(len(q) for q in corpus),
        "p50_ms": round(_percentile(ours, 50), 4),
        "p99_ms": round(_percentile(ours, 99), 4),
        "rank_bm25_p50_ms": round(statistics.median(reference), 3),
        "bm25s_p50_ms": round(_percentile(theirs, 50), 4),
        "parity": parity,
    }


class _MemorySampler:
    """Samples the resident memory of this process and all its children (the curation workers)
    every few milliseconds; the peak of the sum is what the import needed at once."""

    def __init__(self, interval: float = 0.05):
        import threading

        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            rss = pss = 0
            for process in [self.process, *self.process.children(recursive=True)]:
                try:
                    info = process.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _import_worker(folder: str, database: str, queue) -> None:
    from core.importing import import_usticker
    from storage.db import make_engine
    from storage.migrate import upgrade

    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    workers = min(4, os.cpu_count() or 1)
    with _MemorySampler() as memory:
        start = time.perf_counter()
        report = import_usticker(engine, Path(folder), progress=False, workers=workers)
        seconds = time.perf_counter() - start
    # ru_maxrss also catches short peaks between samples: never report less than it.
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put({"seconds": seconds, "peak_rss_mb": max(memory.peak_rss, own_peak) / 2**20,
               "peak_pss_mb": memory.peak_pss / 2**20, "workers": workers, "report": report.as_dict()})


def bench_import(messages: int = 1_000_000, stickers: int = 104_000) -> dict:
    from storage.synthetic import write_synthetic_usticker

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "usticker"
        write_synthetic_usticker(folder, messages=messages, stickers=stickers, progress=False)
        # A fresh process, so the peak memory is the importer's alone.
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        worker = context.Process(target=_import_worker, args=(str(folder), str(Path(tmp) / "bench.sqlite3"), queue))
        worker.start()
        result = queue.get()
        worker.join()
    return {
        "messages": messages,
        "seconds": round(result["seconds"], 2),
        "messages_per_s": round(messages / result["seconds"]),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "peak_pss_mb": round(result["peak_pss_mb"], 1),
        "workers": result["workers"],
    }


def _engine_cycles(url: str, cycles: int) -> float:
    from core.engine import Game
    from sticktionary.demo_pack import load_demo_pack
    from sticktionary.simulation import Simulation, demo_vocabulary
    from storage.db import make_engine
    from storage.migrate import upgrade
    from storage.settings import Settings

    engine = make_engine(url)
    upgrade(engine)
    load_demo_pack(engine)
    game = Game(engine, Settings(database_url=url, gold_rate=0.0, _env_file=None), rng=random.Random(2))
    simulation = Simulation(game, demo_vocabulary(), seed=2)
    simulation.add_players("en", 10, 10_000)
    simulation.add_players("zh", 10, 20_000)
    done = 0
    start = time.perf_counter()
    while done < cycles:
        progressed = False
        for player in simulation.players:
            if simulation.play_turn(player) == "retriever":
                done += 1
            progressed = True
            if done >= cycles:
                break
        if not progressed:
            break
    seconds = time.perf_counter() - start
    engine.dispose()
    return done / seconds


def bench_engine(cycles: int = 300, postgres_admin_url: str | None = None) -> dict:
    result = {"cycles": cycles}
    with tempfile.TemporaryDirectory() as tmp:
        result["cycles_per_s_sqlite"] = round(_engine_cycles(f"sqlite:///{tmp}/engine.sqlite3", cycles), 1)
    result["cycles_per_s_postgres"] = None
    if postgres_admin_url:
        from storage.db import throwaway_postgres_database

        with throwaway_postgres_database(postgres_admin_url, "sticktionary_bench") as url:
            result["cycles_per_s_postgres"] = round(_engine_cycles(url, cycles), 1)
    return result
