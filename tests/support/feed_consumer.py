"""A change-feed consumer in a process of its own, for the SIGKILL test.

    python -m tests.support.feed_consumer BASE_URL OUT [CURSOR]

It follows ``GET /api/v1/users/changes`` from CURSOR (or the start) and appends one JSON line per page to
OUT: ``{"changes": [[id, version], ...], "cursor": next_cursor}``, written whole and flushed, so a kill
leaves at most one partial last line. A consumer resumes from the cursor of the last whole line.
"""

from __future__ import annotations

import sys

import httpx2
import orjson


def main(base_url: str, out: str, cursor: str | None) -> None:
    with httpx2.Client(base_url=base_url, timeout=30) as client, open(out, "ab") as sink:
        while True:
            params = {"limit": "50", "wait": "1", **({"after": cursor} if cursor else {})}
            page = client.get("/api/v1/users/changes", params=params).raise_for_status().json()
            cursor = page["next_cursor"]
            changes = [[item["id"], item["version"]] for item in page["items"]]
            sink.write(orjson.dumps({"changes": changes, "cursor": cursor}) + b"\n")
            sink.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
