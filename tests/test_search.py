import csv
import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from core.search import BM25Index
from core.text import tokenize
from tests.conftest import SHARED_SAMPLES


def _sample(language):
    path = SHARED_SAMPLES / f"sticker_queries_{language}_release.first200.csv"
    if not path.exists():
        pytest.skip(f"real sample missing: {path}")
    with path.open(encoding="utf-8", newline="") as f:
        return [(row[0], row[1].split(", ")) for row in list(csv.reader(f))[1:]]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_scores_equal_rank_bm25_okapi_on_the_real_samples(language):
    rows = _sample(language)
    index, corpus = BM25Index(), []
    for doc, (_key, queries) in enumerate(rows):
        tokens = []
        for query in queries:
            index.add_tokens(doc, tokenize(query))
            tokens += tokenize(query)
        corpus.append(tokens)
    reference = BM25Okapi(corpus)
    rng = random.Random(0)
    probes = [tokenize(rng.choice(rng.choice(rows)[1])) for _ in range(60)] + [["nothing-matches"], ["the"]]
    for probe in probes:
        assert np.allclose(index.scores(probe), reference.get_scores(probe), rtol=1e-12, atol=1e-12), probe


def test_incremental_updates_equal_a_fresh_build():
    rng = random.Random(1)
    words = [f"w{i}" for i in range(40)]
    docs = {d: [rng.choice(words) for _ in range(rng.randint(1, 8))] for d in range(60)}
    incremental = BM25Index()
    for d, tokens in docs.items():
        incremental.add_tokens(d, tokens[:1])
    incremental.search(["w1"])  # caches built, then invalidated by the updates below
    for d, tokens in docs.items():
        incremental.add_tokens(d, tokens[1:])
    incremental.replace_document(3, ["w5", "w6"])
    docs[3] = ["w5", "w6"]
    fresh = BM25Index()
    for d, tokens in docs.items():
        fresh.add_tokens(d, tokens)
    for probe in (["w1"], ["w5", "w6"], ["w2", "w2", "w9"]):
        assert np.allclose(incremental.scores(probe), fresh.scores(probe))


def test_search_ranks_hits_and_counts_ties_against_the_target():
    index = BM25Index()
    index.add_tokens(10, ["cat", "happy"])
    index.add_tokens(20, ["cat", "happy"])  # same document: a tie
    index.add_tokens(30, ["dog"])
    index.add_tokens(40, ["bird"])
    index.add_tokens(50, ["fish"])  # "cat" in 2 of 5 documents: a positive idf
    result = index.search(["cat"], k=5, target=10)
    assert [h.sticker_id for h in result.hits] == [10, 20]
    assert result.target_rank == 2  # tied with 20, counted against the target
    assert index.search(["dog"], k=5, target=10).target_rank is None
    assert index.search(["unknown"], k=5).hits == []


def test_top_k_is_the_k_best_in_order_when_many_documents_match():
    index = BM25Index()
    for d in range(200):
        index.add_tokens(d, ["common"] * (1 + d % 5) + ["rare"] * (d == 7))
    for d in range(200, 500):
        index.add_tokens(d, ["other"])
    result = index.search(["common", "rare"], k=3)
    assert result.hits[0].sticker_id == 7
    scores = index.scores(["common", "rare"])
    assert [h.sticker_id for h in result.hits] == sorted(range(500), key=lambda d: (-scores[d], d))[:3]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_an_index_built_from_postings_scores_like_an_incremental_one(language):
    from core.research import RecallEvaluation

    rows = _sample(language)
    evaluation = RecallEvaluation()
    incremental = BM25Index()
    for number, (sticker, queries) in enumerate(rows):
        tokens = [tokenize(q) for q in queries]
        evaluation.add_sticker(sticker, tokens, [])
        for query_tokens in tokens:
            incremental.add_tokens(number, query_tokens)
    built = evaluation.index()
    assert len(built) == len(incremental)
    probes = [tokenize(q) for _, queries in rows[::7] for q in queries[:2]]
    for probe in probes:
        assert np.allclose(built.scores(probe), incremental.scores(probe), rtol=1e-12, atol=1e-12)
        a, b = built.search(probe, k=5, target=3), incremental.search(probe, k=5, target=3)
        assert a.target_rank == b.target_rank and [h.sticker_id for h in a.hits] == [h.sticker_id for h in b.hits]
    with pytest.raises(TypeError):
        built.add_tokens(0, ["more"])
