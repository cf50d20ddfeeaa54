"""The rules (/help), with the numbers filled in from the settings: what a find at rank 1, 2 and 3
is worth, and the prizes of the period."""

from __future__ import annotations

from bots.messages.catalogue import Catalogue
from storage.settings import Settings


def rule_terms(settings: Settings) -> dict[str, int]:
    """What a find at rank 1, 2 and 3 is worth (`points_by_rank`), as the help text states it."""
    first, second, third = settings.rules.points_by_rank
    return {"first": first, "second": second, "third": third}


def prize_terms(settings: Settings, t: Catalogue) -> dict:
    """The values the help text announces the prizes with."""
    return {"top": settings.rules.prize_top_n, "tasks": settings.rules.session_min_tasks,
            "period": t(f"period_{settings.rules.prize_period}")}


def partner_rule(settings: Settings, t: Catalogue) -> str | None:
    """The partners' line (core/game/partner_scoring.py): what a partner's find is worth, if any."""
    if settings.rules.partner_after <= 0:
        return None
    if settings.rules.partner_points > 0:
        return t("help_partners", points=settings.rules.partner_points)
    return t("help_partners_free")


def text(settings: Settings, t: Catalogue) -> str:
    rules = "\n".join(line for line in (t("help", **rule_terms(settings)), partner_rule(settings, t)) if line)
    return f"{rules}\n\n{t('prizes_rules', **prize_terms(settings, t))}"
