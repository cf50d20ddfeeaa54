"""The player's own screens: /me (points this week and all time, the streak explained, the prizes
there are and how close the player is) and /name (the nickname leaderboards and prizes show)."""

from __future__ import annotations

from bots.messages.catalogue import Catalogue
from bots.messages.replies import SendText
from core.game.prizes import PrizeStanding
from core.views import PlayerStats


def me(stats: PlayerStats, nickname: str, standing: PrizeStanding, t: Catalogue) -> SendText:
    accuracy = f"{stats.accuracy:.0%}" if stats.accuracy is not None else "–"
    week = t("me_week", count=stats.period_points,
             standing=t("me_rank", rank=stats.period_rank) if stats.period_rank else t("me_unranked"))
    streak = t("me_streak", count=stats.streak) if stats.streak else t("me_streak_none")
    lines = [t("me_title", nickname=nickname), week, t("me_all_time", count=stats.points),
             t("me_accuracy", accuracy=accuracy, count=stats.answered), streak, "", prize_progress(standing, t), "",
             t("me_name_hint")]
    return SendText("\n".join(lines))


def prize_progress(standing: PrizeStanding, t: Catalogue) -> str:
    period = t(f"period_{standing.period}")
    end = standing.period_end.date().isoformat()
    if standing.rank is not None and standing.rank <= standing.top_n:
        top = t("me_prize_top_in", top=standing.top_n, period=period, end=end, rank=standing.rank)
    else:
        top = t("me_prize_top_need", top=standing.top_n, period=period, end=end,
                count=max(1, standing.points_to_top or 1))
    if standing.session_tasks >= standing.session_min_tasks:
        session = t("me_prize_session_done", count=standing.session_min_tasks, period=period)
    else:
        session = t("me_prize_session_need", count=standing.session_min_tasks, period=period,
                    best=standing.session_tasks)
    return "\n".join([t("me_prizes"), top, session])


def nickname(shown: str, t: Catalogue) -> SendText:
    return SendText(t("name_current", nickname=shown))


def renamed(shown: str, t: Catalogue) -> SendText:
    return SendText(t("name_set", nickname=shown))
