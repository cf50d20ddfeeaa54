"""The game's own words, defined once: its languages, roles, error codes, kinds of notices, preview
verdicts and awaited input, and the constants of its rules that are not settings.

Rules an operator may tune (points per rank, grid size, resonance bonus …) are settings
(storage/settings.py); this module names the closed sets and fixed numbers everything else
imports, so a change is made here and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum


class Language(StrEnum):
    """A game language: pools, screens and exports never mix them."""

    EN = "en"
    ZH = "zh"


# Every game language, in the order screens, exports and statistics list them.
LANGUAGES: tuple[str, ...] = tuple(Language)


class Role(StrEnum):
    """What a player does in a task; after each finished task they get the other one."""

    LABELER = "labeler"
    RETRIEVER = "retriever"


class AwaitedInput(StrEnum):
    """What a player's next text message answers instead of being a query."""

    SUGGEST = "suggest"  # a retriever's suggested query for a grid candidate (ref: the retrieval task)
    CORRECT = "correct"  # a moderator's corrected text (ref: the query under review)


class Verdict(StrEnum):
    """Why a labeler's preview shows the rank it shows."""

    RANKED = "ranked"  # the sticker is among the hits
    FUNCTION_WORDS = "function_words"  # shares words with the sticker's queries, but only function words
    NOT_FOUND = "not_found"


class NoticeKind(StrEnum):
    """What the engine and the jobs write into the outbox for the bots to deliver."""

    FEEDBACK_HIT = "feedback_hit"  # a labeler's round was found
    FEEDBACK_MISS = "feedback_miss"  # … or missed, and went to review
    REVIEW_DECIDED = "review_decided"  # moderators decided every query of a labeler's round
    LEADERBOARD = "leaderboard"  # a period's leaderboard, to a chat or an opted-in player
    PRIZE_WON = "prize_won"
    MODERATOR_FLAG = "moderator_flag"  # a player failed gold checks
    PRIZES_TALLIED = "prizes_tallied"
    GROUP_ROUND_CLOSED = "group_round_closed"  # a group round's message becomes its result
    PARTNER_FEEDBACK = "partner_feedback"  # a partner (model) looked for a labeler's sticker while no person had


# Notices addressed to one player (OutboxMessage.player_id).
PLAYER_NOTICES: tuple[str, ...] = (NoticeKind.FEEDBACK_HIT, NoticeKind.FEEDBACK_MISS, NoticeKind.LEADERBOARD,
                                   NoticeKind.REVIEW_DECIDED, NoticeKind.PRIZE_WON, NoticeKind.PARTNER_FEEDBACK)
# Player notices that wait for the player's next screen rather than interrupting a task.
HELD_NOTICES: tuple[str, ...] = (NoticeKind.FEEDBACK_HIT, NoticeKind.FEEDBACK_MISS, NoticeKind.REVIEW_DECIDED,
                                 NoticeKind.PARTNER_FEEDBACK)


class ErrorCode(StrEnum):
    """Why a request was refused; each is a key of the catalogues' "error" section."""

    # query text (core/text.py)
    EMPTY = "empty"
    TOO_LONG = "too_long"
    ONLY_EMOJI = "only_emoji"
    CONTROL_CHARS = "control_chars"
    INVALID_CHARS = "invalid_chars"
    COMMAND = "command"
    NO_WORDS = "no_words"
    # labeling
    VISUAL_ONLY = "visual_only"
    REPEAT_OWN = "repeat_own"
    TABOO = "taboo"
    TOO_MANY_QUERIES = "too_many_queries"
    NO_QUERIES = "no_queries"
    ROUND_CLOSED = "round_closed"
    NOT_YOUR_ROUND = "not_your_round"
    NOT_YOUR_QUERY = "not_your_query"
    # retrieval
    TASK_CLOSED = "task_closed"
    NOT_YOUR_TASK = "not_your_task"
    NO_PICKS = "no_picks"
    TOO_MANY_PICKS = "too_many_picks"
    PICK_NOT_CANDIDATE = "pick_not_candidate"
    REPEATED_PICK = "repeated_pick"
    BAD_PICK = "bad_pick"
    # group rounds
    GROUP_ROUND_OVER = "group_round_over"
    ALREADY_PICKED = "already_picked"
    OWN_STICKER = "own_sticker"
    # players
    NO_CONSENT = "no_consent"
    NO_LANGUAGE = "no_language"
    BAD_LANGUAGE = "bad_language"
    BANNED = "banned"
    FINISH_TASK_FIRST = "finish_task_first"
    UNKNOWN_PLAYER = "unknown_player"
    # nicknames (core/nicknames.py)
    NICKNAME_EMPTY = "nickname_empty"
    NICKNAME_LENGTH = "nickname_length"
    NICKNAME_SYMBOLS = "nickname_symbols"
    NICKNAME_REFUSED = "nickname_refused"
    NICKNAME_TAKEN = "nickname_taken"
    # moderation and prizes
    ALREADY_REVIEWED = "already_reviewed"
    NOT_MODERATOR = "not_moderator"
    UNKNOWN_QUERY = "unknown_query"
    UNKNOWN_PRIZE = "unknown_prize"
    PRIZE_DELIVERED = "prize_delivered"
    # the conversation
    STALE = "stale"  # a button of a screen that no longer stands
    UNKNOWN = "unknown"


# How many of the queries already collected for a sticker the label screen shows (taboo, up front).
TABOO_SHOWN = 8


def other_role(role: str | None) -> Role:
    """The role a player gets next when a task of it exists: the other one than `role`."""
    return Role.RETRIEVER if role == Role.LABELER else Role.LABELER


__all__ = ["AwaitedInput", "ErrorCode", "HELD_NOTICES", "LANGUAGES", "Language", "NoticeKind",
           "PLAYER_NOTICES", "Role", "TABOO_SHOWN", "Verdict", "other_role"]
