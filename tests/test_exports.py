"""The research export: contents, filters, determinism, atomicity and retention (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from sqlmodel import Session

import core.exports
from core.exports import ExportRefused, annotator_id, run_export
from core.research import split_queries, sticker_in_test
from storage.export_files import (
    LATEST,
    PARTIAL_PREFIX,
    apply_retention,
    latest_export,
    list_exports,
    read_manifest,
    sha256_file,
)
from storage.models import Player, RetrievalTask
from tests.helpers import make_player, make_world

MOMENT = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def _target(db, task_id):
    with Session(db) as session:
        return session.get(RetrievalTask, task_id).sticker_id


def _round_for_retrieval(game, labeler, retriever, queries, hit: bool):
    """One labeler round with these queries, then one retrieval of it that hits or misses."""
    label = game.assignment.next_task(labeler, prefer="labeler")
    for text in queries:
        game.labeling.add_query(labeler, label.round_id, text)
    game.labeling.submit_round(labeler, label.round_id)
    task = game.assignment.next_task(retriever, prefer="retriever")
    assert task.role == "retriever"
    target = _target(game.db.engine, task.task_id)
    picks = [target] if hit else [c.id for c in task.candidates if c.id != target][:1]
    game.retrieval.submit_ranking(retriever, task.task_id, picks)
    return label.sticker


@pytest.fixture
def played(db, settings):
    """Seeds, validated queries, a corrected, an accepted and a discarded one, and a player who
    later withdrew consent, in both languages."""
    game = make_world(db, settings, stickers=10, languages=("en", "zh"))
    alice, bob = make_player(game, 1, "en"), make_player(game, 2, "en")
    carol = make_player(game, 3, "en")
    moderator = make_player(game, 9, "en")
    game.players.set_moderator(moderator)
    hit_sticker = _round_for_retrieval(game, alice, bob, ["happy dance", "party time"], hit=True)
    miss_sticker = _round_for_retrieval(game, alice, bob, ["sleepy cat", "tired kitty", "nap time"], hit=False)
    review = {item.query.text: item.query.id for item in game.moderation.pending_reviews(moderator, limit=10)}
    game.moderation.correct_query(moderator, review["sleepy cat"], "sleepy kitten")
    game.moderation.accept_query(moderator, review["tired kitty"])
    game.moderation.discard_query(moderator, review["nap time"])
    withdrawn_sticker = _round_for_retrieval(game, carol, bob, ["secret words"], hit=True)
    game.players.withdraw_consent(carol)
    zh_a, zh_b = make_player(game, 11, "zh"), make_player(game, 12, "zh")
    _round_for_retrieval(game, zh_a, zh_b, ["开心跳舞"], hit=True)
    return {"game": game, "hit": hit_sticker, "miss": miss_sticker, "withdrawn": withdrawn_sticker,
            "alice": alice, "carol": carol}


def _csv_rows(path):
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["sticker_id", "labeled_queries"]
        return {row[0]: row[1].split(", ") for row in reader}


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_contents_and_filters(db, settings, played):
    summary = run_export(db, settings, now=MOMENT)
    folder = settings.exports.export_dir / summary.version
    assert summary.version == "2026-11-30T030000Z" and latest_export(settings.exports.export_dir) == summary.version
    assert (settings.exports.export_dir / LATEST).resolve() == folder.resolve()

    en = _csv_rows(folder / "sticker_queries_en_release.csv")
    hit, miss, withdrawn = played["hit"].key, played["miss"].key, played["withdrawn"].key
    assert {"happy dance", "party time"} <= set(en[hit])
    assert "sleepy kitten" in en[miss] and "tired kitty" in en[miss]  # corrected text, accepted query
    assert "sleepy cat" not in en[miss] and "nap time" not in en[miss]  # original of a correction; discarded
    assert "secret words" not in en.get(withdrawn, [])  # withdrew consent
    assert list(en) == sorted(en)  # release order
    zh = _csv_rows(folder / "sticker_queries_zh_release.csv")
    assert any("开心跳舞" in queries for queries in zh.values())

    records = _jsonl(folder / "queries.jsonl")
    assert len(records) == summary.queries == sum(map(len, en.values())) + sum(map(len, zh.values()))
    table = pq.read_table(folder / "queries.parquet").to_pylist()
    times = ("reviewed_at", "created_at", "validated_at")
    # The same records; queries.jsonl may list first the few that type its columns (storage/typed_jsonl.py).
    assert sorted(({k: v.isoformat() if k in times and v else v for k, v in row.items()} for row in table),
                  key=lambda r: r["query_id"]) == sorted(records, key=lambda r: r["query_id"])
    assert all(r["created_at"].endswith("+00:00") for r in records if r["source"] != "seed")
    # A seed's times would be its import's: not exported (StickerQueries does not say when it was written).
    seeds = [r for r in records if r["source"] == "seed"]
    assert seeds and all(r["created_at"] is None and r["validated_at"] is None for r in seeds)
    by_text = {r["text"]: r for r in records}
    corrected = by_text["sleepy kitten"]
    # Privacy by default: the player's own text of a corrected query stays home; times to the hour.
    assert corrected["original_text"] is None and corrected["review_decision"] == "correct"
    assert all(r["original_text"] is None for r in records)
    assert all(r[t] is None or r[t][13:] == ":00:00+00:00" for r in records for t in times)
    assert by_text["tired kitty"]["review_decision"] == "accept"
    # Provenance: where each query came from and what made it ground truth.
    assert (corrected["source"], corrected["validation"]) == ("labeler", "moderator_correct")
    assert (by_text["tired kitty"]["source"], by_text["tired kitty"]["validation"]) == ("labeler", "moderator_accept")
    assert (by_text["happy dance"]["source"], by_text["happy dance"]["validation"]) == ("labeler", "retrieval_hit")
    assert by_text["happy dance"]["label_round"] == by_text["party time"]["label_round"] is not None
    assert by_text["happy dance"]["split"] == by_text["party time"]["split"]  # one round, one side of the split
    assert by_text["happy dance"]["retrieved_by"] == 1 and by_text["happy dance"]["shown_to_retrievers"] == 1
    alice_id = annotator_id(settings.privacy.pseudonym_key, played["alice"])
    assert by_text["happy dance"]["annotator"] == alice_id
    seeds = [r for r in records if r["source"] == "seed"]
    assert seeds and all(r["annotator"] is None and r["validation"] == "seed" for r in seeds)
    # Pseudonymous: neither Telegram ids nor names nor the in-game pseudonym appear anywhere.
    with Session(db) as session:
        alice = session.get(Player, played["alice"])
    blob = (folder / "queries.jsonl").read_text(encoding="utf-8")
    assert alice.display_name not in blob and alice.pseudonym not in blob and '"telegram' not in blob

    manifest = read_manifest(folder)
    for entry in manifest["files"]:
        assert sha256_file(folder / entry["path"]) == entry["sha256"]
    rows = {e["path"]: e["rows"] for e in manifest["files"]}
    assert rows["queries.jsonl"] == rows["queries.parquet"] == len(records)
    assert rows["sticker_queries_en_release.csv"] == len(en)
    assert manifest["software"]["sticktionary"]

    stats = json.loads((folder / "stats.json").read_text())["languages"]
    assert stats["en"]["queries"]["queries"] == sum(map(len, en.values()))
    assert stats["en"]["participation"]["labelers"] == 1  # carol withdrew; alice labeled
    assert stats["en"]["participation"]["retrievers"] == 1
    metrics = json.loads((folder / "metrics.json").read_text())["languages"]
    assert set(metrics["en"]["bm25_retrieval"]) >= {"recall@1", "recall@10", "recall@50"}
    assert metrics["en"]["lexical_similarity"]["bleu"] is not None

    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlicense: mit\n") and "configs:" in card and "sticker_queries_zh_release.csv" in card
    # The card states the provenance counts of this export, seeds included, truthfully.
    assert f"{len(seeds)} of the {len(records)} queries" in card
    for language in ("en", "zh"):
        for row in stats[language]["provenance"]:
            assert f"| {language} | {row['source']} | {row['validation']} | {row['queries']} |" in card
    assert sum(row["queries"] for lang in stats.values() for row in lang["provenance"]) == len(records)
    # Seeds were shown (taboo, retrieval tasks): the card says how many, never "never shown".
    shown = sum(r["shown_to_retrievers"] > 0 for r in seeds if r["language"] == "en")
    assert stats["en"]["seeds"]["seeds"] == sum(r["language"] == "en" for r in seeds)
    assert stats["en"]["seeds"]["seeds_shown_to_retrievers"] == shown
    assert f"Seeds shown to retrievers: en {shown}, zh " in card
    assert "never shown" not in card and "no player or moderator of this game saw them" not in card
    # Table 4 says what it compared: pairs by different people only, counted by kind.
    lexical = metrics["en"]["lexical_similarity"]
    assert lexical["pair_kinds"]["distinct_authors"] + lexical["pair_kinds"]["player_and_seed"] == \
        lexical["pairs_compared"]
    assert f"distinct authors {lexical['pair_kinds']['distinct_authors']}, player and seed" in card
    assert f"| en | {lexical['stickers_compared']} | {lexical['queries_compared']} | {lexical['pairs_compared']} |" \
        in card
    for section in ("Personal and Sensitive Information", "Bias, risks and limitations", "Dataset Structure",
                    "annotations_creators:", "language_creators:", "multilinguality:", "source_datasets:",
                    "arxiv.org/abs/2506.01668", "extended|metchee/sticker-queries"):
        assert section in card


def test_beir_split_is_deterministic_and_complete(db, settings, played):
    first = run_export(db, settings, now=MOMENT)
    second = run_export(db, settings, now=MOMENT + timedelta(days=1))
    assert first.version != second.version
    for language in ("en", "zh"):
        a, b = (settings.exports.export_dir / s.version / "beir" / language for s in (first, second))
        for name in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv"):
            assert (a / name).read_bytes() == (b / name).read_bytes()
        corpus = {d["_id"]: d for d in _jsonl(a / "corpus.jsonl")}
        queries = {q["_id"]: q for q in _jsonl(a / "queries.jsonl")}
        qrels = {}
        for split in ("train", "test"):
            lines = (a / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
            assert lines[0] == "query-id\tcorpus-id\tscore"
            for line in lines[1:]:
                query_id, sticker, score = line.split("\t")
                assert score == "1" and sticker in corpus and query_id not in qrels
                qrels[query_id] = (split, sticker)
        assert set(qrels) == set(queries)
        for sticker, document in corpus.items():
            mine = [(queries[q]["text"], split) for q, (split, s) in sorted(qrels.items(), key=lambda kv: int(
                kv[0][1:])) if s == sticker]
            train = [text for text, split in mine if split == "train"]
            assert train and document["text"] == ", ".join(train)  # the document is its train queries
            if len(mine) == 1:
                assert mine[0][1] == "train"
            assert document["metadata"]["file_path"].endswith(sticker)


def test_split_is_eighty_twenty_and_independent_of_order():
    queries = [f"query {i}" for i in range(10)]
    train, test = split_queries("1.png", queries)
    assert len(test) == 2 and len(train) == 8
    shuffled = list(reversed(queries))
    _, test_again = split_queries("1.png", shuffled)
    assert {queries[i] for i in test} == {shuffled[i] for i in test_again}
    assert split_queries("1.png", ["only one"]) == ([0], [])


def test_an_interrupted_export_leaves_nothing_visible(db, settings, played, monkeypatch):
    good = run_export(db, settings, now=MOMENT)

    def broken_card(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(core.exports, "dataset_card", broken_card)
    with pytest.raises(OSError):
        run_export(db, settings, now=MOMENT + timedelta(days=1))
    assert list_exports(settings.exports.export_dir) == [good.version]
    assert latest_export(settings.exports.export_dir) == good.version
    assert not list(settings.exports.export_dir.glob(f"{PARTIAL_PREFIX}*"))

    # A run killed outright leaves its partial folder: never listed, removed by the next export.
    stale = settings.exports.export_dir / f"{PARTIAL_PREFIX}2026-12-01T030000Z-4242"
    (stale / "beir").mkdir(parents=True)
    (stale / "queries.jsonl").write_text("{}\n")
    assert list_exports(settings.exports.export_dir) == [good.version]
    monkeypatch.undo()
    newer = run_export(db, settings, now=MOMENT + timedelta(days=2))
    assert not stale.exists()
    assert list_exports(settings.exports.export_dir) == [good.version, newer.version]


def test_retention_keeps_the_newest(db, settings, played):
    versions = [run_export(db, settings, now=MOMENT + timedelta(days=d)).version for d in range(4)]
    assert apply_retention(settings.exports.export_dir, keep=2) == versions[:2]
    assert list_exports(settings.exports.export_dir) == versions[2:]
    assert latest_export(settings.exports.export_dir) == versions[-1]


def test_export_refuses_the_default_pseudonym_key(db, settings, played):
    for key in ("change-me", "  "):
        with pytest.raises(ExportRefused, match="STICKTIONARY_PSEUDONYM_KEY"):
            run_export(db, settings.replace(privacy={"pseudonym_key": key}), now=MOMENT)
    assert list_exports(settings.exports.export_dir) == []


def test_without_seeds_leaves_them_out_of_files_and_metrics(db, settings, played):
    with_seeds = run_export(db, settings, now=MOMENT)
    summary = run_export(db, settings.replace(exports={"export_without_seeds": True}), now=MOMENT + timedelta(1))
    folder = settings.exports.export_dir / summary.version
    records = _jsonl(folder / "queries.jsonl")
    assert records and all(r["source"] != "seed" for r in records)
    seeds = sum(row["queries"] for lang in with_seeds.stats.values() for row in lang["provenance"]
                if row["source"] == "seed")
    assert seeds > 0 and summary.queries == with_seeds.queries - seeds
    en = _csv_rows(folder / "sticker_queries_en_release.csv")
    assert not any(q.startswith("seed") for queries in en.values() for q in queries)
    assert summary.stats["en"]["queries"]["queries"] == sum(map(len, en.values()))
    for language in ("en", "zh"):
        corpus = _jsonl(folder / "beir" / language / "corpus.jsonl")
        assert not any("seed" in d["text"] or "表情" in d["text"] for d in corpus)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "no seed queries" in card and "--without-seeds" in card and "extended|metchee/sticker-queries" not in card


def test_original_text_and_exact_times_only_when_asked(db, settings, played):
    settings = settings.replace(privacy={"export_original_text": True, "export_time_resolution": "second"})
    summary = run_export(db, settings, now=MOMENT)
    records = {r["text"]: r for r in _jsonl(settings.exports.export_dir / summary.version / "queries.jsonl")}
    assert records["sleepy kitten"]["original_text"] == "sleepy cat"
    assert records["happy dance"]["original_text"] is None  # never corrected: text is the player's own
    assert all("." not in r["created_at"] for r in records.values() if r["created_at"] is not None)


def test_sticker_level_split_holds_whole_stickers_out(db, settings, played):
    summary = run_export(db, settings, now=MOMENT)
    folder = settings.exports.export_dir / summary.version
    records = _jsonl(folder / "queries.jsonl")
    for language in ("en", "zh"):
        beir = folder / "beir-stickers" / language
        corpus = _jsonl(beir / "corpus.jsonl")
        assert corpus and all(d["text"] == "" for d in corpus)  # no query text in any document
        sides = {}
        for split in ("train", "test"):
            for line in (beir / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]:
                query_id, sticker, _ = line.split("\t")
                assert sides.setdefault(sticker, split) == split  # a sticker is wholly on one side
        mine = [r for r in records if r["language"] == language]
        assert all(r["sticker_split"] == sides[r["sticker_id"]] for r in mine)
        assert all(r["sticker_split"] == ("test" if sticker_in_test(r["sticker_id"]) else "train") for r in mine)


def test_arrow_columns_equal_pyarrow_arrays_without_importing_pandas():
    """The export builds its batches from buffers (storage.arrow_columns): pyarrow.array would import
    pandas (about 45 MB) for nothing. Checked in a fresh process, where nothing imported pandas yet."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = """
import random, sys
from datetime import UTC, datetime
import pyarrow as pa
from storage.arrow_columns import column
r = random.Random(1)
cases = {pa.string(): [None, "", "abc", "开心跳舞", "😀 x", "a" * 100], pa.int64(): [None, 0, -5, 2**40],
         pa.int32(): [None, 0, 7, -2**31], pa.bool_(): [True, False],
         pa.timestamp("us", tz="UTC"): [None, datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
                                        datetime(2020, 5, 1), datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)]}
made = []
for kind, choices in cases.items():
    for n in (0, 1, 7, 8, 9, 1000):
        values = [r.choice(choices) for _ in range(n)]
        array = column(values, kind)
        array.validate(full=True)
        made.append((kind, values, array))
assert "pandas" not in sys.modules, "pandas was imported"
for kind, values, array in made:
    assert array.equals(pa.array(values, type=kind)), (kind, values)
print("same")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr


def test_seeds_shown_as_taboo_are_counted_from_the_rounds_that_recorded_it(db, settings, played):
    from sqlalchemy import null, select, update

    from storage.models import LabelRound, Query, QuerySource

    with Session(db) as session:
        seed_ids = session.exec(select(Query.id).where(Query.source == QuerySource.SEED, Query.language == "en")
                                .order_by(Query.id).limit(2)).scalars().all()
        rounds = session.exec(select(LabelRound.id).where(LabelRound.language == "en")
                              .order_by(LabelRound.id)).scalars().all()
        # One round showed two seeds, another the first of them again; the rest predate the record.
        session.execute(update(LabelRound).where(LabelRound.id.not_in(rounds[:2])).values(taboo_shown=null()))
        session.execute(update(LabelRound).where(LabelRound.id == rounds[0]).values(taboo_shown=seed_ids))
        session.execute(update(LabelRound).where(LabelRound.id == rounds[1]).values(taboo_shown=[seed_ids[0]]))
        session.commit()
    summary = run_export(db, settings, now=MOMENT)
    seeds = summary.stats["en"]["seeds"]
    assert seeds["seeds_shown_as_taboo"] == 2
    assert seeds["label_rounds_taboo_recorded"] == 2 and seeds["label_rounds_taboo_unrecorded"] == len(rounds) - 2
    assert "in a label round's recorded taboo list: en 2, zh 0" in (summary.folder / "README.md").read_text()
