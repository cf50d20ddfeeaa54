"""Partners through Telegram's protocol (the sandbox), on both frameworks and in both languages: a
lone labeler in an empty game hears from a partner within partner_after + 5 s, on their next screen;
a person who comes later still gets the round; the partner's answer is a model's task; no model on
/top or /prizes."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from bots.game_threads import GameThreads
from bots.messages.catalogue import catalogue, quoted
from bots.partner_seat import PartnerSeat
from core.nicknames import nickname_of
from storage.models import (
    LabelRound,
    OutboxMessage,
    Player,
    PlayerKind,
    PlaySession,
    RetrievalTask,
    ScoreEvent,
    TaskStatus,
)
from tests.bots_world import MODERATOR, running_bot, texts
from tests.test_bots import current, grid_of, label_and_submit, onboard

pytestmark = pytest.mark.asyncio

PARTNER_AFTER = 1.0


@pytest.mark.parametrize("framework", ["ptb", "aiogram"])
@pytest.mark.parametrize("language", ["en", "zh"])
async def test_a_lone_labeler_hears_from_a_partner_and_a_later_person_still_gets_the_round(
        game_db, tmp_path, framework, language):
    t = catalogue(language)
    async with running_bot(game_db, tmp_path, framework, partner_after=PARTNER_AFTER,
                           partner_poll_seconds=0.2) as world:
        seat = PartnerSeat(world.game, GameThreads())
        seat.start()
        outbox = asyncio.create_task(world.shell.runtime.run_outbox(0.2))
        try:
            alice = world.player(1, language)
            await onboard(alice, language)
            # /help states what a partner's find is worth
            assert t("help_partners", points=1) in texts(await alice.send("/help"))[0]
            queries = ["first idea", "second idea"] if language == "en" else ["第一个想法", "第二个想法"]
            await label_and_submit(alice, language, queries)
            submitted = time.monotonic()
            # Alice is in her next round: the partner's feedback waits for her next screen.
            deadline = submitted + PARTNER_AFTER + 5
            notice = None
            while notice is None:
                assert time.monotonic() < deadline, "no partner answered within partner_after + 5 s"
                await asyncio.sleep(0.1)
                with Session(world.game.db.engine) as session:
                    notice = session.exec(select(OutboxMessage).where(
                        OutboxMessage.kind == "partner_feedback", OutboxMessage.status.in_(("held", "sent")))).first()
            live = [e for e in current(await alice.transcript()) if any(
                b.startswith(("lx:", "ps:")) for b in alice.buttons(e))]
            skip = next(b for b in alice.buttons(live[-1]) if b.startswith(("lx:", "ps:")))
            after = await alice.press(skip, message_id=live[-1]["message_id"])
            assert time.monotonic() < deadline, "the partner's feedback came later than partner_after + 5 s"
            payload = notice.payload
            values = dict(partner="BM25", query=quoted(queries, t.language), rank=payload["rank"],
                          points=payload["points"])
            key = "partner_miss" if not payload["rank"] else ("partner_hit_points" if payload["points"] else "partner_hit")
            line = t(key, **values)
            fresh = [e for e in after if not e.get("edit")]
            assert any(text.startswith(line) for text in texts(fresh)), texts(after)
            assert sum(line in text for text in texts(await alice.transcript())) == 1

            with Session(world.game.db.engine) as session:
                [(task, partner)] = session.exec(select(RetrievalTask, Player).join(
                    Player, Player.id == RetrievalTask.retriever_id).where(Player.kind == PlayerKind.MODEL)).all()
                assert partner.language == language and task.status == TaskStatus.ANSWERED
                assert session.get(LabelRound, task.label_round_id).retrieval_count == 0
                partner_round = task.label_round_id

            # Bob comes later: after his own first round, he gets alice's round to retrieve.
            seat_answered = seat.answered
            bob = world.player(2, language)
            await onboard(bob, language)
            screen = await label_and_submit(bob, language, ["bob idea" if language == "en" else "鲍勃的想法"])
            grid = grid_of(screen)
            assert queries[0] in grid["caption"]
            bob_task = int(next(b for b in bob.buttons(grid) if b.startswith("pd:")).split(":")[1])
            with Session(world.game.db.engine) as session:
                assert session.get(RetrievalTask, bob_task).label_round_id == partner_round
            assert seat_answered >= 1

            # No model on /top or /prizes: models earn no points, and the lists leave them out even
            # when a model's row has some (forged here) and a prize tally ran over them.
            moderator = world.player(MODERATOR, language)
            await onboard(moderator, language)  # before the tally, whose notice to moderators comes any time
            with world.game.db.write() as session:
                now = world.game.clock()
                session.add(ScoreEvent(idempotency_key="forged", player_id=partner.id, language=language, points=99,
                                       reason="retriever_hit", created_at=now))
                session.add(PlaySession(player_id=partner.id, language=language, started_at=now,
                                        last_activity_at=now, task_count=99))
            model_name = nickname_of(partner.id, partner.nickname, language)
            world.game.prizes.tally(now - timedelta(days=1), now + timedelta(days=1), "day")
            top = "\n".join(texts(await bob.send("/top")))
            assert model_name not in top and "99" not in top
            prize_list = "\n".join(texts(await moderator.send("/prizes")))
            assert model_name not in prize_list
        finally:
            outbox.cancel()
            await asyncio.gather(outbox, return_exceptions=True)
            await seat.stop()
