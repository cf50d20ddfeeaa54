"""`sticktionary bench inline`: how long a bot takes to answer an inline query, without the network:
the ranking (BM25 over the usable queries, core/game/inline_search.py), the file-id look-up in the
database, and the answer built as the inbox stores it (`AnswerInline`, encoded).

The database is an SQLite file like a live one: N stickers with 2-10 seed queries each (the search
benchmark's Zipf vocabulary), most with a file id of the bot, some without (left out of the results).
The index is built by the start-up path the bots use (`Game.open`). The probes are real queries of
random stickers (some two joined, as people type), a share of empty queries (the most-used stickers,
after the first computed that ranking) and of second pages.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import numpy as np

BOT = "bench"
WITHOUT_FILE_ID = 0.05  # share of stickers not uploaded yet


def _percentile(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(samples), q)), 4) if samples else 0.0


def build_inline_database(url: str, stickers: int, seed: int = 3) -> tuple[list[list[str]], int]:
    """Stickers, their usable queries and the bot's file ids; returns each sticker's query texts and
    how many queries were stored."""
    from sqlalchemy import insert

    from offline.bench.suite import _synthetic_corpus
    from storage.db import make_engine
    from storage.migrate import upgrade
    from storage.models import Query, QuerySource, QueryStatus, Sticker, TelegramFile, utcnow

    corpus, _ = _synthetic_corpus(stickers, seed)
    texts = [[" ".join(tokens) for tokens in queries] for queries in corpus]
    rng = random.Random(seed)
    engine = make_engine(url)
    upgrade(engine)
    now, made = utcnow(), 0
    with engine.begin() as connection:
        for start in range(0, stickers, 20_000):
            ids = range(start, min(stickers, start + 20_000))
            connection.execute(insert(Sticker), [dict(id=i + 1, key=f"{10**18 + i}.webp", file_path=f"s/{i}.webp",
                                                      format="webp", created_at=now) for i in ids])
            rows = [dict(sticker_id=i + 1, language="en", text=text, normalized_text=text, search_tokens=text,
                         source=QuerySource.SEED, status=QueryStatus.VALIDATED, created_at=now, validated_at=now)
                    for i in ids for text in texts[i]]
            made += len(rows)
            connection.execute(insert(Query), rows)
            connection.execute(insert(TelegramFile), [
                dict(bot_key=BOT, sticker_id=i + 1, kind="sticker", file_id=f"CAACAgIAAxkBAAE{i:012d}", created_at=now)
                for i in ids if rng.random() >= WITHOUT_FILE_ID])
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    return texts, made


def bench_inline(stickers: int = 100_000, n_queries: int = 1000, seed: int = 5) -> dict:
    from bots.messages.replies import AnswerInline, Outgoing, encode_outgoing
    from bots.startup import settled_heap
    from core.game import Game
    from storage.db import make_engine
    from storage.settings import Settings

    with tempfile.TemporaryDirectory(prefix="bench-inline-") as folder:
        url = f"sqlite:///{Path(folder) / 'inline.sqlite3'}"
        started = time.perf_counter()
        texts, queries = build_inline_database(url, stickers)
        build_seconds = time.perf_counter() - started
        db = make_engine(url)
        settings = Settings(storage={"database_url": url}, _env_file=None)
        started = time.perf_counter()
        game = Game.open(db, settings)
        load_seconds = time.perf_counter() - started
        rng = random.Random(seed)
        probes = []
        for _ in range(n_queries):
            roll = rng.random()
            if roll < 0.05:
                probes.append(("empty", "", ""))
            else:
                sticker = texts[rng.randrange(stickers)]
                text = rng.choice(sticker) + (" " + rng.choice(sticker) if rng.random() < 0.3 else "")
                probes.append(("next page" if roll < 0.10 else "text", text, "50" if roll < 0.10 else ""))
        started = time.perf_counter()
        game.inline.popular("en")  # the empty query's ranking, computed once per interval
        popular_seconds = time.perf_counter() - started
        timings: dict[str, list[float]] = {"text": [], "empty": [], "next page": []}
        cpu: list[float] = []
        results = []
        with settled_heap():
            for kind, text, offset in probes:
                start, start_cpu = time.perf_counter(), time.thread_time()
                answer = game.inline.answer(BOT, "en", text, offset)
                reply = AnswerInline("4242", [(r.result_id, r.file_id) for r in answer.results], 300, False,
                                     answer.next_offset)
                encode_outgoing(Outgoing(1, [reply]))
                timings[kind].append((time.perf_counter() - start) * 1000)
                cpu.append((time.thread_time() - start_cpu) * 1000)
                results.append(len(answer.results))
        game.close()
        db.dispose()
    every = [t for samples in timings.values() for t in samples]
    return {
        "stickers": stickers,
        "queries": queries,
        "inline_queries": n_queries,
        "p50_ms": _percentile(every, 50),
        "p99_ms": _percentile(every, 99),
        "max_ms": round(max(every), 4),
        # CPU time of the answering thread: the same answers without the waits of a busy machine.
        "p50_cpu_ms": _percentile(cpu, 50),
        "p99_cpu_ms": _percentile(cpu, 99),
        **{f"{kind.replace(' ', '_')}_p99_ms": _percentile(samples, 99) for kind, samples in timings.items()},
        "mean_results": round(sum(results) / len(results), 2),
        "popular_ranking_seconds": round(popular_seconds, 3),
        "build_seconds": round(build_seconds, 2),
        "index_load_seconds": round(load_seconds, 2),
    }
