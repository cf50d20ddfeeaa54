"""The conversation layer: a player's action in, engine calls, screens out. No Telegram types here,
no game rules either: the engine decides, this layer only asks and shows.

Every button press is re-checked by the engine against the database (ownership, state), so a
forged, stale or repeated `callback_data` can only earn a polite answer.
"""

from __future__ import annotations

import re
from datetime import timedelta

from bots import callbacks
from bots.log_context import note_player
from bots.messages.catalogue import Catalogue, catalogue, quoted
from bots.messages.incoming import Incoming
from bots.messages.limits import CAPTION_LIMIT, TEXT_LIMIT, Buttons, shorten, utf16_units
from bots.messages.replies import AnswerCallback, EditText, Expire, LivePhoto, LiveText, Outgoing, SendText
from bots.moderation import ModerationScreens
from bots.notices import player_notice_text, render_outbox
from bots.profile import ProfileScreens
from core.game import Game, GameError
from core.views import LabelTaskView, PreviewView, RetrievalTaskView
from core.vocabulary import HELD_NOTICES, TABOO_SHOWN, AwaitedInput, ErrorCode, Verdict
from storage.models import OutboxMessage, Player
from storage.settings import Settings

# Errors that mean the button belongs to a screen that is gone: the answer comes with the current one.
_STALE = (ErrorCode.STALE, ErrorCode.TASK_CLOSED, ErrorCode.ROUND_CLOSED)
# Room kept free at the head of a task's first message for the notices held during the last task (see _next).
NOTICE_ROOM = 300
# Outbox kinds for one player that wait, while the player is in a task, for their next screen.
_SUGGESTION = re.compile(r"^\s*(\d{1,2})\s+(.+)$", re.S)


def rule_terms(settings: Settings) -> dict[str, int]:
    """The numbers of the rules the help text states: what a find at rank 1, 2 and 3 is worth."""
    first, second, third = settings.points_by_rank
    return {"first": first, "second": second, "third": third}


class Conversation:
    def __init__(self, game: Game, moderators: set[int] | frozenset[int] = frozenset()):
        self.game = game
        self.prizes = game.prizes
        self.moderators = set(moderators)
        self.moderation = ModerationScreens(game, self.prizes)
        self.profile = ProfileScreens(game, self.prizes)

    def render_outbox(self, message: OutboxMessage) -> list[Outgoing]:
        """Turn what the engine and the jobs wrote to the outbox into messages for whom they concern."""
        return render_outbox(self.game, self.moderators, message)

    def holds(self, message: OutboxMessage) -> bool:
        """Whether a game notice waits for its player's next screen: it does while they are in a
        task, so that feedback arrives between tasks, never inside one."""
        if message.kind not in HELD_NOTICES or message.player_id is None:
            return False
        if self.game.assignment.current_task(message.player_id) is None:
            return False
        # A notice too long to head a screen whole (a round of many corrected queries) is not cut: it
        # goes out at once as a message of its own.
        player = self.game.players.get(message.player_id)
        text = player_notice_text(message.kind, message.payload, catalogue(player.language))
        return text is not None and utf16_units(text) < NOTICE_ROOM

    def _fold_notices(self, player: Player, t: Catalogue, out: Outgoing) -> str | None:
        """The player's held notices that fit in NOTICE_ROOM, oldest first; the rest wait for the
        screen after. They are leased to this screen (another update of the player's, handled
        meanwhile, cannot show them too) and marked sent once it went out (bots/runtime.py)."""
        chosen: dict[int, str] = {}
        used = 0
        for message in self.game.outbox.held_for(player.id):
            text = player_notice_text(message.kind, message.payload, t)
            if not text:
                continue
            size = utf16_units(text) + 1
            if chosen and used + size > NOTICE_ROOM:
                break
            chosen[message.id] = shorten(text, NOTICE_ROOM - 1) if not chosen else text
            used += size
        taken = set(self.game.outbox.take_held(list(chosen)))
        texts = [text for message_id, text in chosen.items() if message_id in taken]
        out.outbox_ids.extend(message_id for message_id in chosen if message_id in taken)
        if texts:
            out.notices_at = len(out.replies)  # the reply the caller appends next carries them
        return "\n".join(texts) or None

    # ------------------------------------------------------------------ entry point
    def handle(self, incoming: Incoming, bot_key: str | None = None) -> Outgoing:
        """`bot_key`: the bot the update came through; the player's outbox messages follow it."""
        player = self.game.players.register(incoming.user_id, incoming.display_name, bot_key=bot_key)
        note_player(player.id)
        if incoming.user_id in self.moderators and not self.game.moderators.allows(player):
            self.game.players.set_moderator(player.id)
            player.is_moderator = True
        t = catalogue(player.language or _language_hint(incoming.language_code))
        out = Outgoing(incoming.chat_id, callback_id=incoming.callback_id, player_id=player.id)
        if incoming.kind in ("command", "callback") and player.awaiting_kind is not None:
            # A prompt for a suggestion or a correction is answered by the very next text only.
            self.game.awaited.forget(player.id)
        try:
            self._dispatch(incoming, player, t, out)
        except GameError as error:
            text = t.error(error.code, error.detail)
            if incoming.kind == "callback":
                out.replies.append(AnswerCallback(text, alert=error.code not in _STALE))
                if error.code in _STALE:
                    if incoming.message_id is not None and incoming.message_has_buttons:
                        # left alone when it is part of a live or finished screen (bots/runtime.py)
                        out.replies.append(Expire(incoming.message_id, t("screen_expired"),
                                                  caption=incoming.message_is_photo))
                    self._current_screen(player, t, out)
            elif incoming.kind != "text" or not self._warn_on_screen(player, t, out, text, incoming.text):
                out.replies.append(SendText(text))
        if incoming.kind == "callback" and not any(isinstance(r, AnswerCallback) for r in out.replies):
            out.replies.append(AnswerCallback())
        return out

    def failure(self, incoming: Incoming) -> Outgoing:
        """What a player is told when handling their update failed (a bug, logged): nothing of it
        was kept, and /play goes on from where they were."""
        player = self.game.players.find(incoming.user_id) if incoming.user_id else None
        t = catalogue(player.language if player and player.language else _language_hint(incoming.language_code))
        out = Outgoing(incoming.chat_id, [SendText(t("failed"))], callback_id=incoming.callback_id,
                       player_id=player.id if player else None)
        if incoming.kind == "callback":
            out.replies.append(AnswerCallback())
        return out

    def _current_screen(self, player: Player, t: Catalogue, out: Outgoing) -> None:
        """After a stale button (a finished task, a screen from before a restart): the player's
        current screen, moved to the bottom of the chat, so that no button is a dead end."""
        player = self.game.players.get(player.id)
        if player.language is None or player.consent_at is None or player.consent_withdrawn_at is not None:
            return
        try:
            self._next(player, t, out, fresh=True)
        except GameError:
            pass  # nothing to show (banned, no task): the answer to the button says enough

    def _warn_on_screen(self, player: Player, t: Catalogue, out: Outgoing, warning: str, query: str) -> bool:
        """A refused query is said on the labeler's live screen rather than in a new message."""
        try:
            current = self.game.assignment.current_task(player.id)
        except GameError:
            return False
        if not isinstance(current, LabelTaskView):
            return False
        self._label_screen(current, t, out, warning=t("screen_warning", query=shorten(" ".join(query.split()), 64),
                                                                    text=warning),
                           photo=False)
        return True

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
            self._onboard(player, t, out, welcome=False)
        elif command == "lang":
            if self._ready_quietly(player):
                self._release_open_task(player, t, out)  # a language is chosen between tasks
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
            self._next(player, t, out, fresh=True)
        elif command == "me":
            self.profile.me(player, t, out)
        elif command == "name":
            self.profile.name(player, args, t, out)
        elif command == "top" and args.strip().lower() in ("on", "off"):
            subscribe = args.strip().lower() == "on"
            self.game.players.set_leaderboard_opt_in(player.id, subscribe)
            replies.append(SendText(t("top_subscribed" if subscribe else "top_unsubscribed")))
        elif command == "top":
            since = self.game.clock() - timedelta(days=self.game.standings.LEADERBOARD_DAYS)
            board = self.game.standings.leaderboard(player.language, since=since)
            lines = [t("top_title")] + [t("top_row", rank=r.rank, name=r.nickname, points=r.points)
                                        for r in board]
            text = "\n".join(lines) if board else t("top_empty")
            replies.append(SendText(text if player.leaderboard_opt_in else f"{text}\n\n{t('top_hint')}"))
        elif command == "stop":
            released = self._release_open_task(player, t, out)
            notice = self._fold_notices(player, t, out)
            text = t("stopped_released" if released else "stopped_nothing")
            replies.append(SendText(f"{notice}\n\n{text}" if notice else text))
        elif command == "forget":
            replies.append(SendText(t("forget_confirm"), [[
                (t("button_forget_yes"), callbacks.ForgetAnswer("yes").encode()),
                (t("button_forget_no"), callbacks.ForgetAnswer("no").encode())]]))
        else:
            replies.append(SendText(self._help(t)))

    def _help(self, t: Catalogue) -> str:
        return f"{t('help', **rule_terms(self.game.settings))}\n\n{t('prizes_rules', **self.profile.prize_terms(t))}"

    def _ready(self, player: Player, t: Catalogue, out: Outgoing) -> bool:
        """A player plays only after choosing a language and consenting."""
        if not self._ready_quietly(player):
            self._onboard(player, t, out)
            return False
        return True

    @staticmethod
    def _ready_quietly(player: Player) -> bool:
        return not (player.language is None or player.consent_at is None or player.consent_withdrawn_at is not None)

    def _onboard(self, player: Player, t: Catalogue, out: Outgoing, welcome: bool = True,
                 edit: int | None = None) -> None:
        """Language, consent, then the welcome and the player's screen. A player who is already
        playing (/start again, "I agree" pressed again) gets their current screen moved down, never
        a second one. `edit`: the onboarding message whose button was pressed, which becomes the
        next step (the consent question, then the consent with the welcome under it)."""
        if player.language is None:
            out.replies.append(self._language_choice(t))
        elif player.consent_at is None or player.consent_withdrawn_at is not None:
            buttons = [[(t("button_agree"), callbacks.GiveConsent().encode())]]
            out.replies.append(EditText(edit, t("consent"), buttons) if edit is not None
                               else SendText(t("consent"), buttons))
        else:
            if welcome:
                out.replies.append(EditText(edit, f"{t('consent')}\n\n✅ {t('welcome')}") if edit is not None
                                   else SendText(t("welcome")))
            elif edit is not None:
                out.replies.append(EditText(edit, t("language_set")))
            self._next(player, t, out, fresh=not welcome)

    def _release_open_task(self, player: Player, t: Catalogue, out: Outgoing) -> bool:
        """Give the player's open task back to the pool and say so on its screen; True if there was one."""
        current = self.game.assignment.current_task(player.id)
        self.game.players.pause(player.id)
        if current is None:
            return False
        self._finish_screen(current, t("task_released"), out)
        return True

    def _finish_screen(self, task: LabelTaskView | RetrievalTaskView, outcome: str, out: Outgoing,
                       photo: list | None = None) -> None:
        """The outcome written onto a task's screen, its buttons gone. `photo`: an image to show instead."""
        if isinstance(task, LabelTaskView):
            out.replies.append(LiveText(_screen_key(task), outcome, None, final=True))
        else:
            queries = shorten("🔎 " + quoted(task.queries, task.language), CAPTION_LIMIT // 2)
            out.replies.append(LivePhoto(_screen_key(task), photo, f"{outcome}\n{queries}", None, final=True))

    def _language_choice(self, t: Catalogue) -> SendText:
        return SendText(t("choose_language"), [[("English", callbacks.ChooseLanguage("en").encode()),
                                                   ("中文", callbacks.ChooseLanguage("zh").encode())]])

    # ------------------------------------------------------------------ buttons
    def _on_button(self, incoming: Incoming, player: Player, t: Catalogue, out: Outgoing) -> None:
        button = callbacks.decode(incoming.callback_data)
        if button is None:
            raise GameError(ErrorCode.STALE)
        if isinstance(button, callbacks.ChooseLanguage):
            if self._ready_quietly(player):
                self._release_open_task(player, t, out)  # a chooser from before the task began
            self.game.players.set_language(player.id, button.language)
            player = self.game.players.get(player.id)
            t = catalogue(player.language)
            out.replies.append(AnswerCallback(t("language_set")))
            self._onboard(player, t, out, welcome=player.consent_at is None, edit=incoming.message_id)
            return
        if isinstance(button, callbacks.GiveConsent):
            again = self._ready_quietly(player)
            self.game.players.give_consent(player.id)
            self._onboard(self.game.players.get(player.id), t, out, welcome=not again, edit=incoming.message_id)
            return
        if isinstance(button, callbacks.ForgetAnswer):
            if button.answer == "yes":
                if self._ready_quietly(player):
                    self._release_open_task(player, t, out)
                self.game.players.withdraw_consent(player.id)
            text = t("forgotten" if button.answer == "yes" else "forget_cancelled")
            out.replies.append(EditText(incoming.message_id, text) if incoming.message_id is not None
                               else SendText(text))
            return
        if isinstance(button, ModerationScreens.BUTTONS):
            self.moderation.button(button, player, t, out, incoming.message_id)
            return
        if isinstance(button, callbacks.PrizeDelivered):
            if not self.game.moderators.allows(player):
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
                self._next(player, t, out, fresh=True)
            case callbacks.SubmitRound(round_id):
                task = self.game.labeling.label_task(player.id, round_id)
                result = self.game.labeling.submit_round(player.id, round_id)
                kept = [q.text for q in task.queries]
                self._finish_screen(task, t("round_submitted", count=result.query_count,
                                            queries=quoted(kept, t.language),
                                            round=self.game.standings.tasks_finished(player.id)), out)
                self._next(player, t, out)
            case callbacks.SkipRound(round_id):
                task = self.game.labeling.label_task(player.id, round_id)
                self.game.labeling.skip_round(player.id, round_id)
                self._finish_screen(task, t("round_skipped"), out)  # a skip is no round: the next screen keeps its number
                self._next(player, t, out)
            case callbacks.RemoveQuery(round_id, query_id):
                self.game.labeling.remove_query(player.id, round_id, query_id)
                self._label_screen(self.game.labeling.label_task(player.id, round_id), t, out)
            case callbacks.TogglePick(task_id, position):
                task = self.game.retrieval.toggle_pick(player.id, task_id, position)
                self._edit_grid(task, t, out, incoming.message_id)
            case callbacks.UndoPick(task_id):
                task = self.game.retrieval.undo_pick(player.id, task_id)
                self._edit_grid(task, t, out, incoming.message_id)
            case callbacks.SubmitRanking(task_id):
                task = self.game.assignment.current_task(player.id)
                outcome = self.game.retrieval.submit_drafted_ranking(player.id, task_id)
                screen = task if isinstance(task, RetrievalTaskView) and task.task_id == task_id else None
                if outcome.hit_rank:
                    text = t("hit", rank=outcome.hit_rank, points=outcome.points)
                    if screen:
                        self._finish_screen(screen, text, out)
                else:
                    # The grid becomes the sticker that was meant: the answer, on the finished screen.
                    text = t("miss")
                    if screen:
                        self._finish_screen(screen, text, out, photo=[outcome.target])
                if screen is None:
                    out.replies.append(SendText(text))
                self._next(player, t, out)
            case callbacks.SkipTask(task_id):
                task = self.game.assignment.current_task(player.id)
                self.game.retrieval.skip_task(player.id, task_id)
                if isinstance(task, RetrievalTaskView) and task.task_id == task_id:
                    self._finish_screen(task, t("round_skipped", round=self.game.standings.tasks_finished(player.id) + 1),
                                        out)
                self._next(player, t, out)
            case callbacks.SuggestQuery(task_id):
                current = self.game.assignment.current_task(player.id)
                if not isinstance(current, RetrievalTaskView) or current.task_id != task_id:
                    raise GameError(ErrorCode.TASK_CLOSED)
                self.game.awaited.expect(player.id, AwaitedInput.SUGGEST, task_id)
                out.replies.append(SendText(t("suggest_prompt")))
            case _:
                raise GameError(ErrorCode.STALE)

    # ------------------------------------------------------------------ text
    def _on_text(self, text: str, player: Player, t: Catalogue, out: Outgoing) -> None:
        waiting = self.game.awaited.take(player.id) if player.awaiting_kind is not None else None
        if waiting and waiting[0] == AwaitedInput.CORRECT:
            self.moderation.corrected(player, waiting[1], text, t, out)
            return
        if not self._ready(player, t, out):
            return
        if waiting and waiting[0] == AwaitedInput.SUGGEST:
            match = _SUGGESTION.match(text or "")
            current = self.game.assignment.current_task(player.id)
            size = len(current.candidates) if isinstance(current, RetrievalTaskView) \
                else self.game.settings.candidates
            if not match or not 1 <= int(match.group(1)) <= size:
                self.game.awaited.expect(player.id, AwaitedInput.SUGGEST, waiting[1])  # the prompt stands: try again
                out.replies.append(SendText(t("suggest_bad", n=size)))
                return
            sticker_id = current.candidates[int(match.group(1)) - 1].id if isinstance(current, RetrievalTaskView) \
                else -1
            query = self.game.retrieval.suggest_query(player.id, waiting[1], sticker_id, match.group(2))
            out.replies.append(SendText(t("suggest_thanks", query=query.text)))
            return
        current = self.game.assignment.current_task(player.id)
        if not isinstance(current, LabelTaskView):
            if isinstance(current, RetrievalTaskView):
                out.replies.append(SendText(t("retrieve_prompt", queries=quoted(current.queries, t.language))))
            else:
                out.replies.append(SendText(t("no_open_round"), [[(t("next"), callbacks.NextTask().encode())]]))
            return
        preview = self.game.labeling.add_query(player.id, current.round_id, text)
        self._label_screen(self.game.labeling.label_task(player.id, current.round_id), t, out, latest=preview)

    # ------------------------------------------------------------------ screens
    def _next(self, player: Player, t: Catalogue, out: Outgoing, fresh: bool = False) -> None:
        """The player's task screen: a new task's gets new messages; the open task's (the player
        asked for it again) is moved down when `fresh`. Notices held during the last task head it."""
        task = self.game.assignment.next_task(player.id)
        notice = self._fold_notices(player, t, out)
        if task is None:
            text = t("no_task")
            out.replies.append(SendText(f"{notice}\n\n{text}" if notice else text,
                                        [[(t("next"), callbacks.NextTask().encode())]]))
        elif isinstance(task, LabelTaskView):
            self._label_screen(task, t, out, notice=notice, fresh=fresh)
        else:
            self._retrieval_screen(task, t, out, notice=notice, fresh=fresh)

    def _header(self, player_id: int, t: Catalogue) -> str:
        """Progress: "Round 4 · 🔥 2 in a row · 37 pts"."""
        stats = self.game.standings.player_stats(player_id)
        parts = [t("screen_round", round=self.game.standings.tasks_finished(player_id) + 1)]
        if stats.streak >= 2:
            parts.append(t("screen_streak", count=stats.streak))
        parts.append(t("screen_points", count=stats.points))
        return " · ".join(parts)

    def _label_screen(self, task: LabelTaskView, t: Catalogue, out: Outgoing, *, notice: str | None = None,
                      fresh: bool = False, warning: str | None = None, latest: PreviewView | None = None,
                      photo: bool = True) -> None:
        """The labeler's screen: one text (progress, the chat, the question, the taboo, the queries
        so far with their previews, the buttons) and one photo (the sticker, then the latest
        preview grid), both edited in place. `photo` False leaves the photo as it is."""
        previews = {p.query.id: p for p in task.previews}
        if latest is not None:
            previews[latest.query.id] = latest
        head = f"{notice}\n\n" if notice else ""
        head += self._header(out.player_id, t) + "\n"
        after = f"\n\n{t('label_prompt')}"
        if task.taken:
            after += "\n" + t("label_taken", queries=quoted(task.taken[:TABOO_SHOWN], t.language))
        lines = []
        for query in task.queries:
            preview = previews.get(query.id)
            lines.append(t("label_preview", query=query.text, result=self._preview_result(task, preview, t))
                         if preview else f"• “{query.text}”")
        if lines:
            after += "\n\n" + t("label_queries", queries="").rstrip() + "\n" + "\n".join(lines)
        if warning:
            after += "\n\n" + warning
        # A long context is cut at its start (the messages nearest the sticker matter most), so the
        # question and the queries always show.
        context = "\n".join(f"{m.sender}: {m.text}" for m in task.context if m.text) or "…"
        frame = utf16_units(head + t("label_context", context="") + after)
        context = shorten(context, max(200, TEXT_LIMIT - frame - context.count("\n") * 2 - 2), keep="end")
        text = head + t("label_context", context=_blockquote(context)) + after
        key = _screen_key(task)
        out.replies.append(LiveText(key, text, self._round_buttons(task.round_id, task.queries, t), fresh=fresh,
                                    moved=t("screen_moved")))
        if not photo and not fresh:
            return
        shown = latest or (previews.get(task.queries[-1].id) if task.queries else None)
        if shown is not None and shown.hits:
            position = shown.target_position or _position_of(task, shown)
            caption = t("preview_caption", query=shown.query.text, result=self._preview_result(task, shown, t))
            out.replies.append(LivePhoto(key, list(shown.hits), caption, highlight=position, fresh=fresh,
                                         moved=t("screen_moved")))
        elif shown is not None:
            caption = t("preview_caption", query=shown.query.text, result=self._preview_result(task, shown, t))
            out.replies.append(LivePhoto(key, [task.sticker], caption, fresh=fresh, moved=t("screen_moved")))
        else:
            out.replies.append(LivePhoto(key, [task.sticker], "", fresh=fresh, moved=t("screen_moved")))

    @staticmethod
    def _preview_result(task: LabelTaskView, preview: PreviewView, t: Catalogue) -> str:
        """Where the sticker stands for one query, honestly: a miss is never shown as a success."""
        if preview.verdict == Verdict.FUNCTION_WORDS:
            return t("preview_function_words")
        if preview.verdict == Verdict.NOT_FOUND or not preview.target_rank:
            return t("preview_not_found")
        position = preview.target_position or _position_of(task, preview)
        if preview.total:
            if position:
                return t("preview_tile", rank=preview.target_rank, total=preview.total, tile=position)
            return t("preview_off_grid", rank=preview.target_rank, total=preview.total)
        if position:
            return t("preview_tile_short", rank=preview.target_rank, tile=position)
        return t("preview_off_grid_short", rank=preview.target_rank)

    def _round_buttons(self, round_id: int, queries, t: Catalogue) -> Buttons:
        rows: Buttons = [[(t("button_remove", query=shorten(query.text, 24)),
                           callbacks.RemoveQuery(round_id, query.id).encode())] for query in queries]
        last = [(t("button_skip"), callbacks.SkipRound(round_id).encode())]
        if queries:
            last.insert(0, (t("button_submit"), callbacks.SubmitRound(round_id).encode()))
        return rows + [last]

    def _retrieval_caption(self, task: RetrievalTaskView, t: Catalogue, head: str = "") -> str:
        positions = {c.id: n for n, c in enumerate(task.candidates, start=1)}
        ranking = (t("ranking", ranking="  ".join(f"#{r}→{positions[p]}" for r, p in enumerate(task.picks, 1)))
                   if task.picks else t("ranking_empty"))
        # The queries share what the caption leaves: the ranking line below them must always show.
        room = (CAPTION_LIMIT - max(NOTICE_ROOM, utf16_units(head))
                - utf16_units(t("retrieve_prompt", queries="") + "\n" + ranking))
        each = max(16, room // max(1, len(task.queries)) - 4)
        queries = shorten(quoted([shorten(q, each) for q in task.queries], t.language), max(16, room))
        return f"{head}{t('retrieve_prompt', queries=queries)}\n{ranking}"

    def _retrieval_head(self, player_id: int, t: Catalogue, notice: str | None) -> str:
        head = f"{notice}\n\n" if notice else ""
        return shorten(head + self._header(player_id, t) + "\n", NOTICE_ROOM)

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

    def _retrieval_screen(self, task: RetrievalTaskView, t: Catalogue, out: Outgoing, *, notice: str | None = None,
                          fresh: bool = False) -> None:
        head = self._retrieval_head(out.player_id, t, notice)
        out.replies.append(LivePhoto(_screen_key(task), list(task.candidates), self._retrieval_caption(task, t, head),
                                     self._retrieval_buttons(task, t), fresh=fresh, moved=t("screen_moved")))

    def _edit_grid(self, task: RetrievalTaskView, t: Catalogue, out: Outgoing, pressed: int | None) -> None:
        """A pick changed: the grid's caption and numbers, edited in place (the image stays)."""
        head = self._retrieval_head(out.player_id, t, None)
        out.replies.append(LivePhoto(_screen_key(task), None, self._retrieval_caption(task, t, head),
                                     self._retrieval_buttons(task, t), on_message=pressed))


def _screen_key(task: LabelTaskView | RetrievalTaskView) -> str:
    return f"label:{task.round_id}" if isinstance(task, LabelTaskView) else f"retrieval:{task.task_id}"


def _position_of(task: LabelTaskView, preview: PreviewView) -> int | None:
    """The 1-based tile of the labeled sticker in a preview grid, if it is there."""
    return next((n for n, hit in enumerate(preview.hits, start=1) if hit.id == task.sticker.id), None)


def _language_hint(language_code: str | None) -> str:
    return "zh" if (language_code or "").lower().startswith("zh") else "en"


def _blockquote(text: str) -> str:
    return "\n".join(f"│ {line}" for line in text.splitlines())
