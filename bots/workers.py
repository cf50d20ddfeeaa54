"""`sticktionary run --workers N`: N processes serving the same bots by webhook.

Each worker is a whole `sticktionary run` process listening on the same address (SO_REUSEPORT: the
kernel spreads connections over them, as a load balancer in front of separate hosts would). What
must hold across them is in the database and Redis, never in a worker: updates go through the
inbox, each chat's turn and Telegram's pacing are shared through Redis, the outbox is claimed with
leases. This process only supervises: it restarts a worker that dies and stops them all on
SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from core import metrics
from storage.settings import Settings

log = logging.getLogger(__name__)


def worker_problem(settings: Settings, workers: int) -> str | None:
    """Why these settings cannot run `workers` processes, or None."""
    if workers < 2:
        return None
    if not settings.telegram.webhook_url:
        return ("several workers need webhooks (Telegram allows one getUpdates caller per bot): set "
                "STICKTIONARY_WEBHOOK_URL and STICKTIONARY_WEBHOOK_SECRET")
    if not settings.telegram.redis_url:
        return ("several workers share each chat's turn and Telegram's pacing through Redis: set "
                "STICKTIONARY_REDIS_URL, e.g. redis://127.0.0.1:6379/0")
    return None


def supervise(workers: int, restart_delay: float = 1.0) -> int:
    """Run `workers` worker processes until SIGINT/SIGTERM; returns the exit code."""
    command = [sys.executable, "-c", "from sticktionary.cli import app; app()", "run"]
    # The workers' metrics go to one fresh folder; a scrape of any worker sums them all.
    metrics_dir, made_here = metrics.fresh_multiprocess_dir()
    environment = {**os.environ, metrics.MULTIPROCESS_ENV: metrics_dir}
    stopping = False

    def stop(_signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: dict[int, subprocess.Popen] = {}
    try:
        while not stopping:
            for number in range(workers):
                child = children.get(number)
                if child is None or child.poll() is not None:
                    if child is not None:
                        metrics.process_exited(child.pid, metrics_dir)
                        log.warning("worker %d exited with %s; starting it again", number, child.returncode)
                        time.sleep(restart_delay)
                        if stopping:
                            break
                    children[number] = subprocess.Popen(command, env={**environment, "STICKTIONARY_WORKER": str(number)})
                    log.info("worker %d started (pid %d)", number, children[number].pid)
            time.sleep(0.2)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            metrics.process_exited(child.pid, metrics_dir)
        if made_here:
            metrics.remove_multiprocess_dir(metrics_dir)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
