"""The texts of what the engine and the jobs leave in the outbox: feedback to labelers, review
decisions, leaderboards and prizes for players; flags and prize tallies for moderators. One
renderer per `NoticeKind` (core/vocabulary.py), registered by the kind it renders."""

from __future__ import annotations

from collections.abc import Callable

from bots.messages.catalogue import Catalogue, quoted
from bots.screens.leaderboard import posted
from core.vocabulary import NoticeKind

Renderer = Callable[[dict, Catalogue], str | None]
PLAYER_TEXTS: dict[str, Renderer] = {}  # the notices a player reads
MODERATOR_TEXTS: dict[str, Renderer] = {}  # the notices every moderator reads


def renders(table: dict[str, Renderer], *kinds: NoticeKind):
    def register(renderer: Renderer) -> Renderer:
        for kind in kinds:
            if kind in table:
                raise ValueError(f"two renderers for {kind}")
            table[kind] = renderer
        return renderer
    return register


def player_notice_text(kind: str, payload: dict, t: Catalogue) -> str | None:
    """The text of a message for one player, or None for a kind that is not one."""
    renderer = PLAYER_TEXTS.get(kind)
    return renderer(payload, t) if renderer is not None else None


@renders(PLAYER_TEXTS, NoticeKind.LEADERBOARD)
def _leaderboard(payload: dict, t: Catalogue) -> str:
    return posted(payload, t)


@renders(PLAYER_TEXTS, NoticeKind.FEEDBACK_HIT)
def _feedback_hit(payload: dict, t: Catalogue) -> str:
    # The sticker is named by the labeler's own queries for it: that is how they know it.
    queries = quoted(payload.get("queries") or [], t.language)
    return t("feedback_hit", query=queries, rank=payload.get("rank"), points=payload.get("points"))


@renders(PLAYER_TEXTS, NoticeKind.FEEDBACK_MISS)
def _feedback_miss(payload: dict, t: Catalogue) -> str:
    return t("feedback_miss", query=quoted(payload.get("queries") or [], t.language))


@renders(PLAYER_TEXTS, NoticeKind.PARTNER_FEEDBACK)
def _partner_feedback(payload: dict, t: Catalogue) -> str:
    values = dict(partner=payload.get("partner") or "BM25", query=quoted(payload.get("queries") or [], t.language),
                  rank=payload.get("rank"), points=payload.get("points") or 0)
    if not payload.get("rank"):
        return t("partner_miss", **values)
    return t("partner_hit_points" if values["points"] else "partner_hit", **values)


@renders(PLAYER_TEXTS, NoticeKind.REVIEW_DECIDED)
def _review_decided(payload: dict, t: Catalogue) -> str | None:
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


@renders(PLAYER_TEXTS, NoticeKind.PRIZE_WON)
def _prize_won(payload: dict, t: Catalogue) -> str:
    values = dict(period=t(f"period_{payload.get('period', 'week')}"), start=str(payload.get("start", ""))[:10],
                  rank=payload.get("rank"), points=payload.get("points"), count=payload.get("sessions"))
    won = t("prize_won_top" if payload.get("kind") == "top" else "prize_won_participation", **values)
    return f"{won}\n{t('prize_claim')}"


@renders(MODERATOR_TEXTS, NoticeKind.MODERATOR_FLAG)
def _moderator_flag(payload: dict, t: Catalogue) -> str:
    return t("moderator_flag", pseudonym=payload.get("pseudonym"), hits=payload.get("gold_hits"),
             answered=payload.get("gold_answered"))


@renders(MODERATOR_TEXTS, NoticeKind.PRIZES_TALLIED)
def _prizes_tallied(payload: dict, t: Catalogue) -> str:
    lines = [t("prizes_tallied_line", language=language, top=counts.get("top", 0),
               participation=counts.get("participation", 0))
             for language, counts in sorted(payload.get("counts", {}).items())]
    return t("prizes_tallied", period=t(f"period_{payload.get('period', 'week')}"),
             start=payload.get("start", "")[:10], end=payload.get("end", "")[:10], lines="\n".join(lines))
