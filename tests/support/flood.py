"""A caller flooding the service from its own process.

``python -m tests.support.flood BASE_URL PATH WORKERS SECONDS``: closed-loop GETs (`load.hammer`).

Its own process, so that its CPU and event loop are not those of the caller a test measures beside it.
``FLOOD_TOKEN`` in the environment is sent as the bearer token. Prints one JSON line: how many answers,
by status, and whether every non-2xx answer carried ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tests.support import load


def main(argv: list[str]) -> None:
    base_url, path, workers, seconds = argv
    answers = asyncio.run(
        load.hammer(
            base_url, path, workers=int(workers), seconds=float(seconds), token=os.environ.get("FLOOD_TOKEN")
        )
    )
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
