"""The catalogues: every text a player reads, one JSON file per language (bots/locales/), with
plural forms, the language's own words for statuses and language names, the commands its menu
lists, and how it punctuates a list of quoted texts."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from core.vocabulary import LANGUAGES, Language

LOCALES = Path(__file__).resolve().parent.parent / "locales"


class Catalogue:
    """Every user-facing string, one JSON catalogue per language."""

    def __init__(self, language: str):
        self.language = language
        self.strings = _load(language)

    def __call__(self, key: str, **values) -> str:
        """The text of `key` filled with `values`. A key may have plural forms, {"one": …, "other": …}
        (CLDR's categories: English has both, Chinese only "other"), chosen by the value `count`, or
        by the value the entry's "by" names ({"by": "points", "one": "+1 point", "other": …}).
        A value named `status` (a query's status, an internal code) is shown as the language's word
        for it (the catalogue's "status" section), one named `language` ("en", "zh") as the
        language's name (the "languages" section)."""
        values = self._translated(values)
        return self._form(self.strings[key], values).format(**values)

    def error(self, code: str, detail: str = "") -> str:
        """The player's message for an engine error code. `detail` is the value the message shows
        (a limit); an exception's "code: detail" text is reduced to the detail, so no code leaks."""
        errors = self.strings["error"]
        detail = str(detail or "").removeprefix(f"{code}:").strip()
        return self._form(errors.get(code, errors["unknown"]), {"detail": detail}).format(detail=detail)

    def status(self, code) -> str:
        """The word for a status code (accepted, corrected…) in this language; never the code itself
        unless the catalogue lacks it."""
        code = str(code)
        return self.strings.get("status", {}).get(code, code)

    def commands(self) -> list[tuple[str, str]]:
        """The commands the client's menu lists for players of this language, with their descriptions."""
        return list(self.strings["commands"].items())

    def language_name(self, code) -> str:
        """The name of a game language ("en", "zh") in this language."""
        code = str(code)
        return self.strings.get("languages", {}).get(code, code)

    def _translated(self, values: dict) -> dict:
        if values.get("status") is not None:
            values = {**values, "status": self.status(values["status"])}
        if values.get("language") is not None:
            values = {**values, "language": self.language_name(values["language"])}
        return values

    def _form(self, text, values: dict) -> str:
        if isinstance(text, dict):
            return text.get(plural_category(self.language, values.get(text.get("by", "count")))) or text["other"]
        return text


def plural_category(language: str, count) -> str:
    """CLDR plural category of `count` for the two languages the game speaks."""
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    if language == "en" and count == 1:
        return "one"
    return "other"


@cache
def _load(language: str) -> dict:
    return json.loads((LOCALES / f"{language}.json").read_text(encoding="utf-8"))


def catalogue(language: str | None) -> Catalogue:
    return Catalogue(language if language in LANGUAGES else Language.EN)


def quoted(texts, language: str = "en") -> str:
    """Quoted texts as a list in the language's own punctuation: “a”, “b” in English; “a”、“b” in
    Chinese (the enumeration comma, no space)."""
    separator = _load(language if language in LANGUAGES else Language.EN)["list_separator"]
    return separator.join(f"“{text}”" for text in texts)
