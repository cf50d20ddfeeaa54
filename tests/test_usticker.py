"""U-Sticker reading, curation rules and the importer."""

import json

import pytest
from sqlmodel import Session, func, select

from core.curation import (
    WindowMessage,
    dialogue_before,
    is_brief_reply_stretch,
    is_command_driven,
)
from core.importing import ImportStopped, import_usticker
from offline.demo_pack import PACK_DIR
from storage.models import ChatContext, Sticker
from storage.usticker import MalformedRecord, UnknownShape, read_conversation, read_domains

RECORDS = [
    {"message_id": 1, "from_id": 7, "reply_id": None, "sticker": None,
     "text": "so we finally went to the new ramen place downtown yesterday evening"},
    {"message_id": 2, "from_id": 8, "reply_id": 1, "sticker": None,
     "text": "oh nice, was it as good as everyone keeps saying online these days"},
    {"message_id": 3, "from_id": 7, "reply_id": 2, "sticker": "stickers/55.png", "text": None},
]


def _write(path, shape):
    if shape == "array":
        path.write_text(json.dumps(RECORDS), encoding="utf-8")
    elif shape == "nested":
        path.write_text(json.dumps({"chat": {"messages": RECORDS}}), encoding="utf-8")
    elif shape == "keyed":
        path.write_text(json.dumps({str(r["message_id"]): r for r in RECORDS}), encoding="utf-8")
    else:
        path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n", encoding="utf-8")


@pytest.mark.parametrize("shape", ["array", "nested", "keyed", "jsonl"])
def test_reader_accepts_the_plausible_shapes(tmp_path, shape):
    path = tmp_path / "01.json"
    _write(path, shape)
    messages = list(read_conversation(path))
    assert [m.message_id for m in messages] == [1, 2, 3]
    assert messages[2].sticker == "stickers/55.png" and messages[1].reply_id == 1


def test_array_reader_handles_records_split_across_chunks(tmp_path):
    from storage import usticker

    path = tmp_path / "01.json"
    records = [dict(RECORDS[0], message_id=i, text="word " * (i % 50)) for i in range(1, 3000)]
    path.write_text(json.dumps(records), encoding="utf-8")
    seen = [r["message_id"] for r in usticker._array_records(path, chunk_size=997)]
    assert seen == list(range(1, 3000))


def test_malformed_records_are_named_and_skipped_or_stop(tmp_path):
    path = tmp_path / "07.json"
    path.write_text(json.dumps([RECORDS[0], {"message_id": "x1"}, 5, RECORDS[1]]), encoding="utf-8")
    problems = []
    messages = list(read_conversation(path, on_malformed=problems.append))
    assert [m.message_id for m in messages] == [1, 2]
    assert [(p.path.name, p.index) for p in problems] == [("07.json", 1), ("07.json", 2)]
    assert "07.json: record #1" in str(problems[0])
    with pytest.raises(MalformedRecord):
        list(read_conversation(path))


def test_a_file_without_records_is_rejected_clearly(tmp_path):
    path = tmp_path / "01.json"
    path.write_text('{"hello": [1, 2]}', encoding="utf-8")
    with pytest.raises(UnknownShape, match="message_id"):
        list(read_conversation(path))


def test_domains_file_accepts_common_separators(tmp_path):
    path = tmp_path / "idx_to_domain.txt"
    path.write_text("01.json\tgaming\n02,anime\n03: crypto news\n", encoding="utf-8")
    assert read_domains(path) == {"01.json": "gaming", "02": "anime", "03": "crypto news"}


def _window(*texts, sticker_at=()):
    return [WindowMessage(i, f"u{i % 2}", t, i in sticker_at, None) for i, t in enumerate(texts)]


def test_rule_enough_dialogue_counts_words_back_from_the_sticker():
    long = "one two three four five six seven eight nine ten eleven"
    assert dialogue_before(_window("ok", long, long), 20) is not None
    assert len(dialogue_before(_window("old " * 30, long, long), 20)) == 2  # oldest not needed
    assert dialogue_before(_window("short one", "tiny"), 20) is None
    assert dialogue_before(_window("我们今天晚上一起去吃火锅吧你觉得怎么样呢我觉得很好"), 20) is None


def test_rule_command_driven():
    assert is_command_driven(_window("/roll 20", "you rolled a 17"))
    assert not is_command_driven(_window("what a day", "tell me about it"))


def test_rule_brief_reply_stretch():
    assert is_brief_reply_stretch(_window("ok", "lol", "yes", "a long message with many words in it"))
    assert not is_brief_reply_stretch(_window("a long message with words", "another long message here", "ok"))


def test_import_curates_the_demo_pack_and_is_idempotent(db):
    first = import_usticker(db, PACK_DIR, sticker_root=PACK_DIR, progress=False, approve=True)
    assert first.stickers_added >= 48 and first.contexts_added == 2 * first.stickers_added
    assert first.languages == {"en": first.stickers_added, "zh": first.stickers_added}
    second = import_usticker(db, PACK_DIR, sticker_root=PACK_DIR, progress=False, approve=True)
    assert second.stickers_added == 0 and second.contexts_added == 0
    with Session(db) as session:
        assert session.exec(select(func.count()).select_from(ChatContext)).one() == first.contexts_added
        sticker = session.exec(select(Sticker).limit(1)).one()
        assert sticker.sha256 and sticker.size_bytes  # facts of the real file


def test_import_reports_each_rule_and_other_languages(db, tmp_path):
    folder = tmp_path / "u"
    folder.mkdir()
    long_en = "we should really plan the trip for next summer with everyone from the old team"
    records = [
        {"message_id": 1, "from_id": 1, "text": long_en}, {"message_id": 2, "from_id": 2, "text": long_en},
        {"message_id": 3, "from_id": 1, "sticker": "stickers/1.png"},           # kept
        {"message_id": 5, "from_id": 1, "text": "/weather berlin"},
        {"message_id": 6, "from_id": 9, "text": long_en},
        {"message_id": 7, "from_id": 1, "sticker": "stickers/3.png"},           # command driven
        {"message_id": 8, "from_id": 1, "text": "wir sollten wirklich die reise für den nächsten sommer "
                                                "mit allen aus dem alten team planen und dann sehen wir weiter"},
        {"message_id": 9, "from_id": 2, "text": "ja genau das machen wir so und dann fahren wir alle zusammen "
                                                "los und haben viel spaß dabei"},
        {"message_id": 10, "from_id": 1, "sticker": "stickers/4.png"},          # other language
    ]
    (folder / "01.json").write_text(json.dumps(records), encoding="utf-8")
    (folder / "02.json").write_text(json.dumps([                                  # a new chat: too little dialogue
        {"message_id": 1, "from_id": 1, "text": "hi"}, {"message_id": 2, "from_id": 1, "sticker": "stickers/5.png"},
    ]), encoding="utf-8")
    report = import_usticker(db, folder, progress=False)
    assert report.removed["command_driven"] == 1
    assert report.removed["other_language"] == 1
    assert report.removed["too_little_dialogue"] == 1
    assert report.contexts_kept >= 1 and report.stickers_seen == 4


def test_stop_on_error_stops_at_the_first_malformed_record(db, tmp_path):
    folder = tmp_path / "u"
    folder.mkdir()
    (folder / "01.json").write_text(json.dumps([RECORDS[0], "oops"]), encoding="utf-8")
    with pytest.raises(ImportStopped, match="01.json: record #1"):
        import_usticker(db, folder, progress=False, stop_on_error=True)
    assert len(import_usticker(db, folder, progress=False).malformed) == 1


def test_parallel_and_single_process_imports_agree(db, tmp_path, sqlite_template):
    import shutil

    from offline.synthetic import write_synthetic_usticker
    from storage.db import make_engine

    folder = tmp_path / "syn"
    write_synthetic_usticker(folder, messages=6000, stickers=300, files=3, progress=False)
    single = import_usticker(db, folder, progress=False, workers=1)
    other_path = tmp_path / "other.sqlite3"
    shutil.copy(sqlite_template, other_path)
    other = make_engine(f"sqlite:///{other_path}")
    parallel = import_usticker(other, folder, progress=False, workers=2)
    assert single.as_dict() == parallel.as_dict()
    with Session(db) as a, Session(other) as b:
        rows = select(Sticker.key, ChatContext.language, ChatContext.message_id).join(Sticker)
        assert sorted(a.exec(rows).all()) == sorted(b.exec(rows).all())
