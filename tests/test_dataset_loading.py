"""The demo's export as researchers load it: every config of the card through the real `datasets`
library, and both BEIR layouts through BEIR's own GenericDataLoader (all offline)."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

# Offline, as the tests must be: set before `datasets` and huggingface_hub read them.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.dataset_card import configs  # noqa: E402
from core.export_layout import QUERY_SCHEMA  # noqa: E402
from offline.demo import run_demo  # noqa: E402


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    summary = run_demo(workdir, players_per_language=3, turns=6, echo=lambda *args: None)
    folders = [p for p in (workdir / "exports").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(folders) == 1 and summary
    return folders[0]


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_config_loads_with_datasets(demo_export, tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets is in the test extra")
    card_configs = configs()
    names = [c["config_name"] for c in card_configs]
    assert len(names) == len(set(names)) == 15 + 14 and names[0] == "default"  # + the evidence configs
    records = _jsonl(demo_export / "queries.jsonl")
    # The default config needs no name, and has real train and test splits.
    default = datasets.load_dataset(str(demo_export), cache_dir=str(tmp_path / "cache"))
    assert set(default) == {"train", "test"}
    assert default["train"].num_rows + default["test"].num_rows == len(records)
    assert default["test"].num_rows > 0 and set(default["test"]["split"]) == {"test"}
    assert default["train"].column_names == QUERY_SCHEMA.names
    features = default["train"].features
    assert features["query_id"].dtype == "int64" and features["resonant"].dtype == "bool"
    assert features["created_at"].dtype.startswith("timestamp[us")
    ids = list(default["train"]["query_id"]) + list(default["test"]["query_id"])
    assert sorted(ids) == sorted(r["query_id"] for r in records)
    for config in card_configs:
        loaded = datasets.load_dataset(str(demo_export), config["config_name"], cache_dir=str(tmp_path / "cache"))
        assert set(loaded) == {item["split"] for item in config["data_files"]}, config["config_name"]
        for item in config["data_files"]:
            split = loaded[item["split"]]
            expected = pq.read_table(demo_export / item["path"])
            assert split.num_rows == expected.num_rows and split.column_names == expected.column_names
            assert split.to_dict() == expected.to_pydict(), config["config_name"]
    # The release configs are the release CSVs, row for row.
    release = datasets.load_dataset(str(demo_export), "release_en", split="train", cache_dir=str(tmp_path / "cache"))
    csv_lines = (demo_export / "sticker_queries_en_release.csv").read_text(encoding="utf-8").splitlines()
    assert release.num_rows == len(csv_lines) - 1 > 0 and release.features["labeled_queries"].dtype == "string"
    qrels = datasets.load_dataset(str(demo_export), "beir_en_qrels", split="test", cache_dir=str(tmp_path / "cache"))
    assert qrels.column_names == ["query-id", "corpus-id", "score"] and qrels.features["score"].dtype == "int32"


@pytest.mark.parametrize("layout", ["beir", "beir-stickers"])
def test_beir_loader_reads_both_layouts(demo_export, layout):
    generic = pytest.importorskip("beir.datasets.data_loader", reason="beir is installed by .ci/run (--no-deps)")
    for language in ("en", "zh"):
        folder = demo_export / layout / language
        records = [r for r in _jsonl(demo_export / "queries.jsonl") if r["language"] == language]
        column = "split" if layout == "beir" else "sticker_split"
        for split in ("train", "test"):
            expected = [r for r in records if r[column] == split]
            if not expected:
                continue
            corpus, queries, qrels = generic.GenericDataLoader(data_folder=str(folder)).load(split=split)
            assert len(queries) == len(qrels) == len(expected)
            assert all(qrels[f"q{r['query_id']}"] == {r["sticker_id"]: 1} for r in expected)
            assert all(queries[f"q{r['query_id']}"] == r["text"] for r in expected)
            assert set(corpus) == {r["sticker_id"] for r in records}
            if layout == "beir-stickers":
                assert all(doc["text"] == "" for doc in corpus.values())
