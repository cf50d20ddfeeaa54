"""The stickers themselves in the research export, for image–text retrieval:

    images/<sticker_id>                   every sticker file the operator has (hard links where possible)
    data/stickers/train.parquet           the `stickers` config: `image` is the `datasets` Image feature for
                                          PNG, WEBP and GIF, `file` the bytes of WEBM and TGS; format, sha256,
                                          size and the file's path in this export
    beir-stickers/<lang>/corpus.jsonl     each document's `metadata.image` is its image's path in this export
    data/beir-stickers/<lang>/corpus.parquet   the same, as the `image_path` column
    data/mteb/<lang>/{corpus,queries,qrels}.parquet
                                          MTEB's any-to-any text→image retrieval layout: the corpus is the
                                          stickers of the language with an image, the queries the sticker-level
                                          test queries (beir-stickers' qrels/test) whose sticker has one

A sticker whose file is not in the sticker folder (seeds imported before the archive) is listed with
`available` false and no bytes. Files are read one page at a time: memory does not grow with the archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
from sqlalchemy import Engine, select

from core.export_layout import CORPUS_SCHEMA, data_file
from core.vocabulary import LANGUAGES
from storage.models import Sticker
from storage.typed_jsonl import TypedJsonLines

IMAGE_FORMATS = ("png", "webp", "gif", "jpg", "jpeg")  # what the `datasets` Image feature decodes (Pillow)
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def _with_features(schema: pa.Schema, features: dict) -> pa.Schema:
    """The `datasets` features in the parquet metadata: `load_dataset` then decodes `image` as an Image."""
    return schema.with_metadata({b"huggingface": json.dumps({"info": {"features": features}}).encode()})


def _value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


STICKER_SCHEMA = _with_features(pa.schema([
    ("sticker_id", pa.string()), ("format", pa.string()), ("available", pa.bool_()), ("image", IMAGE),
    ("file", pa.binary()), ("sha256", pa.string()), ("size_bytes", pa.int64()), ("path", pa.string()),
]), {"sticker_id": _value("string"), "format": _value("string"), "available": _value("bool"),
     "image": {"_type": "Image"}, "file": _value("binary"), "sha256": _value("string"),
     "size_bytes": _value("int64"), "path": _value("string")})
IMAGE_CORPUS_SCHEMA = CORPUS_SCHEMA.append(pa.field("image_path", pa.string()))
MTEB_CORPUS_SCHEMA = _with_features(pa.schema([("id", pa.string()), ("modality", pa.string()), ("image", IMAGE)]),
                                    {"id": _value("string"), "modality": _value("string"),
                                     "image": {"_type": "Image"}})
MTEB_QUERY_SCHEMA = pa.schema([("id", pa.string()), ("modality", pa.string()), ("text", pa.string())])
MTEB_QRELS_SCHEMA = pa.schema([("query-id", pa.string()), ("corpus-id", pa.string()), ("score", pa.int32())])
MTEB_PARTS = ("corpus", "queries", "qrels")
PAGE = 200


def image_files() -> dict[str, dict[str, str]]:
    """Config name -> {split: parquet file}, for the dataset card."""
    files = {"stickers": {"train": data_file("stickers", "train")}}
    for language in LANGUAGES:
        for part in MTEB_PARTS:
            files[f"mteb_{language}_{part}"] = {"test": data_file("mteb", language, part)}
    return files


def export_path(sticker: str) -> str:
    return f"images/{sticker}"


def _place(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)


class StickerImages:
    """Writes images/ and the `stickers` config; `available` then names the stickers with a file."""

    def __init__(self, folder: Path, sticker_root: Path) -> None:
        self.folder = folder
        self.root = Path(sticker_root).resolve()
        self.available: set[str] = set()

    def _file(self, relative: str) -> Path | None:
        joined = self.root / relative
        if not os.path.isfile(joined):  # most stickers of a big archive may have no file here: no resolve
            return None
        path = joined.resolve()  # a `..` or a link must not lead out of the sticker folder
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    def write(self, db: Engine) -> int:
        import pyarrow.parquet as pq

        (self.folder / "images").mkdir(exist_ok=True)
        (self.folder / data_file("stickers", "train")).parent.mkdir(parents=True, exist_ok=True)
        writer = pq.ParquetWriter(str(self.folder / data_file("stickers", "train")), STICKER_SCHEMA,
                                  compression="zstd")
        rows, last = 0, 0
        try:
            with db.connect() as connection:
                while True:
                    page = connection.execute(select(Sticker.id, Sticker.key, Sticker.file_path, Sticker.format)
                                              .where(Sticker.id > last).order_by(Sticker.id).limit(PAGE * 5)).all()
                    if not page:
                        break
                    last = page[-1][0]
                    for start in range(0, len(page), PAGE):
                        batch = [self._row(key, relative, fmt) for _, key, relative, fmt in page[start:start + PAGE]]
                        writer.write_table(pa.Table.from_pylist(batch, schema=STICKER_SCHEMA))
                        rows += len(batch)
        finally:
            writer.close()
        return rows

    def _row(self, key: str, relative: str, fmt: str) -> dict:
        path = self._file(relative)
        if path is None or "/" in key or key.startswith("."):
            return {"sticker_id": key, "format": fmt, "available": False, "image": None, "file": None,
                    "sha256": None, "size_bytes": None, "path": None}
        data = path.read_bytes()
        _place(path, self.folder / export_path(key))
        self.available.add(key)
        is_image = fmt.lower() in IMAGE_FORMATS
        return {"sticker_id": key, "format": fmt, "available": True,
                "image": {"bytes": data, "path": key} if is_image else None, "file": None if is_image else data,
                "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data), "path": export_path(key)}

    def image_bytes(self, sticker: str) -> bytes:
        return (self.folder / export_path(sticker)).read_bytes()

    def is_image(self, sticker: str) -> bool:
        return sticker in self.available and sticker.rsplit(".", 1)[-1].lower() in IMAGE_FORMATS


def link_beir_stickers(folder: Path, images: StickerImages) -> None:
    """beir-stickers/<lang>/corpus.jsonl and its parquet: each document with its image's path (null
    when the operator has no file of it)."""
    import orjson
    import pyarrow.parquet as pq

    for language in LANGUAGES:
        corpus = folder / "beir-stickers" / language / "corpus.jsonl"
        if not corpus.exists():
            continue
        linked = TypedJsonLines(corpus.with_name("corpus.linked.jsonl"))
        parquet = pq.ParquetWriter(str(folder / data_file("beir-stickers", language, "corpus.linked")),
                                   IMAGE_CORPUS_SCHEMA, compression="zstd")
        buffer: list[dict] = []
        try:
            with corpus.open("rb") as lines:
                for line in lines:
                    document = orjson.loads(line)
                    image = export_path(document["_id"]) if document["_id"] in images.available else None
                    document["metadata"]["image"] = image
                    linked.write(document)
                    buffer.append({"_id": document["_id"], "title": document["title"], "text": document["text"],
                                   "image_path": image})
                    if len(buffer) >= 2000:
                        parquet.write_table(pa.Table.from_pylist(buffer, schema=IMAGE_CORPUS_SCHEMA))
                        buffer = []
            if buffer:
                parquet.write_table(pa.Table.from_pylist(buffer, schema=IMAGE_CORPUS_SCHEMA))
        finally:
            linked.close()
            parquet.close()
        os.replace(linked.path, corpus)
        os.replace(folder / data_file("beir-stickers", language, "corpus.linked"),
                   folder / data_file("beir-stickers", language, "corpus"))


def write_mteb(folder: Path, images: StickerImages) -> dict[str, dict[str, int]]:
    """MTEB's any-to-any layout per language, from queries.parquet and beir-stickers' corpus."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    counts = {}
    for language in LANGUAGES:
        (folder / data_file("mteb", language, "x")).parent.mkdir(parents=True, exist_ok=True)
        part = {name: pq.ParquetWriter(str(folder / data_file("mteb", language, name)), schema, compression="zstd")
                for name, schema in (("corpus", MTEB_CORPUS_SCHEMA), ("queries", MTEB_QUERY_SCHEMA),
                                     ("qrels", MTEB_QRELS_SCHEMA))}
        counts[language] = {"corpus": 0, "queries": 0}
        try:
            corpus = pq.ParquetFile(str(folder / data_file("beir-stickers", language, "corpus")))
            for batch in corpus.iter_batches(columns=["_id"], batch_size=PAGE, use_threads=False):
                ids = [s for s in batch.column("_id").to_pylist() if images.is_image(s)]
                if ids:
                    part["corpus"].write_table(pa.Table.from_pylist(
                        [{"id": s, "modality": "image", "image": {"bytes": images.image_bytes(s), "path": s}}
                         for s in ids], schema=MTEB_CORPUS_SCHEMA))
                    counts[language]["corpus"] += len(ids)
            wanted = pa.array(sorted(s for s in images.available if images.is_image(s)), pa.string())
            source = pq.ParquetFile(str(folder / "queries.parquet"))
            for batch in source.iter_batches(columns=["query_id", "language", "text", "sticker_id", "sticker_split"],
                                             batch_size=8192, use_threads=False):
                table = pa.Table.from_batches([batch])
                keep = pc.and_(pc.and_(pc.equal(table["language"], language), pc.equal(table["sticker_split"], "test")),
                               pc.is_in(table["sticker_id"], value_set=wanted))
                table = table.filter(keep)
                if not table.num_rows:
                    continue
                ids = pc.binary_join_element_wise("q", pc.cast(table["query_id"], pa.string()), "")
                modality = pa.array(["text"] * table.num_rows, pa.string())
                part["queries"].write_table(pa.Table.from_arrays([ids, modality, table["text"]],
                                                                 schema=MTEB_QUERY_SCHEMA))
                part["qrels"].write_table(pa.Table.from_arrays(
                    [ids, table["sticker_id"], pa.array([1] * table.num_rows, pa.int32())], schema=MTEB_QRELS_SCHEMA))
                counts[language]["queries"] += table.num_rows
        finally:
            for writer in part.values():
                writer.close()
    return counts


def write_images(db: Engine, folder: Path, settings) -> dict:
    images = StickerImages(folder, settings.storage.sticker_root)
    stickers = images.write(db)
    link_beir_stickers(folder, images)
    return {"stickers": stickers, "with_file": len(images.available), "mteb": write_mteb(folder, images)}
