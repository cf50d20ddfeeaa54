"""Delivery: what the bots send, one handler per reply kind (replies.py, live_screens.py,
files.py, inline.py, registered by the kind they deliver), the replies owed to handled updates (owed.py), and
the outbox worker (outbox_worker.py). Every call goes through the bot's send policy."""

from bots.delivery import files, group_rounds, inline, live_screens, replies  # noqa: F401 - importing registers the handlers
from bots.delivery.context import DeliveryContext
from bots.delivery.outbox_worker import OutboxWorker
from bots.delivery.owed import OwedReplies

__all__ = ["DeliveryContext", "OutboxWorker", "OwedReplies"]
