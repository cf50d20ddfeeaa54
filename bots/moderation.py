"""Moderators' screens: the review queue (/review) and the prizes to hand out (/prizes). Like the
rest of the conversation layer it only asks the engine and shows; every decision is re-checked
there (who may decide, whether the item is still open)."""

from __future__ import annotations

from bots import callbacks
from bots.screens import AnswerCallback, Catalogue, EditText, Outgoing, SendGrid, SendSticker, SendText, quoted
from core.engine import Game, GameError
from core.prizes import Prizes
from storage.models import Player


class ModerationScreens:
    def __init__(self, game: Game, prizes: Prizes):
        self.game = game
        self.prizes = prizes

    def review(self, player: Player, t: Catalogue, out: Outgoing, stats: bool = False, after: int = 0) -> None:
        if not player.is_moderator:
            out.replies.append(SendText(t("moderator_only")))
            return
        if stats:
            counts = self.game.review_counts(player.id)
            out.replies.append(SendText(t("review_stats", **{str(k): v for k, v in counts.items()})))
            return
        items = self.game.pending_reviews(player.id, limit=1, after_id=after)
        if not items:
            out.replies.append(SendText(t("review_empty")))
            return
        item = items[0]
        text = t("review_item", id=item.query.id, language=item.language, query=item.query.text,
                 round=quoted([q.text for q in item.round_queries], t.language),
                 picks=", ".join(s.key for s in item.retriever_picks) or "–")
        qid = item.query.id
        buttons = [[(t("button_accept"), callbacks.ReviewAccept(qid).encode()),
                    (t("button_correct"), callbacks.ReviewCorrect(qid).encode())],
                   [(t("button_discard"), callbacks.ReviewDiscard(qid).encode()),
                    (t("button_skip"), callbacks.ReviewSkip(qid).encode())]]
        # The retriever's picks carry the item's text and buttons: two messages an item, not three.
        out.replies += [SendSticker(item.sticker), SendGrid(item.retriever_picks, text, buttons)
                        if item.retriever_picks else SendText(text, buttons)]

    def button(self, button: callbacks.ButtonData, player: Player, t: Catalogue, out: Outgoing) -> None:
        if not player.is_moderator:
            out.replies.append(AnswerCallback(t("moderator_only"), alert=True))
            return
        query_id = button.query_id  # type: ignore[attr-defined]
        if isinstance(button, callbacks.ReviewCorrect):
            item = next((i for i in self.game.pending_reviews(player.id, limit=1, after_id=query_id - 1)
                         if i.query.id == query_id), None)
            if item is None:
                raise GameError("already_reviewed")
            self.game.expect_text(player.id, "correct", query_id)
            out.replies.append(SendText(t("review_correct_prompt", query=item.query.text)))
            return
        if isinstance(button, callbacks.ReviewSkip):
            self.review(player, t, out, after=query_id)
            return
        decide = self.game.accept_query if isinstance(button, callbacks.ReviewAccept) else self.game.discard_query
        decided = decide(player.id, query_id)
        out.replies.append(AnswerCallback(t("review_done", status=decided.status)))
        self.review(player, t, out)

    def show_prizes(self, player: Player, t: Catalogue, out: Outgoing, edit: int | None = None) -> None:
        if not player.is_moderator:
            out.replies.append(SendText(t("moderator_only")))
            return
        prizes = self.prizes.pending(player.id, limit=8)
        if not prizes:
            out.replies.append(EditText(edit, t("prizes_empty")) if edit else SendText(t("prizes_empty")))
            return
        lines = [t("prizes_title")]
        for prize in prizes:
            values = dict(id=prize.id, language=prize.language, period=t(f"period_{prize.period}"),
                          start=prize.period_start.date().isoformat(), name=prize.display_name or "?",
                          pseudonym=prize.pseudonym, rank=prize.rank, points=prize.points, sessions=prize.sessions)
            lines.append(t("prize_top" if prize.kind == "top" else "prize_participation", **values))
        buttons = [[(t("button_delivered", id=prize.id), callbacks.PrizeDelivered(prize.id).encode())] for prize in prizes]
        text = "\n".join(lines)
        out.replies.append(EditText(edit, text, buttons) if edit else SendText(text, buttons))
