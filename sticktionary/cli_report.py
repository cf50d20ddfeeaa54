"""`sticktionary report`: the statistics and metrics of any StickerQueries CSVs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from core.vocabulary import LANGUAGES
from sticktionary.cli_common import check_language
from storage.settings import get_settings


def report(
    csv_files: Annotated[list[Path] | None, typer.Argument(exists=True, dir_okay=False,
                                                           help="StickerQueries CSVs (sticker_id,labeled_queries)")]
    = None,
    lang: Annotated[str | None, typer.Option("--lang", help="en or zh; default: from the file name "
                                                            "(…_zh_…) or else detected")] = None,
    semantic: bool = typer.Option(True, help="CS and BERTScore too (needs the semantic extra and the model)"),
    semantic_model: Annotated[str | None, typer.Option(
        help="model name or local folder for CS and BERTScore (default: STICKTIONARY_SEMANTIC_MODEL_EN / _ZH)")]
    = None,
    sample: Annotated[int | None, typer.Option(
        "--sample", min=1, help="Table 4 on a deterministic sample of N stickers, for a quick run (default: every "
                                "sticker)")] = None,
    judgments: Annotated[Path | None, typer.Option(
        exists=True, help="an export folder, or its judgments parquet or judgments.jsonl: Recall_n@K, MAP and "
                          "nDCG@10 over the candidate grids people (and partner models) answered")] = None,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The export's statistics (Table 3) and metrics (Tables 4 and 6) for any StickerQueries CSVs; with
    --judgments, the retrieval figures over the candidate grids of an export's judgments (DSTC10-MOD)."""
    from core.research import LanguageReport
    from storage.sticker_queries import StickerQueriesFormatError, read_sticker_queries

    if not csv_files and judgments is None:
        typer.echo("give StickerQueries CSVs, --judgments EXPORT, or both", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    results = {}
    if judgments is not None:
        results["judgments"] = _grid_figures(judgments)
    for path in csv_files or []:
        try:
            rows = list(read_sticker_queries(path))
        except StickerQueriesFormatError as error:
            typer.echo(str(error), err=True)
            raise typer.Exit(2) from None
        language = check_language(lang) if lang else _language_of(path, rows)
        model = (semantic_model or settings.exports.semantic_model(language)) if semantic else None
        language_report = LanguageReport(language, max_similarity_stickers=sample, keep_texts=model is not None)
        for sticker, queries in rows:
            language_report.add(sticker, queries)
        results[str(path)] = {"language": language, "statistics": language_report.statistics_table(),
                              **language_report.metrics(semantic_model=model)}
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False, indent=2))
        return
    for path, result in results.items():
        if path == "judgments":
            _print_grid(judgments, result)
        else:
            _print_report(path, result)


def _grid_figures(judgments: Path) -> dict:
    from core.export_judgments import grid_figures_of

    try:
        return grid_figures_of(judgments)
    except (OSError, ValueError, KeyError) as error:  # not an export's judgments
        typer.echo(f"{judgments}: not an export's judgments ({type(error).__name__}: {error})", err=True)
        raise typer.Exit(2) from None


def _print_grid(path: Path, figures: dict) -> None:
    typer.echo(f"{path}: retrieval over the candidate grids (one relevant among the n shown, DSTC10-MOD)")
    for language, kinds in figures.items():
        for kind, result in kinds.items():
            if not result.get("tasks"):
                continue
            n = result["grid_size"]
            typer.echo(f"  {language} {kind}: {result['tasks']} tasks, R{n}@1 {result[f'recall_{n}@1']}, "
                       f"R{n}@2 {result[f'recall_{n}@2']}, R{n}@3 {result[f'recall_{n}@3']}, MAP {result['map']}, "
                       f"nDCG@10 {result['ndcg@10']}")


def _language_of(path: Path, rows) -> str:
    name = path.name.lower()
    for language in LANGUAGES:
        if f"_{language}_" in name or name.startswith(f"{language}_") or name.endswith(f"_{language}.csv"):
            return language
    from core.curation import detect_language

    # Queries are short: a file's first 200 stickers say more than the 200 characters a chat needs.
    sample = " ".join(q for _, queries in rows[:200] for q in queries)
    return "zh" if detect_language(sample, sample_chars=20_000) == "zh" else "en"


def _print_report(path: str, result: dict) -> None:
    stats = result["statistics"]
    typer.echo(f"{path} ({result['language']})")
    typer.echo(f"  stickers {stats['stickers']}, queries {stats['queries']}, queries/sticker "
               f"{stats['queries_per_sticker']}, tokens/query {stats['tokens_per_query']}, vocabulary "
               f"{stats['vocabulary_size']}")
    typer.echo("  most frequent: " + ", ".join(f"{t} ({n})" for t, n in stats["most_frequent_terms"][:10]))
    split = result["split"]
    typer.echo(f"  split: {split['train_queries']} train / {split['test_queries']} test queries — {split['protocol']}")
    similarity = result["lexical_similarity"]
    typer.echo(f"  Table 4, lexical ({similarity['stickers_compared']} stickers, {similarity['queries_compared']} "
               f"queries, {similarity['pairs_compared']} pairs, on {similarity['scale']}; {similarity['pairs']}):")
    typer.echo("    pairs by kind: " + ", ".join(f"{kind} {n}" for kind, n in similarity["pair_kinds"].items()))
    _print_figures(similarity)
    semantic = result.get("semantic_similarity")
    if semantic is not None:
        if semantic.get("unavailable"):
            typer.echo(f"  Table 4, semantic: not computed — {semantic['unavailable']}")
        else:
            typer.echo(f"  Table 4, semantic (model {semantic['model']}, BERTScore layer {semantic['bertscore_layer']}; "
                       f"{semantic['stickers_compared']} stickers, {semantic['pairs_compared']} pairs; "
                       f"{semantic['seconds_scoring']} s):")
            _print_figures(semantic)
    retrieval = result["bm25_retrieval"]
    typer.echo(f"  Table 6, BM25 retrieval ({retrieval['test_queries_evaluated']} test queries over "
               f"{retrieval['corpus_documents']} stickers; {retrieval['protocol']}):")
    _print_figures(retrieval)


def _print_figures(section: dict) -> None:
    for name, about in section["figures"].items():
        typer.echo(f"    {name:<22} {section[name]!s:<8} scale {about['scale']}: {about['protocol']}")
