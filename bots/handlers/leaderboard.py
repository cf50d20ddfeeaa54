"""The leaderboard: /top shows the player's language's board of the last days; /top on and /top
off subscribe to the period's leaderboard post, or not."""

from __future__ import annotations

from datetime import timedelta

from bots.router import Router, Turn
from bots.screens import leaderboard

router = Router()


@router.command("top")
def top(turn: Turn) -> None:
    word = turn.incoming.args.strip().lower()
    if word in ("on", "off"):
        turn.game.players.set_leaderboard_opt_in(turn.player.id, word == "on")
        turn.say(leaderboard.subscribed(word == "on", turn.t))
        return
    standings = turn.game.standings
    since = turn.game.clock() - timedelta(days=standings.LEADERBOARD_DAYS)
    turn.say(leaderboard.top(standings.leaderboard(turn.player.language, since=since), turn.player.leaderboard_opt_in,
                             turn.t))
