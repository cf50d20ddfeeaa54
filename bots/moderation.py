"""Moderators' screens: the review queue (/review) and the prizes to hand out (/prizes). Like the
rest of the conversation layer it only asks the engine and shows; every decision is re-checked
there (who may decide, whether the item is still open).

The review queue is one screen per labeler round: one grid photo (tile 1 the sticker, tiles 2–4 the
retriever's picks) whose caption holds the chat context and the round's queries, with Accept /
Correct / Discard buttons per open query. Decisions edit that screen in place; a finished round's
screen keeps its decisions and loses its buttons, and the next round comes as a new screen.
"""

from __future__ import annotations

from bots import callbacks
from bots.messages.catalogue import Catalogue
from bots.messages.limits import CAPTION_LIMIT, Buttons, shorten, utf16_units
from bots.messages.replies import AnswerCallback, EditText, Outgoing, SendGrid, SendText
from core.game import Game, GameError
from core.game.prizes import Prizes
from core.views import ReviewRound
from core.vocabulary import AwaitedInput, ErrorCode
from storage.models import Player

_MARKS = {"needs_review": "❔", "accepted": "✅", "corrected": "✏️", "discarded": "✖", "validated": "🎯",
          "pending": "⏳"}


def review_scope(args: str) -> str | None:
    """The language filter of `/review en` (None: not a filter)."""
    word = args.strip().lower()
    return word if word in callbacks.SCOPES else "all" if not word else None


class ModerationScreens:
    BUTTONS = (callbacks.ReviewAccept, callbacks.ReviewCorrect, callbacks.ReviewDiscard, callbacks.ReviewSkip,
               callbacks.ReviewPage)

    def __init__(self, game: Game, prizes: Prizes):
        self.game = game
        self.prizes = prizes

    # ------------------------------------------------------------------ the review queue
    def review(self, player: Player, t: Catalogue, out: Outgoing, args: str = "") -> None:
        """/review, /review en, /review zh, /review stats."""
        if not self.game.moderators.allows(player):
            out.replies.append(SendText(t("moderator_only")))
            return
        if args.strip() == "stats":
            counts = self.game.moderation.review_counts(player.id)
            out.replies.append(SendText(t("review_stats", **{str(k): v for k, v in counts.items()})))
            return
        scope = review_scope(args)
        if scope is None:
            out.replies.append(SendText(t("review_usage")))
            return
        self._send_screen(player, t, out, scope, index=0)

    def _send_screen(self, player: Player, t: Catalogue, out: Outgoing, scope: str, index: int = 0) -> None:
        """The round at `index` of the queue as a new screen: a round's grid is its own photo, so
        another round cannot be edited into it."""
        item = self.game.moderation.review_round(player.id, _language(scope), index=index)
        if item is None:
            out.replies.append(SendText(t("review_empty")))
            return
        self._send_item(item, t, out, scope)

    def _caption(self, item: ReviewRound, t: Catalogue, scope: str, note: str = "") -> str:
        picks = len(item.retriever_picks[:3])
        legend = t("review_legend", last=picks + 1) if picks > 1 else \
            t("review_legend_one") if picks == 1 else t("review_legend_none")
        author = item.author_pseudonym or "–"
        head = t("review_round", position=item.position, waiting=item.waiting, language=item.language, author=author) \
            if item.position else t("review_round_closed", language=item.language, author=author)
        lines = []
        for n, query in enumerate(item.queries, start=1):
            mark = _MARKS.get(query.status, "•")
            if query.status == "corrected" and query.original != query.text:
                lines.append(t("review_line_corrected", n=n, mark=mark, query=query.text, original=query.original))
            else:
                lines.append(t("review_line", n=n, mark=mark, query=query.text))
        queries = "\n".join(lines)
        if note:
            queries += f"\n\n{note}"
        # The chat context gets whatever room the caption has left, cut at its start (the messages
        # nearest the sticker matter most).
        frame = "\n\n".join([head, legend, "{context}", queries])
        room = CAPTION_LIMIT - utf16_units(frame) - 8
        context = "\n".join(f"{m.sender}: {m.text}" for m in item.context if m.text) or "…"
        context = "\n".join(f"│ {line}" for line in shorten(context, max(40, room), keep="end").splitlines())
        return "\n\n".join([head, legend, context, queries])

    def _buttons(self, item: ReviewRound, t: Catalogue, scope: str) -> Buttons:
        rows: Buttons = []
        for n, query in enumerate(item.queries, start=1):
            if query.status != "needs_review":
                continue
            rows.append([(t("button_accept_n", n=n), callbacks.ReviewAccept(query.id, scope).encode()),
                         (t("button_correct_n", n=n), callbacks.ReviewCorrect(query.id, scope).encode()),
                         (t("button_discard_n", n=n), callbacks.ReviewDiscard(query.id, scope).encode())])
        paging = []
        if item.position > 1:
            paging.append((t("button_prev"), callbacks.ReviewPage(item.position - 1, scope).encode()))
        if item.open:
            paging.append((t("button_skip_round"), callbacks.ReviewSkip(item.round_id, scope).encode()))
        if item.position < item.waiting:
            paging.append((t("button_next_round"), callbacks.ReviewPage(item.position + 1, scope).encode()))
        if paging:
            rows.append(paging)
        return rows

    def button(self, button: callbacks.ButtonData, player: Player, t: Catalogue, out: Outgoing,
               message_id: int | None) -> None:
        if not self.game.moderators.allows(player):
            out.replies.append(AnswerCallback(t("moderator_only"), alert=True))
            return
        scope = button.scope  # type: ignore[attr-defined]
        if isinstance(button, callbacks.ReviewPage):
            out.replies.append(AnswerCallback())
            self._send_screen(player, t, out, scope, index=button.position - 1)
            return
        if isinstance(button, callbacks.ReviewSkip):
            self.game.moderation.skip_review_round(player.id, button.round_id)
            out.replies.append(AnswerCallback(t("review_skipped")))
            skipped = self.game.moderation.review_round(player.id, None, round_id=button.round_id)
            if skipped is not None and message_id is not None:  # the skipped screen keeps its text, not its buttons
                out.replies.append(EditText(message_id, self._caption(skipped, t, scope, note=t("review_skipped")),
                                            None, caption=True))
            self._send_screen(player, t, out, scope, index=0)
            return
        query_id = button.query_id  # type: ignore[attr-defined]
        item = self.game.moderation.review_round(player.id, _language(scope), round_id=self._round_of(player, query_id))
        if item is None or not any(q.id == query_id and q.status == "needs_review" for q in item.queries):
            raise GameError(ErrorCode.ALREADY_REVIEWED)
        if isinstance(button, callbacks.ReviewCorrect):
            query = next(q for q in item.queries if q.id == query_id)
            self.game.awaited.expect(player.id, AwaitedInput.CORRECT, query_id)
            out.replies.append(AnswerCallback())
            prompt = t("review_correct_prompt", query=query.text)
            # The screen stops offering buttons until the correction arrives; then a fresh one follows.
            edited = EditText(message_id, self._caption(item, t, scope, note=prompt), None, caption=True) \
                if message_id else SendText(prompt)
            out.replies.append(edited)
            return
        moderation = self.game.moderation
        decide = moderation.accept_query if isinstance(button, callbacks.ReviewAccept) else moderation.discard_query
        decided = decide(player.id, query_id)
        out.replies.append(AnswerCallback(t(f"review_done_{decided.status}")))
        self._after_decision(player, t, out, scope, item.round_id, message_id)

    def _round_of(self, player: Player, query_id: int) -> int:
        round_id = self.game.moderation.review_round_of(player.id, query_id)
        if round_id is None:
            raise GameError(ErrorCode.ALREADY_REVIEWED)
        return round_id

    def _after_decision(self, player: Player, t: Catalogue, out: Outgoing, scope: str, round_id: int,
                        message_id: int | None) -> None:
        """The round's screen shows the decision; once the round is done its buttons go and the
        next round follows as a new screen."""
        item = self.game.moderation.review_round(player.id, _language(scope), round_id=round_id)
        if item is not None and item.open:
            if message_id is not None:
                out.replies.append(EditText(message_id, self._caption(item, t, scope), self._buttons(item, t, scope),
                                            caption=True))
            else:
                self._send_item(item, t, out, scope)
            return
        if item is not None and message_id is not None:
            out.replies.append(EditText(message_id, self._caption(item, t, scope, note=t("review_round_done")), None,
                                        caption=True))
        self._send_screen(player, t, out, scope, index=0)

    def _send_item(self, item: ReviewRound, t: Catalogue, out: Outgoing, scope: str, note: str = "") -> None:
        out.replies.append(SendGrid([item.sticker, *item.retriever_picks[:3]], self._caption(item, t, scope, note),
                                    self._buttons(item, t, scope), highlight=1))

    def corrected(self, player: Player, query_id: int, text: str, t: Catalogue, out: Outgoing) -> None:
        """The moderator's text after Correct: saved, and the round's screen shown again with it."""
        round_id = self._round_of(player, query_id)
        try:
            decided = self.game.moderation.correct_query(player.id, query_id, text)
        except GameError as error:
            if error.code != ErrorCode.ALREADY_REVIEWED:  # a text that cannot be a query: the prompt stands
                self.game.awaited.expect(player.id, AwaitedInput.CORRECT, query_id)
            raise
        note = t("review_done_corrected_text", query=decided.text)
        item = self.game.moderation.review_round(player.id, None, round_id=round_id)
        if item is not None and item.open:
            self._send_item(item, t, out, "all", note=note)
            return
        out.replies.append(SendText(f"{note}\n{t('review_round_done')}"))
        self._send_screen(player, t, out, "all", index=0)

    # ------------------------------------------------------------------ prizes
    def show_prizes(self, player: Player, t: Catalogue, out: Outgoing, edit: int | None = None) -> None:
        if not self.game.moderators.allows(player):
            out.replies.append(SendText(t("moderator_only")))
            return
        prizes = self.prizes.pending(player.id, limit=8)
        if not prizes:
            out.replies.append(EditText(edit, t("prizes_empty")) if edit else SendText(t("prizes_empty")))
            return
        lines = [t("prizes_title")]
        links = []
        for prize in prizes:
            values = dict(id=prize.id, language=prize.language, period=t(f"period_{prize.period}"),
                          start=prize.period_start.date().isoformat(), name=prize.nickname,
                          pseudonym=prize.pseudonym, rank=prize.rank, points=prize.points, sessions=prize.sessions)
            lines.append(t("prize_top" if prize.kind == "top" else "prize_participation", **values))
            if prize.telegram_user_id is not None:
                links.append((len(lines) - 1, prize.nickname, f"tg://user?id={prize.telegram_user_id}"))
        buttons = [[(t("button_delivered", id=prize.id), callbacks.PrizeDelivered(prize.id).encode())] for prize in prizes]
        text = "\n".join(lines)
        entities = _links(lines, links)
        out.replies.append(EditText(edit, text, buttons, entities=entities) if edit
                           else SendText(text, buttons, entities=entities))


def _language(scope: str) -> str | None:
    return None if scope == "all" else scope


def _links(lines: list[str], links: list[tuple[int, str, str]]) -> list[dict]:
    """text_link entities on each winner's nickname in `lines` (joined by newlines): offsets and
    lengths in UTF-16 code units, as Telegram counts them. No markup, so no user text to escape."""
    entities = []
    offset = 0
    by_line = {index: (name, url) for index, name, url in links}
    for index, line in enumerate(lines):
        if index in by_line:
            name, url = by_line[index]
            at = line.find(name)
            if at >= 0 and name:
                entities.append({"type": "text_link", "offset": offset + utf16_units(line[:at]),
                                 "length": utf16_units(name), "url": url})
        offset += utf16_units(line) + 1
    return entities
