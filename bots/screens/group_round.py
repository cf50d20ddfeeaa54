"""A group round's one message: the numbered grid with the round's queries, who has picked (by
nickname), number buttons and a Join button; once closed, the same message shows the answer (its
tile outlined), who found it with their points, and who missed. Also the group's own table (/top)
and the short texts the bot posts in a group."""

from __future__ import annotations

from bots import callbacks
from bots.messages.catalogue import Catalogue, quoted
from bots.messages.limits import CAPTION_LIMIT, Buttons, shorten, utf16_units
from bots.messages.replies import SendText
from core.game.group_rounds import GroupRoundView, GroupTable

GRID_COLUMNS = 3


def names(nicknames: list[str], t: Catalogue) -> str:
    return t("group_names_separator").join(nicknames)


def caption(view: GroupRoundView, t: Catalogue) -> str:
    queries = shorten(quoted(view.queries, view.language), CAPTION_LIMIT // 2)
    if view.is_open:
        picked = (t("group_picked_by", count=len(view.picks), names=names([p.nickname for p in view.picks], t))
                  if view.picks else t("group_nobody_yet", points="/".join(map(str, view.places))))
        return shorten(f"{t('group_round_title', seconds=view.seconds)}\n🔎 {queries}\n\n{picked}", CAPTION_LIMIT)
    found = [p for p in view.picks if p.correct]
    missed = [p for p in view.picks if not p.correct]
    lines = [t("group_answer", n=view.answer), f"🔎 {queries}", ""]
    if found:
        lines.append(t("group_found_by", names=names(
            [t("group_found_one", name=p.nickname, points=p.points) if p.points else p.nickname for p in found], t)))
    if missed:
        lines.append(t("group_missed_by", names=names([p.nickname for p in missed], t)))
    if not view.picks:
        lines.append(t("group_nobody_played"))
    return shorten("\n".join(lines).rstrip(), CAPTION_LIMIT)


def buttons(view: GroupRoundView, t: Catalogue) -> Buttons | None:
    if not view.is_open:
        return None
    numbers = [(str(n), callbacks.GroupPickButton(view.round_id, n).encode())
               for n in range(1, len(view.candidates) + 1)]
    rows = [numbers[i:i + GRID_COLUMNS] for i in range(0, len(numbers), GRID_COLUMNS)]
    rows.append([(t("group_button_join"), callbacks.GroupJoin().encode())])
    return rows


def table(board: GroupTable, t: Catalogue) -> SendText:
    def block(title: str, rows) -> str:
        if not rows:
            return f"{title}\n{t('group_top_empty')}"
        return "\n".join([title] + [t("top_row", rank=r.rank, name=r.nickname, points=r.points) for r in rows])
    return SendText(f"{block(t('group_top_week'), board.week)}\n\n{block(t('group_top_all'), board.all_time)}")


def hello(t: Catalogue) -> SendText:
    return SendText(t("group_hello"))


def round_open(t: Catalogue, chat_id: int, message_id: int | None) -> SendText:
    """The pointer at the open round: in a supergroup, a link to its message (t.me/c/…)."""
    text = t("group_round_already_open")
    if message_id is None or chat_id > -1_000_000_000_000:
        return SendText(text)  # a basic group's messages have no link
    link = f"https://t.me/c/{-chat_id - 1_000_000_000_000}/{message_id}"
    return SendText(text, entities=[{"type": "text_link", "offset": 0, "length": utf16_units(text), "url": link}])


def no_round(t: Catalogue) -> SendText:
    return SendText(t("group_no_round"))
