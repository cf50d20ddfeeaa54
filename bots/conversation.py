"""The conversation layer: a player's action in, engine calls, screens out. No Telegram types here,
no game rules either: the engine decides, this layer only asks and shows.

Every button press is re-checked by the engine against the database (ownership, state), so a
forged, stale or repeated `callback_data` can only earn a polite answer.
"""

from __future__ import annotations

import re
from datetime import timedelta

from bots import callbacks
from bots.moderation import ModerationScreens
from bots.notices import render_outbox
from bots.profile import ProfileScreens
from bots.screens import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    AnswerCallback,
    Buttons,
    Catalogue,
    EditText,
    Incoming,
    Outgoing,
    SendGrid,
    SendSticker,
    SendText,
    catalogue,
    quoted,
    shorten,
    utf16_units,
)
from core.engine import Game, GameError
from core.prizes import Prizes
from core.views import LabelTaskView, RetrievalTaskView
from storage.models import OutboxMessage, Player

# Errors that mean the button belongs to a screen that is gone: the answer comes with the current one.
_STALE = ("stale", "task_closed", "round_closed")
# Room kept free at the head of a task's first message for the outcome of the last task (see _next).
NOTICE_ROOM = 300
_SUGGESTION = re.compile(r"^\s*(\d{1,2})\s+(.+)$", re.S)


class Conversation:
    def __init__(self, game: Game, moderators: set[int] | frozenset[int] = frozenset()):
        self.game = game
        self.prizes = Prizes(game)
        self.moderators = set(moderators)
        self.moderation = ModerationScreens(game, self.prizes)
        self.profile = ProfileScreens(game, self.prizes)

    def render_outbox(self, message: OutboxMessage) -> list[Outgoing]:
        """Turn what the engine and the jobs wrote to the outbox into messages for whom they concern."""
        return render_outbox(self.game, self.moderators, message)

    # ------------------------------------------------------------------ entry point
    def handle(self, incoming: Incoming, bot_key: str | None = None) -> Outgoing:
        """`bot_key`: the bot the update came through; the player's outbox messages follow it."""
        player = self.game.register_player(incoming.user_id, incoming.display_name, bot_key=bot_key)
        if incoming.user_id in self.moderators and not player.is_moderator:
            self.game.set_moderator(player.id)
            player.is_moderator = True
        t = catalogue(player.language or _language_hint(incoming.language_code))
        out = Outgoing(incoming.chat_id, callback_id=incoming.callback_id, player_id=player.id)
        if incoming.kind in ("command", "callback") and player.awaiting_kind is not None:
            # A prompt for a suggestion or a correction is answered by the very next text only.
            self.game.forget_expected_text(player.id)
        try:
            self._dispatch(incoming, player, t, out)
        except GameError as error:
            text = t.error(error.code, error.detail)
            if incoming.kind == "callback":
                out.replies.append(AnswerCallback(text, alert=error.code not in _STALE))
                if error.code in _STALE:
                    self._current_screen(player, t, out)
            else:
                out.replies.append(SendText(text))
        if incoming.kind == "callback" and not any(isinstance(r, AnswerCallback) for r in out.replies):
            out.replies.append(AnswerCallback())
        return out

    def failure(self, incoming: Incoming) -> Outgoing:
        """What a player is told when handling their update failed (a bug, logged): nothing of it
        was kept, and /play goes on from where they were."""
        player = self.game.find_player(incoming.user_id) if incoming.user_id else None
        t = catalogue(player.language if player and player.language else _language_hint(incoming.language_code))
        out = Outgoing(incoming.chat_id, [SendText(t("failed"))], callback_id=incoming.callback_id,
                       player_id=player.id if player else None)
        if incoming.kind == "callback":
            out.replies.append(AnswerCallback())
        return out

    def _current_screen(self, player: Player, t: Catalogue, out: Outgoing) -> None:
        """After a stale button (a finished task, a screen from before a restart): the player's
        current screen, so that no button is a dead end."""
        player = self.game.get_player(player.id)
        if player.language is None or player.consent_at is None or player.consent_withdrawn_at is not None:
            return
        try:
            self._next(player, t, out)
        except GameError:
            pass  # nothing to show (banned, no task): the answer to the button says enough

    def _dispatch(self, incoming: Incoming, player: Player, t: Catalogue, out: Outgoing) -> None:
        replies = out.replies
        if incoming.kind == "edited":
            replies.append(SendText(t("edited")))
            return
        if incoming.kind == "unreadable":
            replies.append(SendText(t.error("invalid_chars")))
            return
        if incoming.kind in ("other", "sticker"):
            replies.append(SendText(t("unsupported")))
            return
        if incoming.kind == "callback":
            self._on_button(incoming, player, t, out)
            return
        if incoming.kind == "command":
            self._on_command(incoming.command, incoming.args, player, t, out)
            return
        self._on_text(incoming.text, player, t, out)

    # ------------------------------------------------------------------ commands
    def _on_command(self, command: str, args: str, player: Player, t: Catalogue, out: Outgoing) -> None:
        replies = out.replies
        if command == "start":
            self._onboard(player, t, out)
        elif command == "lang":
            replies.append(self._language_choice(t))
        elif command == "help":
            replies.append(SendText(self._help(t)))
        elif command == "review":
            self.moderation.review(player, t, out, args)
        elif command == "prizes":
            self.moderation.show_prizes(player, t, out)
        elif not self._ready(player, t, out):
            return
        elif command == "play":
            self._next(player, t, out)
        elif command == "me":
            self.profile.me(player, t, out)
        elif command == "name":
            self.profile.name(player, args, t, out)
        elif command == "top" and args.strip().lower() in ("on", "off"):
            subscribe = args.strip().lower() == "on"
            self.game.set_leaderboard_opt_in(player.id, subscribe)
            replies.append(SendText(t("top_subscribed" if subscribe else "top_unsubscribed")))
        elif command == "top":
            since = self.game.clock() - timedelta(days=self.game.LEADERBOARD_DAYS)
            board = self.game.leaderboard(player.language, since=since)
            lines = [t("top_title")] + [t("top_row", rank=r.rank, name=r.nickname, points=r.points)
                                        for r in board]
            text = "\n".join(lines) if board else t("top_empty")
            replies.append(SendText(text if player.leaderboard_opt_in else f"{text}\n\n{t('top_hint')}"))
        elif command == "stop":
            self.game.pause(player.id)
            replies.append(SendText(t("stopped")))
        elif command == "forget":
            self.game.withdraw_consent(player.id)
            replies.append(SendText(t("forgotten")))
        else:
            replies.append(SendText(self._help(t)))

    def _help(self, t: Catalogue) -> str:
        return f"{t('help')}\n\n{t('prizes_rules', **self.profile.prize_terms(t))}"

    def _ready(self, player: Player, t: Catalogue, out: Outgoing) -> bool:
        """A player plays only after choosing a language and consenting."""
        if player.language is None or player.consent_at is None or player.consent_withdrawn_at is not None:
            self._onboard(player, t, out)
            return False
        return True

    def _onboard(self, player: Player, t: Catalogue, out: Outgoing) -> None:
        if player.language is None:
            out.replies.append(self._language_choice(t))
        elif player.consent_at is None or player.consent_withdrawn_at is not None:
            out.replies.append(SendText(t("consent"), [[(t("button_agree"), callbacks.GiveConsent().encode())]]))
        else:
            out.replies.append(SendText(t("welcome")))
            self._next(player, t, out)

    def _language_choice(self, t: Catalogue) -> SendText:
        return SendText(t("choose_language"), [[("English", callbacks.ChooseLanguage("en").encode()),
                                                   ("中文", callbacks.ChooseLanguage("zh").encode())]])

    # ------------------------------------------------------------------ buttons
    def _on_button(self, incoming: Incoming, player: Player, t: Catalogue, out: Outgoing) -> None:
        button = callbacks.decode(incoming.callback_data)
        if button is None:
            raise GameError("stale")
        if isinstance(button, callbacks.ChooseLanguage):
            self.game.set_language(player.id, button.language)
            player = self.game.get_player(player.id)
            t = catalogue(player.language)
            out.replies.append(AnswerCallback(t("language_set")))
            self._onboard(player, t, out)
            return
        if isinstance(button, callbacks.GiveConsent):
            self.game.give_consent(player.id)
            self._onboard(self.game.get_player(player.id), t, out)
            return
        if isinstance(button, ModerationScreens.BUTTONS):
            self.moderation.button(button, player, t, out, incoming.message_id)
            return
        if isinstance(button, callbacks.PrizeDelivered):
            if not player.is_moderator:
                out.replies.append(AnswerCallback(t("moderator_only"), alert=True))
                return
            self.prizes.mark_delivered(player.id, button.prize_id)
            out.replies.append(AnswerCallback(t("prize_marked", id=button.prize_id)))
            self.moderation.show_prizes(player, t, out, edit=incoming.message_id)
            return
        if not self._ready(player, t, out):
            return
        match button:
            case callbacks.NextTask():
                self._next(player, t, out)
            case callbacks.SubmitRound(round_id):
                result = self.game.submit_round(player.id, round_id)
                self._next(player, t, out, notice=t("submitted", count=result.query_count))
            case callbacks.SkipRound(round_id):
                self.game.skip_round(player.id, round_id)
                self._next(player, t, out)
            case callbacks.RemoveQuery(round_id, query_id):
                self.game.remove_query(player.id, round_id, query_id)
                self._show_round_queries(player, round_id, t, out)
            case callbacks.TogglePick(task_id, position):
                task = self.game.toggle_pick(player.id, task_id, position)
                self._edit_grid(task, incoming.message_id, t, out)
            case callbacks.UndoPick(task_id):
                task = self.game.undo_pick(player.id, task_id)
                self._edit_grid(task, incoming.message_id, t, out)
            case callbacks.SubmitRanking(task_id):
                outcome = self.game.submit_drafted_ranking(player.id, task_id)
                if outcome.hit_rank:
                    self._next(player, t, out, notice=t("hit", rank=outcome.hit_rank, points=outcome.points))
                else:
                    out.replies += [SendText(t("miss")), SendSticker(outcome.target)]
                    self._next(player, t, out)
            case callbacks.SkipTask(task_id):
                self.game.skip_task(player.id, task_id)
                self._next(player, t, out)
            case callbacks.SuggestQuery(task_id):
                current = self.game.current_task(player.id)
                if not isinstance(current, RetrievalTaskView) or current.task_id != task_id:
                    raise GameError("task_closed")
                self.game.expect_text(player.id, "suggest", task_id)
                out.replies.append(SendText(t("suggest_prompt")))
            case _:
                raise GameError("stale")

    # ------------------------------------------------------------------ text
    def _on_text(self, text: str, player: Player, t: Catalogue, out: Outgoing) -> None:
        waiting = self.game.take_expected_text(player.id) if player.awaiting_kind is not None else None
        if waiting and waiting[0] == "correct":
            self.moderation.corrected(player, waiting[1], text, t, out)
            return
        if not self._ready(player, t, out):
            return
        if waiting and waiting[0] == "suggest":
            match = _SUGGESTION.match(text or "")
            current = self.game.current_task(player.id)
            size = len(current.candidates) if isinstance(current, RetrievalTaskView) else 9
            if not match or not 1 <= int(match.group(1)) <= size:
                self.game.expect_text(player.id, "suggest", waiting[1])  # the prompt stands: try again
                out.replies.append(SendText(t("suggest_bad", n=size)))
                return
            sticker_id = current.candidates[int(match.group(1)) - 1].id if isinstance(current, RetrievalTaskView) \
                else -1
            query = self.game.suggest_query(player.id, waiting[1], sticker_id, match.group(2))
            out.replies.append(SendText(t("suggest_thanks", query=query.text)))
            return
        current = self.game.current_task(player.id)
        if not isinstance(current, LabelTaskView):
            if isinstance(current, RetrievalTaskView):
                out.replies.append(SendText(t("retrieve_prompt", queries=quoted(current.queries, t.language))))
            else:
                out.replies.append(SendText(t("no_open_round"), [[(t("next"), callbacks.NextTask().encode())]]))
            return
        preview = self.game.add_query(player.id, current.round_id, text)
        line = (t("preview_rank", query=preview.query.text, rank=preview.target_rank) if preview.target_rank
                else t("preview_unranked", query=preview.query.text))
        queries = self.game.label_task(player.id, current.round_id).queries
        caption = f"{line}\n{t('label_queries', queries=quoted([q.text for q in queries], t.language))}"
        buttons = self._round_buttons(current.round_id, queries, t)
        if preview.hits:
            out.replies.append(SendGrid(preview.hits, caption, buttons))
        else:
            out.replies.append(SendText(caption, buttons))

    # ------------------------------------------------------------------ screens
    def _next(self, player: Player, t: Catalogue, out: Outgoing, notice: str | None = None) -> None:
        """The next task's screen; `notice` (the outcome of the last one) heads its first message,
        which spares a message against Telegram's per-chat limit."""
        task = self.game.next_task(player.id)
        start = len(out.replies)
        if task is None:
            out.replies.append(SendText(t("no_task"), [[(t("next"), callbacks.NextTask().encode())]]))
        elif isinstance(task, LabelTaskView):
            self._label_screen(task, t, out)
        else:
            self._retrieval_screen(task, t, out)
        if notice:
            first = out.replies[start]
            if isinstance(first, SendGrid):
                out.replies[start] = SendGrid(first.stickers, f"{notice}\n\n{first.caption}", first.buttons)
            else:
                out.replies[start] = SendText(f"{notice}\n\n{first.text}", first.buttons)

    def _label_screen(self, task: LabelTaskView, t: Catalogue, out: Outgoing) -> None:
        context = "\n".join(f"{m.sender}: {m.text}" for m in task.context if m.text) or "…"
        # Context and question in one message, then the sticker: two sends per screen.
        after = f"\n\n{t('label_prompt')}"
        if task.queries:
            after += "\n" + t("label_queries", queries=quoted([q.text for q in task.queries], t.language))
            buttons = self._round_buttons(task.round_id, task.queries, t)
        else:
            buttons = [[(t("button_skip"), callbacks.SkipRound(task.round_id).encode())]]
        # A long context is cut at its start (the messages nearest the sticker matter most), so the
        # question always shows, and room is left for a notice heading the screen (see _next).
        frame = utf16_units(t("label_context", context="") + after) + NOTICE_ROOM
        context = shorten(context, max(200, TEXT_LIMIT - frame - context.count("\n") * 2 - 2), keep="end")
        text = t("label_context", context=_blockquote(context)) + after
        out.replies += [SendText(text, buttons), SendSticker(task.sticker)]

    def _round_buttons(self, round_id: int, queries, t: Catalogue) -> Buttons:
        rows: Buttons = [[(t("button_submit"), callbacks.SubmitRound(round_id).encode()),
                          (t("button_skip"), callbacks.SkipRound(round_id).encode())]]
        for query in queries:
            rows.append([(t("button_remove", query=shorten(query.text, 24)),
                          callbacks.RemoveQuery(round_id, query.id).encode())])
        return rows

    def _show_round_queries(self, player: Player, round_id: int, t: Catalogue, out: Outgoing) -> None:
        queries = self.game.label_task(player.id, round_id).queries
        out.replies.append(SendText(t("label_queries", queries=quoted([q.text for q in queries], t.language) or "–"),
                                    self._round_buttons(round_id, queries, t)))

    def _retrieval_caption(self, task: RetrievalTaskView, t: Catalogue) -> str:
        positions = {c.id: n for n, c in enumerate(task.candidates, start=1)}
        ranking = (t("ranking", ranking="  ".join(f"#{r}→{positions[p]}" for r, p in enumerate(task.picks, 1)))
                   if task.picks else t("ranking_empty"))
        # The queries share what the caption leaves: the ranking line below them must always show.
        room = CAPTION_LIMIT - NOTICE_ROOM - utf16_units(t("retrieve_prompt", queries="") + "\n" + ranking)
        each = max(16, room // max(1, len(task.queries)) - 4)
        queries = shorten(quoted([shorten(q, each) for q in task.queries], t.language), max(16, room))
        return f"{t('retrieve_prompt', queries=queries)}\n{ranking}"

    def _retrieval_buttons(self, task: RetrievalTaskView, t: Catalogue) -> Buttons:
        rank_of = {p: r for r, p in enumerate(task.picks, start=1)}
        numbers = []
        for n, candidate in enumerate(task.candidates, start=1):
            label = f"{n} · #{rank_of[candidate.id]}" if candidate.id in rank_of else str(n)
            numbers.append((label, callbacks.TogglePick(task.task_id, n).encode()))
        rows = [numbers[i:i + 3] for i in range(0, len(numbers), 3)]
        rows.append([(t("button_done"), callbacks.SubmitRanking(task.task_id).encode()),
                     (t("button_undo"), callbacks.UndoPick(task.task_id).encode())])
        rows.append([(t("button_skip"), callbacks.SkipTask(task.task_id).encode()),
                     (t("button_suggest"), callbacks.SuggestQuery(task.task_id).encode())])
        return rows

    def _retrieval_screen(self, task: RetrievalTaskView, t: Catalogue, out: Outgoing) -> None:
        out.replies.append(SendGrid(task.candidates, self._retrieval_caption(task, t), self._retrieval_buttons(task, t)))

    def _edit_grid(self, task: RetrievalTaskView, message_id: int | None, t: Catalogue, out: Outgoing) -> None:
        if message_id is None:
            self._retrieval_screen(task, t, out)
            return
        out.replies.append(EditText(message_id, self._retrieval_caption(task, t), self._retrieval_buttons(task, t),
                                    caption=True))

def _language_hint(language_code: str | None) -> str:
    return "zh" if (language_code or "").lower().startswith("zh") else "en"


def _blockquote(text: str) -> str:
    return "\n".join(f"│ {line}" for line in text.splitlines())
