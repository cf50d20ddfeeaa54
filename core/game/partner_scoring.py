"""What a partner's answer earns and causes (the points policy for partners, README "Partners").

A partner (a model player) answers a round no person has taken yet, through the retrieval service
like a person; scoring then applies this policy instead of a person's:

- the labeler hears the outcome (a PARTNER_FEEDBACK notice, held for their next screen like other
  feedback) and, for a find at any rank, earns `partner_points` once per round (ledger key
  `partner:<round>:labeler`, whatever the number of partners or answers);
- the partner earns nothing: models have no score, so they can never reach a leaderboard or a prize;
- nothing is validated, counted for resonance or sent to review: only people judge the data, and
  the round stays in the people's pool with its `retrievals_per_round` untouched.

Gaming it is bounded: at most `partner_points` per round, and a round's queries passed the taboo
rule, which refuses a query already taken for the sticker and its near-duplicates (core/text.py's
`taboo_key`), so copying the listed queries cannot score.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session, col, select

from core.game.views import stickers
from core.outbox import Outbox
from core.partner_rankers import PARTNER_LABELS
from core.views import RankingOutcome
from core.vocabulary import NoticeKind
from storage.models import LabelRound, Player, Query, RetrievalTask
from storage.settings import Settings


def score_partner_answer(session: Session, task: RetrievalTask, partner: Player, settings: Settings,
                         outbox: Outbox, award: Callable[..., bool]) -> RankingOutcome:
    label_round = session.get(LabelRound, task.label_round_id)
    points = settings.rules.partner_points if task.hit_rank else 0
    awarded = award(session, f"partner:{label_round.id}:labeler", label_round.player_id, task.language, points,
                    "partner_hit", task_id=task.id)
    texts = dict(session.exec(select(Query.id, Query.text).where(col(Query.id).in_(task.query_ids))).all())
    outbox.enqueue(
        session, f"feedback:task:{task.id}", NoticeKind.PARTNER_FEEDBACK,
        {"task_id": task.id, "round_id": label_round.id, "sticker_id": task.sticker_id, "rank": task.hit_rank,
         "points": points if awarded else 0, "language": task.language,
         "partner": PARTNER_LABELS.get(partner.display_name, partner.display_name),
         "queries": [texts[i] for i in task.query_ids if i in texts]},
        player_id=label_round.player_id)
    target = stickers(session, [task.sticker_id])[0]
    return RankingOutcome(task.id, task.hit_rank, target, 0, [], False)
