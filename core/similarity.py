"""Table 4 of the paper, lexical part: inter-annotator similarity of a sticker's queries (BLEU and
ROUGE-L on the paper's 0-1 scale, with earlier variants on 0-100), and the pairing both it and the
semantic figures (core/semantic.py) use: a query is compared only with other annotators' queries."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.text import tokenize

# The kinds of pair of a sticker's queries, by who wrote them.
DISTINCT_AUTHORS = "distinct_authors"  # two different players
PLAYER_AND_SEED = "player_and_seed"  # a player's query and an imported seed: different people
SAME_AUTHOR = "same_author"  # one player wrote both: left out
SEEDS = "seeds"  # two seeds: StickerQueries does not say whether one person wrote both; left out
AUTHORS_UNKNOWN = "authors_unknown"  # a StickerQueries CSV: no author is known for any query
COMPARED_KINDS = frozenset({DISTINCT_AUTHORS, PLAYER_AND_SEED, AUTHORS_UNKNOWN})
PAIR_KINDS = (DISTINCT_AUTHORS, PLAYER_AND_SEED, SAME_AUTHOR, SEEDS, AUTHORS_UNKNOWN)


@dataclass(frozen=True)
class AnnotatedSticker:
    """One sticker's queries and, for game data, each query's author (None: a seed, author unknown).
    `authors` None as a whole means a StickerQueries CSV, where nobody's authorship is known."""

    queries: tuple[str, ...]
    authors: tuple[object | None, ...] | None = None

    def pair_kind(self, i: int, j: int) -> str:
        if self.authors is None:
            return AUTHORS_UNKNOWN
        a, b = self.authors[i], self.authors[j]
        if a is None and b is None:
            return SEEDS
        if a is None or b is None:
            return PLAYER_AND_SEED
        return SAME_AUTHOR if a == b else DISTINCT_AUTHORS

    def others(self, i: int) -> list[int]:
        """Positions of the queries compared with query i (its references): by another person."""
        return [j for j in range(len(self.queries)) if j != i and self.pair_kind(i, j) in COMPARED_KINDS]

    def pair_counts(self) -> Counter:
        """Unordered pairs of this sticker's queries by kind (compared or left out)."""
        n = len(self.queries)
        return Counter(self.pair_kind(i, j) for i in range(n) for j in range(i + 1, n))


GAME_PAIRS = (
    "game data: a query is compared only with queries another person wrote: pairs by two different "
    "players, and pairs of a player's query and an imported seed; pairs by the same player and pairs of two seeds "
    "(StickerQueries does not say whether one person wrote both) are left out, and `pair_kinds` counts every kind")
CSV_PAIRS = (
    "a StickerQueries CSV: no author is known, so every pair of a sticker's queries is compared, which "
    "may include pairs by the same annotator: there the figure is the similarity of a sticker's queries (the "
    "paper's protocol), not strictly between annotators")
PAIRS_PROTOCOL = f"{GAME_PAIRS}. For {CSV_PAIRS}"
LEXICAL_FIGURES = {
    "bleu": ("0-1", "sentence BLEU as NLTK computes it, 4-gram, uniform weights, smoothing method 1, of each "
                    "query (hypothesis) "
                    "against the sticker's other queries (references), tokens from core.text.tokenize "
                    "(lower-cased words, jieba for Chinese); mean over queries (the paper's protocol)"),
    "rouge_l_f1": ("0-1", "ROUGE-L F1 (as rouge-score computes it) of each query against its best-matching "
                          "other query, tokens "
                          "from core.text.tokenize so Chinese is kept; mean over queries (the paper's protocol)"),
    "sacrebleu_bleu": ("0-100", "sacrebleu sentence BLEU (effective order; 13a tokenizer, zh for Chinese) of each "
                                "query against the sticker's other queries; mean over queries (earlier variant)"),
    "rouge_l_f1_pairwise": ("0-100", "ROUGE-L F1 of every pair of queries by different annotators, mean over "
                                     "pairs (earlier variant)"),
}


# BLEU and ROUGE-L are computed here, exactly as NLTK's sentence_bleu (smoothing method 1) and
# rouge-score's ROUGE-L compute them (tests/test_research.py checks both against the libraries on
# generated inputs): importing nltk pulls scipy, scikit-learn and pandas (about 180 MB) into the
# export process, whose budget is 400 MB for a million queries.
BLEU_ORDER = 4
BLEU_EPSILON = 0.1  # NLTK's SmoothingFunction().method1: epsilon added to a zero n-gram match count


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sentence_bleu(references: Sequence[Sequence[str]], hypothesis: Sequence[str]) -> float:
    """NLTK's sentence_bleu(references, hypothesis, smoothing_function=SmoothingFunction().method1)
    with uniform 4-gram weights: clipped n-gram precisions, a zero match count smoothed to
    epsilon / n-grams, 0 when no unigram matches, the brevity penalty against the closest reference
    length (the shorter on a tie)."""
    if not references:
        raise ValueError("BLEU needs at least one reference")
    log_precision = 0.0
    for n in range(1, BLEU_ORDER + 1):
        counts = _ngrams(hypothesis, n) if len(hypothesis) >= n else Counter()
        most: dict[tuple, int] = {}
        for reference in references:
            reference_counts = _ngrams(reference, n) if len(reference) >= n else Counter()
            for gram in counts:
                most[gram] = max(most.get(gram, 0), reference_counts[gram])
        matches = sum(min(count, most[gram]) for gram, count in counts.items())
        total = max(1, sum(counts.values()))
        if n == 1 and matches == 0:
            return 0.0
        log_precision += math.log((matches if matches else BLEU_EPSILON) / total) / BLEU_ORDER
    hyp_len = len(hypothesis)
    closest = min((len(r) for r in references), key=lambda length: (abs(length - hyp_len), length))
    penalty = 1.0 if hyp_len > closest else math.exp(1 - closest / hyp_len)
    return penalty * math.exp(log_precision)


def rouge_l_f1(target: Sequence[str], prediction: Sequence[str]) -> float:
    """rouge-score's ROUGE-L F1 of two token lists (longest common subsequence; 0 when either is empty)."""
    if not target or not prediction:
        return 0.0
    previous = [0] * (len(prediction) + 1)
    for token in target:
        row = [0]
        for j, other in enumerate(prediction, start=1):
            row.append(previous[j - 1] + 1 if token == other else max(previous[j], row[j - 1]))
        previous = row
    lcs = previous[-1]
    precision, recall = lcs / len(prediction), lcs / len(target)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


class LexicalSimilarity:
    """Table 4's lexical figures, accumulated one sticker at a time: only sums and counts are kept,
    never the stickers' texts. `variants`: also the earlier sacrebleu BLEU (which imports sacrebleu)."""

    def __init__(self, language: str, *, variants: bool = True) -> None:
        self.language = language
        self.sacre = None
        if variants:
            from sacrebleu.metrics import BLEU

            self.sacre = BLEU(tokenize="zh" if language == "zh" else "13a", effective_order=True)
        self.sums = dict.fromkeys(LEXICAL_FIGURES, 0.0)
        self.queries = self.pairs = self.stickers = 0
        self.kinds: Counter = Counter()

    def score(self, sticker: AnnotatedSticker | Sequence[str]) -> tuple:
        """One sticker's contribution: (sums per figure, queries, pairs, compared, pair kinds)."""
        if not isinstance(sticker, AnnotatedSticker):
            sticker = AnnotatedSticker(tuple(sticker))
        queries = sticker.queries
        tokens = [tokenize(q) for q in queries]
        sums = dict.fromkeys(LEXICAL_FIGURES, 0.0)
        queries_n = pairs_n = 0
        rouge_cache: dict[tuple[int, int], float] = {}
        for i, query in enumerate(queries):
            others = sticker.others(i)
            if not others:
                continue
            queries_n += 1
            sums["bleu"] += sentence_bleu([tokens[j] for j in others], tokens[i])
            if self.sacre is not None:
                sums["sacrebleu_bleu"] += self.sacre.sentence_score(query, [queries[j] for j in others]).score
            best = 0.0
            for j in others:
                pair = (min(i, j), max(i, j))
                if pair not in rouge_cache:
                    # ROUGE-L F1 is symmetric: one score per unordered pair.
                    rouge_cache[pair] = rouge_l_f1(tokens[j], tokens[i])
                    sums["rouge_l_f1_pairwise"] += rouge_cache[pair]
                    pairs_n += 1
                best = max(best, rouge_cache[pair])
            sums["rouge_l_f1"] += best
        return tuple(sums.values()), queries_n, pairs_n, queries_n > 0, tuple(sorted(sticker.pair_counts().items()))

    def add_score(self, scored: tuple) -> None:
        sums, queries_n, pairs_n, compared, kinds = scored
        for name, value in zip(LEXICAL_FIGURES, sums, strict=True):
            self.sums[name] += value
        self.queries += queries_n
        self.pairs += pairs_n
        self.stickers += compared
        self.kinds.update(dict(kinds))

    def add(self, sticker: AnnotatedSticker | Sequence[str]) -> None:
        self.add_score(self.score(sticker))

    def result(self) -> dict:
        q, sums = self.queries, self.sums
        values = {
            "bleu": sums["bleu"] / q if q else None,
            "rouge_l_f1": sums["rouge_l_f1"] / q if q else None,
            "sacrebleu_bleu": sums["sacrebleu_bleu"] / q if q and self.sacre is not None else None,
            "rouge_l_f1_pairwise": 100 * sums["rouge_l_f1_pairwise"] / self.pairs if self.pairs else None,
        }
        return {
            **{name: None if value is None else round(value, 4) for name, value in values.items()},
            "stickers_compared": self.stickers,
            "queries_compared": q,
            "pairs_compared": self.pairs,
            "pair_kinds": {kind: self.kinds.get(kind, 0) for kind in PAIR_KINDS},
            "pairs": CSV_PAIRS if self.kinds and set(self.kinds) == {AUTHORS_UNKNOWN} else GAME_PAIRS,
            "figures": figures(LEXICAL_FIGURES),
        }


def lexical_similarity(stickers: Iterable[AnnotatedSticker | Sequence[str]], language: str,
                       *, variants: bool = True) -> dict:
    accumulator = LexicalSimilarity(language, variants=variants)
    for sticker in stickers:
        accumulator.add(sticker)
    return accumulator.result()


def figures(table: dict[str, tuple[str, str]]) -> dict:
    return {name: {"scale": scale, "protocol": protocol} for name, (scale, protocol) in table.items()}
