"""One handler per reply kind (bots/messages/replies.py), registered by the kind it delivers: a new kind of
reply is a new handler here (or in a module of its own that registers with `handles`), never a
branch in a shared chain."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bots.delivery.context import DeliveryContext
from bots.messages.replies import AnswerCallback, EditText, Outgoing, SendGrid, SendText
from bots.transport import Attempts, Rejected, TelegramError, message_gone, not_modified

Handler = Callable[[DeliveryContext, Outgoing, object], Awaitable[None]]
HANDLERS: dict[type, Handler] = {}


def handles(*kinds: type):
    """Register the decorated coroutine as the delivery of these reply kinds."""
    def register(handler: Handler) -> Handler:
        for kind in kinds:
            if kind in HANDLERS:
                raise ValueError(f"two handlers deliver {kind.__name__}")
            HANDLERS[kind] = handler
        return handler
    return register


async def deliver_reply(context: DeliveryContext, outgoing: Outgoing, reply) -> None:
    await HANDLERS[type(reply)](context, outgoing, reply)


async def edit(context: DeliveryContext, call) -> bool:
    """An edit; True when it is done (or there was nothing to change), False when the message
    cannot be edited any more (gone, or of another kind). Other refusals raise."""
    try:
        await context.call(None, call)
        return True
    except Rejected as error:
        if not_modified(error):
            return True
        if message_gone(error):
            return False
        raise


async def grid_image(context: DeliveryContext, stickers, highlight: int | None) -> bytes:
    """The grid image, tile `highlight` outlined. Images go to the default executor: Pillow lets go
    of the interpreter lock while it works, and moving stickers are decoded in a child process."""
    return await asyncio.to_thread(context.media.grid, stickers, highlight)


@handles(AnswerCallback)
async def answer_press(context: DeliveryContext, outgoing: Outgoing, reply: AnswerCallback) -> None:
    if not outgoing.callback_id:
        return
    try:  # tried once, on a budget of its own
        link = {"url": f"https://t.me/{await context.sender.username()}?start={reply.start}"} if reply.start else {}
        await context.call(None, lambda: context.sender.answer_callback(outgoing.callback_id, reply.text,
                                                                        reply.alert, **link), Attempts(limit=1))
    except TelegramError:
        pass  # an answer that comes too late is harmless


@handles(SendText)
async def send_text(context: DeliveryContext, outgoing: Outgoing, reply: SendText) -> None:
    chat = outgoing.chat_id
    links = {"entities": reply.entities} if reply.entities else {}  # a Sender without entities still works
    await context.call(chat, lambda: context.sender.send_text(chat, reply.text, reply.buttons, **links))


@handles(EditText)
async def edit_text(context: DeliveryContext, outgoing: Outgoing, reply: EditText) -> None:
    links = {"entities": reply.entities} if reply.entities else {}
    await edit(context, lambda: context.sender.edit(outgoing.chat_id, reply.message_id, reply.text, reply.buttons,
                                                    reply.caption, **links))


@handles(SendGrid)
async def send_grid(context: DeliveryContext, outgoing: Outgoing, reply: SendGrid) -> None:
    chat = outgoing.chat_id
    image = await grid_image(context, reply.stickers, reply.highlight)
    await context.call(chat, lambda: context.sender.send_photo(chat, image, "grid.png", reply.caption, reply.buttons))
