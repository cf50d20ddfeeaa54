"""Synthetic U-Sticker data of any size, for benchmarks: same files, same record shape."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tqdm import tqdm

_EN = ("the a we you they it is was going to do know think really like just maybe what when where why how "
       "today tomorrow night work home movie game dinner coffee friend weekend plan call later again good "
       "bad funny crazy late early right okay sure never always").split()
_ZH = ("我们 你 他们 今天 明天 晚上 工作 回家 电影 游戏 晚饭 咖啡 朋友 周末 计划 打电话 以后 真的 "
       "好像 可能 什么 为什么 怎么 觉得 知道 喜欢 有点 已经 还是 一起 时候 事情 问题 没有").split()


_FORMATS = ("png", "png", "gif", "webm")


def write_synthetic_usticker(dest: Path, *, messages: int, stickers: int, files: int | None = None,
                             sticker_share: float = 0.045, zh_share: float = 0.3, seed: int = 7,
                             progress: bool = True) -> dict[str, int]:
    """Write ``messages`` records over ``files`` conversation files (01.json …) as JSON arrays."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files = files or max(1, min(67, messages // 20000))
    per_file = messages // files
    message_id = 0
    sticker_messages = 0
    with tqdm(total=messages, unit=" msg", unit_scale=True, disable=not progress, desc="synth") as bar:
        for file_index in range(files):
            count = per_file if file_index < files - 1 else messages - per_file * (files - 1)
            zh = rng.random() < zh_share
            words, joiner = (_ZH, "") if zh else (_EN, " ")
            with (dest / f"{file_index + 1:02d}.json").open("w", encoding="utf-8") as out:
                out.write("[\n")
                for i in range(count):
                    message_id += 1
                    record = {"message_id": message_id, "from_id": rng.randrange(1, 40),
                              "reply_id": message_id - 1 if rng.random() < 0.2 else None}
                    if rng.random() < sticker_share:
                        # Zipf-like reuse: popular stickers come back often, like in real chats.
                        sticker = min(int(rng.paretovariate(0.6)) - 1, stickers - 1) if rng.random() < 0.6 \
                            else rng.randrange(stickers)
                        record["sticker"] = f"stickers/{10**17 + sticker}.{_FORMATS[sticker % 4]}"
                        record["text"] = None
                        sticker_messages += 1
                    else:
                        record["sticker"] = None
                        record["text"] = joiner.join(rng.choice(words) for _ in range(rng.randrange(1, 14)))
                    out.write(json.dumps(record, ensure_ascii=False))
                    out.write(",\n" if i < count - 1 else "\n")
                    if i % 10000 == 9999:
                        bar.update(10000)
                bar.update(count % 10000)
                out.write("]\n")
    (dest / "idx_to_domain.txt").write_text(
        "".join(f"{i + 1:02d}.json\tsynthetic-{i % 5}\n" for i in range(files)), encoding="utf-8")
    return {"files": files, "messages": messages, "sticker_messages": sticker_messages}
