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


def bench_search(stickers: int = 100_000, n_queries: int = 1000, reference_queries: int = 20,
                 write_every: int = 0) -> dict:
    """Search latency over N stickers; with `write_every` > 0, one index write (a sticker's document
    replaced by itself plus one more query, as the change log applies a validation) after every that
    many searches. Parity is checked after all the writes, against rank_bm25 on the final corpus."""
    import bm25s
    from rank_bm25 import BM25Okapi

    from bots.startup import settled_heap
    from core.search import BM25Index

    corpus, _ = _synthetic_corpus(stickers)
    rng = random.Random(5)
    start = time.perf_counter()
    index = BM25Index.from_documents((sticker_id, tokens) for sticker_id, queries in enumerate(corpus)
                                     for tokens in queries)
    build_seconds = time.perf_counter() - start
    index.prepare()
    # Test queries: real queries of random stickers, sometimes two joined (as a labeler types them).
    targets = [rng.randrange(stickers) for _ in range(n_queries)]
    probes = [list(rng.choice(corpus[t])) + (list(rng.choice(corpus[t])) if rng.random() < 0.3 else [])
              for t in targets]

    ours, ours_cpu, writes = [], [], []
    # As in the running bots: the start-up heap (here the corpus) out of the collector's sight.
    with settled_heap():
        for number, (tokens, target) in enumerate(zip(probes, targets, strict=True)):
            if write_every and number % write_every == 0:
                sticker = rng.randrange(stickers)
                corpus[sticker].append(list(rng.choice(corpus[rng.randrange(stickers)])))
                start = time.perf_counter()
                index.replace_document(sticker, [t for q in corpus[sticker] for t in q])
                writes.append((time.perf_counter() - start) * 1000)
            start, start_cpu = time.perf_counter(), time.thread_time()
            index.search(tokens, k=10, target=target)
            ours.append((time.perf_counter() - start) * 1000)
            ours_cpu.append((time.thread_time() - start_cpu) * 1000)

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
    everyone = list(range(stickers))
    for tokens in probes[:reference_queries] + [["w0"], ["w0", "w1", "w2"]]:
        start = time.perf_counter()
        expected = okapi.get_scores(tokens)
        reference.append((time.perf_counter() - start) * 1000)
        parity &= bool(np.allclose(index.sticker_scores(tokens, everyone), expected, rtol=1e-9, atol=1e-9))
    return {
        "stickers": stickers,
        "queries": sum(len(q) for q in corpus),
        "p50_ms": round(_percentile(ours, 50), 4),
        "p99_ms": round(_percentile(ours, 99), 4),
        # CPU time of the searching thread: the same searches without the waits of a busy machine.
        "p50_cpu_ms": round(_percentile(ours_cpu, 50), 4),
        "p99_cpu_ms": round(_percentile(ours_cpu, 99), 4),
        "rank_bm25_p50_ms": round(statistics.median(reference), 3),
        "bm25s_p50_ms": round(_percentile(theirs, 50), 4),
        "parity": parity,
        "write_every": write_every,
        "writes": len(writes),
        "write_p50_ms": round(_percentile(writes, 50), 4) if writes else None,
        "write_p99_ms": round(_percentile(writes, 99), 4) if writes else None,
        "build_seconds": round(build_seconds, 2),
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
    cpu_before = _cpu_seconds()
    with _MemorySampler() as memory:
        start = time.perf_counter()
        report = import_usticker(engine, Path(folder), progress=False, workers=workers)
        seconds = time.perf_counter() - start
    # The importer has joined its worker processes by now, so their CPU time is in RUSAGE_CHILDREN.
    cpu_seconds = _cpu_seconds() - cpu_before
    # ru_maxrss also catches short peaks between samples: never report less than it.
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": max(memory.peak_rss, own_peak) / 2**20,
               "peak_pss_mb": memory.peak_pss / 2**20, "workers": workers, "report": report.as_dict()})


def _cpu_seconds() -> float:
    """User and system CPU seconds of this process and of its children that have ended."""
    return sum(usage.ru_utime + usage.ru_stime
               for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def bench_import(messages: int = 1_000_000, stickers: int = 104_000) -> dict:
    from offline.synthetic import write_synthetic_usticker

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
        "cpu_seconds": round(result["cpu_seconds"], 2),
        "messages_per_s": round(messages / result["seconds"]),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "peak_pss_mb": round(result["peak_pss_mb"], 1),
        "workers": result["workers"],
    }


def _engine_cycles(url: str, cycles: int) -> float:
    from core.game import Game
    from offline.demo_pack import load_demo_pack
    from offline.simulation import Simulation, demo_vocabulary
    from storage.db import make_engine
    from storage.migrate import upgrade
    from storage.settings import Settings

    engine = make_engine(url)
    upgrade(engine)
    load_demo_pack(engine)
    game = Game.open(engine, Settings(storage={"database_url": url}, rules={"gold_rate": 0.0}, _env_file=None),
                     rng=random.Random(2))
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
        from offline.databases import throwaway_postgres_database

        with throwaway_postgres_database(postgres_admin_url, "sticktionary_bench") as url:
            result["cycles_per_s_postgres"] = round(_engine_cycles(url, cycles), 1)
    return result


# ---------------------------------------------------------------------------- export
_SYLLABLES = "ba be bi bo bu da de di do du ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu " \
             "pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu wa we wi wo ya yo".split()


def _bench_vocabulary(rng: random.Random) -> dict[str, list[str]]:
    """English: made-up words. Chinese: the 20,000 most frequent words of jieba's own dictionary,
    as players type real words (random characters would all be unknown to jieba, which real
    queries are not)."""
    import jieba

    english = sorted({"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(40_000)})
    with (Path(jieba.__file__).parent / "dict.txt").open(encoding="utf-8") as f:
        frequencies = [(int(fields[1]), fields[0]) for fields in (line.split() for line in f) if len(fields) >= 2]
    chinese = [word for _, word in sorted(frequencies, reverse=True)[:20_000]]
    return {"en": english, "zh": chinese}


def build_export_database(url: str, queries: int, seed: int = 11, progress: bool = False) -> dict:
    """A database shaped like a busy season of play: rounds of ~4 queries, each shown to a retriever on
    a grid of 9 stickers with up to 3 picks, a mix of validated, reviewed, corrected, discarded and
    pending queries (the usable ones with the search tokens the game stores), some withdrawn players."""
    from datetime import timedelta

    from sqlalchemy import insert
    from tqdm import tqdm

    from core.search_log import search_tokens
    from storage.db import make_engine
    from storage.migrate import upgrade
    from storage.models import (
        USABLE_QUERY_STATUSES,
        LabelRound,
        Player,
        Query,
        QuerySource,
        QueryStatus,
        RetrievalTask,
        Review,
        RoundStatus,
        Sticker,
        TaskQuery,
        TaskStatus,
        utcnow,
    )

    rng = random.Random(seed)
    vocabulary = _bench_vocabulary(rng)
    engine = make_engine(url)
    upgrade(engine)
    now = utcnow()
    n_players = max(20, queries // 500)
    n_stickers = max(10, queries // 8)
    with engine.begin() as connection:
        connection.execute(insert(Player), [
            dict(telegram_user_id=10_000 + i, display_name=f"player {i}", pseudonym=f"p{i:08d}",
                 language="zh" if i % 10 < 3 else "en", consent_at=now,
                 consent_withdrawn_at=now if i % 50 == 7 else None, is_moderator=i == 0, banned=False, active=True,
                 flagged=False, leaderboard_opt_in=False, created_at=now, last_active_at=now)
            for i in range(n_players)])
        for start in range(0, n_stickers, 50_000):
            connection.execute(insert(Sticker), [
                dict(id=i + 1, key=f"{10**18 + i * 7919}.png", file_path=f"stickers/{10**18 + i * 7919}.png",
                     format="png", created_at=now) for i in range(start, min(n_stickers, start + 50_000))])
    statuses = ([QueryStatus.VALIDATED] * 85 + [QueryStatus.ACCEPTED] * 5 + [QueryStatus.CORRECTED] * 3
                + [QueryStatus.DISCARDED] * 4 + [QueryStatus.NEEDS_REVIEW] * 3)
    made = round_id = task_id = 0
    bar = tqdm(total=queries, disable=not progress, desc="building", unit=" queries")
    while made < queries:
        rounds, tasks, rows, links, reviews = [], [], [], [], []
        while made < queries and len(rows) < 50_000:
            round_id += 1
            task_id += 1
            player = rng.randrange(1, n_players + 1)  # ids follow the insert order above
            language = "zh" if (player - 1) % 10 < 3 else "en"
            sticker = rng.randrange(1, n_stickers + 1)
            created = now - timedelta(minutes=rng.randrange(60 * 24 * 60))
            rounds.append(dict(id=round_id, kind="label", player_id=player,
                               sticker_id=sticker, language=language, status=RoundStatus.SUBMITTED,
                               retrieval_count=1, created_at=created, submitted_at=created))
            # A grid as the game shows it (the target among 8 others) and up to 3 picks, the target's rank
            # among them or a miss: the judgments export writes a row per candidate.
            grid = [sticker, *rng.sample(range(1, n_stickers + 1), 8)]
            rng.shuffle(grid)
            picks = rng.sample(grid, 3)
            hit_rank = picks.index(sticker) + 1 if sticker in picks else None
            tasks.append(dict(id=task_id, retriever_id=1 + player % n_players, label_round_id=round_id,
                              sticker_id=sticker, language=language, query_ids=[], candidate_ids=grid, picks=picks,
                              seed=task_id, is_gold=False, status=TaskStatus.ANSWERED, hit_rank=hit_rank,
                              created_at=created, answered_at=created))
            for _ in range(min(rng.randint(2, 6), queries - made)):
                made += 1
                words = vocabulary[language]
                text = (" " if language == "en" else "").join(rng.choice(words) for _ in range(rng.randint(1, 3)))
                status = rng.choice(statuses)
                corrected = text + " ok" if status == QueryStatus.CORRECTED else None
                # As the game stores them when a query becomes usable (core.search_log).
                tokens = search_tokens(corrected or text) if status in USABLE_QUERY_STATUSES else None
                rows.append(dict(id=made, sticker_id=sticker, language=language, text=text, normalized_text=text,
                                 corrected_text=corrected, search_tokens=tokens,
                                 author_id=rounds[-1]["player_id"], label_round_id=round_id,
                                 source=QuerySource.LABELER, status=status, hit_count=rng.randint(0, 3),
                                 created_at=created, validated_at=created))
                links.append(dict(task_id=task_id, query_id=made))
                tasks[-1]["query_ids"].append(made)  # the queries shown
                if status in (QueryStatus.ACCEPTED, QueryStatus.CORRECTED, QueryStatus.DISCARDED):
                    reviews.append(dict(query_id=made, moderator_id=1, action=str(status)[:7], old_text=text,
                                        created_at=created))
        with engine.begin() as connection:
            for table, batch in ((LabelRound, rounds), (RetrievalTask, tasks), (Query, rows), (TaskQuery, links),
                                 (Review, reviews)):
                if batch:
                    connection.execute(insert(table), batch)
        bar.update(len(rows))
    bar.close()
    # Planner statistics, as a live database has them (PostgreSQL's autovacuum keeps them; right
    # after a bulk load it has none, and the export's query would be planned blind).
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    return {"players": n_players, "stickers": n_stickers, "queries": made, "rounds": round_id}


def _export_worker(url: str, export_dir: str, queue) -> None:
    from core.exports import run_export
    from core.pseudonyms import work_folder_key
    from storage.db import make_engine
    from storage.settings import Settings

    engine = make_engine(url)
    # A random key kept in the benchmark's own (temporary) folder, as the demo and play do.
    key = work_folder_key(Path(export_dir).parent)
    settings = Settings(storage={"database_url": url}, exports={"export_dir": Path(export_dir), "export_semantic": False},
                        privacy={"pseudonym_key": key}, _env_file=None)
    start = time.perf_counter()
    summary = run_export(engine, settings)
    seconds = time.perf_counter() - start
    # The export is one process: the kernel's high-water mark is its exact peak (no sampling thread
    # competing for the GIL, no peak missed between samples).
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss * 1024
    # CPU seconds too: on a shared machine they say more about the code than the wall clock does.
    queue.put({"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mb": peak / 2**20,
               "exported": summary.queries, "stickers": summary.stickers})


def bench_export(queries: int = 1_000_000, postgres_admin_url: str | None = None, progress: bool = True) -> dict:
    import contextlib

    from offline.databases import throwaway_postgres_database

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if postgres_admin_url:
            url = stack.enter_context(throwaway_postgres_database(postgres_admin_url, "sticktionary_bench"))
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        built = build_export_database(url, queries, progress=progress)
        # A fresh process, so the peak memory is the export's alone.
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        worker = context.Process(target=_export_worker, args=(url, str(Path(tmp) / "exports"), queue))
        worker.start()
        result = queue.get()
        worker.join()
    return {
        "queries": built["queries"],
        "seconds": round(result["seconds"], 2),
        "cpu_seconds": round(result["cpu_seconds"], 2),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "exported_queries": result["exported"],
        "database": "postgresql" if postgres_admin_url else "sqlite",
    }


_STARTUP_CHILD = """
import json, resource, sys, time
from core.game import Game
from storage.db import make_engine
from storage.settings import Settings

url = sys.argv[1]
game = Game.open(make_engine(url), Settings(storage={"database_url": url}, _env_file=None))
game.follow_search_changes()
game.previews.preview("en", "ready")
print(json.dumps({"loaded_queries": game.search.loaded_queries,
                  "stickers": {language: len(game.indexes[language]) for language in game.indexes.languages()},
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
game.close()
"""


def bench_startup(queries: int = 1_000_000, postgres_admin_url: str | None = None, progress: bool = True) -> dict:
    """From process start until a bot could answer: a fresh interpreter builds its Game (every
    language's index in bulk from the usable queries, the follower running) and answers a preview.
    The database, with `queries` usable queries among others that are not (pending, discarded, of
    players who withdrew consent), is built first and not timed."""
    import contextlib
    import json
    import subprocess
    import sys

    from offline.databases import throwaway_postgres_database

    # build_export_database's mix: 93% of its queries usable, 2% of players withdrew consent; a
    # little more, so at least `queries` are usable (the figure reports how many were loaded).
    total = int(queries / 0.88) + 1
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if postgres_admin_url:
            url = stack.enter_context(throwaway_postgres_database(postgres_admin_url, "sticktionary_bench"))
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        build_export_database(url, total, progress=progress)  # with the search tokens the game stores
        start = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", _STARTUP_CHILD, url], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parents[2], check=True)
        seconds = time.perf_counter() - start
    result = json.loads(child.stdout.strip().splitlines()[-1])
    return {
        "queries": result["loaded_queries"],
        "seconds_to_ready": round(seconds, 2),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "stickers": result["stickers"],
        "database": "postgresql" if postgres_admin_url else "sqlite",
    }
