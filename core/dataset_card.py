"""The export's dataset card (README.md with Hugging Face YAML front matter), written from the export's
own numbers: every count and figure on it comes from stats.json and metrics.json of the same export.

Every `datasets` config is parquet: the library picks one file reader for all configs from the first
config's files, so mixing CSV and parquet breaks whichever comes second.
"""

from __future__ import annotations

from datetime import datetime

from core.export_layout import QUERY_FIELD_DOCS, QUERY_SCHEMA, data_file
from core.research import SPLIT_PROTOCOL, STICKER_SPLIT_PROTOCOL
from core.vocabulary import LANGUAGES

PAPER = "https://arxiv.org/abs/2506.01668"
BEIR_PARTS = {"corpus": ("corpus",), "queries": ("queries",), "qrels": ("train", "test")}


def config_name(*parts: str) -> str:
    return "_".join(part.replace("-", "_") for part in parts)


def configs() -> list[dict]:
    """The card's `configs`: name, and per split the parquet file behind it."""
    result = [{"config_name": "default", "default": True,
               "data_files": [{"split": s, "path": data_file("queries", s)} for s in ("train", "test")]}]
    for language in LANGUAGES:
        result.append({"config_name": config_name("release", language),
                       "data_files": [{"split": "train", "path": data_file("release", language)}]})
    for layout in ("beir", "beir-stickers"):
        for language in LANGUAGES:
            for part, splits in BEIR_PARTS.items():
                # Both layouts have the same queries: one file serves both configs.
                files = [{"split": split, "path": data_file("beir" if part == "queries" else layout, language,
                                                            part if part != "qrels" else f"qrels_{split}")}
                         for split in splits]
                result.append({"config_name": config_name(layout, language, part), "data_files": files})
    # The game's own evidence: judgments, contexts, every query flagged, PerSRV rows, sticker images, MTEB.
    from core.export_evidence import evidence_files
    from core.export_images import image_files
    from core.export_judgments import judgment_files

    for name, files in {**judgment_files(), **evidence_files(), **image_files()}.items():
        result.append({"config_name": name, "data_files": [{"split": s, "path": p} for s, p in files.items()]})
    return result


def _yaml_configs(extra: list[dict]) -> str:
    lines = []
    for config in configs() + list(extra):
        lines.append(f"- config_name: {config['config_name']}")
        if config.get("default"):
            lines.append("  default: true")
        lines.append("  data_files:")
        for item in config["data_files"]:
            lines.append(f"  - split: {item['split']}")
            lines.append(f"    path: {item['path']}")
    return "\n".join(lines)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def _value(section: dict | None, name: str):
    if not section or section.get(name) is None:
        return "–"
    return section[name]


def _provenance_rows(stats: dict) -> tuple[list[str], dict[str, int]]:
    rows, seeds = [], {}
    for language in LANGUAGES:
        seeds[language] = 0
        for row in stats[language].get("provenance", []):
            rows.append(f"| {language} | {row['source']} | {row['validation']} | {row['queries']} |")
            if row["source"] == "seed":
                seeds[language] += row["queries"]
    return rows, seeds


def _structure() -> str:
    return "\n".join(f"| `{field.name}` | {field.type} | {QUERY_FIELD_DOCS[field.name]} |" for field in QUERY_SCHEMA)


def _seed_sentence(stats: dict, seeds: dict[str, int], queries: int) -> str:
    """What the card says about seeds: where they came from, and how many players saw, in numbers."""
    total = sum(seeds.values())
    if not total:
        return "This export has no seed queries: every query was written and validated in the game."
    shown = {language: stats[language].get("seeds") or {} for language in LANGUAGES}

    def each(name: str) -> str:
        return ", ".join(f"{language} {shown[language].get(name, 0)}" for language in LANGUAGES)

    unrecorded = sum(shown[language].get("label_rounds_taboo_unrecorded", 0) for language in LANGUAGES)
    return (
        f"{total} of the {queries} queries ({', '.join(f'{k} {v}' for k, v in seeds.items())}) are **seed queries** "
        f"imported from StickerQueries CSVs and released as they were (`source` = `validation` = `seed`): they "
        f"did not go through this game's validation. Players did see seeds: the label screen lists the queries "
        f"already taken for its sticker, seeds included, as taboo, and retrieval tasks (gold tasks above all) "
        f"show them as the queries to search from. Seeds shown to retrievers: {each('seeds_shown_to_retrievers')}; "
        f"in a label round's recorded taboo list: {each('seeds_shown_as_taboo')}; seeds of stickers that had a "
        f"label round (which could show them as taboo): {each('seeds_on_labeled_stickers')}"
        + (f" ({unrecorded} label rounds predate the taboo record)" if unrecorded else "")
        + ". A seed's `created_at` and `validated_at` are null: StickerQueries does not say when its queries were "
        "written, and the time of the import is not theirs.")


def dataset_card(stats: dict, metrics: dict, queries: int, now: datetime, settings, sections=(),
                 extra_configs=()) -> str:
    """`sections` and `extra_configs`: the card texts and the `configs` entries of configs written by modules
    of their own (a config is listed only when it has rows: `datasets` cannot load an empty one)."""
    provenance, seeds = _provenance_rows(stats)
    total_seeds = sum(seeds.values())
    seeded = total_seeds > 0
    table4, table6, scales, kinds = [], [], [], []
    for language in LANGUAGES:
        table3 = stats[language]["queries"]
        lexical = metrics[language]["lexical_similarity"]
        semantic = metrics[language].get("semantic_similarity")
        recall = metrics[language]["bm25_retrieval"]
        scales.append(f"{language}: {lexical.get('stickers_compared', 0)} of the {table3['stickers']} stickers "
                      f"({lexical.get('stickers_with_2plus_queries', 0)} with 2 or more queries), "
                      f"{lexical.get('queries_compared', 0)} of the {table3['queries']} queries, on "
                      f"{lexical.get('scale', 'every sticker')}")
        pair_kinds = lexical.get("pair_kinds") or {}
        kinds.append(f"{language}: " + ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in pair_kinds.items()))
        table4.append(f"| {language} | {lexical.get('stickers_compared', 0)} | {lexical.get('queries_compared', 0)} | "
                      f"{lexical.get('pairs_compared', 0)} | {_value(lexical, 'bleu')} | "
                      f"{_value(lexical, 'rouge_l_f1')} | {_value(semantic, 'cosine_similarity')} | "
                      f"{_value(semantic, 'bertscore_precision')} | {_value(semantic, 'bertscore_recall')} | "
                      f"{_value(semantic, 'bertscore_f1')} |")
        table6.append(f"| {language} | {recall['test_queries_evaluated']} | {recall['corpus_documents']} | "
                      + " | ".join(str(_value(recall, name)) for name in (
                          "recall@1", "recall@10", "recall@50", "recall@10_trec", "ndcg@10", "mrr@10")) + " |")
    semantic_notes = []
    for language in LANGUAGES:
        semantic = metrics[language].get("semantic_similarity") or {}
        if semantic.get("unavailable"):
            semantic_notes.append(f"- {language}: CS and BERTScore not computed: {semantic['unavailable']}.")
        elif semantic:
            semantic_notes.append(f"- {language}: CS and BERTScore with `{semantic['model']}` (BERTScore layer "
                                  f"{semantic['bertscore_layer']}).")
    sources = ["original", "extended|metchee/u-sticker"] + (["extended|metchee/sticker-queries"] if seeded else [])
    seed_sentence = _seed_sentence(stats, seeds, queries)
    seeds_policy = ("Seeds were left out of this export (`export now --without-seeds`, "
                    "STICKTIONARY_EXPORT_WITHOUT_SEEDS)." if settings.exports.export_without_seeds else "")
    original_text = ("The player's own text of a corrected query is in `original_text`, as the operator asked."
                     if settings.privacy.export_original_text else
                     "A player's uncorrected text is not exported: where a moderator corrected a query only the "
                     "correction is (`original_text` is null).")
    return f"""---
license: mit
language:
- en
- zh
pretty_name: StickerQueries (Sticktionary live export)
size_categories:
- {_size_category(queries)}
task_categories:
- text-retrieval
task_ids:
- document-retrieval
annotations_creators:
- crowdsourced
language_creators:
- crowdsourced
multilinguality:
- multilingual
source_datasets:
{chr(10).join(f"- {s}" for s in sources)}
paperswithcode_id: null
tags:
- stickers
- query-generation
- games-with-a-purpose
- arxiv:2506.01668
configs:
{_yaml_configs(list(extra_configs))}
---

# StickerQueries — Sticktionary export of {now.date().isoformat()}

Sticker search queries written by players of Sticktionary, a Telegram game with a purpose after
"Small Stickers, Big Meanings: A Multilingual Sticker Semantic Understanding Dataset with a Gamified
Approach" (Chee et al., ACM MM 2025, [{PAPER}]({PAPER})). A *labeler* sees a sticker in a real chat
context from U-Sticker and writes the queries they would type to find it; a *retriever* must find the
sticker among candidates from those queries.

## Provenance: where each query came from and how it was validated

A query is in this export when a retriever found the sticker from it (`retrieval_hit`), when a moderator
accepted or corrected it after a miss (`moderator_accept`, `moderator_correct`), or when it is an imported
seed query. {seed_sentence} Queries of players who withdrew consent and queries moderators discarded are
never in it. {seeds_policy}

| lang | source | validation | queries |
|---|---|---|---|
{chr(10).join(provenance) or "| – | – | – | 0 |"}

## Loading

```python
from datasets import load_dataset
queries = load_dataset("path/to/this/export")                      # default: train and test splits
release = load_dataset("path/to/this/export", "release_en")        # the StickerQueries format
corpus = load_dataset("path/to/this/export", "beir_en_corpus")     # also beir_en_queries, beir_en_qrels,
                                                                    # beir_stickers_en_* and the zh ones
```

BEIR's own loader reads `beir/<lang>/` and `beir-stickers/<lang>/`:
`GenericDataLoader(data_folder="beir/en").load(split="test")`.

## Dataset Structure

Files:

- `{"sticker_queries_en_release.csv"}`, `{"sticker_queries_zh_release.csv"}`: the released StickerQueries format
  (`sticker_id,labeled_queries`, queries joined by ", "); the same rows in `data/release/<lang>.parquet`.
- `queries.jsonl`, `queries.parquet`: one record per query (both languages); the same records split in
  `data/queries/train.parquet` and `data/queries/test.parquet` (the `default` config).
- `beir/<lang>/`: BEIR layout of the query-level split: `corpus.jsonl` (one document per sticker made of its
  *train* queries; file path and format in `metadata`), `queries.jsonl`, `qrels/train.tsv`, `qrels/test.tsv`.
- `beir-stickers/<lang>/`: BEIR layout of the sticker-level split: the same queries, `qrels/test.tsv` holding
  every query of the held-out stickers; documents carry no text (the sticker is the image).
- `data/<layout>/<lang>/*.parquet`: the BEIR files as parquet for `datasets` (`_id`, `title`, `text`;
  qrels `query-id`, `corpus-id`, `score`).
- `stats.json` (the paper's Tables 2 and 3, the provenance counts, and how many seeds players were shown),
  `metrics.json` (Tables 4 and 6, each figure with its scale and protocol), `manifest.json` (sha256 and row
  count of every file).

Fields of a query record (`queries.*`, `data/queries/*`):

| field | type | meaning |
|---|---|---|
{_structure()}

## Splits

- Query-level (`split`, `beir/`, the `default` config): {SPLIT_PROTOCOL}
- Sticker-level (`sticker_split`, `beir-stickers/`): {STICKER_SPLIT_PROTOCOL}.

What the query-level qrels can and cannot be used for: each `beir/` document *is* its sticker's train
queries, so every query of `qrels/train.tsv` appears word for word in its own document. Those train qrels
are degenerate for training a retriever (it would learn to copy); use them, if at all, only as the corpus
side. `qrels/test.tsv` measures finding a sticker from new phrasings by other rounds and other people, given
the phrasings of the rest (the paper's Table 6 protocol). To train and evaluate a retriever, use
`beir-stickers/`: whole stickers are held out, no query text is in any document, and a model must match a
query to the sticker itself (its image: `sticker_id` / `metadata.file_path` in U-Sticker, or
`stickers/<sticker_id>` in the StickerQueries release for a sticker known only from its CSV; the files the
game had are in `images/` and the `stickers` config, whose `available` says which).

## Evaluation (metrics.json)

Table 4, inter-annotator similarity on a 0–1 scale. Its stickers, queries and pairs are the ones compared,
not the whole export's:

{chr(10).join(f"- {line}." for line in scales)}

A query is compared only with queries another person wrote: pairs by two different players, and a player's
query with a seed. Pairs by the same player, and pairs of two seeds (StickerQueries does not say whether one
person wrote both), are left out. Pairs of each kind, compared or left out:

{chr(10).join(f"- {line}." for line in kinds)}

| lang | stickers | queries | pairs | BLEU | ROUGE-L F1 | CS | BERTScore P | BERTScore R | BERTScore F1 |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(table4)}

{chr(10).join(semantic_notes)}

BLEU is NLTK's sentence BLEU (4-gram, smoothing method 1) of each query against the sticker's other
queries; ROUGE-L F1 is each query against its best-matching other query; CS is the mean cosine of
mean-pooled embeddings over pairs; BERTScore has each query as candidate and the others as references.
metrics.json also has pairwise ROUGE-L (0–100, an earlier variant; sacrebleu BLEU, the other one, is left
out of exports and computed by `sticktionary report`), and words for every figure's protocol. The paper
reports, with BERT-base models: EN 0.0756 / 0.2796 / 0.7131 / 0.6710 / 0.6666 /
0.6628, ZH 0.0132 / 0.0195 / 0.7728 / 0.7061 / 0.6983 / 0.6986, over every pair of a sticker's queries in
the released CSVs, where no author is known (`sticktionary report` on those files computes it that way, on
every sticker).

Table 6, BM25 (k1=1.5, b=0.75) over the `beir/` corpus, searched by the test queries:

| lang | test queries | documents | R@1 | R@10 | R@50 | R@10 (trec ties) | nDCG@10 | MRR@10 |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(table6)}

Recall@k counts every sticker tied with the target ahead of it; "trec ties", nDCG@10 and MRR@10 break ties
as trec_eval does (document id descending), so pytrec_eval and BEIR give the same numbers.

{chr(10).join(sections)}
## Bias, risks and limitations

- Players are volunteers who chose to play a Telegram game in English or Chinese: their vocabulary, age,
  region and culture are not a sample of sticker users at large, and a few prolific players can dominate
  (see `annotator`).
- Queries of the retrieval-validated kind were found by another player, which favours literal, easy
  phrasings; in the default configs, queries a retriever missed are in only when a moderator accepted
  them. The `all` config keeps every query with its status, so the bias can be measured.
- Seed queries come from a released dataset and did not go through this game's validation.
- Stickers come from public Telegram chats (U-Sticker) and may show offensive, political or copyrighted
  content; the `contexts` config shows the chat messages around them as players saw them.
- Table 4 is computed on a deterministic sample of stickers (STICKTIONARY_EXPORT_SIMILARITY_STICKERS) and
  Table 6 on a sample of test queries past a size: see `scale`, `stickers_compared` and
  `test_queries_evaluated` in metrics.json.

## Personal and Sensitive Information

Players consented to the research use of their queries and can withdraw; a withdrawal removes their
queries from every later export. No Telegram id, name, username or in-game pseudonym is exported: the only
per-person field is `annotator`, a keyed hash (HMAC-SHA256 with an operator secret of at least 256 bits of estimated entropy;
exports refuse a guessable one)
that cannot be traced back without that secret; `label_round` is hashed the same way. Times are truncated
to the {settings.privacy.export_time_resolution}. {original_text} Free text can still contain whatever a player typed
(names, places); moderators review queries a retriever missed, not every query. Report a problem to the
operators and it is removed from the next export.

## Licence

Queries and judgments: MIT. Sticker images (`images/`, the `stickers` config) and chat contexts are
third-party content from public Telegram chats (U-Sticker): they are not covered by the MIT licence and keep
their owners' rights; they are included for research use, as U-Sticker distributes them.

## Citation

```bibtex
@inproceedings{{chee2025stickers,
  title     = {{Small Stickers, Big Meanings: A Multilingual Sticker Semantic Understanding Dataset
               with a Gamified Approach}},
  author    = {{Chee, Heng Er Metilda and others}},
  booktitle = {{Proceedings of the 33rd ACM International Conference on Multimedia}},
  year      = {{2025}}
}}
```
"""
