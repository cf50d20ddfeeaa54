"""Table 4's semantic figures: cosine similarity (CS) of sentence embeddings and BERTScore P/R/F1.

The paper uses BERT-base models (English and Chinese). They need the optional extra
(`pip install 'sticktionary[semantic]'`: transformers, bert-score, CPU torch) and a model that is on
this machine already — a local folder, or a Hugging Face name in the local cache: nothing is
downloaded here. When either is missing the figures are None and `unavailable` says why and what to
do; everything else carries on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from core.similarity import PAIRS_PROTOCOL, AnnotatedSticker, figures

log = logging.getLogger(__name__)

SEMANTIC_FIGURES = {
    "cosine_similarity": ("0-1 (cosine, -1..1 in principle)",
                          "cosine similarity of mean-pooled last-layer token embeddings (attention-masked) of "
                          "every pair of queries by different annotators of a sticker; mean over pairs"),
    "bertscore_precision": ("0-1", "BERTScore precision (bert-score, no idf, no baseline rescaling) of each query "
                                   "as candidate against the sticker's other queries as references (the best "
                                   "reference by F1); mean over queries"),
    "bertscore_recall": ("0-1", "BERTScore recall, same pairing as the precision"),
    "bertscore_f1": ("0-1", "BERTScore F1, same pairing as the precision"),
}
BATCH = 64


class SemanticUnavailable(Exception):
    """The extra is not installed or the model is not on this machine; the message says what to do."""


def resolve_model(model: str) -> Path:
    """A local folder as is; a Hugging Face name from the local cache only (never the network)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as error:
        raise SemanticUnavailable(_install_hint(error)) from None
    try:
        return Path(snapshot_download(model, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError) as error:
        raise SemanticUnavailable(
            f"model {model!r} is neither a folder nor in the local Hugging Face cache ({type(error).__name__}); set "
            f"STICKTIONARY_SEMANTIC_MODEL_EN / _ZH to a local model folder") from None


def _install_hint(error: ImportError) -> str:
    return f"the semantic extra is not installed ({error.name}): pip install 'sticktionary[semantic]'"


def bertscore_layer(model: str, path: Path, hidden_layers: int) -> int:
    """bert-score's recommended layer for a model it knows (bert-base-uncased: 9, bert-base-chinese: 8),
    by name or folder name; otherwise the last layer."""
    from bert_score.utils import model2layers

    for name in (model, path.name, model.rstrip("/").rsplit("/", 1)[-1]):
        if name in model2layers:
            return model2layers[name]
    return hidden_layers


class SemanticScorer:
    """One loaded model: sentence embeddings for CS and a BERTScorer over the same weights folder."""

    def __init__(self, model: str, language: str) -> None:
        self.model_name = model
        self.path = resolve_model(model)  # first: it fails in milliseconds, importing torch takes seconds
        try:
            import torch
            from bert_score import BERTScorer
            from transformers import AutoModel, AutoTokenizer
        except ImportError as error:
            raise SemanticUnavailable(_install_hint(error)) from None
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        except (OSError, ValueError) as error:
            raise SemanticUnavailable(f"model {model!r} could not be loaded from {self.path}: {error}") from None
        self.layer = bertscore_layer(model, self.path, self.model.config.num_hidden_layers)
        self.scorer = BERTScorer(model_type=str(self.path), num_layers=self.layer, lang=language, batch_size=BATCH)
        self.torch = torch

    def embed(self, texts: Sequence[str]):
        torch = self.torch
        vectors = []
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                batch = self.tokenizer(list(texts[start:start + BATCH]), padding=True, truncation=True,
                                       max_length=128, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vectors.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(vectors) if vectors else torch.zeros(0)


@lru_cache(maxsize=2)
def loaded_scorer(model: str, language: str) -> SemanticScorer:
    """Loading costs seconds: a process that scores again (the nightly export, tests) loads once."""
    return SemanticScorer(model, language)


def semantic_similarity(stickers: Sequence[AnnotatedSticker], language: str, model: str) -> dict:
    """CS and BERTScore P/R/F1 over the sample of stickers, or None with the reason."""
    started = time.perf_counter()
    base = {"model": model, "figures": figures(SEMANTIC_FIGURES), "pairs": PAIRS_PROTOCOL}
    try:
        scorer = loaded_scorer(model, language)
    except SemanticUnavailable as error:
        log.warning("semantic figures left out: %s", error)
        return {**dict.fromkeys(SEMANTIC_FIGURES), **base, "unavailable": str(error)}
    loaded = time.perf_counter()
    unique = sorted({q for sticker in stickers for q in sticker.queries})
    position = {text: i for i, text in enumerate(unique)}
    embeddings = scorer.embed(unique)
    cosine_sum, pairs, candidates, references = 0.0, 0, [], []
    used = 0
    for sticker in stickers:
        compared = False
        for i, query in enumerate(sticker.queries):
            others = sticker.others(i)
            if not others:
                continue
            compared = True
            candidates.append(query)
            references.append([sticker.queries[j] for j in others])
            for j in others:
                if j > i:
                    a, b = embeddings[position[query]], embeddings[position[sticker.queries[j]]]
                    cosine_sum += float((a * b).sum())
                    pairs += 1
        used += compared
    precision = recall = f1 = None
    if candidates:
        p, r, f = scorer.scorer.score(candidates, references, batch_size=BATCH)
        precision, recall, f1 = (round(float(x.mean()), 4) for x in (p, r, f))
    return {
        "cosine_similarity": round(cosine_sum / pairs, 4) if pairs else None,
        "bertscore_precision": precision,
        "bertscore_recall": recall,
        "bertscore_f1": f1,
        **base,
        "bertscore_layer": scorer.layer,
        "stickers_compared": used,
        "queries_compared": len(candidates),
        "pairs_compared": pairs,
        "seconds_loading": round(loaded - started, 2),
        "seconds_scoring": round(time.perf_counter() - loaded, 2),
    }
