"""The conversation's handlers, one module per feature, each with a `router` on which it declares
its commands, buttons and awaited texts with what they need (bots/router.py). `ROUTER` includes
them all: a new feature is a module here and one entry below.

| module | what |
|---|---|
| onboarding.py | language, consent, /start, /lang, /forget; what a player not yet onboarded is shown |
| play.py | /play, Next, /stop, and the task flow the others share |
| labeling.py | the labeler's queries and round buttons |
| retrieval.py | the retriever's picks, ranking, skip, suggested queries |
| review.py | moderators' review queue and corrections |
| contexts.py | moderators' decisions on imported chat contexts (`/review contexts`) |
| prizes.py | moderators' prize list |
| profile.py | /me, /name |
| leaderboard.py | /top |
| help.py | /help, unknown commands, edits, stickers, unreadable text |
| groups.py | group chats: /round, the race's buttons, the group's /top, the bot added, removed, migrated |
| inline.py | inline mode: sticker search in any chat, and the results people chose (no player needed) |
"""

from __future__ import annotations

from bots.handlers import (
    contexts,
    groups,
    help,
    inline,
    labeling,
    leaderboard,
    onboarding,
    play,
    prizes,
    profile,
    retrieval,
    review,
)
from bots.messages.incoming import IncomingKind
from bots.messages.replies import AnswerCallback, SendText
from bots.router import Router, Turn

moderators = Router()


@moderators.refusal("moderator")
def moderator_only(turn: Turn) -> None:
    """A moderator's command or button, used by someone who is not one."""
    if turn.incoming.kind == IncomingKind.CALLBACK:
        turn.say(AnswerCallback(turn.t("moderator_only"), alert=True))
    else:
        turn.say(SendText(turn.t("moderator_only")))


ROUTER = Router().include(onboarding.router, play.router, labeling.router, retrieval.router, review.router,
                          contexts.router, prizes.router, profile.router, leaderboard.router, help.router, groups.router,
                          inline.router,
                          moderators)
ROUTER.check_complete()

__all__ = ["ROUTER"]
