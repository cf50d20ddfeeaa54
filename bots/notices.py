"""What the engine and the jobs leave in the outbox (feedback to labelers, leaderboards, flags and
prize tallies for moderators), turned into messages for whom they concern."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bots.messages.catalogue import Catalogue, catalogue, quoted
from bots.messages.replies import Outgoing, SendText
from core.game import Game
from core.vocabulary import PLAYER_NOTICES, NoticeKind
from storage.models import OutboxMessage


def player_notice_text(kind: str, payload: dict, t: Catalogue) -> str | None:
    """The text of a message for one player, or None for a kind that is not one."""
    if kind == NoticeKind.LEADERBOARD:
        return leaderboard_text(payload, t)
    if kind in (NoticeKind.FEEDBACK_HIT, NoticeKind.FEEDBACK_MISS):
        # The sticker is named by the labeler's own queries for it: that is how they know it.
        queries = quoted(payload.get("queries") or [], t.language)
        if kind == NoticeKind.FEEDBACK_HIT:
            return t("feedback_hit", query=queries, rank=payload.get("rank"), points=payload.get("points"))
        return t("feedback_miss", query=queries)
    if kind == NoticeKind.REVIEW_DECIDED:
        lines = []
        for query in payload.get("queries") or []:
            status = query.get("status")
            if status == "corrected":
                lines.append(t("review_decided_corrected", query=query.get("text"), corrected=query.get("corrected")))
            elif status in ("accepted", "discarded"):
                lines.append(t(f"review_decided_{status}", query=query.get("text")))
        if not lines:
            return None
        return "\n".join([t("review_decided", count=len(lines)), *lines])
    if kind == NoticeKind.PRIZE_WON:
        values = dict(period=t(f"period_{payload.get('period', 'week')}"), start=str(payload.get("start", ""))[:10],
                      rank=payload.get("rank"), points=payload.get("points"), count=payload.get("sessions"))
        won = t("prize_won_top" if payload.get("kind") == "top" else "prize_won_participation", **values)
        return f"{won}\n{t('prize_claim')}"
    return None


def render_outbox(game: Game, moderators: Iterable[int], message: OutboxMessage) -> list[Outgoing]:
    payload = message.payload
    if message.kind in PLAYER_NOTICES and message.player_id is not None:
        player = game.players.get(message.player_id)
        if player.telegram_user_id is None or not player.active:
            return []
        text = player_notice_text(message.kind, payload, catalogue(player.language))
        return [Outgoing(player.telegram_user_id, [SendText(text)], player_id=player.id)] if text else []
    if message.kind == NoticeKind.LEADERBOARD and message.chat_id is not None:
        return [Outgoing(message.chat_id, [SendText(leaderboard_text(payload, catalogue(payload.get("language"))))])]
    if message.kind == NoticeKind.MODERATOR_FLAG:
        return to_moderators(game, moderators, lambda t: t(
            "moderator_flag", pseudonym=payload.get("pseudonym"), hits=payload.get("gold_hits"),
            answered=payload.get("gold_answered")))
    if message.kind == NoticeKind.PRIZES_TALLIED:
        def text(t: Catalogue) -> str:
            lines = [t("prizes_tallied_line", language=language, top=counts.get("top", 0),
                       participation=counts.get("participation", 0))
                     for language, counts in sorted(payload.get("counts", {}).items())]
            return t("prizes_tallied", period=t(f"period_{payload.get('period', 'week')}"),
                     start=payload.get("start", "")[:10], end=payload.get("end", "")[:10], lines="\n".join(lines))
        return to_moderators(game, moderators, text)
    return []


def to_moderators(game: Game, moderators: Iterable[int], text_in: Callable[[Catalogue], str]) -> list[Outgoing]:
    """One message per configured moderator, in the language they play in."""
    outgoing = []
    for user_id in sorted(moderators):
        moderator = game.players.find(user_id)
        outgoing.append(Outgoing(user_id, [SendText(text_in(catalogue(moderator.language if moderator else None)))]))
    return outgoing


def leaderboard_text(payload: dict, t: Catalogue) -> str:
    rows = payload.get("rows") or []
    title = t("leaderboard_week" if payload.get("period") == "week" else "leaderboard_day")
    if not rows:
        return f"{title}\n{t('leaderboard_empty')}"
    return "\n".join([title] + [t("top_row", rank=rank, name=name or "?", points=points) for rank, name, points in rows])
