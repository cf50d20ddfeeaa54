"""The moderators' prize list (/prizes): the prizes waiting to be handed out, each winner's nickname
a link to them, with a "delivered" button per prize."""

from __future__ import annotations

from bots import callbacks
from bots.messages.catalogue import Catalogue
from bots.messages.limits import utf16_units
from bots.messages.replies import EditText, SendText
from core.game.prizes import PrizeView

SHOWN = 8  # prizes per screen


def screen(prizes: list[PrizeView], t: Catalogue, edit: int | None = None) -> EditText | SendText:
    """The list, sent, or edited into message `edit` (after a prize was marked delivered)."""
    if not prizes:
        return EditText(edit, t("prizes_empty")) if edit else SendText(t("prizes_empty"))
    lines = [t("prizes_title")]
    links = []
    for prize in prizes:
        values = dict(id=prize.id, language=prize.language, period=t(f"period_{prize.period}"),
                      start=prize.period_start.date().isoformat(), name=prize.nickname,
                      pseudonym=prize.pseudonym, rank=prize.rank, points=prize.points, sessions=prize.sessions)
        lines.append(t("prize_top" if prize.kind == "top" else "prize_participation", **values))
        if prize.telegram_user_id is not None:
            links.append((len(lines) - 1, prize.nickname, f"tg://user?id={prize.telegram_user_id}"))
    buttons = [[(t("button_delivered", id=prize.id), callbacks.PrizeDelivered(prize.id).encode())] for prize in prizes]
    text = "\n".join(lines)
    entities = _links(lines, links)
    return EditText(edit, text, buttons, entities=entities) if edit else SendText(text, buttons, entities=entities)


def _links(lines: list[str], links: list[tuple[int, str, str]]) -> list[dict]:
    """text_link entities on each winner's nickname in `lines` (joined by newlines): offsets and
    lengths in UTF-16 code units, as Telegram counts them. No markup, so no user text to escape."""
    entities = []
    offset = 0
    by_line = {index: (name, url) for index, name, url in links}
    for index, line in enumerate(lines):
        if index in by_line:
            name, url = by_line[index]
            at = line.find(name)
            if at >= 0 and name:
                entities.append({"type": "text_link", "offset": offset + utf16_units(line[:at]),
                                 "length": utf16_units(name), "url": url})
        offset += utf16_units(line) + 1
    return entities
