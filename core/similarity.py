"""Table 4 of the paper, lexical part: inter-annotator similarity of a sticker's queries (BLEU and
ROUGE-L on the paper's 0-1 scale, with earlier variants on 0-100), and the pairing both it and the
semantic figures (core/semantic.py) use: a query is compared only with other annotators' queries."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.text import tokenize


@dataclass(frozen=True)
class AnnotatedSticker:
    """One sticker's queries and, where known, each query's author (None: unknown, counted as distinct)."""

    queries: tuple[str, ...]
    authors: tuple[object | None, ...] | None = None

    def author(self, i: int) -> object | None:
        return None if self.authors is None else self.authors[i]

    def others(self, i: int) -> list[int]:
        """Positions of the queries another annotator wrote: the references of query i."""
        mine = self.author(i)
        return [j for j in range(len(self.queries)) if j != i and (mine is None or self.author(j) != mine)]


PAIRS_PROTOCOL = ("inter-annotator: per sticker, a query is compared only with queries other annotators wrote "
                  "(where authors are known; queries of unknown authorship count as distinct annotators)")
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


def lexical_similarity(stickers: Iterable[AnnotatedSticker | Sequence[str]], language: str) -> dict:
    from sacrebleu.metrics import BLEU

    sacre = BLEU(tokenize="zh" if language == "zh" else "13a", effective_order=True)
    sums = dict.fromkeys(LEXICAL_FIGURES, 0.0)
    queries_n = pairs_n = used = 0
    for sticker in stickers:
        if not isinstance(sticker, AnnotatedSticker):
            sticker = AnnotatedSticker(tuple(sticker))
        queries = sticker.queries
        tokens = [tokenize(q) for q in queries]
        compared = False
        rouge_cache: dict[tuple[int, int], float] = {}
        for i, query in enumerate(queries):
            others = sticker.others(i)
            if not others:
                continue
            compared = True
            queries_n += 1
            sums["bleu"] += sentence_bleu([tokens[j] for j in others], tokens[i])
            sums["sacrebleu_bleu"] += sacre.sentence_score(query, [queries[j] for j in others]).score
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
        used += compared
    values = {
        "bleu": sums["bleu"] / queries_n if queries_n else None,
        "rouge_l_f1": sums["rouge_l_f1"] / queries_n if queries_n else None,
        "sacrebleu_bleu": sums["sacrebleu_bleu"] / queries_n if queries_n else None,
        "rouge_l_f1_pairwise": 100 * sums["rouge_l_f1_pairwise"] / pairs_n if pairs_n else None,
    }
    return {
        **{name: None if value is None else round(value, 4) for name, value in values.items()},
        "stickers_compared": used,
        "queries_compared": queries_n,
        "pairs_compared": pairs_n,
        "pairs": PAIRS_PROTOCOL,
        "figures": figures(LEXICAL_FIGURES),
    }


def figures(table: dict[str, tuple[str, str]]) -> dict:
    return {name: {"scale": scale, "protocol": protocol} for name, (scale, protocol) in table.items()}
