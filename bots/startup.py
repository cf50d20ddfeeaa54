"""Start-up tuning of a bot process, in one place: each item says what it saves and how it was
measured. Nothing here changes what the bots do, only what it costs.

- `settled_heap`: the objects start-up built, out of the garbage collector's sight while the bots run.
- `pinned_aiogram_models`: aiogram's reply models built once, not on most calls.
- `ptb_timedelta`: python-telegram-bot 22's coming `retry_after` type, chosen once.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def settled_heap() -> Iterator[None]:
    """While the bots run: what start-up built (modules, models, search indexes, about 300,000
    objects) is moved out of the garbage collector's sight. Otherwise every full collection walks
    it all, a pause of 50-200 ms for every player at once; measured with it: under 15 ms."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def pinned_aiogram_models(*extra_returning) -> dict:
    """aiogram parses every Bot API reply as `Response[method.__returning__]`. pydantic keeps
    parametrised generic models in a WeakValueDictionary, so with no other reference the class is
    garbage collected and rebuilt (about 3 ms) on most calls: measured, a sixth of the bot process's
    CPU under load. Holding one of each for the life of the process (the caller keeps the dict)
    makes them built once."""
    from aiogram import methods as aiogram_methods
    from aiogram.methods.base import Response, TelegramMethod

    models = {}
    returning_types = [method.__returning__ for method in vars(aiogram_methods).values()
                       if isinstance(method, type) and issubclass(method, TelegramMethod)
                       and method is not TelegramMethod]
    for returning in [*returning_types, *extra_returning]:
        if returning not in models:
            models[returning] = Response[returning]
    return models


def ptb_timedelta() -> None:
    """Opt in to python-telegram-bot 22's coming behaviour (retry_after as a timedelta), which the
    shell handles: it silences PTB's deprecation warning on every 429 (PTB reads the variable when
    it builds a RetryAfter)."""
    os.environ.setdefault("PTB_TIMEDELTA", "1")
