"""The seam between the game's bots and a Telegram framework: the handful of Bot API calls a shell
makes, in its framework's terms, with the framework's errors translated into bots/transport/errors.py."""

from __future__ import annotations

from typing import Protocol

from bots.messages.limits import Buttons

# The update kinds the bots ask Telegram for (polling and webhooks alike).
# my_chat_member: the bot added to a group or removed from it (bots/handlers/groups.py); inline_query and
# chosen_inline_result: inline sticker search (bots/handlers/inline.py).
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member", "inline_query",
                   "chosen_inline_result"]


class Sender(Protocol):
    async def get_updates(self, offset: int | None, timeout: int) -> list[dict]:
        """getUpdates, the updates as Telegram sent them (JSON), not parsed yet."""

    def parse_update(self, raw: dict) -> dict:
        """The update as the framework reads it (raises when it cannot), as JSON."""

    async def send_text(self, chat_id: int, text: str, buttons: Buttons | None,
                        entities: list[dict] | None = None) -> int: ...

    # Files are bytes to upload or a file_id already on Telegram; each returns the framework's
    # Message, whose attributes (sticker, animation, photo) both frameworks name as the Bot API does.
    async def send_photo(self, chat_id: int, file: bytes | str, filename: str, caption: str | None,
                         buttons: Buttons | None): ...

    async def send_animation(self, chat_id: int, file: bytes | str, filename: str): ...

    async def send_sticker(self, chat_id: int, file: bytes | str, filename: str): ...

    async def edit(self, chat_id: int, message_id: int, text: str, buttons: Buttons | None, caption: bool,
                   entities: list[dict] | None = None) -> None: ...

    async def edit_media(self, chat_id: int, message_id: int, file: bytes, filename: str, caption: str | None,
                         buttons: Buttons | None) -> None:
        """editMessageMedia: the photo of a message replaced (uploaded), with its caption and buttons."""

    async def edit_markup(self, chat_id: int, message_id: int, buttons: Buttons | None) -> None:
        """editMessageReplyMarkup: only the buttons (None removes them)."""

    async def answer_callback(self, callback_id: str, text: str, alert: bool, url: str | None = None) -> None:
        """answerCallbackQuery; `url` (a t.me/<bot>?start=… deep link) is opened by the presser's client."""

    async def username(self) -> str:
        """The bot's username (getMe, asked once)."""

    async def answer_inline_query(self, inline_query_id: str, stickers: list[tuple[str, str]], cache_time: int,
                                  is_personal: bool, next_offset: str) -> None:
        """answerInlineQuery with InlineQueryResultCachedSticker results, given as (result id, file_id)."""

    async def set_commands(self, language: str, commands: list[tuple[str, str]]) -> None: ...

    async def set_webhook(self, url: str, secret: str) -> None: ...


class Runtime(Protocol):
    """What a shell drives: the bot's runtime (bots/runtime.py), made by the factory the shell is
    given with the shell's Sender."""

    def start_background(self, *, polling: bool, poll_timeout: int = 10, sweep_interval: float = 2.0,
                         outbox: bool = True) -> None: ...

    async def receive(self, updates: list[dict]) -> None: ...

    async def stop(self, timeout: float = 20.0) -> None: ...
