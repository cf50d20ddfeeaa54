"""Delivery of a group round's message (`GroupRoundScreen`): rendered from the round as the database
has it when it is sent, since presses (through the group's lane) and the close (through the outbox)
edit the same message from different places. The first delivery sends the grid and records the
message id on the round; later ones edit it; the close replaces the image with the grid whose
answer tile is outlined. A press edit that went out while the round closed is followed by the
closed state again, so the message never ends on an older state than the last."""

from __future__ import annotations

import logging

from bots.delivery.context import DeliveryContext
from bots.delivery.replies import edit, grid_image, handles
from bots.messages.catalogue import catalogue
from bots.messages.replies import GroupRoundScreen, Outgoing
from bots.screens import group_round

log = logging.getLogger(__name__)


@handles(GroupRoundScreen)
async def deliver_group_round(context: DeliveryContext, outgoing: Outgoing, reply: GroupRoundScreen) -> None:
    rounds = context.engine.group_rounds
    view = await context.game(rounds.view, reply.round_id)
    if view is None:
        return
    chat, sender = outgoing.chat_id, context.sender
    message_id = view.message_id or reply.message_id
    t = catalogue(view.language)
    if not view.is_open and message_id is not None:
        await _show_closed(context, chat, message_id, view)
        return
    if message_id is None:
        image = await grid_image(context, view.candidates, None)
        sent = await context.call(chat, lambda: sender.send_photo(chat, image, "grid.png", group_round.caption(view, t),
                                                                  group_round.buttons(view, t)))
        await context.game(rounds.record_message, view.round_id, sent.message_id)
        message_id = sent.message_id
        if not view.is_open:
            return  # sent closed: it already shows the result
    else:
        await edit(context, lambda: sender.edit(chat, message_id, group_round.caption(view, t),
                                                group_round.buttons(view, t), True))
    latest = await context.game(rounds.view, reply.round_id)
    if latest is not None and not latest.is_open:  # it closed meanwhile: the edit above is stale
        await _show_closed(context, chat, message_id, latest)


async def _show_closed(context: DeliveryContext, chat: int, message_id: int, view) -> None:
    t = catalogue(view.language)
    image = await grid_image(context, view.candidates, view.answer)
    done = await edit(context, lambda: context.sender.edit_media(chat, message_id, image, "grid.png",
                                                                 group_round.caption(view, t), None))
    if not done:  # the message is gone (deleted by an admin): the result as a message of its own
        await context.call(chat, lambda: context.sender.send_photo(chat, image, "grid.png",
                                                                   group_round.caption(view, t), None))
