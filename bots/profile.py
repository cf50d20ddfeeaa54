"""The player's own screens: /me (points this week and all time, the streak explained, the prizes
there are and how close the player is) and /name (the nickname leaderboards and prizes show)."""

from __future__ import annotations

from bots.messages.catalogue import Catalogue
from bots.messages.replies import Outgoing, SendText
from core.game import Game
from core.game.prizes import Prizes
from storage.models import Player


class ProfileScreens:
    def __init__(self, game: Game, prizes: Prizes):
        self.game = game
        self.prizes = prizes

    def me(self, player: Player, t: Catalogue, out: Outgoing) -> None:
        stats = self.game.standings.player_stats(player.id)
        accuracy = f"{stats.accuracy:.0%}" if stats.accuracy is not None else "–"
        week = t("me_week", count=stats.period_points,
                 standing=t("me_rank", rank=stats.period_rank) if stats.period_rank else t("me_unranked"))
        streak = t("me_streak", count=stats.streak) if stats.streak else t("me_streak_none")
        lines = [t("me_title", nickname=self.game.players.nickname(player.id)), week,
                 t("me_all_time", count=stats.points), t("me_accuracy", accuracy=accuracy, count=stats.answered),
                 streak, "", self.prize_progress(player.id, t), "", t("me_name_hint")]
        out.replies.append(SendText("\n".join(lines)))

    def prize_progress(self, player_id: int, t: Catalogue) -> str:
        standing = self.prizes.standing(player_id)
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

    def prize_terms(self, t: Catalogue) -> dict:
        """The values the help text announces the prizes with."""
        settings = self.game.settings
        return {"top": settings.prize_top_n, "tasks": settings.session_min_tasks,
                "period": t(f"period_{settings.prize_period}")}

    def name(self, player: Player, args: str, t: Catalogue, out: Outgoing) -> None:
        if not args.strip():
            out.replies.append(SendText(t("name_current", nickname=self.game.players.nickname(player.id))))
            return
        shown = self.game.players.set_nickname(player.id, args)
        out.replies.append(SendText(t("name_set", nickname=shown)))
