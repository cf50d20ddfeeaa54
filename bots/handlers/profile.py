"""The player's profile: /me (points, streak, how close the prizes are) and /name (the nickname
leaderboards and prizes show)."""

from __future__ import annotations

from bots.router import Router, Turn
from bots.screens import profile

router = Router()


@router.command("me")
def me(turn: Turn) -> None:
    game, player_id = turn.game, turn.player.id
    turn.say(profile.me(game.standings.player_stats(player_id), game.players.nickname(player_id),
                        game.prizes.standing(player_id), turn.t))


@router.command("name")
def name(turn: Turn) -> None:
    args = turn.incoming.args
    if not args.strip():
        turn.say(profile.nickname(turn.game.players.nickname(turn.player.id), turn.t))
        return
    turn.say(profile.renamed(turn.game.players.set_nickname(turn.player.id, args), turn.t))
