"""What the engine and the jobs leave in the outbox, delivered to whom it concerns and when: a
player's feedback waits while they are in a task and heads their next screen (`holds`,
`fold_notices`); the rest goes out as messages of its own (`render_outbox`). The texts are the
screens' (bots/screens/notices.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bots.messages.catalogue import Catalogue, catalogue
from bots.messages.limits import shorten, utf16_units
from bots.messages.replies import GroupRoundScreen, Outgoing, SendText
from bots.screens.leaderboard import posted
from bots.screens.notices import MODERATOR_TEXTS, player_notice_text
from bots.screens.task import NOTICE_ROOM
from core.game import Game
from core.vocabulary import HELD_NOTICES, PLAYER_NOTICES, NoticeKind
from storage.models import OutboxMessage

# Notices that are no text but a screen of a chat's, rendered when sent (bots/delivery/group_rounds.py).
SCREEN_NOTICES: tuple[str, ...] = (NoticeKind.GROUP_ROUND_CLOSED,)


def holds(game: Game, message: OutboxMessage) -> bool:
    """Whether a game notice waits for its player's next screen: it does while they are in a task,
    so that feedback arrives between tasks, never inside one."""
    if message.kind not in HELD_NOTICES or message.player_id is None:
        return False
    if game.assignment.current_task(message.player_id) is None:
        return False
    # A notice too long to head a screen whole (a round of many corrected queries) is not cut: it
    # goes out at once as a message of its own.
    player = game.players.get(message.player_id)
    text = player_notice_text(message.kind, message.payload, catalogue(player.language))
    return text is not None and utf16_units(text) < NOTICE_ROOM


def fold_notices(game: Game, player_id: int, t: Catalogue, out: Outgoing) -> str | None:
    """The player's held notices that fit in NOTICE_ROOM, oldest first; the rest wait for the screen
    after. They are leased to this screen (another update of the player's, handled meanwhile, cannot
    show them too) and marked sent once it went out (bots/delivery/owed.py)."""
    chosen: dict[int, str] = {}
    used = 0
    for message in game.outbox.held_for(player_id):
        text = player_notice_text(message.kind, message.payload, t)
        if not text:
            continue
        size = utf16_units(text) + 1
        if chosen and used + size > NOTICE_ROOM:
            break
        chosen[message.id] = shorten(text, NOTICE_ROOM - 1) if not chosen else text
        used += size
    taken = set(game.outbox.take_held(list(chosen)))
    texts = [text for message_id, text in chosen.items() if message_id in taken]
    out.outbox_ids.extend(message_id for message_id in chosen if message_id in taken)
    if texts:
        out.notices_at = len(out.replies)  # the reply the caller appends next carries them
    return "\n".join(texts) or None


def render_outbox(game: Game, moderators: Iterable[int], message: OutboxMessage) -> list[Outgoing]:
    """An outbox message as the messages it becomes, for whom it concerns."""
    payload = message.payload
    if message.kind in PLAYER_NOTICES and message.player_id is not None:
        player = game.players.get(message.player_id)
        if player.telegram_user_id is None or not player.active:
            return []
        text = player_notice_text(message.kind, payload, catalogue(player.language))
        return [Outgoing(player.telegram_user_id, [SendText(text)], player_id=player.id)] if text else []
    if message.kind == NoticeKind.GROUP_ROUND_CLOSED and message.chat_id is not None:
        return [Outgoing(message.chat_id, [GroupRoundScreen(int(payload["round_id"]))])]
    if message.kind == NoticeKind.LEADERBOARD and message.chat_id is not None:
        return [Outgoing(message.chat_id, [SendText(posted(payload, catalogue(payload.get("language"))))])]
    renderer = MODERATOR_TEXTS.get(message.kind)
    if renderer is not None:
        return to_moderators(game, moderators, lambda t: renderer(payload, t))
    return []


def to_moderators(game: Game, moderators: Iterable[int], text_in: Callable[[Catalogue], str]) -> list[Outgoing]:
    """One message per configured moderator, in the language they play in."""
    outgoing = []
    for user_id in sorted(moderators):
        moderator = game.players.find(user_id)
        outgoing.append(Outgoing(user_id, [SendText(text_in(catalogue(moderator.language if moderator else None)))]))
    return outgoing
