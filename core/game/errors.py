"""The one exception the game's rules raise."""

from __future__ import annotations


class GameError(Exception):
    """A request the rules refuse; `code` (core.vocabulary.ErrorCode) picks the message the player
    sees. Nothing changed."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
