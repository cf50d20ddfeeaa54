"""Run the sandbox on its own: `python -m offline.sandbox --bot 123:TOKEN=name [--port 8081] [--no-limits]`.

Prints `ready <base url>` once it listens, then serves until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from offline.sandbox.server import Sandbox


async def serve(host: str, port: int, bots: list[str], limits: bool, spread: list[str] | None = None) -> None:
    sandbox = Sandbox(rate_limits=limits, webhook_spread=spread)
    for spec in bots:
        token, _, username = spec.partition("=")
        sandbox.add_bot(token, username or f"bot{len(sandbox.bots) + 1}")
    base = await sandbox.start(host, port)
    print(f"ready {base}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m offline.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bot", action="append", default=[], help="TOKEN=username, once per bot")
    parser.add_argument("--no-limits", action="store_true", help="no 429 for rate (injected faults still apply)")
    parser.add_argument("--spread", default="", help="comma-separated base URLs that webhook deliveries go to "
                        "in turn (a load balancer in front of several workers)")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.bot, not args.no_limits, [u for u in args.spread.split(",") if u]))


if __name__ == "__main__":
    main()
