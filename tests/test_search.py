import csv
import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from core.search import BM25Index
from core.text import tokenize
from tests.conftest import REAL_SAMPLES


def _sample(language):
    path = REAL_SAMPLES / f"sticker_queries_{language}_release.first200.csv"
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
    # A bulk-built index takes updates like any other.
    built.add_tokens(0, ["more"])
    incremental.add_tokens(0, ["more"])
    assert np.allclose(built.scores(["more", *probes[0]]), incremental.scores(["more", *probes[0]]), rtol=1e-12)


def _okapi_scores(documents: dict[int, list[str]], probe: list[str]) -> tuple[list[int], np.ndarray]:
    """rank_bm25's scores over the non-empty documents, in sticker id order."""
    ids = sorted(s for s, tokens in documents.items() if tokens)
    return ids, BM25Okapi([documents[s] for s in ids]).get_scores(probe)


def _random_corpus(rng: random.Random, stickers: int, words: int) -> dict[int, list[str]]:
    vocabulary = [f"w{i}" for i in range(words)]
    # A skewed vocabulary, so some terms are in more than half the documents (the epsilon floor).
    return {s: [vocabulary[min(int(rng.paretovariate(0.8)) - 1, words - 1)] for _ in range(rng.randint(1, 9))]
            for s in rng.sample(range(10 * stickers), stickers)}


@pytest.mark.parametrize("seed", range(6))
def test_interleaved_writes_keep_exact_parity_with_rank_bm25(seed):
    """Appends, replacements and removals (documents leaving the corpus) between searches, on a
    bulk-built index: after every write the scores equal BM25Okapi built from scratch."""
    rng = random.Random(seed)
    documents = _random_corpus(rng, 80, 30)
    index = BM25Index.from_documents(list(documents.items()))
    probes = [["w0"], ["w1", "w0", "w1"], ["w2", "w7"], ["w29"], ["nothing"]]
    ids, expected = _okapi_scores(documents, probes[1])
    assert np.allclose(index.sticker_scores(probes[1], ids), expected, rtol=1e-12, atol=1e-12)
    for step in range(120):
        sticker = rng.choice(list(documents)) if rng.random() < 0.8 else rng.randrange(1000, 1100)
        action = rng.random()
        if action < 0.4:
            tokens = [f"w{min(int(rng.paretovariate(0.8)) - 1, 29)}" for _ in range(rng.randint(1, 4))]
            index.add_tokens(sticker, tokens)
            documents[sticker] = documents.get(sticker, []) + tokens
        elif action < 0.7:
            tokens = [f"w{rng.randrange(30)}" for _ in range(rng.randint(1, 6))]
            index.replace_document(sticker, tokens)
            documents[sticker] = tokens
        else:
            index.replace_document(sticker, [])
            documents[sticker] = []
        live = sorted(s for s, tokens in documents.items() if tokens)
        assert index.sticker_ids() == live and len(index) == len(live)
        probe = probes[step % len(probes)]
        ids, expected = _okapi_scores(documents, probe)
        assert np.allclose(index.sticker_scores(probe, ids), expected, rtol=1e-12, atol=1e-12), (step, probe)
        result = index.search(probe, k=5)
        order = sorted((i for i in range(len(ids)) if expected[i] > 0), key=lambda i: (-expected[i], ids[i]))[:5]
        assert [h.sticker_id for h in result.hits] == [ids[i] for i in order]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_real_samples_with_interleaved_writes_keep_parity(language):
    """The real StickerQueries samples: built in bulk from the first half of each sticker's queries,
    then the other queries arrive one by one (and some stickers are withdrawn), as in play."""
    rows = _sample(language)
    rng = random.Random(7)
    documents = {number: [] for number in range(len(rows))}
    first, later = [], []
    for number, (_key, queries) in enumerate(rows):
        for position, query in enumerate(queries):
            (first if position < max(1, len(queries) // 2) else later).append((number, tokenize(query)))
    for number, tokens in first:
        documents[number] += tokens
    index = BM25Index.from_documents(first)
    rng.shuffle(later)
    probes = [tokenize(rng.choice(rng.choice(rows)[1])) for _ in range(40)] + [["the"], ["nothing-matches"]]
    for step, (number, tokens) in enumerate(later):
        index.add_tokens(number, tokens)
        documents[number] += tokens
        if step % 25 == 0:
            gone = rng.randrange(len(rows))
            index.replace_document(gone, [])
            documents[gone] = []
        if step % 10 == 0:
            probe = probes[(step // 10) % len(probes)]
            ids, expected = _okapi_scores(documents, probe)
            assert np.allclose(index.sticker_scores(probe, ids), expected, rtol=1e-12, atol=1e-12), probe


def test_ties_rank_by_sticker_id_whatever_the_build_order():
    documents = [(s, ["same", "words"]) for s in (50, 10, 40, 20, 30)] + [(60 + s, [f"x{s}"]) for s in range(10)]
    one = BM25Index.from_documents(documents)
    other = BM25Index()
    for sticker, tokens in reversed(documents):
        other.add_tokens(sticker, tokens)
    for probe in (["same"], ["same", "x3"]):
        assert [h.sticker_id for h in one.search(probe, k=3).hits] == [h.sticker_id for h in
                                                                       other.search(probe, k=3).hits]
    assert [h.sticker_id for h in one.search(["same"], k=3).hits] == [10, 20, 30]


def test_searches_never_see_half_a_write():
    """Writers move a block of tokens between two documents while readers search: every search sees
    the scores of one whole state or the other, never a mix (and nothing raises)."""
    import threading

    base = {s: [f"f{s % 7}", "common"] for s in range(2000)}
    index = BM25Index.from_documents(list(base.items()))
    states = []
    for moved in (False, True):
        docs = dict(base)
        docs[1] = base[1] + (["swap"] * 3 if not moved else [])
        docs[2] = base[2] + (["swap"] * 3 if moved else [])
        states.append(_okapi_scores(docs, ["swap", "common", "f1"])[1][[1, 2]])
    index.replace_documents({1: base[1] + ["swap"] * 3})
    stop, problems = threading.Event(), []

    def write():
        moved = False
        while not stop.is_set():
            moved = not moved
            index.replace_documents({1: base[1] + ([] if moved else ["swap"] * 3),
                                     2: base[2] + (["swap"] * 3 if moved else [])})

    def read():
        try:
            for _ in range(300):
                got = index.sticker_scores(["swap", "common", "f1"], [1, 2])
                if not any(np.allclose(got, state, rtol=1e-12) for state in states):
                    problems.append(got)
        except Exception as error:  # noqa: BLE001
            problems.append(error)

    writer = threading.Thread(target=write)
    readers = [threading.Thread(target=read) for _ in range(3)]
    writer.start()
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    stop.set()
    writer.join()
    assert problems == []


def test_search_sharing_equals_brute_force_with_and_without_function_words():
    """The preview's search (and inline search's), against the definition: the documents holding a
    content term, by their BM25 score (every token counts), ties by sticker id."""
    rng = random.Random(4)
    words = [f"w{i}" for i in range(40)] + ["the", "of"]
    documents = {s: [rng.choice(words) for _ in range(rng.randint(1, 8))] for s in range(300)}
    index = BM25Index.from_documents(documents.items())
    for _ in range(200):
        tokens = [rng.choice(words) for _ in range(rng.randint(1, 3))]
        content = [t for t in tokens if t not in ("the", "of")]
        result = index.search_sharing(tokens, content, k=20)
        scores = dict(zip(documents, index.sticker_scores(tokens, list(documents)), strict=True))
        holding = [s for s, doc in documents.items() if set(doc) & set(content) and scores[s] > 0]
        expected = sorted(holding, key=lambda s: (-scores[s], s))[:20]
        assert [hit.sticker_id for hit in result.hits] == expected, tokens
        assert result.matched == len(holding)
