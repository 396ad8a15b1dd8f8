"""A caller flooding the service from its own process.

``python -m tests.support.flood BASE_URL PATH WORKERS SECONDS [--until-stdin-closes]``: closed-loop GETs
(`load.hammer`) for ``SECONDS``; with ``--until-stdin-closes``, until the caller closes the flood's stdin
(a pipe), which is how a test ends it once it has measured what it needed beside it, ``SECONDS`` then
only bounding a flood nobody stops.

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


async def _flood(
    base_url: str, path: str, workers: int, seconds: float, watch_stdin: bool
) -> list[load.Answer]:
    """`load.hammer` for ``seconds``, or until our stdin closes if ``watch_stdin``."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def watch() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    if watch_stdin:
        threading.Thread(target=watch, daemon=True).start()  # daemon: a blocked read does not hold the exit
    token = os.environ.get("FLOOD_TOKEN")
    return await load.hammer(base_url, path, workers=workers, seconds=seconds, token=token, stop=stop)


def main(argv: list[str]) -> None:
    watch_stdin = "--until-stdin-closes" in argv
    base_url, path, workers, seconds = [a for a in argv if a != "--until-stdin-closes"]
    answers = asyncio.run(_flood(base_url, path, int(workers), float(seconds), watch_stdin))
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
