"""The evaluation protocols: the grouped split, Table 4's pairing and scale, Table 6's ranks and
metrics, checked by hand on a small corpus and against pytrec_eval (trec_eval itself) on a larger one."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu

from core.research import LanguageReport, RecallEvaluation, split_queries, sticker_in_test
from core.similarity import AnnotatedSticker, lexical_similarity, rouge_l_f1
from core.similarity import sentence_bleu as research_sentence_bleu
from core.text import normalize_query, tokenize


def test_a_round_never_straddles_the_split():
    queries = [f"query {i}" for i in range(12)]
    rounds = [("alice", 1)] * 4 + [("bob", 2)] * 4 + [("carol", 3)] * 2 + [None, None]
    train, test = split_queries("1.png", queries, units=rounds)
    assert train and test
    for unit in {("alice", 1), ("bob", 2), ("carol", 3)}:
        sides = {("test" if i in test else "train") for i, u in enumerate(rounds) if u == unit}
        assert len(sides) == 1
    # Deterministic whatever order the queries come in.
    order = list(reversed(range(12)))
    train2, test2 = split_queries("1.png", [queries[i] for i in order], units=[rounds[i] for i in order])
    assert {queries[order[i]] for i in test2} == {queries[i] for i in test}


def test_queries_equal_after_normalisation_never_straddle():
    rng = random.Random(3)
    variants = ["Thumbs up", "thumbs up", "THUMBS UP!", "ｔｈｕｍｂｓ ｕｐ", "ok", "OK", "fine", "good", "nice one"]
    for n in range(200):
        queries = rng.sample(variants, rng.randint(2, len(variants)))
        train, test = split_queries(f"{n}.png", queries)
        by_form: dict[str, set[str]] = {}
        for i, query in enumerate(queries):
            by_form.setdefault(normalize_query(query), set()).add("test" if i in test else "train")
        assert all(len(sides) == 1 for sides in by_form.values()), queries
        assert train  # never an empty document


def test_split_share_is_about_a_fifth_and_a_single_group_stays_in_train():
    report = LanguageReport("en")
    for n in range(500):
        report.add(f"{n}.png", [f"q{n} {i}" for i in range(1 + n % 9)])
    counts = report.split_counts
    assert 0.17 < counts["test"] / (counts["test"] + counts["train"]) < 0.23
    assert split_queries("x.png", ["Cat", "cat", "CAT"]) == ([0, 1, 2], [])
    held_out = sum(sticker_in_test(f"{n}.png") for n in range(5000)) / 5000
    assert 0.18 < held_out < 0.22


def test_inter_annotator_pairs_and_the_paper_scale():
    # alice wrote two queries in one round: they are never compared with each other.
    sticker = AnnotatedSticker(("happy dance", "happy party", "dance party"), ("alice", "alice", "bob"))
    result = lexical_similarity([sticker], "en")
    assert result["queries_compared"] == 3 and result["pairs_compared"] == 2
    smoothing = SmoothingFunction().method1
    t = [tokenize(q) for q in sticker.queries]
    expected_bleu = (nltk_sentence_bleu([t[2]], t[0], smoothing_function=smoothing)
                     + nltk_sentence_bleu([t[2]], t[1], smoothing_function=smoothing)
                     + nltk_sentence_bleu([t[0], t[1]], t[2], smoothing_function=smoothing)) / 3
    assert result["bleu"] == round(expected_bleu, 4)
    # ROUGE-L F1 by hand: LCS of "happy dance"/"dance party" is 1 token of 2 and 2: F1 = 0.5 (likewise the other).
    assert result["rouge_l_f1"] == 0.5 and result["rouge_l_f1_pairwise"] == 50.0
    assert 0 <= result["bleu"] <= 1 and result["figures"]["bleu"]["scale"] == "0-1"
    assert result["figures"]["sacrebleu_bleu"]["scale"] == "0-100"
    # Unknown authors count as different people; identical queries score 1.
    same = lexical_similarity([AnnotatedSticker(("big sad cat face", "big sad cat face"))], "en")
    assert same["rouge_l_f1"] == 1.0 and same["bleu"] == 1.0
    # Chinese is tokenized, not dropped.
    zh = lexical_similarity([("开心跳舞", "开心")], "zh")
    assert zh["rouge_l_f1"] > 0


_WORDS = st.lists(st.sampled_from(["a", "cat", "sad", "so", "sick", "of", "this", "开心", "了", "x"]), max_size=9)


@settings(max_examples=400, deadline=None)
@given(references=st.lists(_WORDS, min_size=1, max_size=4), hypothesis=_WORDS)
def test_bleu_and_rouge_l_are_computed_exactly_as_nltk_and_rouge_score_compute_them(references, hypothesis):
    from rouge_score.rouge_scorer import _score_lcs

    expected = nltk_sentence_bleu(references, hypothesis, smoothing_function=SmoothingFunction().method1)
    assert research_sentence_bleu(references, hypothesis) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    for reference in references:
        assert rouge_l_f1(reference, hypothesis) == pytest.approx(_score_lcs(reference, hypothesis).fmeasure)


def _evaluation(stickers: dict[str, list[str]], tests: list[tuple[str, str]]) -> RecallEvaluation:
    evaluation = RecallEvaluation(max_queries=10_000)
    for n, (sticker, train) in enumerate(stickers.items()):
        mine = [(1000 * n + i, tokenize(text)) for i, (target, text) in enumerate(tests) if target == sticker]
        evaluation.add_sticker(sticker, [tokenize(t) for t in train], mine)
    return evaluation


def test_ranks_and_metrics_by_hand():
    stickers = {"a.png": ["cat"], "b.png": ["cat"], "c.png": ["dog"], "d.png": ["fish"], "e.png": ["eel"],
                "f.png": ["fox"]}
    # a and b tie on "cat": ties count against the target (rank 2 for both); in trec_eval's order the
    # larger id goes first (b rank 1, a rank 2). "bird" matches nothing: a miss.
    evaluation = _evaluation(stickers, [("a.png", "cat"), ("b.png", "cat"), ("c.png", "dog"), ("d.png", "bird")])
    pessimistic, trec = evaluation.ranks()
    assert sorted(zip(pessimistic, trec, strict=True), key=str) == sorted([(2, 2), (2, 1), (1, 1), (None, None)],
                                                                          key=str)
    result = evaluation.results()
    assert result["recall@1"] == 0.25 and result["recall@1_trec"] == 0.5
    assert result["recall@10"] == result["recall@10_trec"] == 0.75
    assert result["ndcg@10"] == round((1 / math.log2(3) + 1 + 1 + 0) / 4, 4)
    assert result["mrr@10"] == round((0.5 + 1 + 1 + 0) / 4, 4)
    assert set(result["figures"]) >= {"recall@1", "recall@1_trec", "ndcg@10", "mrr@10"}


def test_metrics_agree_with_trec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec-eval-terrier is in the test extra")
    rng = random.Random(7)
    words = [f"w{i}" for i in range(40)]  # a small vocabulary: many ties
    stickers = {f"{10**6 + n * 37}.png": [" ".join(rng.sample(words, 2)) for _ in range(rng.randint(1, 4))]
                for n in range(300)}
    # Half the test queries share a word with their sticker's document, half are random: hits, misses and ties.
    tests = [(sticker, rng.choice(rng.choice(train).split()) + " " + rng.choice(words) if i else rng.choice(words))
             for sticker, train in stickers.items() for i in range(2)]
    evaluation = _evaluation(stickers, tests)
    result = evaluation.results()
    assert result["test_queries_evaluated"] == len(tests)
    index, ids = evaluation.index(), list(stickers)
    qrels, run = {}, {}
    for n, (target, text) in enumerate(tests):
        scores = index.scores(tokenize(text))
        qrels[f"q{n}"] = {target: 1}
        run[f"q{n}"] = {ids[d]: float(scores[d]) for d in range(len(ids)) if scores[d] > 0}
    measures = {"recall_1", "recall_10", "recall_50", "ndcg_cut_10", "recip_rank"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    n = len(tests)

    def mean(measure, transform=lambda v: v):
        return round(sum(transform(per_query.get(q, {}).get(measure, 0.0)) for q in qrels) / n, 4)

    assert result["recall@1_trec"] == mean("recall_1")
    assert result["recall@10_trec"] == mean("recall_10")
    assert result["recall@50_trec"] == mean("recall_50")
    assert result["ndcg@10"] == mean("ndcg_cut_10")
    assert result["mrr@10"] == mean("recip_rank", lambda v: v if v >= 0.1 else 0.0)
    # Ties counted against the target can only lower recall.
    assert all(result[f"recall@{k}"] <= result[f"recall@{k}_trec"] for k in (1, 10, 50))
    assert result["recall@1"] < result["recall@1_trec"] and result["recall@10"] < result["recall@10_trec"]


def test_table_4_compares_only_queries_by_different_people_and_counts_every_kind_of_pair():
    # alice wrote two, bob one, and two seeds (author unknown).
    sticker = AnnotatedSticker(("happy dance", "happy party", "dance party", "joy", "party"),
                               ("alice", "alice", "bob", None, None))
    kinds = sticker.pair_counts()
    assert kinds == {"same_author": 1, "distinct_authors": 2, "player_and_seed": 6, "seeds": 1}
    result = lexical_similarity([sticker], "en")
    assert result["pairs_compared"] == 2 + 6 and result["pair_kinds"]["seeds"] == 1
    assert result["pair_kinds"]["same_author"] == 1 and "left out" in result["pairs"]
    # A CSV: nobody's authorship is known, so every pair is compared, and the protocol says so.
    csv = lexical_similarity([AnnotatedSticker(sticker.queries)], "en")
    assert csv["pairs_compared"] == 10 and csv["pair_kinds"]["authors_unknown"] == 10
    assert "same annotator" in csv["pairs"]


def test_table_4_runs_on_every_sticker_unless_a_sample_is_asked_for():
    rng = random.Random(5)
    words = ["happy", "dance", "cat", "sad", "party", "sleepy", "joy", "wow"]
    stickers = [(f"{n}.png", [" ".join(rng.sample(words, 2)) for _ in range(rng.randint(1, 6))]) for n in range(300)]

    def report(**options):
        language_report = LanguageReport("en", **options)
        for key, queries in stickers:
            language_report.add(key, queries)
        return language_report

    every = report()
    lexical = every.lexical()
    with_pairs = sum(len(q) >= 2 for _, q in stickers)
    assert lexical["stickers_compared"] == lexical["stickers_with_2plus_queries"] == with_pairs
    expected = lexical_similarity([q for _, q in stickers if len(q) >= 2], "en")
    assert {k: lexical[k] for k in ("bleu", "rouge_l_f1", "pairs_compared")} == \
        {k: expected[k] for k in ("bleu", "rouge_l_f1", "pairs_compared")}
    assert lexical["scale"].startswith("every sticker")
    # A sample as large as the data gives the same figures; a small one compares that many stickers.
    assert {k: report(max_similarity_stickers=1000).lexical()[k] for k in ("bleu", "pairs_compared")} == \
        {k: lexical[k] for k in ("bleu", "pairs_compared")}
    sampled = report(max_similarity_stickers=20, keep_texts=False)
    assert sampled.lexical()["stickers_compared"] == 20 and "sample of at most 20" in sampled.lexical()["scale"]
    assert sampled.similarity_sample() == []  # texts only for the semantic figures
    assert len(report(max_similarity_stickers=20).similarity_sample()) == 20
