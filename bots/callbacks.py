"""Button data: one small dataclass per action, encoded to and decoded from Telegram's
`callback_data` here and nowhere else.

The wire format is the action's prefix and its fields joined by ":" (``pk:12:3``, ``lang:en``,
``next``), at most 64 bytes. Button data comes from the client and is never trusted: `decode`
accepts only the canonical form of a known action whose every field is in range (ids fit the
database's 32-bit integer columns; a grid position is at most `MAX_POSITION`), and returns None for
anything else, so nothing out of range reaches the database. Ownership and state are still
re-checked by the engine on every press.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import ClassVar

from core.vocabulary import LANGUAGES

MAX_BYTES = 64  # Telegram: callback_data is 1–64 bytes
MAX_ID = 2**31 - 1  # the id columns are 32-bit integers on PostgreSQL
MAX_POSITION = 100  # a grid number; a keyboard holds at most 100 buttons anyway

_INT = re.compile(r"[1-9][0-9]{0,9}")  # canonical: no sign, no leading zero, at most 10 digits


class ButtonData:
    """Base of every action; subclasses are frozen dataclasses with a `prefix`."""

    prefix: ClassVar[str]
    # field name -> (low, high) for int fields; str fields list their allowed values in `choices`
    bounds: ClassVar[dict[str, tuple[int, int]]] = {}
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __post_init__(self) -> None:
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            if item.name in self.choices:
                if value not in self.choices[item.name]:
                    raise ValueError(f"{self.prefix}.{item.name}: {value!r} is not one of {self.choices[item.name]}")
                continue
            low, high = self.bounds.get(item.name, (1, MAX_ID))
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"{self.prefix}.{item.name}: {value!r} is not an integer in [{low}, {high}]")

    def encode(self) -> str:
        data = ":".join([self.prefix, *(str(getattr(self, f.name)) for f in fields(self))])  # type: ignore[arg-type]
        if len(data.encode()) > MAX_BYTES:  # cannot happen with the bounds above; checked, not assumed
            raise ValueError(f"button data over {MAX_BYTES} bytes: {data!r}")
        return data


def _action(prefix: str):
    def register(cls):
        cls.prefix = prefix
        if prefix in ACTIONS:
            raise ValueError(f"two actions use the prefix {prefix!r}")
        ACTIONS[prefix] = cls
        return cls
    return register


ACTIONS: dict[str, type[ButtonData]] = {}


@_action("lang")
@dataclass(frozen=True, slots=True)
class ChooseLanguage(ButtonData):
    language: str
    choices: ClassVar = {"language": LANGUAGES}


@_action("consent")
@dataclass(frozen=True, slots=True)
class GiveConsent(ButtonData):
    pass


@_action("next")
@dataclass(frozen=True, slots=True)
class NextTask(ButtonData):
    pass


# ---- labeler round
@_action("ls")
@dataclass(frozen=True, slots=True)
class SubmitRound(ButtonData):
    round_id: int


@_action("lx")
@dataclass(frozen=True, slots=True)
class SkipRound(ButtonData):
    round_id: int


@_action("lr")
@dataclass(frozen=True, slots=True)
class RemoveQuery(ButtonData):
    round_id: int
    query_id: int


# ---- retrieval task
@_action("pk")
@dataclass(frozen=True, slots=True)
class TogglePick(ButtonData):
    task_id: int
    position: int
    bounds: ClassVar = {"position": (1, MAX_POSITION)}


@_action("pu")
@dataclass(frozen=True, slots=True)
class UndoPick(ButtonData):
    task_id: int


@_action("pd")
@dataclass(frozen=True, slots=True)
class SubmitRanking(ButtonData):
    task_id: int


@_action("ps")
@dataclass(frozen=True, slots=True)
class SkipTask(ButtonData):
    task_id: int


@_action("pg")
@dataclass(frozen=True, slots=True)
class SuggestQuery(ButtonData):
    task_id: int


# ---- group rounds (bots/handlers/groups.py): pressed by any member of the group
@_action("gp")
@dataclass(frozen=True, slots=True)
class GroupPickButton(ButtonData):
    round_id: int
    position: int
    bounds: ClassVar = {"position": (1, MAX_POSITION)}


@_action("gj")
@dataclass(frozen=True, slots=True)
class GroupJoin(ButtonData):
    """Join the game from a group: the answer opens a private chat with the bot (a deep link)."""


# ---- moderators: `scope` is the queue's language filter, kept so the next screen stays filtered
SCOPES = ("all", *LANGUAGES)


@_action("ra")
@dataclass(frozen=True, slots=True)
class ReviewAccept(ButtonData):
    query_id: int
    scope: str = "all"
    choices: ClassVar = {"scope": SCOPES}


@_action("rc")
@dataclass(frozen=True, slots=True)
class ReviewCorrect(ButtonData):
    query_id: int
    scope: str = "all"
    choices: ClassVar = {"scope": SCOPES}


@_action("rd")
@dataclass(frozen=True, slots=True)
class ReviewDiscard(ButtonData):
    query_id: int
    scope: str = "all"
    choices: ClassVar = {"scope": SCOPES}


@_action("rs")
@dataclass(frozen=True, slots=True)
class ReviewSkip(ButtonData):
    """Skip a whole round: it goes to the back of the queue."""

    round_id: int
    scope: str = "all"
    choices: ClassVar = {"scope": SCOPES}


@_action("rp")
@dataclass(frozen=True, slots=True)
class ReviewPage(ButtonData):
    """Show the round at `position` (1-based) of the queue."""

    position: int
    scope: str = "all"
    choices: ClassVar = {"scope": SCOPES}


@_action("cx")
@dataclass(frozen=True, slots=True)
class ContextDecision(ButtonData):
    """Approve or reject an imported chat context (`/review contexts`)."""

    context_id: int
    decision: str
    scope: str = "all"
    choices: ClassVar = {"decision": ("approve", "reject"), "scope": SCOPES}


@_action("cp")
@dataclass(frozen=True, slots=True)
class ContextPage(ButtonData):
    """Show the context at `position` (1-based) of the waiting ones."""

    position: int
    scope: str = "all"
    bounds: ClassVar = {"position": (1, MAX_ID)}
    choices: ClassVar = {"scope": SCOPES}


@_action("pz")
@dataclass(frozen=True, slots=True)
class PrizeDelivered(ButtonData):
    prize_id: int


@_action("fg")
@dataclass(frozen=True, slots=True)
class ForgetAnswer(ButtonData):
    """The answer to "withdraw your consent?": yes withdraws, no keeps everything as it is."""

    answer: str
    choices: ClassVar = {"answer": ("yes", "no")}


def decode(data: object) -> ButtonData | None:
    """The action a button's data stands for, or None when it is not the canonical, in-range
    encoding of one (forged, stale from an older version, or garbage). Never raises."""
    if not isinstance(data, str) or not data or len(data) > MAX_BYTES:
        return None
    try:
        if len(data.encode()) > MAX_BYTES:
            return None
    except UnicodeEncodeError:  # a lone surrogate
        return None
    prefix, *parts = data.split(":")
    action = ACTIONS.get(prefix)
    if action is None:
        return None
    names = [f.name for f in fields(action)]  # type: ignore[arg-type]
    if len(parts) != len(names):
        return None
    values: list[object] = []
    for name, part in zip(names, parts, strict=True):
        if name in action.choices:
            values.append(part)
        elif _INT.fullmatch(part):
            values.append(int(part))
        else:
            return None
    try:
        return action(*values)
    except ValueError:
        return None
