"""The doctor's Bot API calls: a result, or what went wrong in words (never the URL: it holds the token)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Problem:
    detail: str
    fix: str


def bot_api(client, api: str, token: str, method: str) -> tuple[dict, None] | tuple[None, Problem]:
    """A Bot API call's result, or what went wrong in words (never the URL: it holds the token)."""
    import httpx

    try:
        response = client.get(f"{api}/bot{token}/{method}")
    except httpx.HTTPError as error:
        return None, Problem(f"cannot reach the Bot API at {api} ({method}): {type(error).__name__}"
                             f"{': ' + one_line(error) if str(error) else ''}",
                             "check STICKTIONARY_TELEGRAM_API and this machine's network")
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 401:
        return None, Problem(f"the Bot API refused the token ({method}: 401 Unauthorized)",
                             "copy the bot's current token from @BotFather (/token) into STICKTIONARY_BOTS")
    if response.status_code == 404 and method == "getMe":
        return None, Problem("the Bot API does not know this token (404)",
                             "check the token in STICKTIONARY_BOTS: it is <digits>:<secret>, as @BotFather gives it")
    if not isinstance(body, dict) or not body.get("ok"):
        description = body.get("description") if isinstance(body, dict) else None
        return None, Problem(f"{method} failed: HTTP {response.status_code}"
                             f"{' ' + str(description) if description else ''}",
                             "check STICKTIONARY_TELEGRAM_API; try again if Telegram is having trouble")
    return body.get("result") or {}, None


def one_line(error: BaseException) -> str:
    """An error's own words on one line (a database driver's, not SQLAlchemy's wrapper and its link)."""
    error = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines)[:300] or type(error).__name__
