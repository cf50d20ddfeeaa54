"""Leaderboards: /top (the player's language, the last days), the answer to /top on|off, and the
period's leaderboard the jobs post to chats and opted-in players."""

from __future__ import annotations

from bots.messages.catalogue import Catalogue
from bots.messages.replies import SendText
from core.views import LeaderboardRow


def top(board: list[LeaderboardRow], opted_in: bool, t: Catalogue) -> SendText:
    lines = [t("top_title")] + [t("top_row", rank=r.rank, name=r.nickname, points=r.points) for r in board]
    text = "\n".join(lines) if board else t("top_empty")
    return SendText(text if opted_in else f"{text}\n\n{t('top_hint')}")


def subscribed(subscribe: bool, t: Catalogue) -> SendText:
    return SendText(t("top_subscribed" if subscribe else "top_unsubscribed"))


def posted(payload: dict, t: Catalogue) -> str:
    """A period's leaderboard as the outbox carries it (rows of rank, nickname, points)."""
    rows = payload.get("rows") or []
    title = t("leaderboard_week" if payload.get("period") == "week" else "leaderboard_day")
    if not rows:
        return f"{title}\n{t('leaderboard_empty')}"
    return "\n".join([title] + [t("top_row", rank=rank, name=name or "?", points=points) for rank, name, points in rows])
