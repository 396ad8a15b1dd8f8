"""A caller flooding the service from its own process.

``python -m tests.support.flood BASE_URL PATH WORKERS SECONDS``: closed-loop GETs (`load.hammer`) until
the caller closes the flood's stdin, which is how a test ends it once it has measured what it needed
beside it; ``SECONDS`` only bounds a flood nobody stops.

Its own process, so that its CPU and event loop are not those of the caller a test measures beside it.
``FLOOD_TOKEN`` in the environment is sent as the bearer token. Prints one JSON line: how many answers,
by status, and whether every non-2xx answer carried ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading

from tests.support import load


async def _until_stdin_closes(base_url: str, path: str, workers: int, seconds: float) -> list[load.Answer]:
    """`load.hammer` until the caller closes our stdin (or ``seconds``, a bound on a forgotten flood)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def watch() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch, daemon=True).start()  # daemon: a blocked read does not hold the exit
    token = os.environ.get("FLOOD_TOKEN")
    return await load.hammer(base_url, path, workers=workers, seconds=seconds, token=token, stop=stop)


def main(argv: list[str]) -> None:
    base_url, path, workers, seconds = argv
    answers = asyncio.run(_until_stdin_closes(base_url, path, int(workers), float(seconds)))
    statuses: dict[int, int] = {}
    for answer in answers:
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    refused = [a for a in answers if not a.ok]
    summary = {
        "n": len(answers),
        "statuses": statuses,
        "retry_after": all(a.retry_after is not None for a in refused),
        "p50_ms": load.p([a.seconds for a in answers], 0.5),
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
