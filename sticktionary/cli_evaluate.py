"""`sticktionary evaluate EXPORT`: human retrievers against BM25 and a dense model on the same grids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from core.vocabulary import LANGUAGES
from storage.settings import get_settings


def evaluate(
    export: Annotated[Path, typer.Argument(exists=True, file_okay=False,
                                           help="a research export folder (with judgments.jsonl)")],
    semantic: bool = typer.Option(True, help="a dense model too (needs the semantic extra and the model)"),
    model: Annotated[str | None, typer.Option(
        help="dense model name or local folder for both languages (default: STICKTIONARY_SEMANTIC_MODEL_EN / _ZH)")]
    = None,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Each model answers the grids the human retrievers saw, from the queries they saw: Recall@1/@3 and
    MAP over the grid, humans and models side by side, and the models' nDCG@10 over the full corpus."""
    from core.evaluation import evaluate_export
    from core.export_layout import data_file

    if not (export / data_file("judgments", "train")).is_file():
        typer.echo(f"{export} has no judgments ({data_file('judgments', 'train')}): an export made by this version "
                   "of `sticktionary export now` has them", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    models = ({language: model or settings.exports.semantic_model(language) for language in LANGUAGES}
              if semantic else None)
    result = evaluate_export(export, models)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{result['export']}\n{result['protocol']}")
    for language, section in result["languages"].items():
        typer.echo(f"\n{language}: {section['tasks']} answered tasks ({section['human_tasks']} by humans), grid of "
                   f"{section['grid_size']}, {section['targets_without_text']} targets with no text left")
        typer.echo(f"  {'':<22} {'tasks':>6} {'R@1':>7} {'R@3':>7} {'MAP':>7} {'nDCG@10 (corpus)':>17}")
        for kind, figures in section["retrievers"].items():
            _row(f"retrievers ({kind})", figures, None)
        versus = section["humans_vs_partners"]
        if versus["rounds"]:
            typer.echo(f"  same rounds, people vs partner models: {versus['rounds']} rounds; R@1 "
                       f"{versus['human_recall_at_1']} vs {versus['model_recall_at_1']}, R@3 {versus['human_recall_at_3']} "
                       f"vs {versus['model_recall_at_3']}; a person found what the model missed "
                       f"{versus['human_found_model_missed']}, the reverse {versus['model_found_human_missed']}")
        for name, figures in section["models"].items():
            if "unavailable" in figures:
                typer.echo(f"  {name:<22} unavailable: {figures['unavailable']}")
                continue
            label = f"{name} ({Path(figures['model']).name})" if "model" in figures else name
            _row(label, figures["grid"], figures["full_corpus"])


def _row(label: str, grid: dict, full: dict | None) -> None:
    def cell(section: dict | None, name: str, width: int) -> str:
        value = (section or {}).get(name)
        return f"{'–' if value is None else value:>{width}}"

    typer.echo(f"  {label[:22]:<22} {grid.get('tasks', 0):>6} {cell(grid, 'recall@1', 7)} {cell(grid, 'recall@3', 7)} "
               f"{cell(grid, 'map', 7)} {cell(full, 'ndcg@10', 17)}")
